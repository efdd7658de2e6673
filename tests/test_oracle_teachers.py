"""examples/toy/oracle_teachers.py: the oracle teachers' data never holds what the models are scored on."""
import random
from pathlib import Path

import pytest
from helpers import load_example

from balkd_fairseq.data.prepare import PrepareConfig, prepare
from balkd_fairseq.data.raw_text import LanguageSource


def _module():
    module = load_example("examples/toy/oracle_teachers.py", "oracle_teachers")
    return module


def _sentences(n: int, seed: int):
    rng = random.Random(seed)
    words = [f"w{i}x" for i in range(60)]
    return [" ".join(rng.choice(words) for _ in range(8)) + "\n" for _ in range(n)]


def _benchmark(root: Path):
    """A two-language benchmark made by balkd-prepare; bb's raw text is the first 40 of 140 lines."""
    raw, large = root / "synth" / "raw", root / "large" / "raw"
    raw.mkdir(parents=True)
    large.mkdir(parents=True)
    bb = _sentences(140, 2)
    (raw / "aa.txt").write_text("".join(_sentences(200, 1)), encoding="utf-8")
    (raw / "bb.txt").write_text("".join(bb[:40]), encoding="utf-8")
    cfg = PrepareConfig(sources=[LanguageSource(lang, {"all": raw / f"{lang}.txt"}) for lang in ("aa", "bb")],
                        vocab_size=120, valid_lines=5, test_lines=5, progress=False)
    (root / "data").mkdir()
    prepare(cfg, root / "data")
    return root / "synth", root / "data", root / "large", bb


def _lines(prefix: Path):
    from fairseq.data import indexed_dataset

    dataset = indexed_dataset.MMapIndexedDataset(str(prefix))
    return [tuple(dataset[i].tolist()) for i in range(len(dataset))]


def test_oracle_data_extends_train_and_keeps_every_held_out_line_out(tmp_path):
    oracle = _module()
    synth, data, large, bb = _benchmark(tmp_path)
    held_out = _lines(data / "bb" / "valid") + _lines(data / "bb" / "test")
    # the larger generation: the benchmark's 40 lines, 100 more, then all 40 again (their 10 held-out among them)
    (large / "raw" / "bb.txt").write_text("".join(bb + bb[:40]), encoding="utf-8")
    stats = oracle.build_oracle_data(str(synth), str(data), str(large), ["bb"], str(tmp_path / "oracle"))
    oracle_train = _lines(tmp_path / "oracle" / "bb" / "train")
    assert not set(held_out) & set(oracle_train)
    assert set(_lines(data / "bb" / "train")) <= set(oracle_train)
    assert stats["bb"]["benchmark_raw_lines"] == 40
    assert stats["bb"]["dropped_held_out"] == 20  # each held-out line twice
    assert stats["bb"]["train_lines"] == len(oracle_train) == 180 - 20
    for split in ("valid", "test"):
        assert (tmp_path / "oracle" / "bb" / f"{split}.bin").read_bytes() == (data / "bb" / f"{split}.bin").read_bytes()
    assert (tmp_path / "oracle" / "dict.txt").read_text() == (data / "dict.txt").read_text()
    assert not (tmp_path / "oracle" / "aa").exists() and not (tmp_path / "oracle.partial").exists()


def test_a_generation_that_does_not_extend_the_benchmark_is_refused(tmp_path):
    oracle = _module()
    synth, data, large, bb = _benchmark(tmp_path)
    (large / "raw" / "bb.txt").write_text("".join(bb[1:] + bb[:1]), encoding="utf-8")
    with pytest.raises(SystemExit, match=r"bb\.txt: line 1 differs"):
        oracle.build_oracle_data(str(synth), str(data), str(large), ["bb"], str(tmp_path / "oracle"))
    assert not (tmp_path / "oracle").exists()


def test_the_merged_manifest_takes_the_oracle_teachers_for_their_languages(tmp_path):
    import json

    (tmp_path / "own.json").write_text(json.dumps({"aa": "own/aa.pt", "bb": "own/bb.pt"}))
    (tmp_path / "oracle.json").write_text(json.dumps({"bb": "oracle/bb.pt"}))
    _module().merged_manifest(str(tmp_path / "own.json"), str(tmp_path / "oracle.json"), str(tmp_path / "merged.json"))
    assert json.loads((tmp_path / "merged.json").read_text()) == {"aa": "own/aa.pt", "bb": "oracle/bb.pt"}
