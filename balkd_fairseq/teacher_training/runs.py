"""Training one teacher: stock masked_lm fairseq-train on one language, resumable, replaced only when finished.

A teacher is one fairseq-train process on ``DATA/<lang>/`` (the shared ``DATA/dict.txt`` read in place)
saving to ``TEACHERS/<lang>/``. ``--force`` sets the finished teacher aside in ``.previous`` until its
replacement has finished, and puts it back if the retraining fails or is interrupted.
"""
import argparse
import os
import shutil
import subprocess
import sys
from typing import Dict, List, Optional

from ..data.dictionary_hash import record_dictionary
from ..errors import BalkdError
from ..locks import LOCK_NAME, hold_directory_lock
from ..outputs import lies_within
from ..processes import run_child
from ..teacher_init import init_flags, record_init
from .records import checkpoint_stamp, record_run, restore_runs

# a teacher is one process: the rank of a torchrun/SLURM worker chose its shard of languages (--shard),
# it must not make the teacher's fairseq-train join a distributed job
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                      "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")
PREVIOUS_RUN = ".previous"  # --force: the teacher being replaced, until its retraining has finished


def subset_flags(fairseq_args: List[str]) -> dict:
    """--train-subset / --valid-subset given after '--' (fairseq's defaults otherwise), and the other arguments."""
    values = {"--train-subset": "train", "--valid-subset": "valid"}
    rest, i = [], 0
    while i < len(fairseq_args):
        arg = fairseq_args[i]
        flag, eq, value = arg.partition("=")
        if flag in values and eq:
            values[flag] = value
        elif arg in values and i + 1 < len(fairseq_args):
            values[arg] = fairseq_args[i + 1]
            i += 1
        else:
            rest.append(arg)
        i += 1
    return {"train": values["--train-subset"], "valid": values["--valid-subset"], "rest": rest}


def language_subset_args(fairseq_args: List[str], lang: str) -> List[str]:
    """The flags for one teacher: its subsets as paths inside DATA (``<lang>/train``), the rest unchanged."""
    subsets = subset_flags(fairseq_args)
    valid = ",".join(f"{lang}/{name.strip()}" for name in subsets["valid"].split(",") if name.strip())
    return ["--train-subset", f"{lang}/{subsets['train']}", "--valid-subset", valid, *subsets["rest"]]


def check_save_dir_outside_data(save_dir: str, data: str, langs: List[str]) -> None:
    """Teachers are written into SAVE/<lang>/: never into DATA (its <lang>/ holds the user's binarized text)."""
    inside_data = lies_within(save_dir, data)
    holding_data = [lang for lang in langs if lies_within(data, os.path.join(save_dir, lang))]
    if inside_data or holding_data:
        where = save_dir if inside_data else os.path.join(save_dir, holding_data[0])
        raise BalkdError(f"--save-dir: {where} is or lies inside the data directory {data} (or holds it); "
                         "teachers are never written into DATA: choose another directory")


def single_process_env() -> Dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in LAUNCHER_VARIABLES}


def _own_entries(lang_dir: str) -> List[str]:
    return [name for name in os.listdir(lang_dir) if name not in (LOCK_NAME, PREVIOUS_RUN)]


def _remove_own_entries(lang_dir: str) -> None:
    for name in _own_entries(lang_dir):
        path = os.path.join(lang_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def set_aside_previous_run(lang_dir: str) -> Optional[str]:
    """--force: move the teacher's files into ``lang_dir/.previous`` so it retrains from scratch.

    Kept until the new teacher is complete (a failed retraining puts them back). A ``.previous`` left by an
    interrupted retraining already holds the last complete teacher: the partial files beside it go.
    """
    previous = os.path.join(lang_dir, PREVIOUS_RUN)
    if os.path.isdir(previous):
        _remove_own_entries(lang_dir)
        return previous
    entries = _own_entries(lang_dir)
    if not entries:
        return None
    os.makedirs(previous)
    for name in entries:
        os.replace(os.path.join(lang_dir, name), os.path.join(previous, name))
    return previous


def restore_previous_run(lang_dir: str, previous: str) -> None:
    _remove_own_entries(lang_dir)
    for name in os.listdir(previous):
        os.replace(os.path.join(previous, name), os.path.join(lang_dir, name))
    os.rmdir(previous)


def train_one(data: str, lang: str, lang_dir: str, fairseq_args: List[str], init: Optional[dict] = None,
              fresh: bool = False) -> str:
    """Train (or resume) one teacher; returns the hash of the dictionary it was trained with.

    ``fresh`` (--force) trains from scratch even over a complete teacher, which is replaced only once the
    new one has finished."""
    os.makedirs(lang_dir, exist_ok=True)
    hold_directory_lock(lang_dir, f"teacher directory of {lang!r}")  # another worker training it is refused
    previous = set_aside_previous_run(lang_dir) if fresh else None
    try:
        digest = _train(data, lang, lang_dir, fairseq_args, init)
    except BaseException:  # also Ctrl-C: the half-trained teacher must not take the finished one's place
        if previous is not None:
            restore_previous_run(lang_dir, previous)
        raise
    if previous is not None:
        shutil.rmtree(previous)
    return digest


def _train(data: str, lang: str, lang_dir: str, fairseq_args: List[str], init: Optional[dict]) -> str:
    digest = record_dictionary(os.path.join(data, "dict.txt"), lang_dir)
    record_init(lang_dir, lang, init)
    stamp, runs_before = checkpoint_stamp(lang_dir), record_run(lang_dir, fairseq_args, init)
    # balkd-train: fairseq-train with the plugin, and an exit that never aborts in the prefetch thread
    cmd = [sys.executable, "-m", "balkd_fairseq.cli.train", data,
           "--task", "masked_lm", "--criterion", "masked_lm", "--save-dir", lang_dir,
           *init_flags(init), *language_subset_args(fairseq_args, lang)]
    log_path = os.path.join(lang_dir, "train.log")
    log_start = os.path.getsize(log_path) if os.path.isfile(log_path) else 0
    try:
        with open(log_path, "a", encoding="utf-8") as log:
            returncode = run_child(cmd, stdout=log, stderr=subprocess.STDOUT, env=single_process_env())
    finally:
        _forget_untrained_run(lang_dir, stamp, runs_before)
    if returncode != 0:
        raise BalkdError(f"teacher for language {lang!r} failed (exit {returncode})"
                         f"{failure_reason(log_path, log_start)}; see {log_path}")
    return digest


def _forget_untrained_run(lang_dir: str, stamp, runs_before) -> None:
    """A run that saved no checkpoint trained nothing (it failed or was stopped first, or resumed a teacher
    whose schedule was done): it is not one the teacher was trained under (its fix, e.g. the flag the error
    advised, must not read as a change of settings)."""
    if checkpoint_stamp(lang_dir) == stamp:
        restore_runs(lang_dir, runs_before)


# fairseq's messages for mistakes in the flags after '--', and what to do about them
KNOWN_FAILURES = (
    ("The dataset is empty", "a split gives no batch: it has fewer blocks than --required-batch-size-multiple "
                             "(default 8; pass --required-batch-size-multiple 1 after '--'), or --max-tokens is "
                             "below its blocks"),
    ("Error(s) in loading state_dict", "the checkpoint it starts or resumes from has another architecture than "
                                       "the flags after '--'"),
)


def failure_reason(log_path: str, start: int = 0) -> str:
    """': <why>' from what a failed teacher's run appended to its log (from byte ``start``; the log is kept
    across runs): a known fairseq failure explained, else its last error line (the log has the traceback)."""
    try:
        with open(log_path, "rb") as f:
            f.seek(start)
            tail = f.read().decode("utf-8", errors="replace").splitlines()[-200:]
    except OSError:
        return ""
    text = "\n".join(tail)
    for marker, explanation in KNOWN_FAILURES:
        if marker in text:
            return f": {explanation}"
    errors = [line.strip() for line in tail if line.strip() and not line.startswith((" ", "\t"))
              and ("Error" in line.split(":", 1)[0] or ": error:" in line)]
    return f": {errors[-1][:300]}" if errors else ""


def shard_weights(sizes: Dict[str, int], fairseq_args: List[str]) -> Dict[str, int]:
    """What each teacher costs, for splitting languages across workers: its training data's size, except
    under --max-update without --max-epoch, where every teacher trains exactly that many updates whatever
    its size (by size, one worker would get the largest language and another all the small ones)."""
    lengths = argparse.ArgumentParser(add_help=False)
    lengths.add_argument("--max-update", type=int, default=0)
    lengths.add_argument("--max-epoch", type=int, default=0)
    parsed, _ = lengths.parse_known_args(fairseq_args)
    if parsed.max_update > 0 and parsed.max_epoch <= 0:
        return dict.fromkeys(sizes, 1)
    return sizes


def training_sizes(data: str, langs: List[str], train_subset: str) -> Dict[str, int]:
    """Bytes of each language's binarized training split (1 when missing), what shard_weights starts from."""
    paths = {lang: os.path.join(data, lang, f"{train_subset}.bin") for lang in langs}
    return {lang: os.path.getsize(path) if os.path.isfile(path) else 1 for lang, path in paths.items()}
