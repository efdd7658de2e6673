"""balkd-export: the fairseq folder loads without the plugin, the HF folder without fairseq, and both agree.

One tiny seven-script model is built once: balkd-prepare on generated text (with rare characters that
SentencePiece drops but dict.txt lists), a few dict.txt entries renamed so that SentencePiece has pieces
the dictionary lacks, and two fairseq-train updates of the balanced_distill task. Its export is run on
tests/data/parity.txt in fresh processes (one with stock fairseq and no plugin, one with transformers and
no fairseq), with the training data moved away.
"""
import json
import os
import random
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import torch
from helpers import REPO, TINY_ARCH, run_fairseq_train

from balkd_fairseq.cli.export import main as export_main
from balkd_fairseq.data.dictionary_hash import DICTIONARY_HASH_KEY, dict_file_sha256
from balkd_fairseq.data.prepare import PrepareConfig, prepare
from balkd_fairseq.data.raw_text import LanguageSource
from balkd_fairseq.export import parity
from balkd_fairseq.outputs import MARKER

PARITY_TEXT = REPO / "tests" / "data" / "parity.txt"
PARITY_SCRIPT = REPO / "balkd_fairseq" / "export" / "parity.py"
RARE = ["École", "Élan", "ÉÉ", "中文", "Øre"]  # each a few times: SentencePiece drops these characters
RENAMED = 3  # dict.txt entries renamed, so SentencePiece has pieces the dictionary lacks


def write_corpus(raw: Path, lines_per_language: int = 120, seed: int = 5) -> list:
    """One file per script, sentences drawn from the words of the parity text's line in that script."""
    raw.mkdir()
    parity_lines = PARITY_TEXT.read_text(encoding="utf-8").splitlines()
    languages = ["de", "ru", "el", "hi", "ur", "ko", "te"]
    rng = random.Random(seed)

    def word(words):  # a real word or a new one from pieces of real words, so subwords and characters recur
        if rng.random() < 0.5:
            return rng.choice(words)
        return "".join(w[rng.randrange(len(w)):][: rng.randint(1, 3)] for w in rng.sample(words, 2))

    for lang, line in zip(languages, parity_lines):
        words = line.replace(",", "").replace(".", "").split() + ["42", "2026", "ABC", "dog"]
        sentences = [" ".join(word(words) for _ in range(rng.randint(4, 12))) + rng.choice([".", "!", "?", ","])
                     for _ in range(lines_per_language)]
        if lang == "de":
            sentences[:len(RARE)] = [f"{s} {rare}" for s, rare in zip(sentences, RARE)]
        (raw / f"{lang}.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    return languages


def rename_dictionary_entries(data: Path) -> list:
    """Rename multi-character pieces that the parity text uses: SentencePiece keeps them, dict.txt loses them."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(data / "spm.model"))
    used = {p for line in PARITY_TEXT.read_text(encoding="utf-8").splitlines() for p in sp.encode(line, out_type=str)}
    entries = [line.split(" ") for line in (data / "dict.txt").read_text(encoding="utf-8").splitlines()]
    chosen = sorted(sym for sym, _ in entries if sym in used and len(sym.lstrip("▁")) >= 2)[:RENAMED]
    renamed = {sym: f"renamedpiece{i}" for i, sym in enumerate(chosen)}
    text = "".join(f"{renamed.get(sym, sym)} {count}\n" for sym, count in entries)
    for path in [data / "dict.txt"] + sorted(data.glob("*/dict.txt")):
        path.write_text(text, encoding="utf-8")
    unknown_in_binarized_text(data, list(renamed.values()))
    return chosen


def unknown_in_binarized_text(data: Path, symbols: list) -> None:
    """The binarized text as a dictionary without those pieces would have encoded it: <unk> in their place."""
    from fairseq.data import Dictionary, data_utils, indexed_dataset

    dictionary = Dictionary.load(str(data / "dict.txt"))
    ids = torch.tensor([dictionary.index(symbol) for symbol in symbols])
    for index in sorted(data.glob("*/*.idx")):
        prefix = str(index)[: -len(".idx")]
        dataset = data_utils.load_indexed_dataset(prefix, None)
        items = [dataset[i].clone() for i in range(len(dataset))]
        del dataset
        builder = indexed_dataset.make_builder(prefix + ".tmp.bin", impl="mmap", vocab_size=len(dictionary))
        for item in items:
            item[torch.isin(item, ids)] = dictionary.unk()
            builder.add_item(item)
        builder.finalize(prefix + ".tmp.idx")
        os.replace(prefix + ".tmp.bin", prefix + ".bin")
        os.replace(prefix + ".tmp.idx", prefix + ".idx")


def record_dictionary(checkpoint: Path, data: Path, languages: list, out: Path, sha256=None) -> Path:
    """What a checkpoint of the redesigned task records: its languages and its dictionary's hash."""
    state = torch.load(checkpoint)
    state["cfg"]["task"]["languages"] = ",".join(languages)
    state.setdefault("task_state", {})[DICTIONARY_HASH_KEY] = sha256 or dict_file_sha256(str(data / "dict.txt"))
    torch.save(state, out)
    return out


def without_records(checkpoint: Path, out: Path) -> Path:
    """A checkpoint as written before languages and dictionary hashes were recorded."""
    state = torch.load(checkpoint)
    state["cfg"]["task"]["languages"] = ""
    (state.get("task_state") or {}).pop(DICTIONARY_HASH_KEY, None)
    torch.save(state, out)
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    languages = write_corpus(root / "raw")
    data = root / "DATA"
    data.mkdir()
    sources = [LanguageSource(lang, {"all": root / "raw" / f"{lang}.txt"}) for lang in languages]
    prepare(PrepareConfig(sources, vocab_size=300, character_coverage=0.995, valid_lines=5, test_lines=5,
                          progress=False), data)
    renamed = rename_dictionary_entries(data)
    run_fairseq_train([
        str(data), "--task", "balanced_distill", "--criterion", "masked_lm", *TINY_ARCH, "--max-positions", "256",
        "--tokens-per-sample", "64", "--batch-size", "8", "--optimizer", "adam", "--lr", "0.001",
        "--max-update", "2", "--save-dir", str(root / "ckpt"), "--no-epoch-checkpoints", "--disable-validation",
        "--cpu", "--num-workers", "0", "--data-buffer-size", "0", "--log-format", "simple",
    ])
    trained = root / "ckpt" / "checkpoint_last.pt"
    old = without_records(trained, root / "ckpt" / "unrecorded.pt")
    new = record_dictionary(trained, data, languages, root / "ckpt" / "recorded.pt")
    results = root / "results"
    results.mkdir()
    (results / "lm.json").write_text(json.dumps({"kind": "lm", "name": "x", "languages": {
        lang: {"mrr": 0.25 + i / 100, "pseudo_perplexity": 40.0 + i} for i, lang in enumerate(languages)}}))
    return {"root": root, "data": data, "old": old, "new": new, "languages": languages, "renamed": renamed,
            "results": results}


def run_export(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "balkd_fairseq.cli.export", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def run_parity(exported: Path, workdir: Path):
    """parity.py copied away from the package and run with no PYTHONPATH (stock libraries only), once per
    format, both at once."""
    script = workdir / "parity_script.py"
    shutil.copyfile(PARITY_SCRIPT, script)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    procs = {kind: subprocess.Popen([sys.executable, str(script), kind, str(exported / kind), str(PARITY_TEXT),
                                     str(workdir / f"{kind}.pt")], cwd=workdir, env=env, stderr=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, text=True)
             for kind in ("fairseq", "hf")}
    for kind, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{kind}: {err[-3000:]}"
    return torch.load(workdir / "fairseq.pt"), torch.load(workdir / "hf.pt")


@pytest.fixture(scope="module")
def exported(project):
    out = project["root"] / "exported"
    proc = run_export(project["new"], "--data", project["data"], "--out", out, "--results", project["results"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    away = project["root"] / "DATA.moved-away"
    workdir = project["root"] / "parity"
    workdir.mkdir()
    os.rename(project["data"], away)  # nothing below may read the training data
    try:
        fairseq_run, hf_run = run_parity(out, workdir)
    finally:
        os.rename(away, project["data"])
    return {"out": out, "fairseq": fairseq_run, "hf": hf_run, "stdout": proc.stdout}


def fairseq_reference_ids(data: Path, line: str) -> list:
    """fairseq's encoding spelled out: SentencePiece pieces joined by spaces, the line split on whitespace (as
    encode_line does) and each part looked up in dict.txt, <unk> if absent, <s> ... </s>."""
    import sentencepiece as spm
    from fairseq.data import Dictionary

    dictionary = Dictionary.load(str(data / "dict.txt"))
    pieces = spm.SentencePieceProcessor(model_file=str(data / "spm.model")).encode(line, out_type=str)
    return [dictionary.bos()] + [dictionary.index(p) for p in " ".join(pieces).split()] + [dictionary.eos()]


# text the parity file cannot hold (U+0085 ends a line for str.splitlines) or that tokenizers' own normalizer
# got wrong: decomposed (NFD) letters with several marks, whitespace SentencePiece keeps and fairseq's
# line splitting drops, and the private-use characters the tokenizer uses as marks typed in the text
HARD_TEXTS = [unicodedata.normalize("NFD", text) for text in
              ["Tiếng Việt: người được những Nguyễn Ngọc Ánh", "Kierjaur lǘ schau, Ḉa va, Ǘber", "Ἐν ἀρχῇ ἦν ὁ λόγος"]]
HARD_TEXTS += ["Hund\x85Katze \x85 läuft", "École\ue001 a\ue000b \ue002x", "ÉÉ\x85ÉÉ"]


@pytest.mark.slow
def test_folders_hold_what_stock_tools_need(exported):
    out = exported["out"]
    assert sorted(os.listdir(out / "fairseq")) == ["dict.txt", "model.pt", "spm.model"]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(os.listdir(out / "hf"))
    assert json.loads((out / "hf" / "config.json").read_text())["architectures"] == ["XLMRobertaForMaskedLM"]
    # transformers 4 does not know transformers 5's "TokenizersBackend"; both load this name
    assert json.loads((out / "hf" / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    state = torch.load(out / "fairseq" / "model.pt", weights_only=True)  # plain values only
    assert "last_optimizer_state" not in state and state["cfg"]["task"]["_name"] == "masked_lm"
    assert "teachers" not in state["cfg"]["model"] and state["cfg"]["criterion"]["_name"] == "masked_lm"
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".partial")]


@pytest.mark.slow
def test_plugin_free_processes_load_the_exports(exported):
    assert exported["fairseq"]["imported"] == ["fairseq"]  # no balkd_fairseq
    assert exported["hf"]["imported"] == []  # neither fairseq nor balkd_fairseq
    for run in (exported["fairseq"], exported["hf"]):
        assert len(run["fill_mask"]) == 3
    fairseq_scores = [score for _, score in exported["fairseq"]["fill_mask"]]
    hf_scores = [score for _, score in exported["hf"]["fill_mask"]]
    assert fairseq_scores == pytest.approx(hf_scores, rel=1e-4)
    assert [text for text, _ in exported["fairseq"]["fill_mask"]] == [text for text, _ in exported["hf"]["fill_mask"]]


@pytest.mark.slow
def test_fairseq_ids_are_spm_pieces_looked_up_in_the_dictionary(exported, project):
    lines = [line for line in PARITY_TEXT.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert exported["fairseq"]["ids"] == [fairseq_reference_ids(project["data"], line) for line in lines]


@pytest.mark.slow
def test_hf_tokenizer_ids_equal_fairseq_ids(exported, project):
    result = parity.compare(exported["fairseq"], exported["hf"])
    assert result["ids_equal"], result["lines_differing"]
    # the ids past the dictionary are exactly the renamed pieces' occurrences (fairseq: <unk>)
    assert 0 < result["extra_id_tokens"] < result["tokens"] / 10
    assert len(exported["hf"]["ids"]) == len(exported["fairseq"]["ids"])
    size = exported["hf"]["fairseq_dictionary_size"]
    for hf_ids, fs_ids in zip(exported["hf"]["ids"], exported["fairseq"]["ids"]):
        assert [i for i in hf_ids if i < size] == [f for f, h in zip(fs_ids, hf_ids) if h < size]


@pytest.mark.slow
def test_hf_tokenizer_ids_equal_fairseq_ids_on_decomposed_text_odd_whitespace_and_marks(exported, project):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(exported["out"] / "hf"))
    size = exported["hf"]["fairseq_dictionary_size"]
    unk = tokenizer.unk_token_id
    for text in HARD_TEXTS:
        ids = [i if i < size else unk for i in tokenizer(text)["input_ids"]]
        assert ids == fairseq_reference_ids(project["data"], text), repr(text)


@pytest.mark.slow
def test_parity_text_exercises_the_three_hard_classes(exported, project):
    import sentencepiece as spm
    from fairseq.data import Dictionary

    data = project["data"]
    sp = spm.SentencePieceProcessor(model_file=str(data / "spm.model"))
    dictionary = Dictionary.load(str(data / "dict.txt"))
    unknown_to_spm = {i for i, sym in enumerate(dictionary.symbols)
                      if i >= dictionary.nspecial and not sym.startswith("madeupword") and sp.piece_to_id(sym) == sp.unk_id()
                      and not sym.startswith("renamedpiece")}
    used = {i for ids in exported["fairseq"]["ids"] for i in ids}
    assert unknown_to_spm & used, "no dict.txt entry unknown to SentencePiece occurs in the parity text"
    assert dictionary.index("ÉÉ") in used  # a run of unknown characters is one dictionary entry
    assert any(sym.startswith("madeupword") for sym in dictionary.symbols)
    assert project["renamed"] and exported["hf"]["fairseq_dictionary_size"] == len(dictionary) + 1  # + <mask>


@pytest.mark.slow
def test_logits_and_every_hidden_state_agree(exported):
    result = parity.compare(exported["fairseq"], exported["hf"])
    assert result["same_layer_count"]
    assert result["max_logit_diff"] <= 1e-4
    assert result["max_extra_logit"] < -1000  # pieces dict.txt lacks are never predicted
    assert result["max_hidden_diff"] <= 1e-4
    n_layers = json.loads((exported["out"] / "hf" / "config.json").read_text())["num_hidden_layers"]
    assert len(exported["hf"]["hidden"][0]) == n_layers + 1


@pytest.mark.slow
def test_model_card(exported, project):
    card = (exported["out"] / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlanguage:\n") and "license:" in card and "tags:" in card
    for lang in project["languages"]:
        assert f"- {lang}\n" in card and f"| {lang} | " in card
    assert "Balancing: `subsample`" in card and "Criterion: `masked_lm`" in card
    assert "roberta_base" in card and "parameters" in card
    assert "MRR" in card and "| de | 0.250 | 40.0 |" in card
    assert "Dictionary sha256 (recorded" in card


def test_model_card_says_when_the_probes_were_few_shot(tmp_path):
    from test_report import _probe_train_sentences, write_run

    from balkd_fairseq.export.model_card import results_section

    write_run(tmp_path / "r", seed=1)
    assert "--train-sentences" not in "\n".join(results_section(str(tmp_path / "r")))
    _probe_train_sentences(tmp_path / "r", 30)
    assert "POS/NER probes were trained on the first 30 sentences" in "\n".join(results_section(str(tmp_path / "r")))


def test_refuses_results_of_another_checkpoint(project, tmp_path, capsys):
    # the model card would show the other checkpoint's numbers under this one's name
    from balkd_fairseq.files import file_sha256

    results = tmp_path / "results"
    shutil.copytree(project["results"], results)
    lm = json.loads((results / "lm.json").read_text())
    (results / "lm.json").write_text(json.dumps({**lm, "checkpoint_sha256": file_sha256(str(project["old"]))}))
    assert_refused([project["new"], "--data", project["data"], "--out", tmp_path / "x", "--results", results], capsys,
                   f"--results: {results / 'lm.json'} holds results of another checkpoint")
    assert not (tmp_path / "x").exists()
    (results / "lm.json").write_text(json.dumps({**lm, "checkpoint_sha256": file_sha256(str(project["new"]))}))
    assert export_main([str(project["new"]), "--data", str(project["data"]), "--out", str(tmp_path / "x"),
                        "--format", "fairseq", "--results", str(results)]) == 0


def test_old_checkpoint_without_hash_is_checked_by_size(project, tmp_path, capsys):
    assert export_main([str(project["old"]), "--data", str(project["data"]), "--out", str(tmp_path / "x"),
                        "--format", "fairseq"]) == 0
    card = (tmp_path / "x" / "README.md").read_text(encoding="utf-8")
    assert "does not record its dictionary's hash" in card and "does not record its language list" in card


def assert_refused(argv, capsys, *needles):
    code = export_main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("balkd-fairseq: error: ")
    for needle in needles:
        assert needle in err[-1]
    return err[-1]


def test_refuses_a_checkpoint_that_is_not_a_masked_lm(project, tmp_path, capsys):
    state = torch.load(project["old"])
    state["cfg"]["model"] = {"_name": "linear_probe"}
    probe = tmp_path / "probe.pt"
    torch.save(state, probe)
    assert_refused([probe, "--data", project["data"], "--out", tmp_path / "x"], capsys, "not a masked LM", "linear_probe")
    assert not (tmp_path / "x").exists()


def test_refuses_a_dictionary_other_than_the_recorded_one(project, tmp_path, capsys):
    wrong = record_dictionary(project["old"], project["data"], project["languages"], tmp_path / "w.pt", sha256="0" * 64)
    assert_refused([wrong, "--data", project["data"], "--out", tmp_path / "x"], capsys, "dict.txt", "sha256")
    assert not (tmp_path / "x").exists()


def test_refuses_a_non_empty_out_without_force(project, tmp_path, capsys):
    out = tmp_path / "x"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_refused([project["new"], "--data", project["data"], "--out", out], capsys, "not empty", "--force")
    assert_refused([project["new"], "--data", project["data"], "--out", out, "--force"], capsys, MARKER)
    assert (out / "keep.txt").read_text() == "mine"


def test_force_never_deletes_an_input(project, tmp_path, capsys):
    for out in (project["data"], project["old"].parent, project["data"].parent):
        assert_refused([project["new"], "--data", project["data"], "--out", out, "--force"], capsys, "is or contains the input")
    assert (project["data"] / "dict.txt").is_file() and project["old"].is_file()


def test_force_replaces_an_earlier_export_and_a_failure_leaves_nothing(project, tmp_path, capsys):
    out = tmp_path / "x"
    argv = [str(project["new"]), "--data", str(project["data"]), "--out", str(out), "--format", "fairseq"]
    assert export_main(argv) == 0 and (out / MARKER).is_file()
    assert export_main(argv + ["--force"]) == 0
    state = torch.load(project["new"])
    state["cfg"]["model"].encoder_normalize_before = True  # pre-LN: transformers' XLM-R cannot hold it
    prenorm = tmp_path / "prenorm.pt"
    torch.save(state, prenorm)
    assert_refused([prenorm, "--data", project["data"], "--out", tmp_path / "y"], capsys, "encoder_normalize_before")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prenorm.pt", "x"]  # no y, no y.partial


def test_force_never_replaces_what_another_command_wrote(project, tmp_path, capsys):
    from balkd_fairseq.outputs import write_marker

    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "dict.txt").write_text("a 1\n")
    write_marker(prepared, "balkd-prepare", complete=True)
    assert_refused([project["new"], "--data", project["data"], "--out", prepared, "--force"], capsys,
                   "written by balkd-prepare, not balkd-export")
    assert (prepared / "dict.txt").read_text() == "a 1\n"
    assert_refused([project["new"], "--data", project["data"], "--out", prepared / "dict.txt" / "sub"], capsys,
                   "is a file, so")


def test_a_checkpoint_without_a_hash_is_checked_against_the_dictionary_beside_it(project, tmp_path, capsys):
    """A teacher from balkd-train-teachers has its dict.txt beside it; another corpus's of the same size is refused."""
    own = tmp_path / "teacher"
    own.mkdir()
    checkpoint = Path(shutil.copy(project["old"], own / "checkpoint_best.pt"))
    lines = (project["data"] / "dict.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    lines[0], lines[1] = lines[1], lines[0]
    (own / "dict.txt").write_text("".join(lines), encoding="utf-8")
    assert_refused([checkpoint, "--data", project["data"], "--out", tmp_path / "x"], capsys,
                   "is not the dictionary of the checkpoint", "first difference at symbol 4")
    shutil.copy(project["data"] / "dict.txt", own / "dict.txt")
    assert export_main([str(checkpoint), "--data", str(project["data"]), "--out", str(tmp_path / "x"),
                        "--format", "fairseq"]) == 0
    assert "against the `dict.txt` beside the checkpoint" in (tmp_path / "x" / "README.md").read_text(encoding="utf-8")


def without_spm_hash(data: Path) -> None:
    """stats.json as an older balkd-prepare wrote it (no sha256 of spm.model): the other checks must see it."""
    stats = json.loads((data / "stats.json").read_text(encoding="utf-8"))
    del stats["sentencepiece"]["sha256"]
    (data / "stats.json").write_text(json.dumps(stats), encoding="utf-8")


def test_refuses_a_sentencepiece_model_other_than_the_dictionarys(project, tmp_path, capsys):
    import sentencepiece as spm

    data = Path(shutil.copytree(project["data"], tmp_path / "data"))
    text = tmp_path / "other.txt"
    rng = random.Random(3)
    text.write_text("\n".join(" ".join("".join(rng.choice("qxzjvwk") for _ in range(rng.randint(2, 7)))
                                        for _ in range(8)) for _ in range(300)), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / "other"), vocab_size=60,
                                   minloglevel=2)
    shutil.copy(tmp_path / "other.model", data / "spm.model")
    assert_refused([project["new"], "--data", data, "--out", tmp_path / "x"], capsys,
                   f"--data: {data / 'spm.model'} is not the SentencePiece model {data} was prepared with",
                   "records sha256")
    without_spm_hash(data)
    assert_refused([project["new"], "--data", data, "--out", tmp_path / "x"], capsys,
                   f"{data / 'spm.model'} segments", "differently from how they were prepared")
    for lang in project["languages"]:  # export needs no binarized text: then the pieces are counted
        shutil.rmtree(data / lang)
    assert_refused([project["new"], "--data", data, "--out", tmp_path / "x"], capsys,
                   f"pieces of {data / 'spm.model'} are not in {data / 'dict.txt'}")


def test_refuses_a_sentencepiece_model_of_the_same_text_with_another_vocabulary(project, tmp_path, capsys):
    # an earlier balkd-prepare of the same corpus: most pieces shared, so only re-encoding the text shows it
    import sentencepiece as spm

    data = Path(shutil.copytree(project["data"], tmp_path / "data"))
    without_spm_hash(data)
    raw = sorted(str(p) for p in (project["root"] / "raw").glob("*.txt"))
    spm.SentencePieceTrainer.train(input=",".join(raw), model_prefix=str(tmp_path / "earlier"), vocab_size=340,
                                   character_coverage=0.995, minloglevel=2)
    shutil.copy(tmp_path / "earlier.model", data / "spm.model")
    assert_refused([project["new"], "--data", data, "--out", tmp_path / "x"], capsys,
                   f"{data / 'spm.model'} segments", "differently from how they were prepared")
    shutil.copy(project["data"] / "spm.model", data / "spm.model")  # the right model passes without the hash
    assert export_main([str(project["new"]), "--data", str(data), "--out", str(tmp_path / "y"),
                        "--format", "fairseq"]) == 0


@pytest.mark.parametrize("option", ["treat_whitespace_as_suffix", "user_defined_symbol"])
def test_refuses_sentencepiece_options_the_tokenizer_cannot_mirror(project, option):
    from balkd_fairseq.data.sentencepiece_check import read_model_proto
    from balkd_fairseq.errors import BalkdError
    from balkd_fairseq.export.hf_tokenizer import USER_DEFINED, check_supported

    path = str(project["data"] / "spm.model")
    proto = read_model_proto(path, "--data")
    check_supported(proto, path)
    if option == "treat_whitespace_as_suffix":
        proto.trainer_spec.treat_whitespace_as_suffix = True
    else:
        proto.pieces.add(piece="<url>", score=0.0, type=USER_DEFINED)
    with pytest.raises(BalkdError, match="the Hugging Face tokenizer cannot reproduce"):
        check_supported(proto, path)


def test_a_torch_file_that_is_not_a_checkpoint_is_named_as_such(project, tmp_path, capsys):
    other = tmp_path / "weights.pt"
    torch.save({"encoder": torch.zeros(2)}, other)
    assert_refused([other, "--data", project["data"], "--out", tmp_path / "x"], capsys,
                   "a torch file holding a dict of 'encoder', not a fairseq checkpoint")


def test_refuses_an_unknown_format(project, tmp_path, capsys):
    assert_refused([project["new"], "--data", project["data"], "--out", tmp_path / "x", "--format", "fairseq,onnx"],
                   capsys, "--format", "onnx")
    assert not (tmp_path / "x").exists()


def edited_checkpoint(source: Path, out: Path, edit) -> Path:
    """``source`` with ``edit(state)`` applied: a checkpoint as another training setting writes it."""
    state = torch.load(source)
    edit(state)
    torch.save(state, out)
    return out


def export_fairseq_only(checkpoint, project, out, *flags) -> int:
    return export_main([str(checkpoint), "--data", str(project["data"]), "--out", str(out), "--format", "fairseq",
                        *map(str, flags)])


def test_hf_refuses_weights_it_has_no_place_for(project, tmp_path, capsys):
    # --quant-noise-pq adds an input projection applied to the embeddings; XLMRobertaForMaskedLM has none
    def quant_noise(state):
        state["model"]["encoder.sentence_encoder.quant_noise.weight"] = torch.eye(32) * 2

    checkpoint = edited_checkpoint(project["new"], tmp_path / "qn.pt", quant_noise)
    assert_refused([checkpoint, "--data", project["data"], "--out", tmp_path / "x"], capsys,
                   "--format hf:", "encoder.sentence_encoder.quant_noise.weight", "--format fairseq")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qn.pt"]
    assert export_fairseq_only(checkpoint, project, tmp_path / "x") == 0


def test_hf_leaves_out_classification_heads_with_a_warning(project, caplog):
    from balkd_fairseq.errors import BalkdError
    from balkd_fairseq.export.hf import check_mappable

    weights = dict(torch.load(project["new"])["model"])
    assert "encoder.sentence_encoder.version" in weights  # fairseq's bookkeeping buffer: no weight, left out
    check_mappable(weights)
    assert not caplog.records
    weights["classification_heads.sentiment.dense.weight"] = torch.zeros(32, 32)
    check_mappable(weights)  # a fine-tuned model's head: the masked LM computes the same without it
    assert "classification_heads.sentiment.dense.weight" in caplog.text and "left out" in caplog.text
    weights["encoder.sentence_encoder.layers.0.self_attn.extra_proj.weight"] = torch.zeros(32, 32)
    with pytest.raises(BalkdError, match=r"no place for .*layers\.0\.self_attn\.extra_proj\.weight"):
        check_mappable(weights)


def test_refuses_a_checkpoint_with_non_finite_weights(project, tmp_path, capsys):
    def diverge(state):
        state["model"]["encoder.sentence_encoder.layers.1.fc2.weight"][0, 3] = float("nan")
        state["model"]["encoder.lm_head.dense.weight"][1, 1] = float("inf")

    checkpoint = edited_checkpoint(project["new"], tmp_path / "nan.pt", diverge)
    assert_refused([checkpoint, "--data", project["data"], "--out", tmp_path / "x", "--format", "fairseq"], capsys,
                   "non-finite weights", "first in encoder.sentence_encoder.layers.1.fc2.weight")
    assert not (tmp_path / "x").exists()


def test_model_card_of_a_teacher_names_the_language_of_its_train_subset(project, tmp_path):
    # balkd-train-teachers: stock masked_lm on DATA (the shared dict.txt) with --train-subset <lang>/train
    def teacher(state):
        state["cfg"]["task"].update(_name="masked_lm", data=str(project["data"]))
        state["cfg"]["dataset"]["train_subset"] = "ru/train"

    checkpoint = edited_checkpoint(project["old"], tmp_path / "checkpoint_best.pt", teacher)
    assert export_fairseq_only(checkpoint, project, tmp_path / "x") == 0
    card = (tmp_path / "x" / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlanguage:\n- ru\nlicense:")
    assert "| ru | " in card and "| de | " not in card and "does not record its language list" not in card


def test_ema_weights_are_named_and_exported_on_request(project, tmp_path, capsys):
    def with_ema(state):  # what fairseq-train --store-ema adds
        ema = {k: v.clone() for k, v in state["model"].items()}
        ema["encoder.lm_head.bias"] += 1.0
        state["extra_state"]["ema"] = ema

    checkpoint = edited_checkpoint(project["new"], tmp_path / "ema.pt", with_ema)
    assert export_fairseq_only(checkpoint, project, tmp_path / "model") == 0
    assert "also holds EMA weights" in capsys.readouterr().err
    card = (tmp_path / "model" / "README.md").read_text(encoding="utf-8")
    assert "EMA weights (`--store-ema`), which are not exported" in card
    assert export_fairseq_only(checkpoint, project, tmp_path / "ema", "--ema") == 0
    exported = torch.load(tmp_path / "ema" / "fairseq" / "model.pt", weights_only=True)["model"]
    original = torch.load(project["new"])["model"]["encoder.lm_head.bias"]
    assert torch.equal(exported["encoder.lm_head.bias"], original + 1.0)
    assert "exported with `balkd-export --ema`" in (tmp_path / "ema" / "README.md").read_text(encoding="utf-8")
    assert_refused([project["new"], "--data", project["data"], "--out", tmp_path / "x", "--ema"], capsys,
                   "--ema:", "holds no EMA weights")


def test_fairseq_folder_of_a_model_trained_with_encoder_layers_to_keep_loads_in_stock_fairseq(project, tmp_path, capsys):
    from fairseq.models.roberta import RobertaModel

    # fairseq-train --encoder-layers 3 --encoder-layers-to-keep 0,2 saves layers 0 and 2 as 0 and 1
    def kept(state):
        state["cfg"]["model"].encoder_layers_to_keep = "0,2"

    checkpoint = edited_checkpoint(project["new"], tmp_path / "kept.pt", kept)
    assert export_fairseq_only(checkpoint, project, tmp_path / "x") == 0
    cfg = torch.load(tmp_path / "x" / "fairseq" / "model.pt", weights_only=True)["cfg"]["model"]
    assert "encoder_layers_to_keep" not in cfg and cfg["encoder_layers"] == 2
    folder = tmp_path / "x" / "fairseq"
    hub = RobertaModel.from_pretrained(str(folder), "model.pt", bpe="sentencepiece",
                                       sentencepiece_model=str(folder / "spm.model"))
    assert len(hub.model.encoder.sentence_encoder.layers) == 2

    def not_renumbered(state):
        kept(state)
        for key in [k for k in state["model"] if ".layers.1." in k]:
            state["model"][key.replace(".layers.1.", ".layers.2.")] = state["model"].pop(key)

    checkpoint = edited_checkpoint(project["new"], tmp_path / "gap.pt", not_renumbered)
    assert_refused([checkpoint, "--data", project["data"], "--out", tmp_path / "y"], capsys,
                   "holds encoder layers [0, 2], not 0..1 (encoder_layers_to_keep=0,2)")


def test_messages_name_the_results_flag_and_a_checkpoint_directory(project, tmp_path, capsys):
    empty = tmp_path / "results"
    empty.mkdir()
    assert_refused([project["new"], "--data", project["data"], "--out", tmp_path / "x", "--results", empty], capsys,
                   f"--results: directory {empty} holds no .json results")
    assert_refused([project["new"].parent, "--data", project["data"], "--out", tmp_path / "x"], capsys,
                   f"CHECKPOINT: {project['new'].parent} is a directory, not a checkpoint file")
    assert not (tmp_path / "x").exists()


def test_model_card_words_the_vocabulary_and_the_output_projection_for_each_case():
    from balkd_fairseq.export.model_card import _output_projection, hf_vocabulary_lines

    assert hf_vocabulary_lines(100, 0) == ["Hugging Face vocabulary: ids 0–99 are fairseq's `dict.txt` ids.", ""]
    assert "; id 100 is a SentencePiece piece `dict.txt` lacks" in hf_vocabulary_lines(100, 1)[0]
    assert "; the 3 ids after them are SentencePiece pieces `dict.txt` lacks" in hf_vocabulary_lines(100, 3)[0]
    assert _output_projection(True) == "the output projection is tied to the embedding"
    assert "untied" in _output_projection(False) and "tied to" not in _output_projection(False)


def test_force_names_the_files_it_removes(project, tmp_path, capsys):
    out = tmp_path / "x"
    assert export_fairseq_only(project["new"], project, out) == 0
    (out / "notes.txt").write_text("mine")
    (out / "fairseq" / "extra.bin").write_text("mine too")
    capsys.readouterr()
    assert export_fairseq_only(project["new"], project, out, "--force") == 0
    removing = [line for line in capsys.readouterr().err.splitlines() if "--force: removing the earlier export" in line]
    assert len(removing) == 1 and "(README.md, fairseq/, notes.txt)" in removing[0]
    assert "2 file(s) this export does not write again: fairseq/extra.bin, notes.txt" in removing[0]
    assert not (out / "notes.txt").exists()
