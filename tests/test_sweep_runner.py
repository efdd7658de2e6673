"""examples/toy/pipeline.py's guards: a sweep never reuses a step made with other settings or flags, refuses
bad names before any work, and the demo replaces only a directory it made."""
import json
import os
import subprocess
import sys

import pytest
from helpers import REPO, load_example


@pytest.fixture(scope="module")
def pipeline():
    module = load_example("examples/toy/pipeline.py", "toy_pipeline_guards")
    return module


def test_names_are_checked_before_any_work(pipeline):
    assert pipeline.name_list("HL, Ours", "--configs", pipeline.CONFIGS) == ["HL", "Ours"]
    for value, message in (("HL,Nope", "unknown Nope"), ("HL,HL", "distinct names"), ("", "at least one"),
                           (" , ", "at least one")):
        with pytest.raises(SystemExit, match=message):
            pipeline.name_list(value, "--configs", pipeline.CONFIGS)
    with pytest.raises(SystemExit, match=r"--presets: unknown divers"):
        pipeline.name_list("shared,divers", "--presets", pipeline.PRESET_GROUPS)
    with pytest.raises(SystemExit, match=r"Mine:v2 hold \| or :"):
        pipeline.name_list("Mine:v2", "--configs", {"Mine:v2": []})


def test_a_sweep_refuses_an_out_made_with_other_settings(pipeline, tmp_path):
    pipeline.check_settings(pipeline.Settings(out=str(tmp_path), high_size=100))
    pipeline.check_settings(pipeline.Settings(out=str(tmp_path), high_size=300))  # nothing finished under 100 yet
    pipeline.mark_done(str(tmp_path / "shared" / "benchmark" / "synth"))
    pipeline.check_settings(pipeline.Settings(out=str(tmp_path), high_size=300, threads=1, lanes=2))  # no result changes
    with pytest.raises(SystemExit, match=r"made with other settings \(HIGH_SIZE 300 -> 500\)"):
        pipeline.check_settings(pipeline.Settings(out=str(tmp_path), high_size=500))
    assert json.loads((tmp_path / "settings.json").read_text())["high_size"] == 300


def test_a_finished_student_is_not_reused_after_its_configuration_changed(pipeline, tmp_path):
    run = str(tmp_path / "Mine")
    pipeline.mark_done(run, {"updates": 5, "made_with": {"flags": ["--hard-label-weight", "0.3"]}})
    assert pipeline.finished(run, {"flags": ["--hard-label-weight", "0.3"]}, "student Mine")["updates"] == 5
    with pytest.raises(SystemExit, match=r"student Mine in .*Mine was made with other flags than now"):
        pipeline.finished(run, {"flags": ["--hard-label-weight", "0.9"]}, "student Mine")
    pipeline.mark_done(run, {"updates": 5})  # an older sweep's marker records no flags: reused as before
    assert pipeline.finished(run, {"flags": ["x"]}, "student Mine") == {"updates": 5}


def test_boolean_settings_from_the_environment(pipeline, monkeypatch):
    for raw, value in (("false", False), ("No", False), ("0", False), ("true", True), ("1", True), ("on", True)):
        monkeypatch.setenv("STUDENT_VALIDATION", raw)
        assert pipeline.settings_from_env(pipeline.Settings()).student_validation is value, raw
    monkeypatch.setenv("STUDENT_VALIDATION", "maybe")
    with pytest.raises(SystemExit, match=r"STUDENT_VALIDATION='maybe' is not a bool"):
        pipeline.settings_from_env(pipeline.Settings())


def test_the_demo_replaces_only_a_directory_it_made(pipeline, tmp_path):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(SystemExit, match=r"--out .*thesis is not empty and no earlier demo made it"):
        pipeline.prepare_demo_out(str(mine))
    assert (mine / "thesis.tex").read_text() == "precious"
    out = tmp_path / "demo"
    pipeline.prepare_demo_out(str(out))
    (out / "report.md").write_text("an earlier demo's")
    pipeline.prepare_demo_out(str(out))
    assert os.listdir(out) == [pipeline.DEMO_MARKER]


def test_a_run_still_going_keeps_its_directory(pipeline, tmp_path):
    # a pipeline killed with kill -9 leaves its balkd-train running: the next pipeline must not delete its directory
    save_dir = tmp_path / "HL-balanced"
    save_dir.mkdir()
    lock = save_dir / pipeline.LOCK_NAME
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from balkd_fairseq.locks import acquire; "
                               f"acquire({str(lock)!r}, 'x'); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit, match=r"is in use by .*stop that process first"):
            pipeline.refuse_live_run(str(save_dir))
    finally:
        holder.kill()
        holder.wait()
    pipeline.refuse_live_run(str(save_dir))  # its holder is gone: the unfinished run starts again
