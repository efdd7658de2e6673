"""Levers beyond the paper: teachers that start from a checkpoint (--init-from), a fallback teacher per language
chosen on validation data (--teacher-fallback)."""
import json
import logging
import math
import os
import shutil

import pytest
import torch
from helpers import TINY_ARCH
from test_teacher_cache import cache_argv
from test_teacher_cache import make_task as cache_task

from balkd_fairseq.checkpoints import EMBED_KEY, load_checkpoint_state
from balkd_fairseq.cli.cache_teachers import main as cache_main
from balkd_fairseq.cli.train_teachers import main as train_teachers
from balkd_fairseq.errors import BalkdError
from balkd_fairseq.soft_labels.cache import TeacherCache
from balkd_fairseq.soft_labels.manifest import check_resumed_manifest
from balkd_fairseq.soft_labels.online import TeacherSet

# one update at a learning rate too small to move the weights measurably: the teacher is its init
FLAGS = ["--", *TINY_ARCH, "--tokens-per-sample", "32", "--batch-size", "8", "--optimizer", "adam", "--lr", "1e-9",
         "--max-update", "1", "--cpu", "--required-batch-size-multiple", "1", "--disable-validation", "--num-workers", "0",
         "--seed", "7"]


def weights(path):
    return load_checkpoint_state(str(path), "test")["model"]


def max_difference(a, b):
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a if k in b and a[k].is_floating_point())


def write_checkpoint(source, target, change):
    """A copy of checkpoint ``source`` whose weights ``change(state)`` edited, with the dictionary beside it."""
    state = load_checkpoint_state(str(source), "test")
    change(state)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, str(target))
    shutil.copyfile(source.parent / "dict.txt", target.parent / "dict.txt")
    return target


def scrambled(state):
    """Large random weights: confidently wrong predictions, a teacher far worse than uniform."""
    generator = torch.Generator().manual_seed(0)
    for key, value in state["model"].items():
        if value.is_floating_point():
            state["model"][key] = torch.randn(value.shape, generator=generator) * 2.0


# ---------------------------------------------------------------------------------- --init-from
@pytest.mark.slow
def test_init_from_starts_each_teacher_from_the_checkpoint(tiny_data, tiny_teachers, tmp_path, capsys):
    init = tiny_teachers["aa"]
    save = tmp_path / "from_init"
    assert train_teachers([str(tiny_data), "--save-dir", str(save), "--languages", "bb", "--init-from", str(init), *FLAGS]) == 0
    assert max_difference(weights(save / "bb" / "checkpoint_last.pt"), weights(init)) < 1e-4
    scratch = tmp_path / "scratch"
    assert train_teachers([str(tiny_data), "--save-dir", str(scratch), "--languages", "bb", *FLAGS]) == 0
    assert max_difference(weights(scratch / "bb" / "checkpoint_last.pt"), weights(init)) > 1e-2

    entry = json.loads((save / "teachers.json").read_text())["bb"]
    done = json.loads((save / "bb" / "teacher_done.json").read_text())
    assert entry["init_from"] == done["init_from"] == {"path": str(init), "sha256": done["init_from"]["sha256"]}
    assert len(done["init_from"]["sha256"]) == 64
    assert isinstance(json.loads((scratch / "teachers.json").read_text())["bb"], str)  # unchanged without --init-from
    # the student's manifest records it (teachers.json read as --teachers)
    task = cache_task(tiny_data, languages="bb", teachers=str(save / "teachers.json"))
    assert TeacherSet.from_task(task).manifest()[0]["init_from"] == done["init_from"]

    capsys.readouterr()  # another init for the same save dir: refused, not continued
    assert train_teachers([str(tiny_data), "--save-dir", str(save), "--languages", "bb",
                           "--init-from", str(tiny_teachers["bb"]), *FLAGS]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]  # (stderr also holds the progress bar)
    assert len(errors) == 1 and "balkd-fairseq: error:" in errors[0] and "trained from" in errors[0]
    assert "Traceback" not in err


def test_mismatched_init_checkpoint_is_refused_in_one_line(tiny_data, tiny_teachers, tmp_path, capsys):
    def smaller_vocabulary(state):
        state["model"][EMBED_KEY] = state["model"][EMBED_KEY][:-3]

    other_vocab = write_checkpoint(tiny_teachers["aa"], tmp_path / "v" / "checkpoint.pt", smaller_vocabulary)
    base = [str(tiny_data), "--save-dir", str(tmp_path / "t"), "--languages", "bb"]
    assert train_teachers([*base, "--init-from", str(other_vocab), *FLAGS]) == 2
    err = capsys.readouterr().err
    assert "--init-from" in err and "symbols" in err and len(err.strip().splitlines()) == 1
    deeper = [a if a != "2" or FLAGS[i - 1] != "--encoder-layers" else "3" for i, a in enumerate(FLAGS)]
    assert train_teachers([*base, "--init-from", str(tiny_teachers["aa"]), *deeper]) == 2
    err = capsys.readouterr().err
    assert "--encoder-layers 2" in err and len(err.strip().splitlines()) == 1
    assert train_teachers([*base, "--init-from", str(tiny_teachers["aa"]), *FLAGS, "--reset-optimizer"]) == 2
    assert "--reset-optimizer" in capsys.readouterr().err
    # a stock teacher (no recorded hash) of another dictionary of the same size: its dict.txt tells
    swapped = write_checkpoint(tiny_teachers["aa"], tmp_path / "s" / "checkpoint.pt", lambda state: None)
    lines = (swapped.parent / "dict.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    (swapped.parent / "dict.txt").write_text("".join([lines[1], lines[0], *lines[2:]]), encoding="utf-8")
    assert train_teachers([*base, "--init-from", str(swapped), *FLAGS]) == 2
    err = capsys.readouterr().err
    assert "first difference at symbol 4" in err and len(err.strip().splitlines()) == 1, err
    # flags that leave the layers to --arch roberta_base's default (12) do not fit a 2-layer checkpoint
    at = FLAGS.index("--encoder-layers")
    defaults = FLAGS[:at] + FLAGS[at + 2:]
    assert train_teachers([*base, "--init-from", str(tiny_teachers["aa"]), *defaults]) == 2
    err = capsys.readouterr().err
    assert "--encoder-layers 2 but the teachers' flags give 12" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "t" / "bb" / "checkpoint_last.pt").exists()


# ---------------------------------------------------------------------------------- --teacher-fallback
@pytest.fixture(scope="module")
def bad_teacher(tiny_teachers, tmp_path_factory):
    return write_checkpoint(tiny_teachers["bb"], tmp_path_factory.mktemp("bad") / "bb" / "checkpoint.pt", scrambled)


def served(manifest):
    return {record["language"]: record["served_by"] for record in manifest}


def test_a_bad_teacher_is_replaced_by_the_fallback(tiny_data, tiny_teachers, bad_teacher, caplog):
    spec = f"aa:{tiny_teachers['aa']},bb:{bad_teacher}"
    task = cache_task(tiny_data, teachers=spec, teacher_fallback=str(tiny_teachers["aa"]))
    with caplog.at_level(logging.INFO):
        teachers = TeacherSet.from_task(task)
    manifest = teachers.manifest()
    assert served(manifest) == {"aa": "teacher", "bb": "fallback"}
    bb = manifest[1]
    losses = bb["fallback"]["teacher"]["valid_loss"], bb["fallback"]["fallback"]["valid_loss"]
    assert losses[0] > math.log(len(task.source_dictionary)), "the scrambled teacher is worse than a uniform guess"
    assert losses[0] > losses[1]
    assert bb["path"] == str(tiny_teachers["aa"]) and bb["fallback"]["teacher"]["path"] == str(bad_teacher)
    assert teachers.models[1] is teachers.models[0], "languages served by one checkpoint share its model"
    assert "1 of 2 language(s) served by the fallback" in caplog.text
    # same masks, same models: the same choice on every start
    assert TeacherSet.from_task(cache_task(tiny_data, teachers=spec, teacher_fallback=str(tiny_teachers["aa"]))).manifest() == manifest
    # a run resumed with its own teachers again is a different teacher set
    own = TeacherSet.from_task(cache_task(tiny_data, teachers=spec)).manifest()
    with pytest.raises(BalkdError, match="served by the fallback"):
        check_resumed_manifest(manifest, own, reset_teachers=False)


def test_good_teachers_keep_their_languages_and_k_resident_holds(tiny_data, teacher_spec, bad_teacher):
    task = cache_task(tiny_data, teachers=teacher_spec, teacher_fallback=str(bad_teacher), max_resident_teachers=1)
    teachers = TeacherSet.from_task(task)
    assert served(teachers.manifest()) == {"aa": "teacher", "bb": "teacher"}
    assert all(r["fallback"]["fallback"]["valid_loss"] > r["fallback"]["teacher"]["valid_loss"] for r in teachers.manifest())
    assert len(teachers.models) == 0 and teachers.max_resident == 1


@pytest.mark.slow
def test_the_cache_records_which_model_served_each_language(tiny_data, tiny_teachers, bad_teacher, tmp_path):
    spec = f"aa:{tiny_teachers['aa']},bb:{bad_teacher}"
    out = tmp_path / "cache"
    assert cache_main(cache_argv(tiny_data, spec, out, "--teacher-fallback", str(tiny_teachers["aa"]))) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert served(manifest["teachers"]) == {"aa": "teacher", "bb": "fallback"}
    with_fallback = cache_task(tiny_data, teachers=spec, teacher_fallback=str(tiny_teachers["aa"]))
    assert served(TeacherCache.open(str(out), with_fallback).manifest()) == {"aa": "teacher", "bb": "fallback"}
    with pytest.raises(BalkdError, match="built with --teacher-fallback"):
        TeacherCache.open(str(out), cache_task(tiny_data, teachers=spec))
    with pytest.raises(BalkdError, match="another fallback"):
        TeacherCache.open(str(out), cache_task(tiny_data, teacher_fallback=str(bad_teacher)))


# ---------------------------------------------------------------------------------- the sweep's named configurations
def test_sweep_configurations_of_the_levers(monkeypatch, tmp_path):

    from helpers import load_example, toy_module

    pipeline = load_example("examples/toy/pipeline.py", "toy_pipeline")
    # the modules pipeline.py imports, as it imports them: a function is patched in the module that calls it
    configurations, evaluation, runner, stages = map(toy_module, ("configurations", "evaluation", "runner", "stages"))
    layout = stages.Layout(str(tmp_path), "shared", 1)
    calls = []
    monkeypatch.setattr(stages, "train_student", lambda layout, s, name: calls.append(name) or {"updates": 5, "tokens": 50, "wall_seconds": 1.0})
    monkeypatch.setattr(stages, "train_teachers", lambda layout, s, init_from="": calls.append(f"teachers<{init_from}") or
                        {"updates": 10, "tokens": 100, "wall_seconds": 2.0})
    hl_balanced = stages.hl_balanced_checkpoint(layout)
    assert stages.student_flags(layout, "Ours+fallback")[-2:] == ["--teacher-fallback", hl_balanced]
    assert stages.student_flags(layout, "Ours+init")[-1] == f"{layout.teachers_init}/teachers.json"
    assert stages.teachers_of(layout, None, "Ours+init") == {"updates": 15, "tokens": 150, "wall_seconds": 3.0}
    assert calls == ["HL-balanced", f"teachers<{hl_balanced}"], "teachers start from the HL-balanced student, trained first"
    assert stages.teachers_of(layout, None, "HL") is None
    flags = stages.student_flags(layout, "Ours+init+fallback")
    assert flags[flags.index("--teachers") + 1] == f"{layout.teachers_init}/teachers.json"
    assert flags[-2:] == ["--teacher-fallback", hl_balanced]
    # the born-again fallback: the Ours+fallback student, trained first with everything it needs, serves as fallback
    first = os.path.join(layout.checkpoints, "Ours+fallback", "checkpoint_last.pt")
    assert stages.student_flags(layout, "Ours+fallback2")[-2:] == ["--teacher-fallback", first]
    for directory in (layout.data, *(os.path.join(layout.checkpoints, n) for n in ("HL-balanced", "Ours+fallback"))):
        os.makedirs(directory, exist_ok=True)
    with open(os.path.join(layout.data, "dict.txt"), "w") as f:
        f.write("a 1\n")
    with open(os.path.join(layout.checkpoints, "Ours+fallback", "dict.txt"), "w") as f:
        f.write("written by its training\n")
    calls.clear()
    assert stages.teachers_of(layout, None, "Ours+fallback2") == {"updates": 20, "tokens": 200, "wall_seconds": 4.0}
    assert calls == ["HL-balanced", "teachers<", "Ours+fallback"], "HL-balanced and the teachers, then the first generation"
    # a student reused from an older sweep gets DATA/dict.txt beside it; one that training gave it is kept
    with open(os.path.join(layout.checkpoints, "HL-balanced", "dict.txt")) as f:
        assert f.read() == "a 1\n"
    with open(os.path.join(layout.checkpoints, "Ours+fallback", "dict.txt")) as f:
        assert f.read() == "written by its training\n"
    # the oracle diagnostic: the finalist's flags with the merged teacher set; the run's teachers, then the oracle ones
    flags = stages.student_flags(layout, "Ours+fallback+hard0.3+oracle")
    assert flags[flags.index("--teachers") + 1] == f"{layout.teachers_oracle}/teachers-with-oracle.json"
    assert flags[-4:] == ["--teacher-fallback", hl_balanced, "--hard-label-weight", "0.3"]
    monkeypatch.setattr(stages, "train_oracle_teachers", lambda layout, s: calls.append("oracle") or
                        {"updates": 7, "tokens": 70, "wall_seconds": 1.0})
    calls.clear()
    assert stages.teachers_of(layout, None, "Ours+fallback+hard0.3+oracle") == \
        {"updates": 22, "tokens": 220, "wall_seconds": 4.0}
    assert calls == ["HL-balanced", "teachers<", "oracle"]
    # a setting from the environment that is not a number: one error line naming the variable
    monkeypatch.setenv("PROBE_TRAIN_SENTENCES", "thirty")
    with pytest.raises(SystemExit, match=r"^pipeline.py: error: PROBE_TRAIN_SENTENCES='thirty' is not an int$"):
        pipeline.settings_from_env(pipeline.Settings())
    monkeypatch.setenv("PROBE_TRAIN_SENTENCES", "30")
    assert pipeline.settings_from_env(pipeline.Settings()).probe_train_sentences == 30
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # main() sets it for its children: never for the rest of the tests
    monkeypatch.setenv("PROBE_POOLING", "max")
    with pytest.raises(SystemExit, match=r"^pipeline.py: error: PROBE_POOLING='max' is not one of first, last, mean$"):
        pipeline.main(["sweep", "--out", str(tmp_path / "never"), "--presets", "shared"])
    assert not os.path.exists(tmp_path / "never")
    monkeypatch.delenv("PROBE_POOLING")
    # the probes' control (untrained architecture) comes with HL-balanced, whose checkpoint gives the architecture
    assert configurations.with_control(["HL", "HL-balanced", "Ours"]) == ["HL", "HL-balanced", "Ours", configurations.CONTROL]
    assert configurations.with_control(["HL", "Ours"]) == ["HL", "Ours"]
    ran = []
    monkeypatch.setattr(runner, "run", lambda cmd, **kw: ran.append(cmd) or 0.0)
    settings = pipeline.Settings(out=str(tmp_path))
    evaluation.report(settings, "shared", [layout], ["HL-balanced", "Ours"], str(tmp_path / "report"))
    models = [a for a in ran[-1] if a.startswith("--model=")]
    assert models == [f"--model={n}={layout.results}/{n}" for n in ("HL-balanced", "Ours", configurations.CONTROL)]
    assert [a for a in ran[-1] if a.startswith("--compare=")] == ["--compare=Ours:HL-balanced"], "the control is never compared"
    assert ran[-1][-2:] == ["--output-dir", str(tmp_path / "report")], "the demo's report: no comparison with the control"
    evaluation.report(settings, "shared", [layout], ["HL-balanced", "Ours"], str(tmp_path / "report"), against_control=True)
    assert [a for a in ran[-1] if a.startswith("--compare=")] == [f"--compare={n}:{configurations.CONTROL}" for n in ("HL-balanced", "Ours")]
    assert ran[-1][-2:] == ["--output-dir", str(tmp_path / "report" / "control")]
    # few-shot probing: its own results directory, holding links to the whole evaluation's LM scores
    settings.probe_train_sentences = 30
    evaluation.report(settings, "shared", [layout], ["HL-balanced", "Ours"], str(tmp_path / "report"))
    assert [a for a in ran[-1] if a.startswith("--model=")][0] == f"--model=HL-balanced={layout.results}-probe30/HL-balanced"
    monkeypatch.setattr(evaluation, "languages", lambda layout: "de,tr")
    os.makedirs(os.path.join(layout.results, "Ours"))
    with open(os.path.join(layout.results, "Ours", "lm.json"), "w") as f:
        f.write("{}")
    evaluation.probe_variant(layout, settings, "Ours", "CKPT")
    probe = ran[-1]
    assert probe[0] == "balkd-probe" and probe[probe.index("--train-sentences") + 1] == "30"
    assert "--word-pooling" not in probe, "first subwords: balkd-probe's default"
    assert probe[probe.index("--output-dir") + 1] == f"{layout.results}-probe30"
    linked = os.path.join(f"{layout.results}-probe30", "Ours", "lm.json")
    assert os.path.islink(linked) and os.path.samefile(linked, os.path.join(layout.results, "Ours", "lm.json"))
    assert not os.path.lexists(os.path.join(f"{layout.results}-probe30", "Ours", "lm_items.npz"))
    evaluation.probe_variant(layout, settings, "Ours", "CKPT")
    assert ran[-1] is probe, "a finished few-shot evaluation is skipped"
    # another word pooling: probed again into a directory of its own, with or without few-shot probes
    settings.probe_pooling = "mean"
    evaluation.probe_variant(layout, settings, "Ours", "CKPT")
    assert ran[-1][ran[-1].index("--word-pooling") + 1] == "mean"
    assert ran[-1][ran[-1].index("--output-dir") + 1] == f"{layout.results}-probe30-mean"
    assert os.path.islink(os.path.join(f"{layout.results}-probe30-mean", "Ours", "lm.json"))
    settings.probe_train_sentences = 0
    evaluation.probe_variant(layout, settings, "Ours", "CKPT")
    assert "--train-sentences" not in ran[-1] and ran[-1][ran[-1].index("--output-dir") + 1] == f"{layout.results}-mean"
    evaluation.report(settings, "shared", [layout], ["HL-balanced", "Ours"], str(tmp_path / "report"))
    assert [a for a in ran[-1] if a.startswith("--model=")][0] == f"--model=HL-balanced={layout.results}-mean/HL-balanced"
    # the student from the teacher cache trains for the epochs the HL-balanced student's updates spanned
    os.makedirs(layout.checkpoints, exist_ok=True)
    with open(os.path.join(layout.checkpoints, "HL-balanced.log"), "w") as f:
        f.write("| INFO | fairseq.trainer | begin training epoch 1\n| INFO | fairseq.trainer | begin training epoch 12\n")
    flags = stages.student_flags(layout, "Ours+cache")
    assert flags[flags.index("--teacher-cache") + 1] == os.path.join(layout.cache, "cache")
    assert flags[-2:] == ["--max-epoch", "12"]
    assert stages.student_flags(layout, "Ours+cache+tail")[-4:-2] == ["--topk-tail", "uniform"]
    monkeypatch.setattr(stages, "build_cache", lambda layout, s, name: {"updates": 0, "tokens": 0, "wall_seconds": 4.0})
    assert stages.teachers_of(layout, None, "Ours+cache") == {"updates": 10, "tokens": 100, "wall_seconds": 6.0}, \
        "the HL-balanced student only tells the cache how many epochs to hold: it is not part of the cache's cost"


def test_the_demo_lanes_run_a_job_only_after_its_dependencies_and_stop_on_a_failure():
    import threading
    import time

    from helpers import toy_module

    runner = toy_module("runner")  # what examples/toy/pipeline.py runs its jobs with
    log, lock = [], threading.Lock()

    def work(name, seconds=0.05):
        def run():
            with lock:
                log.append(("start", name))
            time.sleep(seconds)
            with lock:
                log.append(("end", name))
            return name.upper()
        return run

    jobs = [runner.Job("t0", work("t0")), runner.Job("t1", work("t1", 0.15)),
            runner.Job("t", work("t"), after=("t0", "t1")), runner.Job("ours", work("ours"), after=("t",)),
            runner.Job("hl", work("hl"))]
    assert runner.run_jobs(jobs, lanes=2).results == {name: name.upper() for name in ("t0", "t1", "t", "ours", "hl")}
    for job in jobs:
        for dependency in job.after:
            assert log.index(("end", dependency)) < log.index(("start", job.name)), log
    assert log[:2] == [("start", "t0"), ("start", "t1")]  # two lanes: the first two ready jobs at once
    assert log.index(("start", "hl")) < log.index(("end", "t1")), "a free lane takes the next ready job"

    def fail():
        raise SystemExit("failed (exit 2): balkd-train ...")
    with pytest.raises(SystemExit, match="failed"):
        runner.run_jobs([runner.Job("a", fail), runner.Job("b", work("b"), after=("a",))], lanes=2)
    with pytest.raises(SystemExit, match="wait for jobs that never run"):
        runner.run_jobs([runner.Job("b", work("b"), after=("missing",))], lanes=2)


def test_sweep_over_data_seeds_keeps_each_benchmark_apart_and_reports_them_as_a_level(monkeypatch, tmp_path):

    from helpers import load_example, toy_module

    pipeline = load_example("examples/toy/pipeline.py", "toy_pipeline_data_seeds")
    evaluation, runner, stages = map(toy_module, ("evaluation", "runner", "stages"))  # as pipeline.py imports them
    first, second = stages.Layout(str(tmp_path), "shared", 3), stages.Layout(str(tmp_path), "shared", 3, data_seed=2)
    assert (first.bench, first.run) == (str(tmp_path / "shared" / "benchmark"), str(tmp_path / "shared" / "seed3"))
    assert (second.bench, second.run) == (str(tmp_path / "shared" / "benchmark-data2"), str(tmp_path / "shared" / "data2-seed3"))
    assert second.oracle_bench == str(tmp_path / "shared" / "benchmark-data2-oracle")
    ran = []
    monkeypatch.setattr(runner, "run", lambda cmd, **kw: ran.append(cmd) or 0.0)
    monkeypatch.setattr(evaluation, "languages", lambda layout: "de,tr")
    settings = pipeline.Settings(out=str(tmp_path))
    evaluation.report(settings, "shared", [first, second], ["HL-balanced", "Ours"], str(tmp_path / "report"))
    assert "--across-benchmarks" in ran[-1]
    assert [a for a in ran[-1] if a.startswith("--model=Ours")] == [f"--model=Ours={r}/results/Ours" for r in (first.run, second.run)]
    evaluation.report(settings, "shared", [first], ["HL-balanced", "Ours"], str(tmp_path / "report"))
    assert "--across-benchmarks" not in ran[-1]
    # the data seed, not the settings', draws the benchmark and its evaluation masks and probes
    ran.clear()
    stages.make_benchmark(second, settings)
    evaluation.evaluate_whole(second, settings, "HL", "CKPT")
    assert [cmd[cmd.index("--seed") + 1] for cmd in ran] == ["2", "2", "2", "2"]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # main() sets it for its children: never for the rest of the tests
    with pytest.raises(SystemExit, match="--data-seeds takes distinct"):
        pipeline.main(["sweep", "--out", str(tmp_path), "--data-seeds", "1,1"])
