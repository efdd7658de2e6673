"""Raw text per language -> one SentencePiece model, one dictionary, fairseq datasets per language.

The steps of ``balkd-prepare``, each streaming over the files line by line so memory does not grow
with the corpus (only with ``--sp-sample-sentences``, which caps the SentencePiece training sample):

1. check:    every file is UTF-8 (else: file and line number) and big enough; count non-blank lines,
             after splitting (or truncating) lines longer than --max-line-chars, which are counted.
2. split:    (optionally Moses-normalise) and route each line to train/valid/test — a uniform random
             choice of exactly --valid-lines/--test-lines lines (selection sampling, no index lists) —
             and write the SentencePiece sample: per language a share of
             ``min(--sp-sample-sentences, train lines)`` proportional to ``train_lines ** --sp-alpha``
             (XLM-style smoothing, so low-resource languages get their share of the vocabulary; a
             language smaller than its share is repeated).
3. sentencepiece: train ONE unigram model on the sample.
4. encode:   every split of every language into pieces.
5. binarize: ONE fairseq Dictionary from all languages' training pieces (as fairseq-preprocess
             builds it), then fairseq's VocabularyDatasetBinarizer into mmap indexed datasets.

The inputs and their lines are :mod:`.raw_text`; the one-line-at-a-time draws, :mod:`.line_sampling`.

Output layout (what the ``balanced_distill`` task reads)::

    DATA/dict.txt, DATA/spm.model, DATA/spm.vocab, DATA/stats.json
    DATA/<lang>/{train,valid,test}.{bin,idx}, DATA/<lang>/dict.txt (a copy)
"""
import itertools
import logging
import random
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, FrozenSet, Iterator, List, Optional, Tuple

from tqdm import tqdm

from ..errors import BalkdError
from ..files import file_sha256
from ..outputs import write_json
from .line_sampling import RepeatingSampler, SelectionSampler, sp_sample_sizes
from .raw_text import DEFAULT_MAX_LINE_CHARS, LM_SPLITS, LONG_LINE_MODES, LanguageSource, text_lines

logger = logging.getLogger(__name__)
ENCODE_BATCH = 1000
EOS_WORD = "</s>"  # fairseq Dictionary's end-of-sentence symbol, counted once per line


@dataclass
class PrepareConfig:
    sources: List[LanguageSource]
    vocab_size: int = 8000
    sp_alpha: float = 0.3
    sp_sample_sentences: int = 1_000_000
    character_coverage: float = 0.9995
    valid_lines: int = 1000
    test_lines: int = 1000
    normalize_punct: FrozenSet[str] = frozenset()  # languages to Moses-normalise
    seed: int = 1
    threads: int = 1
    progress: bool = True
    max_line_chars: int = DEFAULT_MAX_LINE_CHARS  # 0: keep every line whole
    long_lines: str = "split"  # or "truncate"

    def validate(self) -> None:
        langs = [s.lang for s in self.sources]
        duplicates = sorted({lang for lang in langs if langs.count(lang) > 1})
        if duplicates:
            raise BalkdError(f"--raw: language given twice: {', '.join(duplicates)}")
        unknown = sorted(self.normalize_punct - set(langs))
        if unknown:
            raise BalkdError(f"--normalize-punct: not an input language: {', '.join(unknown)}")
        if self.vocab_size < 8:
            raise BalkdError(f"--vocab-size: must be at least 8 (got {self.vocab_size})")
        if not 0.0 <= self.sp_alpha <= 1.0:
            raise BalkdError(f"--sp-alpha: must be between 0 and 1 (got {self.sp_alpha})")
        if self.sp_sample_sentences < 1:
            raise BalkdError(f"--sp-sample-sentences: must be at least 1 (got {self.sp_sample_sentences})")
        if not 0.0 < self.character_coverage <= 1.0:
            raise BalkdError(f"--character-coverage: must be in (0, 1] (got {self.character_coverage})")
        for flag, value in (("--valid-lines", self.valid_lines), ("--test-lines", self.test_lines)):
            if value < 1:
                raise BalkdError(f"{flag}: must be at least 1 (got {value})")
        if self.threads < 1:
            raise BalkdError(f"--threads: must be at least 1 (got {self.threads})")
        if self.max_line_chars < 0 or 0 < self.max_line_chars < 10:
            raise BalkdError(f"--max-line-chars: must be 0 (off) or at least 10 (got {self.max_line_chars})")
        if self.long_lines not in LONG_LINE_MODES:
            raise BalkdError(f"--long-lines: must be one of {', '.join(LONG_LINE_MODES)} (got {self.long_lines!r})")
        for source in self.sources:
            for path in source.files.values():
                if path.is_dir():
                    raise BalkdError(f"language '{source.lang}': {path} is a directory, not a text file")
                if not path.is_file():
                    raise BalkdError(f"language '{source.lang}': no such file: {path}")


def _bar(cfg: PrepareConfig, total: int, desc: str, unit: str = "line", **kw) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not cfg.progress,
                dynamic_ncols=True, **kw)


# --------------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------------


def _lines(cfg: PrepareConfig, path: Path, **kw) -> Iterator[str]:
    return text_lines(path, max_chars=cfg.max_line_chars, long_lines=cfg.long_lines, **kw)


def count_lines(cfg: PrepareConfig, long_lines: Optional[Counter] = None) -> Dict[str, Dict[str, int]]:
    """Step 1: non-blank lines per language and file (after splitting over-long lines, which are counted
    per language in ``long_lines``); every input error is raised here, before writing."""
    total_bytes = sum(p.stat().st_size for s in cfg.sources for p in s.files.values())
    counts: Dict[str, Dict[str, int]] = {}
    long_lines = Counter() if long_lines is None else long_lines
    with _bar(cfg, total_bytes, "check", unit="B", unit_scale=True, leave=False) as bar:
        for source in cfg.sources:
            counts[source.lang] = {}
            long_lines[source.lang] += 0
            for part, path in source.files.items():
                on_long = lambda lang=source.lang: long_lines.update([lang])  # noqa: E731
                n = sum(1 for _ in _lines(cfg, path, on_bytes=bar.update, on_long=on_long))
                if n == 0:
                    raise BalkdError(f"{path}: file is empty (no non-blank line) for language '{source.lang}'")
                counts[source.lang][part] = n
            n = counts[source.lang].get("all")
            needed = cfg.valid_lines + cfg.test_lines
            if n is not None and n <= needed:
                raise BalkdError(
                    f"{source.files['all']}: language '{source.lang}' has {n} non-blank lines, too few for "
                    f"--valid-lines {cfg.valid_lines} + --test-lines {cfg.test_lines} and a training split "
                    f"(needs at least {needed + 1})")
            if n is not None and n - needed < needed:
                logger.warning(f"language '{source.lang}': {n - needed} of its {n} lines are left for training after "
                               f"--valid-lines {cfg.valid_lines} + --test-lines {cfg.test_lines}; lower those for a "
                               "language this small")
    return counts


def split_sizes(cfg: PrepareConfig, counts: Dict[str, Dict[str, int]]) -> Dict[str, Dict[str, int]]:
    sizes = {}
    for source in cfg.sources:
        c = counts[source.lang]
        if source.presplit:
            sizes[source.lang] = dict(c)
        else:
            sizes[source.lang] = {"train": c["all"] - cfg.valid_lines - cfg.test_lines,
                                  "valid": cfg.valid_lines, "test": cfg.test_lines}
    return sizes


def _normalizer(cfg: PrepareConfig, lang: str) -> Callable[[str], str]:
    if lang not in cfg.normalize_punct:
        return lambda line: line
    from sacremoses import MosesPunctNormalizer

    moses = MosesPunctNormalizer(lang=lang)
    return lambda line: moses.normalize(line).strip() or line


def _routed_lines(cfg: PrepareConfig, source: LanguageSource, sizes: Dict[str, int],
                  rng: random.Random) -> Iterator[Tuple[str, str]]:
    """(split, line) for every non-blank line, in file order."""
    if source.presplit:
        for split in LM_SPLITS:
            for line in _lines(cfg, source.files[split]):
                yield split, line
        return
    n_eval = sizes["valid"] + sizes["test"]
    held_out = SelectionSampler(n_eval, sizes["train"] + n_eval, rng)
    valid = SelectionSampler(sizes["valid"], n_eval, rng)
    for line in _lines(cfg, source.files["all"]):
        yield ("valid" if valid.take() else "test") if held_out.take() else "train", line


def split_and_sample(cfg: PrepareConfig, sizes: Dict[str, Dict[str, int]], sample_sizes: Dict[str, int],
                     text_dir: Path, sample_path: Path) -> None:
    """Step 2: write <lang>.<split>.txt (normalised) and the SentencePiece sample file."""
    total = sum(n for s in sizes.values() for n in s.values())
    with _bar(cfg, total, "split") as bar, open(sample_path, "w", encoding="utf-8") as sample:
        for source in cfg.sources:
            lang = source.lang
            rng = random.Random(f"{cfg.seed}:{lang}")
            normalize = _normalizer(cfg, lang)
            sampler = RepeatingSampler(sample_sizes[lang], sizes[lang]["train"], rng)
            outs = {split: open(text_dir / f"{lang}.{split}.txt", "w", encoding="utf-8") for split in LM_SPLITS}
            try:
                for split, line in _routed_lines(cfg, source, sizes[lang], rng):
                    line = normalize(line)
                    outs[split].write(line + "\n")
                    copies = sampler.copies() if split == "train" else 0
                    if copies:  # (TextIOWrapper keeps every empty write pending: never write "")
                        sample.write((line + "\n") * copies)
                    bar.update()
            finally:
                for f in outs.values():
                    f.close()


def train_sentencepiece(cfg: PrepareConfig, sample_path: Path, model_prefix: Path, n_sample: int) -> None:
    """Step 3: one unigram model on the sample (``vocab_size`` is a soft limit for tiny corpora)."""
    import sentencepiece as spm

    if cfg.progress:
        print(f"sentencepiece: training a {cfg.vocab_size}-piece unigram model on {n_sample} sentences",
              file=sys.stderr)
    try:
        spm.SentencePieceTrainer.train(
            input=str(sample_path), model_prefix=str(model_prefix), model_type="unigram",
            vocab_size=cfg.vocab_size, character_coverage=cfg.character_coverage,
            input_sentence_size=max(n_sample, 101),  # SentencePiece rejects 1..100; the file holds n_sample
            shuffle_input_sentence=False, hard_vocab_limit=False,
            num_threads=cfg.threads, minloglevel=2,
        )
    except (RuntimeError, OSError) as err:
        reason = re.sub(r"^.*\] ", "", " ".join(str(err).split()))  # drop SentencePiece's source location
        reason = reason.replace("--character_coverage", "--character-coverage")  # its advice, in our flag's name
        raise BalkdError(f"--vocab-size {cfg.vocab_size}: SentencePiece training failed: {reason}") from None


def encode(cfg: PrepareConfig, sizes: Dict[str, Dict[str, int]], model: Path, text_dir: Path) -> Counter:
    """Step 4: <lang>.<split>.txt -> <lang>.<split>.spm (space-separated pieces, as fairseq's sentencepiece
    bpe writes them). Returns the piece counts of all training splits (one "</s>" per line)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model))
    train_counts: Counter = Counter()
    total = sum(n for s in sizes.values() for n in s.values())
    with _bar(cfg, total, "encode") as bar:
        for lang in sizes:
            for split in LM_SPLITS:
                counts = train_counts if split == "train" else None
                src, dst = text_dir / f"{lang}.{split}.txt", text_dir / f"{lang}.{split}.spm"
                with open(src, encoding="utf-8") as fin, open(dst, "w", encoding="utf-8") as fout:
                    for batch in _batches(fin):
                        _write_pieces(sp, batch, fout, counts)
                        bar.update(len(batch))
    return train_counts


def _batches(lines: Iterator[str]) -> Iterator[List[str]]:
    batch = []
    for line in lines:
        batch.append(line.rstrip("\n"))
        if len(batch) == ENCODE_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_pieces(sp, lines: List[str], out, counts: Optional[Counter]) -> None:
    encoded = sp.encode(lines, out_type=str)
    out.write("".join(" ".join(pieces) + "\n" for pieces in encoded))
    if counts is not None:
        counts.update(itertools.chain.from_iterable(encoded))
        counts[EOS_WORD] += len(encoded)


def build_dictionary(train_counts: Counter):
    """One fairseq Dictionary from every language's training pieces, exactly as fairseq-preprocess builds it
    (``Dictionary.add_file_to_dictionary``'s merge, then ``finalize`` with its defaults), from counts
    gathered while encoding instead of a second, per-word pass over the files."""
    from fairseq.data import Dictionary

    dictionary = Dictionary(eos=EOS_WORD)
    for piece, count in sorted(train_counts.items()):
        dictionary.add_symbol(piece, count)
    dictionary.finalize(threshold=-1, nwords=-1, padding_factor=8)
    return dictionary


def piece_binarizer(dictionary):
    """fairseq's VocabularyDatasetBinarizer semantics (ids of whitespace-separated pieces, unknown pieces
    counted as replaced, </s> appended) without its per-element tensor writes, which are ~6x slower."""
    import torch
    from fairseq.binarizer import Binarizer

    class PieceBinarizer(Binarizer):
        def binarize_line(self, line, summary):
            if summary.replaced is None:
                summary.replaced = Counter()
            pieces = line.split()
            ids = [dictionary.indices.get(piece, dictionary.unk_index) for piece in pieces]
            if dictionary.unk_index in ids:
                summary.replaced.update(
                    p for p, i in zip(pieces, ids) if i == dictionary.unk_index and p != dictionary.unk_word)
            ids.append(dictionary.eos_index)
            summary.num_seq += 1
            summary.num_tok += len(ids)
            return torch.tensor(ids, dtype=torch.int32)

    return PieceBinarizer()


def binarize(cfg: PrepareConfig, sizes: Dict[str, Dict[str, int]], dictionary, text_dir: Path,
             out: Path) -> Dict[str, Dict[str, Dict[str, int]]]:
    """Step 5: fairseq mmap datasets DATA/<lang>/<split>.{bin,idx}; returns lines/tokens/unk per split."""
    from fairseq.binarizer import BinarizeSummary
    from fairseq.data import indexed_dataset

    binarizer = piece_binarizer(dictionary)
    stats: Dict[str, Dict[str, Dict[str, int]]] = {}
    total = sum(n for s in sizes.values() for n in s.values())
    with _bar(cfg, total, "binarize") as bar:
        for lang in sizes:
            (out / lang).mkdir()
            stats[lang] = {}
            for split in LM_SPLITS:
                prefix = str(out / lang / split)
                builder = indexed_dataset.make_builder(
                    indexed_dataset.data_file_path(prefix), impl="mmap", vocab_size=len(dictionary))
                summary = BinarizeSummary()
                with open(text_dir / f"{lang}.{split}.spm", encoding="utf-8") as f:
                    for line in f:
                        builder.add_item(binarizer.binarize_line(line, summary))
                        bar.update()
                builder.finalize(indexed_dataset.index_file_path(prefix))
                stats[lang][split] = {"lines": summary.num_seq, "tokens": summary.num_tok - summary.num_seq,
                                      "unk": summary.num_replaced}
    return stats


def check_tokens(cfg: PrepareConfig, split_stats: Dict[str, Dict[str, Dict[str, int]]]) -> None:
    """Refuse a language whose training text encodes to nothing: balancing would cut every language to its size."""
    for source in cfg.sources:
        train = split_stats[source.lang]["train"]
        if train["tokens"] == 0:
            raise BalkdError(f"language '{source.lang}': its {train['lines']} train lines encode to no tokens "
                             f"(only characters SentencePiece drops, e.g. zero-width ones): check "
                             f"{source.files.get('all', source.files.get('train'))} or leave the language out")


# --------------------------------------------------------------------------------------------------
# The whole pipeline
# --------------------------------------------------------------------------------------------------


def prepare(cfg: PrepareConfig, out: Path) -> dict:
    """Run every step, writing the final layout into ``out`` (an existing, empty directory).

    Every input check runs (step 1) before anything is written. Returns the statistics (stats.json).
    """
    cfg.validate()
    long_lines: Counter = Counter()
    counts = count_lines(cfg, long_lines)
    sizes = split_sizes(cfg, counts)
    train_lines = {lang: s["train"] for lang, s in sizes.items()}
    sample_sizes = sp_sample_sizes(train_lines, cfg.sp_alpha, cfg.sp_sample_sentences)
    work = out / ".work"
    work.mkdir()
    sample_path = work / "spm_sample.txt"
    split_and_sample(cfg, sizes, sample_sizes, work, sample_path)
    train_sentencepiece(cfg, sample_path, out / "spm", sum(sample_sizes.values()))
    train_counts = encode(cfg, sizes, out / "spm.model", work)
    dictionary = build_dictionary(train_counts)
    dictionary.save(str(out / "dict.txt"))
    split_stats = binarize(cfg, sizes, dictionary, work, out)
    check_tokens(cfg, split_stats)
    for lang in sizes:
        shutil.copyfile(out / "dict.txt", out / lang / "dict.txt")
    shutil.rmtree(work)
    stats = {
        "languages": {
            s.lang: {**split_stats[s.lang], "sp_sample_lines": sample_sizes[s.lang],
                     "normalized_punctuation": s.lang in cfg.normalize_punct,
                     "long_lines": long_lines[s.lang],
                     "inputs": {part: str(path) for part, path in s.files.items()}}
            for s in cfg.sources
        },
        "dictionary_size": len(dictionary),
        "sentencepiece": {"vocab_size": _spm_size(out / "spm.model"), "sha256": file_sha256(str(out / "spm.model")),
                          "requested_vocab_size": cfg.vocab_size,
                          "alpha": cfg.sp_alpha, "sample_lines": sum(sample_sizes.values()),
                          "sample_cap": cfg.sp_sample_sentences, "character_coverage": cfg.character_coverage},
        "long_lines": {"max_chars": cfg.max_line_chars, "mode": cfg.long_lines},
        "seed": cfg.seed,
    }
    write_json(out / "stats.json", stats)
    return stats


def _spm_size(model: Path) -> int:
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(model)).get_piece_size()


def format_stats(stats: dict) -> str:
    """The per-language table printed by balkd-prepare."""
    header = f"{'lang':<8}" + "".join(f"{split + ' lines':>13}{split + ' tokens':>14}" for split in LM_SPLITS)
    header += f"{'spm sample':>12}"
    rows = [header]
    for lang, s in stats["languages"].items():
        row = f"{lang:<8}" + "".join(f"{s[split]['lines']:>13,}{s[split]['tokens']:>14,}" for split in LM_SPLITS)
        rows.append(row + f"{s['sp_sample_lines']:>12,}")
    sp = stats["sentencepiece"]
    long = {lang: s.get("long_lines", 0) for lang, s in stats["languages"].items()}
    if any(long.values()):
        limit = stats.get("long_lines", {})
        action = "cut to their first" if limit.get("mode") == "truncate" else "split into pieces of at most"
        rows.append(f"long lines {action} {limit.get('max_chars')} characters: "
                    + ", ".join(f"{lang} {n:,}" for lang, n in long.items() if n))
    rows.append(f"sentencepiece: {sp['vocab_size']} pieces (asked {sp['requested_vocab_size']}), sample "
                f"{sp['sample_lines']:,} lines, alpha {sp['alpha']}; dictionary: {stats['dictionary_size']} entries")
    return "\n".join(rows)
