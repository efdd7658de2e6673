"""examples/toy/pipeline.py's guards: a sweep never reuses a step made with other settings or flags, refuses
bad names before any work, and the demo replaces only a directory it made."""
import json
import os
import subprocess
import sys

import pytest
from helpers import REPO, load_example, toy_module


@pytest.fixture(scope="module")
def pipeline():
    module = load_example("examples/toy/pipeline.py", "toy_pipeline_guards")
    return module


# the modules pipeline.py imports, as it imports them: a function is patched in the module that calls it
configurations, report_record, runner = (toy_module(name) for name in ("configurations", "report_record", "runner"))
stages, evaluation, sweep = (toy_module(name) for name in ("stages", "evaluation", "sweep"))


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
    runner.mark_done(str(tmp_path / "shared" / "benchmark" / "synth"))
    pipeline.check_settings(pipeline.Settings(out=str(tmp_path), high_size=300, threads=1, lanes=2))  # no result changes
    with pytest.raises(SystemExit, match=r"made with other settings \(HIGH_SIZE 300 -> 500\)"):
        pipeline.check_settings(pipeline.Settings(out=str(tmp_path), high_size=500))
    assert json.loads((tmp_path / "settings.json").read_text())["high_size"] == 300


def test_a_setting_added_later_counts_as_its_default_in_an_older_out(pipeline, tmp_path):
    pipeline.check_settings(pipeline.Settings(out=str(tmp_path)))
    recorded = json.loads((tmp_path / "settings.json").read_text())
    del recorded["names_script"]  # an OUT made before the setting existed: its benchmark has the default names
    (tmp_path / "settings.json").write_text(json.dumps(recorded))
    runner.mark_done(str(tmp_path / "diverse" / "benchmark" / "synth"))
    pipeline.check_settings(pipeline.Settings(out=str(tmp_path)))  # the same: reused
    (tmp_path / "settings.json").write_text(json.dumps(recorded))
    with pytest.raises(SystemExit, match=r"made with other settings \(NAMES_SCRIPT own -> latin\)"):
        pipeline.check_settings(pipeline.Settings(out=str(tmp_path), names_script="latin"))
    with pytest.raises(SystemExit, match=r"^pipeline.py: error: NAMES_SCRIPT='greek' is not one of own, latin$"):
        pipeline.check_settings(pipeline.Settings(out=str(tmp_path), names_script="greek"))
    with pytest.raises(SystemExit, match=r"^pipeline.py: error: NAMES_SCRIPT='greek' is not one of own, latin$"):
        pipeline.settings_from_env(pipeline.Settings(names_script="greek"))  # the demo checks it before clearing OUT
    for damaged in ("{broken", "[1, 2]"):
        (tmp_path / "settings.json").write_text(damaged)
        with pytest.raises(SystemExit, match=r"^pipeline.py: error: .*settings.json (cannot be read|is not a JSON object)"):
            pipeline.check_settings(pipeline.Settings(out=str(tmp_path)))
    layout = stages.Layout(str(tmp_path), "diverse", 1)
    assert "--names-script" not in stages.synth_command("synth", layout, pipeline.Settings())
    command = stages.synth_command("synth", layout, pipeline.Settings(names_script="latin"))
    assert command[command.index("--names-script") + 1] == "latin"


def test_a_finished_student_is_not_reused_after_its_configuration_changed(pipeline, tmp_path):
    run = str(tmp_path / "Mine")
    runner.mark_done(run, {"updates": 5, "made_with": {"flags": ["--hard-label-weight", "0.3"]}})
    assert runner.finished(run, {"flags": ["--hard-label-weight", "0.3"]}, "student Mine")["updates"] == 5
    with pytest.raises(SystemExit, match=r"student Mine in .*Mine was made with other flags than now"):
        runner.finished(run, {"flags": ["--hard-label-weight", "0.9"]}, "student Mine")
    runner.mark_done(run, {"updates": 5})  # an older sweep's marker records no flags: reused as before
    assert runner.finished(run, {"flags": ["x"]}, "student Mine") == {"updates": 5}


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
    lock = save_dir / stages.LOCK_NAME
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from balkd_fairseq.locks import acquire; "
                               f"acquire({str(lock)!r}, 'x'); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit, match=r"is in use by .*stop that process first"):
            stages.refuse_live_run(str(save_dir))
    finally:
        holder.kill()
        holder.wait()
    stages.refuse_live_run(str(save_dir))  # its holder is gone: the unfinished run starts again


def test_a_failed_step_stops_only_the_steps_that_need_it(pipeline):
    ran = []

    def work(name, exit_code=0):
        def run():
            ran.append(name)
            if exit_code:  # what runner.run raises for a command that exits non-zero
                runner.run([sys.executable, "-c", f"raise SystemExit({exit_code})"])
            return name
        return run
    jobs = [runner.Job("teachers", work("teachers", 3)), runner.Job("Ours", work("Ours"), after=("teachers",)),
            runner.Job("evaluate Ours", work("evaluate Ours"), after=("Ours",)), runner.Job("HL", work("HL")),
            runner.Job("evaluate HL", work("evaluate HL"), after=("HL",))]
    outcome = runner.run_jobs(jobs, lanes=1)
    assert ran == ["teachers", "HL", "evaluate HL"], "a step after a failed one is not attempted"
    assert list(outcome.results) == ["HL", "evaluate HL"]
    assert list(outcome.failed) == ["teachers"] and "failed (exit 3)" in outcome.failed["teachers"]
    assert outcome.skipped == {"Ours": "teachers", "evaluate Ours": "teachers"}, "named with the step that failed"

    def refused():
        raise SystemExit("pipeline.py: error: student Ours ... was made with other flags")
    with pytest.raises(SystemExit, match="other flags"):  # a user's mistake still stops everything
        runner.run_jobs([runner.Job("Ours", refused), runner.Job("HL", work("HL"))], lanes=1)


def test_the_prerequisites_are_the_steps_teachers_of_takes(pipeline, monkeypatch, tmp_path):
    # a student whose prerequisite failed is skipped: that needs every step teachers_of would take as a job
    layout = stages.Layout(str(tmp_path), "shared", 1)
    calls = []
    cost = {"updates": 1, "tokens": 1, "wall_seconds": 1.0}
    monkeypatch.setattr(stages, "train_student", lambda layout, s, name: calls.append(name) or cost)
    monkeypatch.setattr(stages, "train_teachers", lambda layout, s, init_from="": calls.append(
        "teachers from HL-balanced" if init_from else "teachers") or cost)
    monkeypatch.setattr(stages, "train_oracle_teachers", lambda layout, s: calls.append("oracle teachers") or cost)
    monkeypatch.setattr(stages, "build_cache", lambda layout, s, name: calls.append("teacher cache") or cost)
    monkeypatch.setattr(stages, "give_dictionary", lambda layout, name: None)

    def closure(name):
        return {step for need in sweep.prerequisites(name)
                for step in ({need} | (closure(need) if need in pipeline.CONFIGS else set()))}
    for name in pipeline.CONFIGS:
        calls.clear()
        stages.teachers_of(layout, None, name)
        assert set(calls) == closure(name), name
    jobs = sweep.run_jobs_of(layout, pipeline.Settings(out=str(tmp_path)), ["HL", "Ours+fallback2"])
    after = {job.name: job.after for job in jobs}
    assert after["shared/seed1: Ours+fallback2"] == ("shared/benchmark: data", "shared/seed1: Ours+fallback")
    assert "shared/seed1: HL-balanced" in after["shared/seed1: Ours+fallback"], "trained although not asked for"
    assert "shared/seed1: evaluate HL-balanced" not in after, "evaluated only when asked for"


SWEEP = ["sweep", "--seeds", "1,2", "--presets", "shared,diverse"]


@pytest.fixture
def fake_commands(pipeline, monkeypatch):
    """The sweep's commands replaced by stand-ins that leave what the pipeline reads; a command whose output goes
    under one of ``fail`` exits 3 (through the real runner)."""
    commands, fail, real_run = [], [], runner.run

    def run(cmd, log=None, **kwargs):
        out = next((cmd[cmd.index(flag) + 1] for flag in ("--save-dir", "--output-dir", "--out") if flag in cmd), "")
        if any(out.endswith(ending) for ending in fail):
            return real_run([sys.executable, "-c", "raise SystemExit(3)"], log=log)
        commands.append(cmd)
        os.makedirs(out or ".", exist_ok=True)
        if log:
            open(log, "w").close()
        return 0.0
    monkeypatch.setattr(runner, "run", run)
    monkeypatch.setattr(evaluation, "languages", lambda layout: "de,tr")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # main() sets it for its children: never for the rest of the tests
    return commands, fail


def reports(commands):
    return [cmd for cmd in commands if cmd[0] == "balkd-report" and not cmd[-1].endswith("control")]


def test_a_sweep_goes_on_after_a_failed_step_and_reports_what_finished(pipeline, fake_commands, tmp_path, capsys):
    commands, fail = fake_commands
    out = str(tmp_path / "out")
    fail += [os.path.join("shared", "seed2", "teachers"), os.path.join("diverse", "report", "control")]
    with pytest.raises(SystemExit) as stopped:
        pipeline.main([*SWEEP, "--out", out])
    assert str(stopped.value).startswith("pipeline.py: error: 2 step(s) failed (shared/seed2: teachers; diverse: "
                                         "report) and 2 that needed them did not run")
    assert "\n" not in str(stopped.value)
    trained = [cmd[cmd.index("--save-dir") + 1] for cmd in commands if cmd[0] == "balkd-train"]
    assert os.path.join(out, "shared", "seed2", "checkpoints", "Ours") not in trained, "its teachers failed"
    assert len(trained) == 11, "every other student of both presets"
    shared, diverse = reports(commands)
    assert sum(arg.startswith("--model=Ours=") for arg in shared) == 1
    assert sum(arg.startswith("--model=HL=") for arg in shared) == 1, "only the runs every model finished"
    assert "--compare=Ours:HL,HL-balanced" in shared
    assert "--compare=Ours:HL,HL-balanced" in diverse
    printed = capsys.readouterr().out
    assert "shared: 1 run(s) missing from the report" in printed
    assert "shared/seed2: Ours: missing, as shared/seed2: teachers failed (exit 3)" in printed
    assert "shared: the report keeps to the runs every model finished; left out: shared/seed2: HL, " \
        "shared/seed2: HL-balanced, shared/seed2: Random-init" in printed
    record = json.loads((tmp_path / "out" / "shared" / "report" / report_record.REPORT_RECORD).read_text())
    assert record["missing"] == ["shared/seed2: Ours"]
    assert record["left_out"] == ["shared/seed2: HL", "shared/seed2: HL-balanced", "shared/seed2: Random-init"]
    assert (tmp_path / "out" / "shared" / "report" / "cost.md").is_file()
    # fixed, the same sweep again (its reports' directories are its own): only what is missing runs, the reports whole
    fail.clear()
    commands.clear()
    assert pipeline.main([*SWEEP, "--out", out]) == 0
    trained = [cmd[cmd.index("--save-dir") + 1] for cmd in commands if cmd[0] in ("balkd-train", "balkd-train-teachers")]
    assert trained == [os.path.join(out, "shared", "seed2", d) for d in ("teachers", os.path.join("checkpoints", "Ours"))]
    assert "--compare=Ours:HL,HL-balanced" in reports(commands)[0]
    assert [cmd[-1] for cmd in commands if cmd[0] == "balkd-report"][-1].endswith(os.path.join("diverse", "report", "control"))


def test_no_report_when_no_model_finished_a_run():
    assert evaluation.common_runs(["seed1", "seed2"], {"HL": [], "Ours": []}) == ([], [])
    assert evaluation.common_runs(["seed1", "seed2"], {"HL": ["seed1", "seed2"], "Ours": ["seed2"]}) == \
        (["HL", "Ours"], ["seed2"])


def test_a_report_of_other_configurations_is_not_replaced_unasked(pipeline, fake_commands, tmp_path):
    commands, _ = fake_commands
    out = str(tmp_path / "out")
    assert pipeline.main([*SWEEP, "--out", out]) == 0
    commands.clear()
    with pytest.raises(SystemExit, match=r"^pipeline.py: error: .*shared/report holds the report of configs "
                       r"HL,HL-balanced,Ours \(now HL-balanced,Ours\+T2\): pass another --report-name to keep it, "
                       r"or --replace-report to replace it$"):
        pipeline.main([*SWEEP, "--out", out, "--configs", "HL-balanced,Ours+T2"])
    with pytest.raises(SystemExit, match=r"holds the report of seeds 1,2 \(now 1\)"):
        pipeline.main([*SWEEP[:2], "1", *SWEEP[3:], "--out", out])
    assert commands == [], "refused before any work"
    assert pipeline.main([*SWEEP, "--out", out, "--configs", "HL-balanced,Ours+T2", "--report-name", "levers"]) == 0
    assert pipeline.main([*SWEEP, "--out", out, "--configs", "Ours,HL-balanced,HL"]) == 0, "the same report again"
    assert pipeline.main([*SWEEP, "--out", out, "--configs", "HL-balanced,Ours+T2", "--replace-report"]) == 0
    models = {arg.split("=")[1] for arg in reports(commands)[-1] if arg.startswith("--model=")}
    assert models == {"HL-balanced", "Ours+T2", configurations.CONTROL}
    os.remove(os.path.join(out, "diverse", "report", report_record.REPORT_RECORD))  # a report of before the record
    with pytest.raises(SystemExit, match=r"diverse/report holds a report without runs.json \(what it covers is unknown"):
        pipeline.main([*SWEEP, "--out", out, "--configs", "HL-balanced,Ours+T2"])
    with open(os.path.join(out, "diverse", "report", report_record.REPORT_RECORD), "w") as f:
        f.write("{broken")  # one line, no traceback
    with pytest.raises(SystemExit, match=r"^pipeline.py: error: .*diverse/report holds a report without runs.json"):
        pipeline.main([*SWEEP, "--out", out, "--configs", "HL-balanced,Ours+T2"])
