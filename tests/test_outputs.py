"""Atomic files and guarded output directories: nothing of the user's is ever removed or half-written."""
import os
from pathlib import Path

import pytest

from balkd_fairseq.errors import BalkdError
from balkd_fairseq.outputs import (
    MARKER,
    atomic_write,
    check_replaceable,
    is_complete_output,
    staged_output_dir,
    write_json,
    write_marker,
)


def test_atomic_write_keeps_the_previous_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "results.json"
    write_json(path, {"score": 1})
    with pytest.raises(ZeroDivisionError):
        with atomic_write(path) as f:
            f.write('{"score": ')
            raise ZeroDivisionError
    assert path.read_text() == '{\n  "score": 1\n}\n' and os.listdir(tmp_path) == ["results.json"]


def test_atomic_write_creates_files_with_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", [1])
    finally:
        os.umask(umask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644


def test_replace_guard(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "de.txt").write_text("text")
    with pytest.raises(BalkdError, match="is or contains the input"):
        check_replaceable(tmp_path, [raw / "de.txt"])
    with pytest.raises(BalkdError, match="not created by balkd-fairseq"):
        check_replaceable(raw, [])
    write_marker(raw, "balkd-prepare", complete=True)
    check_replaceable(raw, [tmp_path / "elsewhere.txt"])  # an earlier output holding no input: replaceable
    check_replaceable(tmp_path / "absent", [raw / "de.txt"])


def test_force_replaces_only_what_the_same_command_wrote(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "dict.txt").write_text("a 1\n")
    write_marker(out, "balkd-prepare", complete=True)
    with pytest.raises(BalkdError, match="written by balkd-prepare, not balkd-export"):
        check_replaceable(out, [], command="balkd-export")
    check_replaceable(out, [], command="balkd-prepare")
    write_marker(out, "synth.py", complete=True)  # python -m balkd_fairseq.cli.synth, before markers named commands
    check_replaceable(out, [], command="balkd-synth")
    check_replaceable(out, [])  # no command given: any balkd output (the cache's own guard)


def test_inputs_reached_through_a_symlink_are_still_inputs(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "de.txt").write_text("text")
    write_marker(raw, "balkd-prepare", complete=True)
    link = tmp_path / "link"
    link.symlink_to(raw)
    with pytest.raises(BalkdError, match="input"):
        check_replaceable(link, [raw / "de.txt"])
    with pytest.raises(BalkdError, match="input"):
        check_replaceable(raw, [link / "de.txt"])


def test_staged_output_is_complete_or_absent(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with staged_output_dir(out, force=False, command="test") as staging:
            (staging / "half").write_text("x")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []
    with staged_output_dir(out, force=False, command="test") as staging:
        (staging / "all").write_text("x")
    assert is_complete_output(out) and sorted(os.listdir(out)) == [MARKER, "all"]


@pytest.mark.slow
def test_cache_teachers_overwrite_never_deletes_the_data(tiny_data, teacher_spec, capsys):
    from balkd_fairseq.cli.cache_teachers import main as cache_main

    before = sorted(str(p.relative_to(tiny_data)) for p in Path(tiny_data).rglob("*"))
    argv = [str(tiny_data), "--task", "balanced_distill", "--teachers", teacher_spec, "--tokens-per-sample", "32",
            "--max-epoch", "1", "--batch-size", "8", "--cpu", "--cache-dir", str(tiny_data), "--overwrite"]
    assert cache_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("balkd-fairseq: error: --cache-dir") and "input" in err[-1], err[-3:]
    assert sorted(str(p.relative_to(tiny_data)) for p in Path(tiny_data).rglob("*")) == before
