"""Exact resume: SIGKILL a distillation run mid-epoch, resume from checkpoint_last.pt, get the same losses.

The uninterrupted and the killed-then-resumed run use the same seed and flags (dropout on: fairseq
reseeds every update from seed + update number). After the resume point every logged per-update
loss must be identical, through the rest of the interrupted epoch (its balanced draw and batch order
rebuilt from (seed, epoch)) and into the next epoch's new draw (``--balance-draw per_epoch``, the case
with the most state to rebuild); the final weights must be identical too.
"""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import TINY_ARCH, USER_DIR, distill_args, json_log_records, run_fairseq_train

import balkd_fairseq  # noqa: F401  (allowlists what fairseq checkpoints contain)
from balkd_fairseq import atomic_checkpoints

LOSS_KEYS = ("loss", "distill_loss", "hard_loss", "distill_aa", "distill_bb", "gnorm")
SAVE_EVERY = 5
TOTAL_UPDATES = 22  # ~1.5 epochs at batch size 2 (each epoch: 2 x the smallest language's blocks)
# every run of a comparison on one thread, whatever the environment says: with several, CPU kernels may sum in
# another order and the weights differ in the last bits
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def resume_args(data, save, teachers, updates):
    extra = ["--save-interval-updates", str(SAVE_EVERY), "--disable-validation", "--balance-draw", "per_epoch"]
    args = distill_args(data, save, teachers, updates=updates, extra=extra)
    args[args.index("--batch-size") + 1] = "2"
    return args


def kill_after_first_mid_epoch_save(args) -> str:
    """Start fairseq-train, SIGKILL it as soon as it logs a saved update checkpoint; return its stdout."""
    cmd = [sys.executable, "-m", "fairseq_cli.train", "--user-dir", USER_DIR, *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "Saved checkpoint" in line and f"@ {SAVE_EVERY} updates" in line:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(lines[-40:])
    return "".join(lines)


def per_update(stdout):
    return {int(r["num_updates"]): r for r in json_log_records(stdout, "train_inner")}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_identical_losses(tiny_data, teacher_spec, tmp_path):
    reference = run_fairseq_train(resume_args(tiny_data, tmp_path / "ref", teacher_spec, TOTAL_UPDATES), env=ONE_THREAD)
    expected = per_update(reference.stdout)
    assert sorted(expected) == list(range(1, TOTAL_UPDATES + 1))
    assert {r["epoch"] for r in expected.values()} == {1, 2}, "the run must cross into a second epoch"

    save = tmp_path / "killed"
    kill_after_first_mid_epoch_save(resume_args(tiny_data, save, teacher_spec, 10 * TOTAL_UPDATES))
    state = torch.load(save / "checkpoint_last.pt", weights_only=True)
    resume_point = state["optimizer_history"][-1]["num_updates"]
    iterator = state["extra_state"]["train_iterator"]
    assert iterator["epoch"] == 1 and 0 < iterator["iterations_in_epoch"] == resume_point, "not a mid-epoch checkpoint"
    assert expected[resume_point]["epoch"] == 1 and expected[resume_point + 1]["epoch"] == 1

    resumed = run_fairseq_train(resume_args(tiny_data, save, teacher_spec, TOTAL_UPDATES), env=ONE_THREAD)
    assert f"Loaded checkpoint {save / 'checkpoint_last.pt'} (epoch 1 @ {resume_point} updates)" in resumed.stdout
    assert "balance=subsample epoch 1 (draw 1)" in resumed.stdout and "balance=subsample epoch 2 (draw 2)" in resumed.stdout
    got = per_update(resumed.stdout)
    assert sorted(got) == list(range(resume_point + 1, TOTAL_UPDATES + 1))
    for update, record in got.items():
        for key in LOSS_KEYS:
            assert record.get(key) == expected[update].get(key), (update, key, record, expected[update])

    final = torch.load(save / "checkpoint_last.pt", weights_only=True)["model"]
    reference_final = torch.load(tmp_path / "ref" / "checkpoint_last.pt", weights_only=True)["model"]
    assert final.keys() == reference_final.keys()
    for name, tensor in reference_final.items():
        assert torch.equal(final[name], tensor), name


# ----------------------------------------------------------------------------- a kill while saving
def test_fairseq_copies_checkpoints_atomically_only_in_runs_of_the_plugin():
    """fairseq copies a saved checkpoint to checkpoint_last.pt / checkpoint_best.pt through the PathManager
    of checkpoint_utils; a run of the plugin's task (not its import) makes that one atomic."""
    import subprocess
    import sys

    probe = ("import balkd_fairseq; from fairseq import checkpoint_utils; from fairseq.file_io import PathManager;"
             "print(checkpoint_utils.PathManager is PathManager);"
             "from balkd_fairseq.task_run import start_task_run; start_task_run();"
             "print(checkpoint_utils.PathManager.__name__, PathManager.copy is not checkpoint_utils.PathManager.copy)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "CheckpointPathManager", "True"], out


def test_a_copy_killed_midway_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    from balkd_fairseq import outputs

    PathManager = atomic_checkpoints.CheckpointPathManager
    src, dst = tmp_path / "checkpoint_1_10.pt", tmp_path / "checkpoint_last.pt"
    src.write_bytes(b"new" * 1000)
    dst.write_bytes(b"previous complete checkpoint")

    def copy_half_then_die(f_in, f_out, *args):
        f_out.write(f_in.read()[:1500])
        raise KeyboardInterrupt  # stands in for the kill

    monkeypatch.setattr(outputs.shutil, "copyfileobj", copy_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        PathManager.copy(str(src), str(dst), overwrite=True)
    assert dst.read_bytes() == b"previous complete checkpoint"
    monkeypatch.undo()
    assert PathManager.copy(str(src), str(dst), overwrite=True)
    assert dst.read_bytes() == src.read_bytes() and sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_1_10.pt", "checkpoint_last.pt"]


# ----------------------------------------------------------------------------- resuming with other data settings
# These runs check what fairseq-train says and writes, not how its process ends: forked warm (tests/warm.py).
def hard_label_args(data, save, updates, extra=()):
    return [str(data), "--task", "balanced_distill", "--criterion", "masked_lm", *TINY_ARCH, "--tokens-per-sample", "32",
            "--batch-size", "2", "--optimizer", "adam", "--lr", "0.001", "--max-update", str(updates),
            "--save-dir", str(save), "--cpu", "--seed", "1", "--num-workers", "0", "--disable-validation",
            "--no-epoch-checkpoints", "--required-batch-size-multiple", "1", *extra]


@pytest.mark.slow
def test_resume_with_changed_data_settings_is_refused_unless_reset(tiny_data, tmp_path):
    save = tmp_path / "s"
    run_fairseq_train(hard_label_args(tiny_data, save, 2), warm=True)
    last = save / "checkpoint_last.pt"
    before = last.read_bytes()
    for extra, flag, old, new in [
        (["--balance", "upsample"], "--balance", "subsample", "upsample"),
        (["--languages", " bb , aa "], "--languages", "aa,bb", "bb,aa"),
        (["--sampling-alpha", "0.5"], "--sampling-alpha", 0.3, 0.5),
        (["--batch-by-language"], "--batch-by-language", False, True),
    ]:
        proc = run_fairseq_train(hard_label_args(tiny_data, save, 4, extra), check=False, warm=True)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1] == (
            f"balkd-fairseq: error: cannot resume {last} with {flag} {new!r}: the run was started with {old!r} "
            "(pass --reset-data-settings to continue with the new value on purpose)"
        )
        assert last.read_bytes() == before
    resumed = run_fairseq_train(hard_label_args(tiny_data, save, 4, ["--balance", "upsample", "--reset-data-settings"]),
                                warm=True)
    assert f"Loaded checkpoint {last} (epoch 1 @ 2 updates)" in resumed.stdout
    assert torch.load(last, weights_only=True)["cfg"]["task"]["balance"] == "upsample"


@pytest.mark.slow
def test_resume_of_a_checkpoint_without_recorded_settings_is_refused(tiny_data, tmp_path):
    save = tmp_path / "s"
    run_fairseq_train(hard_label_args(tiny_data, save, 1), warm=True)
    state = torch.load(save / "checkpoint_last.pt", weights_only=True)
    state["cfg"]["task"]["languages"] = ""
    state["task_state"] = {}
    torch.save(state, save / "checkpoint_last.pt")
    proc = run_fairseq_train(hard_label_args(tiny_data, save, 2), check=False, warm=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "does not record its data settings" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_a_finished_run_is_not_trained_past_its_max_update(tiny_data, tmp_path):
    save = tmp_path / "finished"
    run_fairseq_train(hard_label_args(tiny_data, save, 2), warm=True)
    last = save / "checkpoint_last.pt"
    before = last.read_bytes()
    again = run_fairseq_train(hard_label_args(tiny_data, save, 2), warm=True)
    assert "the run is finished, nothing to do" in again.stderr and again.returncode == 0
    assert last.read_bytes() == before, "a finished run must not train one more update and save again"
    raised = run_fairseq_train(hard_label_args(tiny_data, save, 3), warm=True)
    assert "--max-update raised from 2 to 3" in raised.stdout + raised.stderr
    from balkd_fairseq.checkpoints import load_checkpoint_state

    assert load_checkpoint_state(str(last), "test")["optimizer_history"][-1]["num_updates"] == 3


@pytest.mark.slow
def test_weights_of_another_dictionary_are_refused_whatever_brings_them_in(tiny_data, tmp_path):
    save = tmp_path / "s"
    run_fairseq_train(hard_label_args(tiny_data, save, 1), warm=True)
    last = save / "checkpoint_last.pt"
    other = Path(shutil.copytree(tiny_data, tmp_path / "other"))
    lines = (other / "dict.txt").read_text().splitlines()
    lines[0], lines[1] = lines[1], lines[0]  # the same size, other symbols at the first two ids
    (other / "dict.txt").write_text("\n".join(lines) + "\n")
    for i, (updates, extra) in enumerate([
        (4, ["--finetune-from-model", str(last)]),
        (4, ["--restore-file", str(last), "--reset-optimizer", "--reset-dataloader"]),
        (4, ["--restore-file", str(last), "--reset-data-settings"]),
        (1, ["--restore-file", str(last)]),  # a finished run's checkpoint: refused, not "finished"
    ]):
        fresh = tmp_path / f"fresh{i}"
        proc = run_fairseq_train(hard_label_args(other, fresh, updates, extra), check=False, warm=True)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        line = proc.stderr.strip().splitlines()[-1]
        flag = extra[0]
        assert f"cannot start from {last} ({flag}): DATA dictionary {other / 'dict.txt'} is not the dictionary" in line
        assert "first difference at symbol" in line, line
        assert not list(fresh.glob("*.pt"))
