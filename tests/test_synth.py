"""balkd-synth: determinism, sizes, scripts, valid CoNLL-U/IOB2, a task that needs context, clean errors;
the presets' output against digests of the generator before its split; generated languages (--num-languages)."""
import collections
import filecmp
import hashlib
import itertools
import json
import re
import unicodedata
from pathlib import Path

import conllu
import numpy as np
import pytest
import sentencepiece as spm
from fairseq.data import Dictionary, data_utils

from balkd_fairseq.cli import prepare as prepare_cli
from balkd_fairseq.cli import synth as synth_cli
from balkd_fairseq.synth import (
    GENERATED_SCRIPTS,
    MAX_LANGUAGES,
    PRESETS,
    PROFILES,
    SCRIPT_RANGES,
    SynthConfig,
    plan_benchmark,
)
from balkd_fairseq.synth.scripts import ALL_CODAS, ALL_ONSETS, BASE_VOWELS, SCRIPT_RENDERERS, SCRIPT_VOWELS

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
                    # Nothing reads lemmas, features or trees: left unspecified.
                    assert all(t["head"] is t["feats"] is None for t in sentence)
                    assert all(t["lemma"] == t["deprel"] == "_" for t in sentence)
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


def test_names_script_latin_keeps_names_in_latin_letters_in_every_language(diverse, tmp_path):
    out = tmp_path / "latin"
    assert run_synth(out, "--preset", "diverse", "--languages", "all", "--seed", "3", "--names-script", "latin") == 0

    def entity_words(root, lang):
        return [token for s in read_iob2(root / "ner" / lang / "train.iob2") for token, tag in s
                if tag[2:] in ("PER", "LOC")]
    for lang in ("ru", "hi", "el", "ko", "ur", "te"):
        own, latin = entity_words(diverse, lang), entity_words(out, lang)
        assert not any(re.match("[A-Z][a-z]", word) for word in own), lang  # transliterated by default
        # the stem in Latin letters, capitalised, whatever the script; a case ending follows in the language's script
        assert latin and all(re.match("[A-Z][a-z]", word) for word in latin), (lang, latin[:5])
    names_de = set(entity_words(out, "de"))
    assert len(names_de & {re.match("[A-Za-z]+", w).group() for w in entity_words(out, "hi")}) > 10, "the same names"
    assert json.loads((out / "languages.json").read_text())["generator"]["names_script"] == "latin"
    assert "names_script" not in json.loads((diverse / "languages.json").read_text())["generator"], \
        "recorded only when set: a default benchmark stays byte-identical to one made before the flag"
    for lang in ("hi", "el"):  # only the names change: the rest of every sentence is the default benchmark's
        own_text = (diverse / "raw" / f"{lang}.txt").read_text(encoding="utf-8").split()
        latin_text = (out / "raw" / f"{lang}.txt").read_text(encoding="utf-8").split()
        assert len(own_text) == len(latin_text)
        assert sum(a != b for a, b in zip(own_text, latin_text)) < 0.3 * len(own_text)


# -- command line ----------------------------------------------------------------------------------


def test_every_flag_has_help():
    parser = synth_cli.build_parser()
    for action in parser._actions:
        assert action.help, action.dest


def assert_one_line_and_nothing_written(tmp_path, capsys, flags, words):
    out = tmp_path / "out"
    assert synth_cli.main(["--out", str(out), "--quiet", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("balkd-fairseq: error:"), err
    for word in words:
        assert word in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags, words", [
    (["--languages", "de,xx"], ["--languages", "xx"]),
    (["--preset", "diverse", "--languages", "de,tr"], ["--languages", "tr", "diverse"]),
    (["--languages", "es,tr"], ["--anchor", "de"]),
    (["--low-resource", "ru"], ["--low-resource", "ru"]),
    (["--sizes", "de=x"], ["--sizes", "de=x"]),
    (["--sizes", "de=0"], ["--sizes", "de=0"]),
    (["--low-size", "0"], ["--low-size"]),
    (["--high-size", "10", "--low-size", "100"], ["--low-size: 100 is larger than --high-size 10"]),
    (["--homograph-rate", "2"], ["--homograph-rate"]),
    (["--names-script", "cyrillic"], ["--names-script", "cyrillic"]),
])
def test_bad_flags_give_one_line_and_write_nothing(tmp_path, capsys, flags, words):
    assert_one_line_and_nothing_written(tmp_path, capsys, flags, words)


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


# -- the presets did not change when the generator was split ---------------------------------------
# Digests of the output of data/synthetic.py at commit 6511b65 (before the split into balkd_fairseq/synth/),
# computed by running that commit's balkd-synth. Its CoNLL-U files also carried lemmas, features and
# trees (columns 3 and 6-8), which nothing reads and which are now '_': the pos digests are of the old
# files with those columns replaced by '_' (see projected_conllu); everything else is byte for byte.

OLD_DIGESTS = {
    "shared": {  # run_synth(out, "--preset", "shared", "--languages", "all", "--seed", "3")
        "raw": "5641f38476f89b5f3defcd247f323129735669a34d643bc0d39aa0b55c9ebc81",
        "pos": "8affd0108a54c0890c28a082867da5616a8de66ffb4e7a9b404df0b72cbcdbb6",
        "ner": "b13eed381da704a4c5a3f4230c33b5ee11386d936d35f599291ef70d66a421e0",
        "languages.json": "8afa585276851d8730da8dae98f98a2e1b96cd2df48f268fcfefcea2a6ba9f31",
    },
    "diverse": {  # run_synth(out, "--preset", "diverse", "--languages", "all", "--seed", "3")
        "raw": "55ca83a20de2b45e8f3550608729823a009dcf7d2f447c2012b33ae99b725ac8",
        "pos": "e5762e984ccd2a3934e31d6e07dcd63bbb60923ba2aea663e8903ea0d1b68e10",
        "ner": "e3aab10a107de0d77838f182ff4b2965f882fd939f2eea936b7115124fdfa113",
        "languages.json": "231210cfdbb88efff0f149f09af8ad017cd2225633214a46e310fec4d1162de4",
    },
    "chunks": {  # CHUNKS_FLAGS: files of more than one 1000-sentence chunk
        "raw": "72abcae63051d2f0e705b046d1c3306974a19b2e70214d2f56aea53e7dc1e0be",
        "pos": "abf031cdfba94312533db95d562f3ebc9ed8e8da86427ce3684c2f2b5268f751",
        "ner": "bea53c4141f105e74f7c8cddf80986dcf57723899a9bec5abad405732011ab06",
        "languages.json": "d09a672b7490a9c47108f5d893e358f99f35376167b7adfbb5e4a73dfbe32cd3",
    },
}
CHUNKS_FLAGS = ["--preset", "diverse", "--languages", "de,hi,ko", "--low-resource", "hi", "--high-size", "2100",
                "--low-size", "40", "--probe-train", "5", "--probe-dev", "5", "--probe-test", "1005", "--seed", "5",
                "--quiet"]


def projected_conllu(data: bytes) -> bytes:
    """An old CoNLL-U file as the current generator writes it: LEMMA, FEATS, HEAD, DEPREL unspecified."""
    out = []
    for line in data.decode("utf-8").split("\n"):
        if line and not line.startswith("#"):
            c = line.split("\t")
            line = "\t".join([c[0], c[1], "_", c[3], "_", "_", "_", "_", "_", c[9]])
        out.append(line)
    return "\n".join(out).encode("utf-8")


def digest(root: Path, kind: str) -> str:
    """sha256 over (relative path, sha256 of the content) of every file under root/kind, sorted by path."""
    h = hashlib.sha256()
    for rel in files_of(root):
        if rel.parts[0] == kind:
            h.update(f"{rel.as_posix()}\0{hashlib.sha256((root / rel).read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


def test_the_reference_projection_is_what_it_claims():
    old = (b"# sent_id = x\n1\tDie\tdie\tDET\t_\tPronType=Art\t2\tdet\t_\t_\n"
           b"2\tHund\tHund\tNOUN\t_\t_\t0\troot\t_\tSpaceAfter=No\n\n")
    assert projected_conllu(old) == (b"# sent_id = x\n1\tDie\t_\tDET\t_\t_\t_\t_\t_\t_\n"
                                     b"2\tHund\t_\tNOUN\t_\t_\t_\t_\t_\tSpaceAfter=No\n\n")


@pytest.mark.parametrize("kind", ["raw", "pos", "ner", "languages.json"])
def test_presets_give_the_same_output_as_before_the_split(shared, diverse, kind):
    assert digest(shared, kind) == OLD_DIGESTS["shared"][kind]
    assert digest(diverse, kind) == OLD_DIGESTS["diverse"][kind]


def test_multi_chunk_files_give_the_same_output_as_before_the_split(tmp_path):
    out = tmp_path / "chunks"
    assert synth_cli.main(["--out", str(out), *CHUNKS_FLAGS]) == 0
    assert len((out / "raw/de.txt").read_text(encoding="utf-8").splitlines()) == 2100
    for kind, expected in OLD_DIGESTS["chunks"].items():
        assert digest(out, kind) == expected, kind


# -- generated languages (--num-languages) ---------------------------------------------------------

CODE = re.compile(r"^[a-z][a-z0-9]*$")
WORD = re.compile(r"^\w+$")


def run_generated(out, n, *flags):
    return synth_cli.main(["--out", str(out), "--num-languages", str(n), "--quiet", *flags])


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """40 generated languages, 400 down to 8 lines, 12/6/6 probing sentences."""
    out = tmp_path_factory.mktemp("synth") / "generated"
    assert run_generated(out, 40, "--high-size", "400", "--low-size", "8", "--probe-train", "12", "--probe-dev",
                         "6", "--probe-test", "6", "--seed", "4") == 0
    return out


def test_512_languages_have_valid_unique_codes_many_scripts_and_power_law_sizes():
    plan = plan_benchmark(SynthConfig(num_languages=512))
    codes = plan.languages
    assert len(codes) == len(set(codes)) == 512
    assert all(CODE.match(code) and "_" not in code for code in codes)
    scripts = collections.Counter(plan.profiles[lang].script for lang in codes)
    assert len(scripts) >= 10, scripts
    sizes = [plan.raw_sentences[lang] for lang in codes]
    assert max(sizes) / min(sizes) >= 1000 and min(sizes) >= 3
    assert sizes == sorted(sizes, reverse=True)  # codes are in size order
    # A power law: log size is linear in log rank (not, e.g., a few big and many equal small languages).
    slope, intercept = np.polyfit(np.log(np.arange(1, 513)), np.log(sizes), 1)
    assert np.allclose(np.log(sizes), slope * np.log(np.arange(1, 513)) + intercept, atol=0.05)
    assert plan.anchor == codes[0] and set(plan.low_resource) < set(codes)
    # The typologies vary along every axis the generator draws.
    profiles = [plan.profiles[lang] for lang in codes]
    for axis in ("word_order", "adj_before_noun", "postpositions", "articles", "fused", "case_suffixes",
                 "harmony", "monosyllabic"):
        assert len({getattr(p, axis) for p in profiles}) > 1, axis


def test_a_generated_language_does_not_depend_on_how_many_there_are():
    small, large = plan_benchmark(SynthConfig(num_languages=8)), plan_benchmark(SynthConfig(num_languages=300))
    assert large.languages[:8] == small.languages
    assert all(small.profiles[lang] == large.profiles[lang] for lang in small.languages)
    other_seed = plan_benchmark(SynthConfig(num_languages=8, seed=2))
    assert any(other_seed.profiles[lang] != small.profiles[lang] for lang in small.languages)


def test_generated_output_is_deterministic_from_the_seed(tmp_path, generated):
    assert run_generated(tmp_path / "a", 40, "--high-size", "400", "--low-size", "8", "--probe-train", "12",
                         "--probe-dev", "6", "--probe-test", "6", "--seed", "4", "--workers", "1") == 0
    assert files_of(tmp_path / "a") == files_of(generated)
    for rel in files_of(generated):
        assert filecmp.cmp(tmp_path / "a" / rel, generated / rel, shallow=False), rel
    assert run_generated(tmp_path / "b", 3, "--high-size", "400", "--low-size", "8", "--seed", "5") == 0
    first = json.loads((generated / "languages.json").read_text())["languages"][0]
    assert (tmp_path / "b/raw" / f"{first}.txt").read_text() != (generated / "raw" / f"{first}.txt").read_text()


def test_every_generated_language_has_raw_text_and_probing_files(generated):
    manifest = json.loads((generated / "languages.json").read_text(encoding="utf-8"))
    languages = manifest["languages"]
    assert len(languages) == 40 and manifest["preset"] is None and manifest["num_languages"] == 40
    assert manifest["size_law"]["largest"] == 400 and manifest["size_law"]["smallest"] == 8
    for lang in languages:
        lines = (generated / "raw" / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
        assert len(lines) == manifest["raw_sentences"][lang] >= 8 and all(line.strip() for line in lines)
        assert manifest["scripts"][lang] == manifest["profiles"][lang]["script"]
        for split, n in (("train", 12), ("dev", 6), ("test", 6)):
            assert len(conllu.parse((generated / "pos" / lang / f"{split}.conllu").read_text(encoding="utf-8"))) == n
            assert len(read_iob2(generated / "ner" / lang / f"{split}.iob2")) == n
    assert manifest["raw_sentences"][languages[0]] == 400 and manifest["raw_sentences"][languages[-1]] == 8


def test_generated_words_are_letters_of_their_script_and_survive_nfkc(generated):
    manifest = json.loads((generated / "languages.json").read_text(encoding="utf-8"))
    for lang in manifest["languages"]:
        script = manifest["scripts"][lang]
        text = (generated / "raw" / f"{lang}.txt").read_text(encoding="utf-8")
        assert unicodedata.normalize("NFKC", text) == text, lang
        for sentence in conllu.parse((generated / "pos" / lang / "train.conllu").read_text(encoding="utf-8")):
            for token in sentence:
                if token["upos"] != "PUNCT":
                    assert WORD.match(token["form"]) or "'" in token["form"], (lang, token["form"])
                    assert all(in_script(ch, script) for ch in letters(token["form"])), (lang, token["form"])


@pytest.mark.parametrize("script", GENERATED_SCRIPTS)
def test_every_syllable_of_a_generated_script_is_letters_only(script):
    """Every onset, vowel and coda a generated language may use renders as letters (no combining marks),
    which Python's \\w and SentencePiece take as word characters, and NFKC leaves unchanged."""
    if script == "latin":
        return  # spelled by each language's orthography; covered by the generated-output test
    render = SCRIPT_RENDERERS[script]
    vowels = BASE_VOWELS + SCRIPT_VOWELS[script]
    for onset, vowel, coda in itertools.product(("",) + ALL_ONSETS + ("ny",), vowels, ("",) + ALL_CODAS):
        for word in (render([(onset, vowel, coda)]), render([(onset, vowel, coda), ("t", "a", "")])):
            assert word and WORD.match(word), (script, onset, vowel, coda, word)
            assert unicodedata.normalize("NFKC", word) == word, (script, word)
            assert all(in_script(ch, script) for ch in word), (script, word)


def test_generated_languages_go_through_balkd_prepare(generated, tmp_path):
    """All eleven scripts through one SentencePiece model and dictionary: every training line comes back
    from the binarized data unchanged (no <unk>, no normalisation)."""
    manifest = json.loads((generated / "languages.json").read_text(encoding="utf-8"))
    assert set(manifest["scripts"].values()) == set(GENERATED_SCRIPTS)
    data = tmp_path / "data"
    assert prepare_cli.main(["--raw-dir", str(generated / "raw"), "--out", str(data), "--vocab-size", "2000",
                             "--valid-lines", "3", "--test-lines", "3", "--character-coverage", "1.0",
                             "--quiet"]) == 0
    sp = spm.SentencePieceProcessor(model_file=str(data / "spm.model"))
    dictionary = Dictionary.load(str(data / "dict.txt"))
    for lang in manifest["languages"]:
        raw = set((generated / "raw" / f"{lang}.txt").read_text(encoding="utf-8").splitlines())
        train = data_utils.load_indexed_dataset(str(data / lang / "train"), dictionary)
        assert len(train) == manifest["raw_sentences"][lang] - 6
        for i in range(min(len(train), 20)):
            ids = train[i]
            assert dictionary.unk() not in ids.tolist(), lang
            assert sp.decode(dictionary.string(ids).split()) in raw, lang


@pytest.mark.parametrize("flags, words", [
    (["--num-languages", "0"], ["--num-languages", "between 1 and"]),
    (["--num-languages", str(MAX_LANGUAGES + 1)], ["--num-languages", str(MAX_LANGUAGES)]),
    (["--num-languages", "4", "--preset", "shared"], ["--preset", "--num-languages"]),
    (["--num-languages", "4", "--languages", "de"], ["--languages", "--num-languages"]),
    (["--num-languages", "4", "--low-size", "2"], ["--low-size", "--valid-lines"]),
    (["--num-languages", "4", "--low-size", "50", "--high-size", "40"], ["--low-size", "--high-size"]),
    (["--num-languages", "4", "--anchor", "de"], ["--anchor", "de"]),
])
def test_bad_generated_flags_give_one_line_and_write_nothing(tmp_path, capsys, flags, words):
    assert_one_line_and_nothing_written(tmp_path, capsys, flags, words)
