"""balkd-train: fairseq-train with the plugin loaded and distributed flags taken from the launcher.

    torchrun --nproc_per_node 8 $(which balkd-train) DATA --task balanced_distill ...
    srun balkd-train DATA --task balanced_distill ...          (one task per GPU, SLURM)
    balkd-train DATA --task balanced_distill ...               (one process)

It adds what the user did not give: ``--user-dir`` (this plugin); under torchrun (RANK, WORLD_SIZE,
LOCAL_RANK) or SLURM (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID) ``--distributed-world-size``,
``--distributed-rank``, ``--device-id`` (the local rank; 0 when the launcher gives each process a
single GPU), ``--distributed-init-method env://`` and ``--distributed-no-spawn``; on CPU (``--cpu``
or no CUDA) ``--cpu --distributed-backend gloo --ddp-backend legacy_ddp`` (PyTorch DDP in fairseq
passes GPU device ids); and for
``--task balanced_distill`` without ``--valid-subset`` one validation subset per language
(``valid,valid_<lang>,...``) so every language's validation loss is logged. Every other argument
goes to fairseq-train unchanged.
"""
import atexit
import logging
import os
import subprocess
import sys
from typing import Dict, List, Optional

from ..data.languages import SUBSET_LANGUAGE_SEPARATOR, parse_languages, resolve_languages
from ..data.resume_settings import read_records, resumed_checkpoint, stop_if_finished
from ..errors import BalkdError
from ..task_run import stop_prefetch_threads
from .common import run_cli

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launcher_env(env: Dict[str, str]) -> Optional[Dict[str, str]]:
    """World size, rank, local rank (as strings) from torchrun or SLURM; None for a single process."""
    if "RANK" in env and "WORLD_SIZE" in env:
        return {"world_size": env["WORLD_SIZE"], "rank": env["RANK"], "local_rank": env.get("LOCAL_RANK", "0")}
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return {"world_size": env["SLURM_NTASKS"], "rank": env["SLURM_PROCID"], "local_rank": env.get("SLURM_LOCALID", "0")}
    return None


def slurm_master_env(env: Dict[str, str]) -> Dict[str, str]:
    """MASTER_ADDR/MASTER_PORT for env:// under SLURM: the job's first node, a port from the job id."""
    extra = {"WORLD_SIZE": env["SLURM_NTASKS"], "RANK": env["SLURM_PROCID"], "LOCAL_RANK": env.get("SLURM_LOCALID", "0")}
    if "MASTER_ADDR" not in env:
        try:
            hosts = subprocess.run(["scontrol", "show", "hostnames", env["SLURM_JOB_NODELIST"]],
                                   capture_output=True, text=True, check=True).stdout.split()
        except (OSError, subprocess.CalledProcessError, KeyError):
            raise BalkdError("SLURM: cannot find the master node (set MASTER_ADDR, or run where `scontrol` works)") from None
        extra["MASTER_ADDR"] = hosts[0]
    if "MASTER_PORT" not in env:
        extra["MASTER_PORT"] = str(20000 + int(env.get("SLURM_JOB_ID", "0")) % 20000)
    return extra


def has_flag(args: List[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def flag_value(args: List[str], flag: str) -> Optional[str]:
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def check_arch(args: List[str], where: str = "") -> None:
    """fairseq-train without --arch ends in a RuntimeError with no message: name the flag instead."""
    short = any(a.startswith("-a") and not a.startswith("--") for a in args)  # -a NAME or -aNAME
    if not (has_flag(args, "--arch") or short or has_flag(args, "--help") or has_flag(args, "-h")):
        raise BalkdError(f"--arch is missing{where}: fairseq-train needs a model architecture, e.g. --arch roberta_base")


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def per_language_valid(args: List[str]) -> Optional[str]:
    """'valid,valid_de,valid_en' for a balanced_distill run without --valid-subset (the task's languages)."""
    if flag_value(args, "--task") != "balanced_distill" or has_flag(args, "--valid-subset"):
        return None
    spec = flag_value(args, "--languages") or ""
    root = data_root(args)
    if root is not None:
        langs = resolve_languages(root, spec)
    elif spec.strip(", "):
        langs = parse_languages(spec)
    else:
        return None
    return ",".join(["valid"] + [f"valid{SUBSET_LANGUAGE_SEPARATOR}{lang}" for lang in langs])


def data_root(args: List[str]) -> Optional[str]:
    """DATA: the first argument not starting with '-' that is a directory holding dict.txt."""
    for arg in args:
        root = arg.split(os.pathsep)[0]
        if not arg.startswith("-") and os.path.isfile(os.path.join(root, "dict.txt")):
            return root
    return None


def fairseq_args(args: List[str], env: Dict[str, str], on_cpu: bool, gpus: int = 0) -> List[str]:
    """The fairseq-train arguments: ``args`` plus the flags the user did not give (``gpus``: visible GPUs)."""
    out = list(args)

    def add(flag, *values):
        if not has_flag(out, flag):
            out.extend([flag, *values])

    add("--user-dir", PLUGIN_DIR)
    valid = per_language_valid(out)
    if valid:
        add("--valid-subset", valid)
    if on_cpu:
        add("--cpu")
    dist = launcher_env(env)
    if dist is not None and int(dist["world_size"]) > 1:
        add("--distributed-world-size", dist["world_size"])
        add("--distributed-rank", dist["rank"])
        # a launcher that binds one GPU per task (srun --gpus-per-task 1) leaves each process one device: cuda:0
        add("--device-id", "0" if not on_cpu and gpus == 1 else dist["local_rank"])
        add("--distributed-init-method", "env://")
        add("--distributed-no-spawn")
        if on_cpu:
            add("--distributed-backend", "gloo")
            add("--ddp-backend", "legacy_ddp")
    return out


def check_cpu_world_size(args: List[str], env: Dict[str, str], on_cpu: bool) -> None:
    """fairseq starts one process per GPU by itself; on CPU the processes come from a launcher (or are started
    by hand, each with --distributed-init-method and its --distributed-rank)."""
    size = flag_value(args, "--distributed-world-size")
    by_hand = any(has_flag(args, flag) for flag in ("--distributed-init-method", "--distributed-port"))
    if on_cpu and not by_hand and launcher_env(env) is None and size is not None and size.isdigit() and int(size) > 1:
        raise BalkdError(f"--distributed-world-size {size} on CPU: fairseq starts processes only one per GPU; start "
                         f"them with torchrun --nproc_per_node {size} balkd-train ... (or srun), without this flag")


def _main(argv: Optional[List[str]]) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
    gpus = visible_gpus()
    on_cpu = has_flag(args, "--cpu") or gpus == 0
    env = dict(os.environ)
    if "RANK" not in env and "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        os.environ.update(slurm_master_env(env))
    check_arch(args)
    check_cpu_world_size(args, env, on_cpu)
    full = fairseq_args(args, env, on_cpu, gpus)
    from fairseq_cli import train as fairseq_train

    # the same logging fairseq-train sets up (an earlier import may have configured the root logger)
    logging.basicConfig(
        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", datefmt="%Y-%m-%d %H:%M:%S",
        level=os.environ.get("LOGLEVEL", "INFO").upper(), stream=sys.stdout, force=True,
    )
    sys.argv = ["fairseq-train"] + full
    stop_if_run_finished()
    # any task, the stock masked_lm of balkd-train-teachers included: a run that stops at --max-update
    # mid-epoch must not abort at exit in fairseq's prefetch thread
    atexit.register(stop_prefetch_threads)
    fairseq_train.cli_main()
    return 0


def stop_if_run_finished() -> None:
    """Exit 0 with a message when the run in ``--save-dir`` already reached ``--max-update`` (any task).

    fairseq-train would resume it, take one update past the limit and overwrite its checkpoints;
    ``balanced_distill`` checks this itself (after its dictionary and settings checks), the stock tasks
    (e.g. the teachers' masked_lm) do not.
    """
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(options.get_training_parser()))
    if getattr(cfg.task, "_name", None) == "balanced_distill":
        return  # the task checks this itself, after checking the checkpoint belongs to the run
    path = resumed_checkpoint(cfg.checkpoint)
    records = read_records(path) if path is not None else None
    if records is not None and not cfg.checkpoint.reset_optimizer:
        stop_if_finished(path, records, cfg.optimization.max_update)


def main(argv: Optional[List[str]] = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
