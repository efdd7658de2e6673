"""balkd-train-teachers: one teacher per language, resumable, skips complete ones, writes teachers.json."""
import json

import pytest

from balkd_fairseq.cli.train_teachers import main
from helpers import TINY_ARCH

pytestmark = pytest.mark.slow

FLAGS = ["--", *TINY_ARCH, "--tokens-per-sample", "32", "--batch-size", "8", "--optimizer", "adam", "--lr", "0.001",
         "--max-update", "2", "--cpu", "--required-batch-size-multiple", "1", "--disable-validation", "--num-workers", "0"]


def test_trains_each_language_then_skips_complete_ones(tiny_data, tmp_path, capsys):
    save = tmp_path / "teachers"
    assert main([str(tiny_data), "--save-dir", str(save), *FLAGS]) == 0
    mapping = json.loads((save / "teachers.json").read_text())
    assert set(mapping) == {"aa", "bb"}
    for lang, path in mapping.items():
        assert path == str(save / lang / "checkpoint_last.pt") and (save / lang / "dict.txt").is_file()
    stamp = (save / "aa" / "checkpoint_last.pt").stat().st_mtime_ns

    capsys.readouterr()
    assert main([str(tiny_data), "--save-dir", str(save), *FLAGS]) == 0
    assert "teacher for aa is complete; skipped" in capsys.readouterr().out
    assert (save / "aa" / "checkpoint_last.pt").stat().st_mtime_ns == stamp

    # different flags: the teacher is not complete for them, fairseq resumes from checkpoint_last.pt
    at = FLAGS.index("--max-update") + 1
    more = FLAGS[:at] + ["3"] + FLAGS[at + 1:]
    assert main([str(tiny_data), "--save-dir", str(save), "--languages", "aa", *more]) == 0
    assert "Loaded checkpoint" in (save / "aa" / "train.log").read_text()


def test_errors_name_the_problem(tiny_data, tmp_path, capsys):
    assert main([str(tiny_data), "--save-dir", str(tmp_path), "--languages", "aa,zz", *FLAGS]) == 2
    assert "language 'zz' has no train split" in capsys.readouterr().err
    assert main([str(tiny_data), "--save-dir", str(tmp_path), "--", "--task", "masked_lm"]) == 2
    assert "balkd-train-teachers sets them" in capsys.readouterr().err
