"""Distributed equivalence: 2 gloo processes (torchrun, or SLURM's variables) == 1 process with --update-freq 2.

fairseq shuffles one list of batches per epoch and deals them out round-robin: with 2 workers,
update k trains on batches 2k (rank 0) and 2k+1 (rank 1); one process with ``--update-freq 2``
accumulates the same two consecutive batches. With an even number of equal-size batches per epoch
(``--samples-per-language``, ``--batch-size``), no dropout, and masks that are a pure function of
(seed, epoch, index), both runs see the same samples in every update, so their per-update losses
may differ only by float summation order.

fairseq logs losses rounded to 3-4 decimals, too coarse for a 1e-4 relative comparison, so both
runs go through a small wrapper that only turns that rounding off (``meters.safe_round``); the
JSON log then carries 6 significant digits.
"""
import os
import socket
import subprocess
import sys

import pytest
import torch
from helpers import distill_args, json_log_records

import balkd_fairseq  # noqa: F401  (allowlists what fairseq checkpoints contain)
from balkd_fairseq.cli import train as balkd_train
from balkd_fairseq.errors import BalkdError

UPDATES = 8  # two epochs of 16 samples in batches of 2: 4 updates per epoch either way
COMPARED = ("loss", "distill_loss", "hard_loss", "distill_aa", "distill_bb", "teacher_entropy", "top1_agree", "gnorm")
MAX_RELATIVE_DIFFERENCE = 1e-4

UNROUNDED_BALKD_TRAIN = """
import sys
from fairseq.logging import meters
meters.safe_round = lambda number, ndigits: number  # log losses unrounded ("{:g}": 6 significant digits)
from balkd_fairseq.cli.train import main
sys.exit(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra):
    """This environment without any launcher's variables (pytest itself may run under torchrun or SLURM)."""
    launcher_vars = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in launcher_vars and not k.startswith("SLURM_")}
    return dict(env, OMP_NUM_THREADS="1", **extra)


def run_unrounded(script, args, nproc):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                "--master_port", str(free_port())] if nproc > 1 else [sys.executable]
    proc = subprocess.run([*launcher, str(script), *args], env=clean_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def run_unrounded_as_slurm_tasks(script, args, ntasks):
    """What `srun --ntasks N balkd-train ...` starts: N processes that differ only in SLURM_PROCID/LOCALID."""
    port = str(free_port())
    procs = [
        subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=clean_env(SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank), SLURM_NTASKS=str(ntasks),
                                       SLURM_JOB_ID="4242", MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
        for rank in range(ntasks)
    ]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, out[-2000:] + err[-4000:]
    return subprocess.CompletedProcess(procs[0].args, 0, "".join(o for o, _ in outputs), "".join(e for _, e in outputs))


def per_update(proc):
    records = json_log_records(proc.stdout + proc.stderr, "train_inner")
    by_update = {int(r["num_updates"]): r for r in records}
    assert sorted(by_update) == list(range(1, UPDATES + 1)) and len(records) == UPDATES  # rank 0 logs, once
    return by_update


def relative_difference(a, b) -> float:
    a, b = float(a), float(b)
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


SAME = ["--dropout", "0", "--attention-dropout", "0", "--batch-size", "2", "--samples-per-language", "8",
        "--disable-validation"]


@pytest.fixture(scope="module")
def unrounded_script(tmp_path_factory):
    script = tmp_path_factory.mktemp("launch") / "balkd_train_unrounded.py"
    script.write_text(UNROUNDED_BALKD_TRAIN)
    return script


@pytest.fixture(scope="module")
def one_process(tiny_data, teacher_spec, unrounded_script, tmp_path_factory):
    """The reference: one process, --update-freq 2 (per-update logs, save dir)."""
    save = tmp_path_factory.mktemp("one") / "save"
    proc = run_unrounded(unrounded_script, distill_args(tiny_data, save, teacher_spec, UPDATES,
                                                        extra=[*SAME, "--update-freq", "2"]), nproc=1)
    return per_update(proc), save


def assert_equivalent(two, two_save, one_process) -> float:
    assert "distributed init (rank 1)" in two.stdout + two.stderr
    one_logs, one_save = one_process
    two_logs = per_update(two)
    worst = 0.0
    for update in range(1, UPDATES + 1):
        # the same number of samples and tokens in every update
        assert float(two_logs[update]["bsz"]) == float(one_logs[update]["bsz"]) == 4.0, (two_logs[update], one_logs[update])
        assert float(two_logs[update]["wpb"]) == float(one_logs[update]["wpb"])
        for key in COMPARED:
            two_value, one_value = two_logs[update].get(key), one_logs[update].get(key)
            assert (two_value is None) == (one_value is None), (update, key, two_logs[update], one_logs[update])
            if two_value is not None:  # None / absent: a language without masked positions in this update
                worst = max(worst, relative_difference(two_value, one_value))
    assert worst <= MAX_RELATIVE_DIFFERENCE, worst

    two_model = torch.load(two_save / "checkpoint_last.pt", weights_only=True)["model"]
    one_model = torch.load(one_save / "checkpoint_last.pt", weights_only=True)["model"]
    for name, tensor in one_model.items():
        torch.testing.assert_close(two_model[name], tensor, rtol=1e-4, atol=1e-6, msg=name)
    return worst


@pytest.mark.slow
def test_two_gloo_processes_under_torchrun_match_one_process_with_update_freq_2(
        tiny_data, teacher_spec, unrounded_script, one_process, tmp_path):
    save = tmp_path / "two"
    two = run_unrounded(unrounded_script, distill_args(tiny_data, save, teacher_spec, UPDATES, extra=SAME), nproc=2)
    worst = assert_equivalent(two, save, one_process)
    print(f"torchrun: max relative difference of per-update logged values: {worst:.2e}")


@pytest.mark.slow
def test_two_slurm_tasks_match_one_process_with_update_freq_2(tiny_data, teacher_spec, unrounded_script, one_process, tmp_path):
    save = tmp_path / "slurm"
    two = run_unrounded_as_slurm_tasks(unrounded_script, distill_args(tiny_data, save, teacher_spec, UPDATES, extra=SAME), 2)
    worst = assert_equivalent(two, save, one_process)
    print(f"SLURM: max relative difference of per-update logged values: {worst:.2e}")


# ----------------------------------------------------------------------------- balkd-train's flags
TORCHRUN = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "n0", "MASTER_PORT": "29500"}
SLURM = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123", "SLURM_JOB_NODELIST": "n[0-1]"}


def flags(out):
    """The flags balkd-train added, as {flag: value or None}."""
    added, i = {}, 0
    while i < len(out):
        if out[i].startswith("--"):
            value = out[i + 1] if i + 1 < len(out) and not out[i + 1].startswith("--") else None
            added[out[i]] = value
            i += 2 if value is not None else 1
        else:
            i += 1
    return added


def test_torchrun_on_cpu_sets_rank_world_size_and_gloo(tiny_data):
    out = balkd_train.fairseq_args([str(tiny_data), "--task", "balanced_distill"], TORCHRUN, on_cpu=True)
    got = flags(out)
    assert got["--distributed-world-size"] == "4" and got["--distributed-rank"] == "1" and got["--device-id"] == "1"
    assert got["--distributed-init-method"] == "env://" and "--distributed-no-spawn" in got and "--cpu" in got
    assert got["--distributed-backend"] == "gloo" and got["--ddp-backend"] == "legacy_ddp"
    assert got["--user-dir"] == balkd_train.PLUGIN_DIR and got["--valid-subset"] == "valid,valid_aa,valid_bb"


def test_torchrun_on_gpu_keeps_fairseqs_gpu_backends():
    got = flags(balkd_train.fairseq_args(["DATA", "--task", "balanced_distill"], TORCHRUN, on_cpu=False, gpus=8))
    assert got["--distributed-rank"] == "1" and got["--device-id"] == "1"
    assert "--cpu" not in got and "--distributed-backend" not in got and "--ddp-backend" not in got


def test_slurm_sets_rank_from_procid_and_device_from_localid():
    got = flags(balkd_train.fairseq_args(["DATA"], SLURM, on_cpu=False, gpus=8))
    assert got["--distributed-world-size"] == "8" and got["--distributed-rank"] == "5" and got["--device-id"] == "1"
    # srun --gpus-per-task 1: every task sees only its own GPU, as cuda:0
    assert flags(balkd_train.fairseq_args(["DATA"], SLURM, on_cpu=False, gpus=1))["--device-id"] == "0"
    assert balkd_train.launcher_env(dict(SLURM, SLURM_NTASKS="1")) is None  # a one-task job: a single process
    extra = balkd_train.slurm_master_env(dict(SLURM, MASTER_ADDR="n0"))
    assert extra == {"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1", "MASTER_PORT": str(20000 + 123)}


def test_slurm_without_master_address_or_scontrol_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BalkdError, match="SLURM: cannot find the master node"):
        balkd_train.slurm_master_env(SLURM)


def test_single_process_and_users_own_flags_are_left_alone(tiny_data):
    assert flags(balkd_train.fairseq_args(["DATA"], {}, on_cpu=False, gpus=1)) == {"--user-dir": balkd_train.PLUGIN_DIR}
    user = ["--task", "balanced_distill", "--save-dir", "ckpt", str(tiny_data), "--ddp-backend", "no_c10d",
            "--distributed-backend", "nccl", "--valid-subset", "valid", "--user-dir", "/mine"]
    got = flags(balkd_train.fairseq_args(user, TORCHRUN, on_cpu=True))
    assert got["--ddp-backend"] == "no_c10d" and got["--distributed-backend"] == "nccl"
    assert got["--valid-subset"] == "valid" and got["--user-dir"] == "/mine"


def test_per_language_valid_finds_data_after_flags(tiny_data, tmp_path):
    (tmp_path / "ckpt").mkdir()
    args = ["--task", "balanced_distill", "--save-dir", str(tmp_path / "ckpt"), str(tiny_data)]
    assert balkd_train.per_language_valid(args) == "valid,valid_aa,valid_bb"
    assert balkd_train.per_language_valid([*args, "--languages", "bb"]) == "valid,valid_bb"
    assert balkd_train.per_language_valid(["--task", "masked_lm", str(tiny_data)]) is None
