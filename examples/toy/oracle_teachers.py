"""Oracle teachers: what if the small languages' teachers had ten times their data? A diagnostic, not a lever.

On the diverse preset no student configuration beats HL-balanced in low-resource probing in a way that
holds up, and every better soft label tried (own teacher, fallback, born-again, mixture, ensemble) was at
best HL-balanced's. This asks whether the limit is the teachers: the sweep configuration
``Ours+fallback+hard0.3+oracle`` is the finalist with the low-resource languages' teachers trained on
``ORACLE_FACTOR`` times their raw text (text a user of the benchmark does not have, hence "oracle"). The
student's own data, the vocabulary and every evaluation stay the benchmark's.

The extra text comes from the same generator call with larger ``--sizes`` for those languages: balkd-synth
draws a language's sentences in sequence, so its first ``--low-size`` lines are the benchmark's (checked
here, refused otherwise). It is encoded with the benchmark's SentencePiece model and dictionary, and a
line whose pieces equal a valid or test line of the benchmark is dropped, so the teachers never train on
what the models are scored on. The valid and test splits are the benchmark's, copied.

    python examples/toy/pipeline.py sweep --presets diverse --seeds 1,2,3 \\
        --configs HL,HL-balanced,Ours+fallback+hard0.3,Ours+fallback+hard0.3+oracle
"""
import json
import os
import shutil
from typing import Dict, List, Set, Tuple

ORACLE_FACTOR = 10
HELD_OUT = ("valid", "test")


def check_prefix(small_raw: str, large_raw: str) -> int:
    """The benchmark's raw text of a language must be the first lines of the larger generation; its length."""
    with open(small_raw, encoding="utf-8") as small, open(large_raw, encoding="utf-8") as large:
        lines = 0
        for lines, line in enumerate(small, 1):
            if large.readline() != line:
                raise SystemExit(f"{large_raw}: line {lines} differs from {small_raw}; the larger generation "
                                 "does not extend the benchmark's text, so it cannot train its oracle teacher")
    return lines


def held_out_sequences(bench_data: str, lang: str) -> Set[Tuple[int, ...]]:
    """Every valid and test line of ``lang`` in the benchmark, as dictionary ids without the final </s>."""
    from fairseq.data import indexed_dataset

    sequences = set()
    for split in HELD_OUT:
        dataset = indexed_dataset.MMapIndexedDataset(os.path.join(bench_data, lang, split))
        sequences.update(tuple(dataset[i][:-1].tolist()) for i in range(len(dataset)))
    return sequences


def write_oracle_language(bench_data: str, large_raw: str, lang: str, out_data: str) -> Dict[str, int]:
    """OUT_DATA/<lang>/: train from ``large_raw`` minus the held-out lines, valid and test copied; the counts."""
    import sentencepiece as spm
    from fairseq.binarizer import BinarizeSummary
    from fairseq.data import Dictionary, indexed_dataset

    from balkd_fairseq.data.prepare import piece_binarizer

    dictionary = Dictionary.load(os.path.join(bench_data, "dict.txt"))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(bench_data, "spm.model"))
    held_out = held_out_sequences(bench_data, lang)
    binarizer, summary = piece_binarizer(dictionary), BinarizeSummary()
    os.makedirs(os.path.join(out_data, lang))
    prefix = os.path.join(out_data, lang, "train")
    builder = indexed_dataset.make_builder(indexed_dataset.data_file_path(prefix), impl="mmap",
                                           vocab_size=len(dictionary))
    dropped = 0
    with open(large_raw, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    for pieces in sp.encode(lines, out_type=str):
        ids = binarizer.binarize_line(" ".join(pieces), summary)
        if tuple(ids[:-1].tolist()) in held_out:
            dropped += 1
            continue
        builder.add_item(ids)
    builder.finalize(indexed_dataset.index_file_path(prefix))
    for split in HELD_OUT:
        for suffix in (".bin", ".idx"):
            shutil.copyfile(os.path.join(bench_data, lang, split + suffix), os.path.join(out_data, lang, split + suffix))
    return {"raw_lines": len(lines), "train_lines": len(lines) - dropped, "dropped_held_out": dropped,
            "unk": summary.num_replaced}


def build_oracle_data(bench_synth: str, bench_data: str, large_synth: str, languages: List[str], out_data: str) -> dict:
    """The oracle teachers' data directory (only ``languages``), written beside and then renamed to ``out_data``."""
    partial = out_data + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    for name in ("dict.txt", "spm.model"):
        shutil.copyfile(os.path.join(bench_data, name), os.path.join(partial, name))
    stats = {}
    for lang in languages:
        small_raw = os.path.join(bench_synth, "raw", f"{lang}.txt")
        large_raw = os.path.join(large_synth, "raw", f"{lang}.txt")
        stats[lang] = {"benchmark_raw_lines": check_prefix(small_raw, large_raw),
                       **write_oracle_language(bench_data, large_raw, lang, partial)}
    with open(os.path.join(partial, "oracle.json"), "w", encoding="utf-8") as f:
        json.dump(stats, f, indent=1)
    shutil.rmtree(out_data, ignore_errors=True)
    os.rename(partial, out_data)
    return stats


def merged_manifest(own: str, oracle: str, out: str) -> None:
    """teachers.json with the oracle teachers in place of the own teachers of their languages."""
    with open(own, encoding="utf-8") as f:
        teachers = json.load(f)
    with open(oracle, encoding="utf-8") as f:
        teachers.update(json.load(f))
    with open(out, "w", encoding="utf-8") as f:
        json.dump(teachers, f, indent=1, sort_keys=True)
