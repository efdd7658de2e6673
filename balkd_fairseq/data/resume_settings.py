"""Resuming a ``balanced_distill`` run only with the data settings its checkpoint was written with.

The iterator position fairseq stores in a checkpoint (epoch, batches done) means something only for
the same epoch contents: the same languages, balancing, draw, block size, seed and batching. A
changed setting would otherwise end in fairseq's "dataloader mismatch" traceback or, worse, silently
train on other data. The check runs when the task is set up, before any data is read, against the
``cfg.task`` the checkpoint recorded; ``--reset-data-settings`` (or fairseq's ``--reset-dataloader``,
which starts the epoch over) lets a run continue with new settings on purpose.
"""
import logging
import os
import pickle
import sys
from typing import Optional, Tuple

import torch

from ..errors import BalkdError
from .dictionary_hash import DICTIONARY_HASH_KEY
from .fingerprint import plain

logger = logging.getLogger(__name__)

RESUME_SETTINGS = (
    "languages", "train_subset", "balance", "balance_draw", "sampling_alpha", "samples_per_language",
    "tokens_per_sample", "sample_break_mode", "shorten_method", "shorten_data_split_list",
    "batch_by_language", "language_run_batches", "seed",
)


def flag_name(setting: str) -> str:
    return "--" + setting.replace("_", "-")


def shard_suffix(distributed_cfg) -> str:
    """What fairseq's trainer adds to this rank's checkpoint names: with FSDP's sharded state every rank
    saves and loads its own ``checkpoint_last-shard<rank>.pt`` (``Trainer.checkpoint_suffix``)."""
    if distributed_cfg is None or distributed_cfg.get("ddp_backend") != "fully_sharded":
        return ""
    if not distributed_cfg.get("use_sharded_state", False):
        return ""
    return f"-shard{distributed_cfg.get('distributed_rank', 0) or 0}"


def resumed_checkpoint(checkpoint_cfg, shard: str = "") -> Optional[str]:
    """The checkpoint fairseq-train will resume from (its data loader position included), or None: a start
    from --finetune-from-model and --reset-dataloader begin the data anew."""
    start = loaded_checkpoint(checkpoint_cfg, shard)
    if getattr(checkpoint_cfg, "reset_dataloader", False) or start is None or start[1] == "--finetune-from-model":
        return None
    return start[0]


def loaded_checkpoint(checkpoint_cfg, shard: str = "") -> Optional[Tuple[str, str]]:
    """(path, the flag that chose it) of the checkpoint whose weights fairseq-train starts from, as
    ``checkpoint_utils.load_checkpoint`` finds it, or None (random initialisation). Unlike
    :func:`resumed_checkpoint` also with ``--reset-dataloader`` and for a ``--finetune-from-model`` start:
    whatever resets, the weights are loaded. ``shard``: :func:`shard_suffix` of the run."""
    suffix = (getattr(checkpoint_cfg, "checkpoint_suffix", "") or "") + shard
    restore = checkpoint_cfg.restore_file
    if restore == "checkpoint_last.pt":
        path = os.path.join(checkpoint_cfg.save_dir, f"checkpoint_last{suffix}.pt")
        if os.path.exists(path):
            return path, "--save-dir"
        for flag in ("continue_once", "finetune_from_model"):
            start = getattr(checkpoint_cfg, flag, None)
            if start:
                return (start, flag_name(flag)) if os.path.isfile(start) else None
        return None
    path = restore.replace(".pt", suffix + ".pt")
    return (path, "--restore-file") if os.path.isfile(path) else None


def read_state(path: str) -> Optional[dict]:
    """The checkpoint's state dict, tensors memory-mapped when the file allows; None when it is unreadable
    (fairseq's own loading then reports it by name)."""
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # not the zip format mmap needs
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError):
        return None
    return state if isinstance(state, dict) else None


def read_records(path: str) -> Optional[dict]:
    """The checkpoint's recorded cfg.task, task_state, update count and --max-update, without reading its
    tensors (memory-mapped); None when it is unreadable (fairseq's own loading then reports it by name)."""
    state = read_state(path)
    if state is None:
        return None
    cfg = state.get("cfg") or {}
    history = state.get("optimizer_history") or [{}]
    optimization = (cfg.get("optimization") or {}) if isinstance(cfg, dict) else {}
    return {"task": dict(cfg.get("task") or {}) if isinstance(cfg, dict) else {},
            "task_state": state.get("task_state") or {},
            "num_updates": history[-1].get("num_updates") if isinstance(history[-1], dict) else None,
            "max_update": optimization.get("max_update")}


def stop_if_finished(path: str, records: dict, max_update: int) -> None:
    """A run whose checkpoint reached --max-update is finished: say so and exit 0 instead of training past it.

    fairseq would take one more step (it checks the limit after each update) and save again. Raising
    --max-update on purpose continues the run, and the log says so.
    """
    done, limit_then = records.get("num_updates"), records.get("max_update")
    if not max_update or done is None:
        return
    if done >= max_update:
        logger.info(f"{path} is at update {done}: this run reached --max-update {max_update} and is finished")
        print(f"balkd-fairseq: {path} is at update {done}, --max-update is {max_update}: the run is finished, "
              "nothing to do (raise --max-update to train further)", file=sys.stderr, flush=True)
        raise SystemExit(0)
    if limit_then and done >= limit_then and max_update > limit_then:
        logger.warning(f"continuing the finished run {path} (update {done}): --max-update raised from {limit_then} to {max_update}")


def _same(recorded, current) -> bool:
    if isinstance(recorded, float) or isinstance(current, float):
        try:
            return float(recorded) == float(current)
        except (TypeError, ValueError):
            return False
    return recorded == current


def check_resume_settings(path: str, records: dict, current: dict, dictionary_sha256: str) -> None:
    """Refuse to resume ``path`` with ``current`` settings (name -> value) other than the recorded ones."""
    if DICTIONARY_HASH_KEY not in records["task_state"] or not records["task"].get("languages"):
        raise BalkdError(
            f"{path} does not record its data settings (written by an older balkd-fairseq or another task), so "
            "resuming it could silently change the data; it still loads for evaluation. Use a new --save-dir "
            "(or --finetune-from-model to start from its weights alone), or pass --reset-data-settings to resume it "
            "with the current settings"
        )
    if records["task_state"][DICTIONARY_HASH_KEY] != dictionary_sha256:
        raise BalkdError(
            f"cannot resume {path}: it was trained with another dictionary (dict.txt sha256 "
            f"{str(records['task_state'][DICTIONARY_HASH_KEY])[:12]}…, now {dictionary_sha256[:12]}…)"
        )
    for name in RESUME_SETTINGS:
        if name not in records["task"]:
            continue
        recorded, now = plain(records["task"][name]), plain(current[name])
        if not _same(recorded, now):
            raise BalkdError(
                f"cannot resume {path} with {flag_name(name)} {now!r}: the run was started with {recorded!r} "
                "(pass --reset-data-settings to continue with the new value on purpose)"
            )
