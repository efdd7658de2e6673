"""balkd-prepare: fairseq datasets with one dictionary, streaming with a capped sample, clean errors."""
import collections
import json
import os
import random
import tracemalloc
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from fairseq.binarizer import BinarizeSummary, VocabularyDatasetBinarizer
from fairseq.data import Dictionary, data_utils
from fairseq.tokenizer import tokenize_line
from sacremoses import MosesPunctNormalizer

from balkd_fairseq.cli import prepare as prepare_cli
from balkd_fairseq.cli import synth as synth_cli
from balkd_fairseq.data.line_sampling import sp_sample_sizes
from balkd_fairseq.data.prepare import (
    PrepareConfig,
    build_dictionary,
    count_lines,
    encode,
    piece_binarizer,
    split_and_sample,
    split_sizes,
    train_sentencepiece,
)
from balkd_fairseq.data.raw_text import LanguageSource, sources_from_dir
from balkd_fairseq.errors import BalkdError
from balkd_fairseq.outputs import MARKER, is_complete_output, write_marker

SPLITS = ("train", "valid", "test")


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    """balkd-synth text: de (300 lines, high-resource) and tr (60 lines, low-resource)."""
    out = tmp_path_factory.mktemp("synth") / "s"
    assert synth_cli.main(["--out", str(out), "--languages", "de,tr", "--anchor", "de", "--high-size", "300",
                           "--low-size", "60", "--probe-train", "1", "--probe-dev", "1", "--probe-test", "1",
                           "--quiet"]) == 0
    return out / "raw"


@pytest.fixture(scope="module")
def prepared(raw_dir, tmp_path_factory):
    data = tmp_path_factory.mktemp("bin") / "data"
    assert prepare_cli.main(["--raw-dir", str(raw_dir), "--out", str(data), "--vocab-size", "300",
                             "--valid-lines", "10", "--test-lines", "12", "--character-coverage", "1.0",
                             "--quiet"]) == 0
    return data


def lines_of(path: Path):
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def decoded_lines(data: Path, lang: str, split: str):
    dictionary = Dictionary.load(str(data / "dict.txt"))
    sp = spm.SentencePieceProcessor(model_file=str(data / "spm.model"))
    dataset = data_utils.load_indexed_dataset(str(data / lang / split), dictionary)
    assert dataset is not None, (lang, split)
    out = []
    for i in range(len(dataset)):
        ids = dataset[i]
        assert ids[-1].item() == dictionary.eos() and int(ids.max()) < len(dictionary)
        out.append(sp.decode(dictionary.string(ids).split()))
    return out


# -- the output ------------------------------------------------------------------------------------


def test_layout_and_shared_dictionary(prepared):
    top = (prepared / "dict.txt").read_bytes()
    assert (prepared / "spm.model").is_file() and (prepared / "spm.vocab").is_file()
    for lang in ("de", "tr"):
        assert (prepared / lang / "dict.txt").read_bytes() == top
        for split in SPLITS:
            assert (prepared / lang / f"{split}.bin").is_file() and (prepared / lang / f"{split}.idx").is_file()
    assert sorted(p.name for p in prepared.iterdir()) == [
        MARKER, "de", "dict.txt", "spm.model", "spm.vocab", "stats.json", "tr"]


def test_datasets_load_and_hold_every_line_once(prepared, raw_dir):
    stats = json.loads((prepared / "stats.json").read_text())
    for lang in ("de", "tr"):
        raw = lines_of(raw_dir / f"{lang}.txt")
        splits = {split: decoded_lines(prepared, lang, split) for split in SPLITS}
        assert [len(splits[s]) for s in SPLITS] == [len(raw) - 22, 10, 12]
        assert collections.Counter(sum(splits.values(), [])) == collections.Counter(raw)
        for split in SPLITS:
            assert stats["languages"][lang][split]["lines"] == len(splits[split])
            assert stats["languages"][lang][split]["tokens"] > len(splits[split])
    # both languages' pieces are in the one dictionary
    dictionary = Dictionary.load(str(prepared / "dict.txt"))
    assert stats["dictionary_size"] == len(dictionary)
    for lang in ("de", "tr"):
        assert stats["languages"][lang]["train"]["unk"] == 0


def test_split_is_random_and_seeded(raw_dir, tmp_path):
    def valid_lines(seed):
        out = tmp_path / f"s{seed}-{len(list(tmp_path.iterdir()))}"
        assert prepare_cli.main(["--raw", f"de={raw_dir / 'de.txt'}", "--out", str(out), "--vocab-size", "200",
                                 "--valid-lines", "10", "--test-lines", "10", "--seed", str(seed), "--quiet"]) == 0
        return decoded_lines(out, "de", "valid")

    first, again, other = valid_lines(1), valid_lines(1), valid_lines(2)
    assert first == again and first != other
    raw = lines_of(raw_dir / "de.txt")
    assert first != raw[:10] and first != raw[-10:]  # not simply the head or the tail


def test_presplit_input(tmp_path):
    files = {}
    for k, (split, n) in enumerate((("train", 40), ("valid", 5), ("test", 7))):
        files[split] = tmp_path / f"{split}.txt"
        files[split].write_text("".join(f"line number {i} of file {k} .\n" for i in range(n)), encoding="utf-8")
    out = tmp_path / "data"
    spec = "xx=" + ":".join(str(files[s]) for s in SPLITS)
    assert prepare_cli.main(["--raw", spec, "--out", str(out), "--vocab-size", "40", "--quiet"]) == 0
    for split in ("train", "valid", "test"):
        assert decoded_lines(out, "xx", split) == lines_of(files[split])


def test_normalize_punct(tmp_path):
    lines = [f"Er sagte „hallo“ , und  ging {i} ." for i in range(30)]
    raw = tmp_path / "de.txt"
    raw.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "data"
    assert prepare_cli.main(["--raw", f"de={raw}", "--out", str(out), "--vocab-size", "60", "--valid-lines", "2",
                             "--test-lines", "2", "--normalize-punct", "--character-coverage", "1.0",
                             "--quiet"]) == 0
    moses = MosesPunctNormalizer(lang="de")
    expected = collections.Counter(moses.normalize(line).strip() for line in lines)
    got = collections.Counter(sum((decoded_lines(out, "de", s) for s in SPLITS), []))
    assert got == expected and got != collections.Counter(lines)


# -- fairseq equivalence of the fast paths ---------------------------------------------------------


def test_dictionary_equals_fairseq_preprocess(tmp_path):
    rng = random.Random(0)
    pieces = [f"▁w{i}" for i in range(50)] + ["a", "b", "c"]
    lines = [" ".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))) for _ in range(300)]
    path = tmp_path / "train.spm"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    reference = Dictionary()
    Dictionary.add_file_to_dictionary(str(path), reference, tokenize_line, 1)
    reference.finalize(threshold=-1, nwords=-1, padding_factor=8)
    counts = collections.Counter(p for line in lines for p in line.split())
    counts["</s>"] += len(lines)
    ours = build_dictionary(counts)
    assert ours.symbols == reference.symbols and ours.count == reference.count


def test_binarizer_equals_fairseq_binarizer():
    dictionary = Dictionary()
    for piece in ["▁a", "▁b", "c"]:
        dictionary.add_symbol(piece)
    reference, ours = VocabularyDatasetBinarizer(dictionary, append_eos=True), piece_binarizer(dictionary)
    ref_summary, our_summary = BinarizeSummary(), BinarizeSummary()
    for line in ["▁a c ▁b\n", "▁zz ▁a <unk> d\n", "\n", "c\n"]:
        assert torch.equal(reference.binarize_line(line, ref_summary), ours.binarize_line(line, our_summary))
    assert (ref_summary.num_seq, ref_summary.num_tok, ref_summary.replaced) == (
        our_summary.num_seq, our_summary.num_tok, our_summary.replaced)


# -- streaming: the SentencePiece sample is capped and memory does not grow with the corpus -------------


def test_sample_sizes_follow_alpha():
    assert sp_sample_sizes({"hi": 10000, "lo": 100}, alpha=0.0, cap=1000) == {"hi": 500, "lo": 500}
    assert sp_sample_sizes({"hi": 10000, "lo": 100}, alpha=1.0, cap=1000) == {"hi": 990, "lo": 9}
    smoothed = sp_sample_sizes({"hi": 10000, "lo": 100}, alpha=0.5, cap=1000)
    assert smoothed == {"hi": 909, "lo": 90} and sum(smoothed.values()) <= 1000
    assert sum(sp_sample_sizes({"a": 30, "b": 20}, alpha=0.3, cap=10**6).values()) <= 50  # never above the corpus


def write_corpus(path: Path, n_lines: int, seed: int) -> None:
    rng = random.Random(seed)
    words = [f"w{i}x" for i in range(300)]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n_lines):
            f.write(" ".join(rng.choice(words) for _ in range(10)) + f" {i % 97}\n")


def streaming_run(tmp_path: Path, n_lines: int, cap: int):
    """Peak Python memory of the streaming steps, and the sample written, for a corpus of n_lines per language."""
    tmp_path.mkdir()
    sources = []
    for lang, seed in (("aa", 1), ("bb", 2)):
        path = tmp_path / f"{lang}.txt"
        write_corpus(path, n_lines if lang == "aa" else n_lines // 10, seed)
        sources.append(LanguageSource(lang, {"all": path}))
    cfg = PrepareConfig(sources=sources, vocab_size=200, sp_sample_sentences=cap, valid_lines=5, test_lines=5,
                        progress=False)
    work = tmp_path / "work"
    work.mkdir()
    tracemalloc.start()
    sizes = split_sizes(cfg, count_lines(cfg))
    sample_sizes = sp_sample_sizes({lang: s["train"] for lang, s in sizes.items()}, cfg.sp_alpha, cap)
    split_and_sample(cfg, sizes, sample_sizes, work, work / "sample.txt")
    peak_split = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    train_sentencepiece(cfg, work / "sample.txt", work / "spm", sum(sample_sizes.values()))
    tracemalloc.start()
    encode(cfg, sizes, work / "spm.model", work)
    peak_encode = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak_split, peak_encode, sample_sizes, len(lines_of(work / "sample.txt"))


@pytest.mark.slow
def test_memory_does_not_grow_with_the_corpus(tmp_path):
    cap = 300
    small = streaming_run(tmp_path / "small", 2000, cap)
    big = streaming_run(tmp_path / "big", 20000, cap)  # 10x the corpus, ~70x the sample
    for _peak_split, _peak_encode, sample_sizes, sample_lines in (small, big):
        assert sample_lines == sum(sample_sizes.values()) <= cap
    assert big[0] < 1.2 * small[0] + 32 * 1024, (small[0], big[0])
    assert big[1] < 1.2 * small[1] + 32 * 1024, (small[1], big[1])
    assert big[2]["bb"] > cap * 0.2  # the 10x smaller language still gets a smoothed share (alpha 0.3)


# -- errors ----------------------------------------------------------------------------------------


def assert_one_error_line(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("balkd-fairseq: error:"), err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)


@pytest.fixture
def existing_out(tmp_path):
    """The output of an earlier balkd-prepare (its marker says so), which --force may replace."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    write_marker(out, "balkd-prepare", complete=True)
    return out


def run_forced(raw_spec, out, *flags):
    return prepare_cli.main(["--raw", raw_spec, "--out", str(out), "--force", "--quiet", "--vocab-size", "50",
                             "--valid-lines", "2", "--test-lines", "2", *flags])


def assert_untouched(out):
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "keep.txt"] and (out / "keep.txt").read_text() == "mine"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging directory left


def good_file(tmp_path, name="good.txt", n=30):
    path = tmp_path / name
    path.write_text("".join(f"a good line {i}\n" for i in range(n)), encoding="utf-8")
    return path


def test_invalid_utf8_names_file_and_line(tmp_path, existing_out, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"line one\nline two\nline \xff three\n" + b"more\n" * 20)
    assert run_forced(f"de={good_file(tmp_path)},xx={bad}", existing_out) == 2
    assert_one_error_line(capsys, str(bad), "line 3", "UTF-8")
    assert_untouched(existing_out)


def test_empty_file(tmp_path, existing_out, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n   \n\n", encoding="utf-8")
    assert run_forced(f"de={good_file(tmp_path)},xx={empty}", existing_out) == 2
    assert_one_error_line(capsys, str(empty), "empty", "'xx'")
    assert_untouched(existing_out)


def test_language_too_small_for_its_splits(tmp_path, existing_out, capsys):
    small = good_file(tmp_path, "small.txt", n=4)
    assert run_forced(f"de={good_file(tmp_path)},xx={small}", existing_out) == 2
    assert_one_error_line(capsys, str(small), "'xx'", "--valid-lines", "--test-lines")
    assert_untouched(existing_out)


def test_compressed_file_is_named_as_compressed(tmp_path, existing_out, capsys):
    # corpora ship compressed (CC-100: .txt.xz); "not UTF-8" would send the user looking for an encoding problem
    import bz2
    import gzip
    import lzma

    for name, compress, kind in (("de.txt.gz", gzip.compress, "gzip"), ("de.txt.xz", lzma.compress, "xz"),
                                 ("de.txt.bz2", bz2.compress, "bzip2")):
        packed = tmp_path / name
        packed.write_bytes(compress("".join(f"a line {i}\n" for i in range(30)).encode()))
        assert run_forced(f"de={packed},en={good_file(tmp_path)}", existing_out) == 2
        assert_one_error_line(capsys, str(packed), f"{kind}-compressed", "decompress it first")
        assert_untouched(existing_out)


def test_raw_dir_names_the_files_it_does_not_read(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    good_file(raw, "en.txt")
    for name in ("ar.TXT", "th.text", "de.txt.gz", "notes.md"):
        (raw / name).write_bytes(b"x\n")
    sources = sources_from_dir(raw)
    assert [s.lang for s in sources] == ["en"]
    err = capsys.readouterr().err
    assert "not read: ar.TXT, de.txt.gz, th.text" in err and "notes.md" not in err
    (raw / "en.txt").unlink()
    with pytest.raises(BalkdError, match=r"no <lang>.txt file in .*\(not read: ar.TXT, de.txt.gz, th.text"):
        sources_from_dir(raw)


def test_presplit_input_refuses_one_file_as_two_splits(tmp_path, existing_out, capsys):
    train = good_file(tmp_path, "train.txt")
    spec = f"xx={train}:{good_file(tmp_path, 'valid.txt', 5)}:{tmp_path / '.' / 'train.txt'}"
    assert run_forced(spec, existing_out) == 2
    assert_one_error_line(capsys, "'xx'", "is both the train and the test split")
    assert_untouched(existing_out)


def test_a_language_left_with_little_training_text_is_warned(tmp_path, caplog):
    cfg = PrepareConfig([LanguageSource("de", {"all": good_file(tmp_path, "de.txt", 100)}),
                         LanguageSource("xx", {"all": good_file(tmp_path, "xx.txt", 12)})],
                        vocab_size=50, valid_lines=4, test_lines=4, progress=False)
    with caplog.at_level("WARNING"):
        count_lines(cfg)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "language 'xx': 4 of its 12 lines are left for training" in warned[0], warned


def test_missing_file(tmp_path, existing_out, capsys):
    missing = tmp_path / "nope.txt"
    assert run_forced(f"de={good_file(tmp_path)},xx={missing}", existing_out) == 2
    assert_one_error_line(capsys, str(missing), "'xx'")
    assert_untouched(existing_out)


def test_empty_presplit_file(tmp_path, existing_out, capsys):
    empty = tmp_path / "valid.txt"
    empty.write_text("", encoding="utf-8")
    spec = f"xx={good_file(tmp_path)}:{empty}:{good_file(tmp_path, 'test.txt', 3)}"
    assert run_forced(spec, existing_out) == 2
    assert_one_error_line(capsys, str(empty), "empty")
    assert_untouched(existing_out)


def test_vocabulary_too_small_for_the_characters(tmp_path, existing_out, capsys):
    assert run_forced(f"de={good_file(tmp_path)}", existing_out, "--vocab-size", "8") == 2
    assert_one_error_line(capsys, "--vocab-size 8", "SentencePiece")
    assert_untouched(existing_out)


@pytest.mark.parametrize("flags, words", [
    (["--raw", "de"], ["--raw", "'de'"]),
    (["--raw", "de=a:b"], ["--raw", "'de'"]),
    (["--raw", "d/e=x.txt"], ["--raw", "d/e"]),
    (["--raw-dir", "/nonexistent/dir"], ["--raw-dir", "/nonexistent/dir"]),
    (["--raw", "de=x.txt,de=y.txt"], ["twice", "de"]),
    (["--raw", "de=x.txt", "--normalize-punct", "en"], ["--normalize-punct", "en"]),
    (["--raw", "de=x.txt", "--sp-alpha", "1.5"], ["--sp-alpha"]),
    (["--raw", "de=x.txt", "--valid-lines", "0"], ["--valid-lines"]),
    (["--raw", "de=x.txt", "--languages", "en"], ["--languages", "en"]),
    (["--raw", "pt_BR=x.txt"], ["--raw", "'pt_BR'", "valid_de", "e.g. 'pt-BR'"]),  # training refused it later
    (["--raw", "valid=x.txt"], ["--raw", "'valid' is a split name"]),
])
def test_bad_flags(tmp_path, capsys, flags, words):
    out = tmp_path / "out"
    assert prepare_cli.main([*flags, "--out", str(out), "--quiet"]) == 2
    assert_one_error_line(capsys, *words)
    assert not out.exists()


def test_refuses_non_empty_out_without_force(tmp_path, existing_out, capsys):
    spec = f"de={good_file(tmp_path)}"
    assert prepare_cli.main(["--raw", spec, "--out", str(existing_out), "--quiet"]) == 2
    assert_one_error_line(capsys, str(existing_out), "--force")
    assert_untouched(existing_out)
    assert run_forced(spec, existing_out) == 0
    assert (existing_out / "de" / "train.idx").is_file() and not (existing_out / "keep.txt").exists()
    assert is_complete_output(existing_out)


def test_every_flag_has_help():
    for action in prepare_cli.build_parser()._actions:
        assert action.help, action.dest


# -- nothing of the user's is lost (issue 14) -----------------------------------------------------------


def test_force_never_replaces_a_directory_it_did_not_create(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    assert run_forced(f"de={good_file(tmp_path)}", out) == 2
    assert_one_error_line(capsys, str(out), "not created by balkd-fairseq")
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


@pytest.mark.parametrize("where", ["raw dir itself", "parent of the raw dir"])
def test_force_never_replaces_a_directory_holding_the_input(tmp_path, capsys, where):
    raw = tmp_path / "corpus" / "raw"
    raw.mkdir(parents=True)
    text = good_file(raw, "de.txt")
    out = raw if where == "raw dir itself" else raw.parent
    write_marker(out, "balkd-prepare", complete=True)  # even a directory that looks like an earlier output
    assert prepare_cli.main(["--raw-dir", str(raw), "--out", str(out), "--force", "--quiet", "--vocab-size", "50",
                             "--valid-lines", "2", "--test-lines", "2"]) == 2
    assert_one_error_line(capsys, str(out), "input")
    assert text.read_text() == "".join(f"a good line {i}\n" for i in range(30))


def test_out_path_with_a_colon_is_refused(tmp_path, capsys):
    out = tmp_path / "data:v2"
    assert run_forced(f"de={good_file(tmp_path)}", out) == 2
    assert_one_error_line(capsys, "--out", "':'")
    assert not out.exists()


def test_symlinked_out_is_written_through_the_link(tmp_path, capsys):
    target = tmp_path / "big_disk" / "data"
    target.mkdir(parents=True)
    link = tmp_path / "data"
    link.symlink_to(target, target_is_directory=True)
    assert run_forced(f"de={good_file(tmp_path)}", link) == 0
    assert link.is_symlink() and (target / "de" / "train.idx").is_file() and is_complete_output(link)
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]


def test_over_long_lines_are_split_and_counted(tmp_path, capsys):
    path = tmp_path / "long.txt"
    lines = [f"short line {i}" for i in range(30)]
    lines[5] = "x" * 100_000  # one 100 kB "word"
    lines[9] = " ".join(["word"] * 5000)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert prepare_cli.main(["--raw", f"de={path}", "--out", str(out), "--vocab-size", "40", "--valid-lines", "2",
                             "--test-lines", "2", "--max-line-chars", "1000"]) == 0
    captured = capsys.readouterr()
    assert "long lines split into pieces of at most 1000 characters: de 2" in captured.out
    stats = json.loads((out / "stats.json").read_text())
    assert stats["languages"]["de"]["long_lines"] == 2
    total = sum(stats["languages"]["de"][s]["lines"] for s in SPLITS)
    assert total == 28 + 100 + 25  # 100 kB in 1000-character pieces; 25 kB cut at spaces before 1000
    for split in SPLITS:
        for line in decoded_lines(out, "de", split):
            assert len(line) <= 1000


def test_truncate_mode_keeps_the_first_piece(tmp_path):
    from balkd_fairseq.data.raw_text import text_lines

    path = tmp_path / "t.txt"
    path.write_text("a" * 25 + "\n\nok\n", encoding="utf-8")
    assert list(text_lines(path, max_chars=10, long_lines="truncate")) == ["a" * 10, "ok"]
    assert list(text_lines(path, max_chars=10)) == ["a" * 10, "a" * 10, "a" * 5, "ok"]
    assert list(text_lines(path)) == ["a" * 25, "ok"]


def test_carriage_returns_end_lines_as_for_every_later_reader(tmp_path, capsys):
    """Counted on \\n alone, a classic-Mac file was one line here and hundreds later: the splits came out wrong."""
    from balkd_fairseq.data.raw_text import text_lines

    mac = tmp_path / "mac.txt"
    mac.write_bytes("\r".join(f"line {i} äö" for i in range(60)).encode("utf-8") + b"\r")
    stray = tmp_path / "stray.txt"
    stray.write_bytes(b"one\r\ntwo\rthree\n\r\nfour\n")
    assert list(text_lines(stray)) == ["one", "two", "three", "four"]
    assert len(list(text_lines(mac))) == 60
    out = tmp_path / "out"
    assert prepare_cli.main(["--raw", f"de={mac}", "--out", str(out), "--vocab-size", "40", "--valid-lines", "5",
                             "--test-lines", "5"]) == 0
    stats = json.loads((out / "stats.json").read_text())["languages"]["de"]
    assert [stats[split]["lines"] for split in SPLITS] == [50, 5, 5]
    assert sorted(line for split in SPLITS for line in decoded_lines(out, "de", split)) == sorted(
        f"line {i} äö" for i in range(60))


def test_unicode_line_separators_stay_in_their_line_as_spaces(tmp_path):
    """U+0085 (NEL, a cp1252 ellipsis read as latin-1) came out of SentencePiece as a piece of its own that the
    binarizer's whitespace split dropped: dict.txt's most frequent symbol was in no sample, its words glued."""
    from balkd_fairseq.data.raw_text import text_lines

    separators = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # where str.splitlines() breaks, besides \n and \r
    path = tmp_path / "de.txt"
    lines = [f"wort{i % 7}\x85und {separators[i % len(separators)]}noch{i % 5}\x85" for i in range(60)]
    path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))
    expected = [f"wort{i % 7} und  noch{i % 5}" for i in range(60)]
    assert list(text_lines(path)) == expected, "one line per \\n; inside it, each separator is a space"
    out = tmp_path / "out"
    assert prepare_cli.main(["--raw", f"de={path}", "--out", str(out), "--vocab-size", "40", "--valid-lines", "5",
                             "--test-lines", "5", "--quiet"]) == 0
    stats = json.loads((out / "stats.json").read_text())["languages"]["de"]
    assert [stats[split]["lines"] for split in SPLITS] == [50, 5, 5]
    symbols = Dictionary.load(str(out / "dict.txt")).symbols
    assert not [symbol for symbol in symbols if set(symbol) & set(separators)]
    decoded = sorted(line for split in SPLITS for line in decoded_lines(out, "de", split))
    assert decoded == sorted(" ".join(line.split()) for line in expected)


def test_raw_dir_languages_ignores_other_files_and_a_directory_is_not_a_text_file(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    good_file(raw, "de.txt")
    (raw / "de copy.txt").write_text("a stray file beside the inputs\n", encoding="utf-8")
    out = tmp_path / "out"
    assert prepare_cli.main(["--raw-dir", str(raw), "--languages", "de", "--out", str(out), "--vocab-size", "40",
                             "--valid-lines", "2", "--test-lines", "2", "--quiet"]) == 0
    assert prepare_cli.main(["--raw-dir", str(raw), "--out", str(tmp_path / "all"), "--quiet"]) == 2
    assert_one_error_line(capsys, "bad language name 'de copy'")
    assert prepare_cli.main(["--raw", f"de={raw}", "--out", str(tmp_path / "dir"), "--quiet"]) == 2
    assert_one_error_line(capsys, f"language 'de': {raw} is a directory, not a text file")


def test_a_language_whose_text_encodes_to_nothing_is_refused(tmp_path, capsys):
    """Zero-width characters are not blank to str.strip() but SentencePiece drops them: 0 tokens, then balancing
    cut every language to one block."""
    invisible = tmp_path / "zw.txt"
    invisible.write_text("\u200b\u200c\n" * 60, encoding="utf-8")
    out = tmp_path / "out"
    assert prepare_cli.main(["--raw", f"de={good_file(tmp_path)},zw={invisible}", "--out", str(out), "--vocab-size",
                             "40", "--valid-lines", "5", "--test-lines", "5", "--quiet"]) == 2
    assert_one_error_line(capsys, "language 'zw'", "50 train lines encode to no tokens", str(invisible))
    assert not out.exists()


def test_a_second_prepare_into_the_same_out_is_refused_while_the_first_runs(tmp_path, capsys):
    from balkd_fairseq.locks import output_lock

    out = tmp_path / "out"
    with output_lock(out, "--out"):
        import subprocess
        import sys

        proc = subprocess.run([sys.executable, "-m", "balkd_fairseq.cli.prepare", "--raw",
                               f"de={good_file(tmp_path)}", "--out", str(out), "--quiet"],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("balkd-fairseq: error: --out")
    assert f"process {os.getpid()}" in proc.stderr and not out.exists()


def test_kill_9_during_prepare_leaves_the_previous_output_and_a_detectable_partial(tmp_path, existing_out):
    import signal
    import subprocess
    import sys
    import time

    big = tmp_path / "big.txt"
    big.write_text("".join(f"line number {i} of a bigger text with some words\n" for i in range(200_000)))
    proc = subprocess.Popen([sys.executable, "-m", "balkd_fairseq.cli.prepare", "--raw", f"de={big}", "--out",
                             str(existing_out), "--force", "--vocab-size", "200", "--valid-lines", "10",
                             "--test-lines", "10", "--quiet"])
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".out.*.partial/.work")):
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert_untouched_but_partials(existing_out)
    partials = list(tmp_path.glob(".out.*.partial"))
    assert len(partials) == 1 and not is_complete_output(partials[0])
    # the next run removes the leftovers of the killed one, and succeeds
    assert run_forced(f"de={good_file(tmp_path)}", existing_out) == 0
    assert is_complete_output(existing_out) and not list(tmp_path.glob(".out.*"))


def assert_untouched_but_partials(out):
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "keep.txt"] and (out / "keep.txt").read_text() == "mine"
