"""balkd-synth: determinism, sizes, scripts, valid CoNLL-U/IOB2, a task that needs context, clean errors."""
import collections
import filecmp
import json
import unicodedata
from pathlib import Path

import conllu
import numpy as np
import pytest

from balkd_fairseq.cli import synth as synth_cli
from balkd_fairseq.data.synthetic import PRESETS, PROFILES, SCRIPT_RANGES

UPOS = {"ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X"}
SMALL = ["--high-size", "400", "--low-size", "10", "--probe-train", "150", "--probe-dev", "30",
         "--probe-test", "60", "--quiet"]


def run_synth(out, *flags):
    return synth_cli.main(["--out", str(out), *SMALL, *flags])


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "shared"
    assert run_synth(out, "--preset", "shared", "--languages", "all", "--seed", "3") == 0
    return out


@pytest.fixture(scope="module")
def diverse(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "diverse"
    assert run_synth(out, "--preset", "diverse", "--languages", "all", "--seed", "3") == 0
    return out


def files_of(root: Path):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def read_iob2(path: Path):
    sentences, current = [], []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line:
            token, tag = line.split("\t")
            current.append((token, tag))
        elif current:
            sentences.append(current)
            current = []
    assert not current, f"{path} does not end with a blank line"
    return sentences


# -- determinism -----------------------------------------------------------------------------------


def test_same_seed_gives_identical_files_whatever_the_workers(tmp_path):
    assert run_synth(tmp_path / "a", "--languages", "de,tr", "--seed", "7", "--workers", "1") == 0
    assert run_synth(tmp_path / "b", "--languages", "de,tr", "--seed", "7", "--workers", "2") == 0
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")
    for rel in files_of(tmp_path / "a"):
        assert filecmp.cmp(tmp_path / "a" / rel, tmp_path / "b" / rel, shallow=False), rel


def test_another_seed_gives_other_text(tmp_path):
    assert run_synth(tmp_path / "a", "--languages", "de,tr", "--seed", "7") == 0
    assert run_synth(tmp_path / "b", "--languages", "de,tr", "--seed", "8") == 0
    assert (tmp_path / "a/raw/de.txt").read_text() != (tmp_path / "b/raw/de.txt").read_text()


def test_a_language_does_not_depend_on_the_others(shared, diverse):
    """de (the anchor of both presets) is the same language, with the same data, in both."""
    for rel in ["raw/de.txt", "pos/de/test.conllu", "ner/de/train.iob2"]:
        assert filecmp.cmp(shared / rel, diverse / rel, shallow=False), rel


# -- sizes and manifest ----------------------------------------------------------------------------


def test_sizes_follow_resource_levels(shared):
    manifest = json.loads((shared / "languages.json").read_text())
    preset = PRESETS["shared"]
    assert manifest["languages"] == list(preset.languages)
    assert manifest["anchor"] == "de"
    assert manifest["low_resource"] == list(preset.low_resource)
    assert set(manifest["high_resource"]) == set(preset.languages) - set(preset.low_resource)
    for lang in manifest["languages"]:
        lines = (shared / "raw" / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
        expected = 10 if lang in manifest["low_resource"] else 400
        assert len(lines) == expected == manifest["raw_sentences"][lang]
        assert all(line.strip() for line in lines)
        for split, n in (("train", 150), ("dev", 30), ("test", 60)):
            assert len(conllu.parse((shared / "pos" / lang / f"{split}.conllu").read_text(encoding="utf-8"))) == n
            assert len(read_iob2(shared / "ner" / lang / f"{split}.iob2")) == n
    high, low = manifest["raw_sentences"]["de"], manifest["raw_sentences"]["eu"]
    assert high / low == 40


def test_explicit_sizes_and_low_resource_flags(tmp_path):
    out = tmp_path / "o"
    assert run_synth(out, "--languages", "de,en,tr", "--low-resource", "en", "--sizes", "tr=33") == 0
    manifest = json.loads((out / "languages.json").read_text())
    assert manifest["low_resource"] == ["en"]
    assert manifest["raw_sentences"] == {"de": 400, "en": 10, "tr": 33}


def test_word_frequencies_are_zipfian(shared):
    counts = collections.Counter(
        word.strip(".,?").lower() for line in (shared / "raw/de.txt").read_text(encoding="utf-8").splitlines()
        for word in line.split())
    freqs = np.array(sorted(counts.values(), reverse=True), dtype=float)
    ranks = np.arange(1, len(freqs) + 1)
    slope = np.polyfit(np.log(ranks[5:150]), np.log(freqs[5:150]), 1)[0]
    assert -1.7 < slope < -0.6, slope


# -- scripts ---------------------------------------------------------------------------------------


def letters(text: str):
    return [ch for ch in text if unicodedata.category(ch)[0] in "LM"]


def in_script(ch: str, script: str) -> bool:
    return any(lo <= ord(ch) <= hi for lo, hi in SCRIPT_RANGES[script])


@pytest.mark.parametrize("preset", ["shared", "diverse"])
def test_every_letter_is_in_its_languages_script(preset, shared, diverse):
    root = shared if preset == "shared" else diverse
    scripts = set()
    for lang in PRESETS[preset].languages:
        script = PROFILES[lang].script
        scripts.add(script)
        text = (root / "raw" / f"{lang}.txt").read_text(encoding="utf-8")
        text += (root / "ner" / lang / "train.iob2").read_text(encoding="utf-8").replace("PER", "").replace(
            "LOC", "").replace("ORG", "").replace("B-", "").replace("I-", "").replace("\tO", "")
        chars = letters(text)
        assert chars
        outside = sorted({ch for ch in chars if not in_script(ch, script)})
        assert not outside, f"{lang}: letters outside {script}: {outside[:10]}"
    if preset == "shared":
        assert scripts == {"latin"}
    else:
        assert scripts == {"latin", "cyrillic", "greek", "devanagari", "hangul", "arabic", "telugu"}


def test_latin_languages_have_their_own_lexicons(shared):
    vocab = {}
    for lang in PRESETS["shared"].languages:
        words = (shared / "raw" / f"{lang}.txt").read_text(encoding="utf-8").lower().split()
        vocab[lang] = {w.strip(".,?") for w in words}
    for a in vocab:
        for b in vocab:
            if a < b:
                overlap = len(vocab[a] & vocab[b]) / min(len(vocab[a]), len(vocab[b]))
                assert overlap < 0.5, (a, b, overlap)


# -- formats ---------------------------------------------------------------------------------------


def test_conllu_is_valid(shared, diverse):
    for root, preset in ((shared, "shared"), (diverse, "diverse")):
        for lang in PRESETS[preset].languages:
            for split in ("train", "dev", "test"):
                text = (root / "pos" / lang / f"{split}.conllu").read_text(encoding="utf-8")
                for sentence in conllu.parse(text):
                    assert len(sentence) >= 2
                    ids = [t["id"] for t in sentence]
                    assert ids == list(range(1, len(sentence) + 1))
                    assert {t["upos"] for t in sentence} <= UPOS
                    heads = [t["head"] for t in sentence]
                    assert heads.count(0) == 1 and all(0 <= h <= len(sentence) for h in heads)
                    assert all(t["deprel"] and t["lemma"] for t in sentence)
                    rebuilt = "".join(
                        t["form"] + ("" if (t["misc"] or {}).get("SpaceAfter") == "No" else " ") for t in sentence)
                    assert rebuilt.rstrip() == sentence.metadata["text"]
    for line in (shared / "pos/de/train.conllu").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            assert len(line.split("\t")) == 10


def test_iob2_is_valid(shared, diverse):
    types = collections.Counter()
    for root, preset in ((shared, "shared"), (diverse, "diverse")):
        for lang in PRESETS[preset].languages:
            for split in ("train", "dev", "test"):
                for sentence in read_iob2(root / "ner" / lang / f"{split}.iob2"):
                    previous = "O"
                    for token, tag in sentence:
                        assert token and " " not in token
                        assert tag == "O" or tag[:2] in ("B-", "I-") and tag[2:] in ("PER", "LOC", "ORG"), tag
                        if tag.startswith("I-"):
                            assert previous != "O" and previous[2:] == tag[2:], (previous, tag)
                        types[tag] += 1
                        previous = tag
    assert all(types[f"B-{t}"] > 0 and types[f"I-{t}"] > 0 for t in ("PER", "ORG")) and types["B-LOC"] > 0


def test_pos_and_ner_tokens_agree_with_raw_text_style(shared):
    """Probing sentences are drawn like the raw text: the same words appear in both."""
    raw = set((shared / "raw/de.txt").read_text(encoding="utf-8").lower().split())
    probe = {t["form"].lower() for s in conllu.parse((shared / "pos/de/train.conllu").read_text(encoding="utf-8"))
             for t in s if t["upos"] not in ("PUNCT",)}
    assert len(probe & {w.strip(".,?") for w in raw}) / len(probe) > 0.5


# -- learnability ----------------------------------------------------------------------------------


def test_pos_needs_context_but_is_learnable(shared):
    """On held-out sentences, a word's most frequent tag is often wrong (homographs); knowing the previous
    tag fixes part of that, so a model that uses context beats one that only knows word identities."""
    for lang in ("de", "en", "vi"):
        by_word = collections.defaultdict(collections.Counter)
        by_previous = collections.defaultdict(collections.Counter)
        for previous, word, tag in _tagged(shared / "pos" / lang / "train.conllu"):
            by_word[word][tag] += 1
            by_previous[previous, word][tag] += 1
        n = word_only = with_previous = 0
        for previous, word, tag in _tagged(shared / "pos" / lang / "test.conllu"):
            if word in by_word:
                n += 1
                word_only += by_word[word].most_common(1)[0][0] == tag
                counts = by_previous.get((previous, word)) or by_word[word]
                with_previous += counts.most_common(1)[0][0] == tag
        assert n > 300
        assert word_only / n < 0.97, (lang, word_only / n)
        assert with_previous > word_only, lang


def _tagged(path):
    """(previous tag, lower-cased word, tag) for every word of a CoNLL-U file."""
    for sentence in conllu.parse(path.read_text(encoding="utf-8")):
        previous = "<s>"
        for token in sentence:
            yield previous, token["form"].lower(), token["upos"]
            previous = token["upos"]


def test_entities_are_shared_across_languages(shared, diverse):
    def names(root, lang):
        return {token.lower() for s in read_iob2(root / "ner" / lang / "train.iob2")
                for token, tag in s if tag == "B-PER"}

    de, es = names(shared, "de"), names(shared, "es")
    assert len(de & es) / len(de) > 0.3  # same names, same spelling in Latin script
    ru = names(diverse, "ru")
    assert not (de & ru) and letters("".join(ru))  # transliterated into Cyrillic


# -- command line ----------------------------------------------------------------------------------


def test_every_flag_has_help():
    parser = synth_cli.build_parser()
    for action in parser._actions:
        assert action.help, action.dest


@pytest.mark.parametrize("flags, words", [
    (["--languages", "de,xx"], ["--languages", "xx"]),
    (["--preset", "diverse", "--languages", "de,tr"], ["--languages", "tr", "diverse"]),
    (["--languages", "es,tr"], ["--anchor", "de"]),
    (["--low-resource", "ru"], ["--low-resource", "ru"]),
    (["--sizes", "de=x"], ["--sizes", "de=x"]),
    (["--sizes", "de=0"], ["--sizes", "de=0"]),
    (["--low-size", "0"], ["--low-size"]),
    (["--homograph-rate", "2"], ["--homograph-rate"]),
])
def test_bad_flags_give_one_line_and_write_nothing(tmp_path, capsys, flags, words):
    out = tmp_path / "out"
    assert synth_cli.main(["--out", str(out), "--quiet", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("balkd-fairseq: error:"), err
    for word in words:
        assert word in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_refuses_a_non_empty_out_without_force(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert run_synth(out, "--languages", "de,tr") == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    from balkd_fairseq.outputs import write_marker
    write_marker(out, "balkd-synth", complete=True)  # --force replaces only an earlier balkd output
    assert run_synth(out, "--languages", "de,tr", "--force") == 0
    assert not (out / "keep.txt").exists() and (out / "languages.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging directory left behind
