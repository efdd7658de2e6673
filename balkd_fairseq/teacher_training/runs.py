"""Training one teacher: stock masked_lm fairseq-train on one language, resumable, replaced only when finished.

A teacher is one fairseq-train process on ``DATA/<lang>/`` (the shared ``DATA/dict.txt`` read in place)
saving to ``TEACHERS/<lang>/``. ``--force`` sets the finished teacher aside in ``.previous`` until its
replacement has finished, and puts it back if the retraining fails or is interrupted.

``.previous`` is only ever older than the directory's own teacher when that one is unfinished: once a teacher
in ``TEACHERS/<lang>/`` completes (with or without --force), a ``.previous`` beside it is discarded, and a
--force run finding both keeps the complete one. So a run killed with kill -9 (no chance to put anything
back) loses the old teacher neither to a rerun with --force nor to one without.
"""
import argparse
import os
import shutil
import subprocess
import sys
from typing import Dict, List, Optional

from tqdm import tqdm

from ..data.dictionary_hash import record_dictionary
from ..errors import BalkdError
from ..locks import LOCK_NAME, hold_directory_lock
from ..outputs import lies_within
from ..processes import run_child
from ..teacher_init import init_flags, record_init
from .records import DONE_FILE, checkpoint_stamp, record_run, restore_runs

# a teacher is one process: the rank of a torchrun/SLURM worker chose its shard of languages (--shard),
# it must not make the teacher's fairseq-train join a distributed job
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                      "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")
PREVIOUS_RUN = ".previous"  # --force: the teacher being replaced, until its retraining has finished
# the teacher's files move one by one; these name a move under way, so one cut short (kill -9) is finished
# by the next run instead of leaving the teacher split between two directories
SETTING_ASIDE, PUTTING_BACK = ".previous.moving", ".previous.restoring"


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
    return [name for name in os.listdir(lang_dir) if name not in (LOCK_NAME, PREVIOUS_RUN, SETTING_ASIDE, PUTTING_BACK)]


def _remove_own_entries(lang_dir: str) -> None:
    for name in _own_entries(lang_dir):
        path = os.path.join(lang_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def _holds_complete_teacher(lang_dir: str) -> bool:
    return os.path.isfile(os.path.join(lang_dir, DONE_FILE))


def set_aside_previous_run(lang_dir: str) -> Optional[str]:
    """--force: move the teacher's files into ``lang_dir/.previous`` so it retrains from scratch.

    Kept until the new teacher is complete (a failed retraining puts them back). A ``.previous`` left by an
    interrupted retraining (kill -9) holds the last complete teacher, unless the directory's own teacher has
    completed since (a rerun without --force): the older of the two is discarded, the newer set aside.
    """
    previous = os.path.join(lang_dir, PREVIOUS_RUN)
    if os.path.isdir(previous):
        if not _holds_complete_teacher(lang_dir):
            _discard(lang_dir, _own_entries(lang_dir), "the files of an unfinished retraining")
            return previous
        _discard(lang_dir, [PREVIOUS_RUN], "an older teacher set aside by an interrupted --force run")
    entries = _own_entries(lang_dir)
    if not entries:
        return None
    staging = os.path.join(lang_dir, SETTING_ASIDE)
    os.makedirs(staging)
    _move_entries(lang_dir, entries, staging)
    os.replace(staging, previous)  # .previous appears whole or not at all
    return previous


def _move_entries(source: str, names: List[str], target: str) -> None:
    for name in names:
        os.replace(os.path.join(source, name), os.path.join(target, name))


def finish_interrupted_moves(lang_dir: str) -> None:
    """Put back a teacher whose files a killed run was moving (into .previous, or back from it): the files
    not yet moved are in ``lang_dir``, so moving the rest back makes it whole again."""
    for name in (SETTING_ASIDE, PUTTING_BACK):
        moving = os.path.join(lang_dir, name)
        if os.path.isdir(moving):
            tqdm.write(f"{lang_dir}: putting back the teacher files an interrupted run left in {name}")
            _move_entries(moving, os.listdir(moving), lang_dir)
            os.rmdir(moving)


def discard_stale_previous(lang_dir: str) -> None:
    """After a teacher is recorded complete: a ``.previous`` beside it is older, and would otherwise replace
    it when a later --force run is interrupted. (Called only under the directory's lock, by its trainer.)"""
    if _holds_complete_teacher(lang_dir) and os.path.isdir(os.path.join(lang_dir, PREVIOUS_RUN)):
        _discard(lang_dir, [PREVIOUS_RUN], "an older teacher set aside by an interrupted --force run")


def _discard(lang_dir: str, names: List[str], what: str) -> None:
    if not names:
        return
    tqdm.write(f"{lang_dir}: discarding {what} ({', '.join(sorted(names))})")
    for name in names:
        path = os.path.join(lang_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def restore_previous_run(lang_dir: str, previous: str) -> None:
    _remove_own_entries(lang_dir)
    restoring = os.path.join(lang_dir, PUTTING_BACK)
    os.replace(previous, restoring)
    _move_entries(restoring, os.listdir(restoring), lang_dir)
    os.rmdir(restoring)


def train_one(data: str, lang: str, lang_dir: str, fairseq_args: List[str], init: Optional[dict] = None,
              fresh: bool = False) -> str:
    """Train (or resume) one teacher; returns the hash of the dictionary it was trained with.

    ``fresh`` (--force) trains from scratch even over a complete teacher, which stays in ``.previous``
    until the caller has recorded the new one complete (:func:`discard_stale_previous`)."""
    os.makedirs(lang_dir, exist_ok=True)
    hold_directory_lock(lang_dir, f"teacher directory of {lang!r}")  # another worker training it is refused
    finish_interrupted_moves(lang_dir)
    previous = set_aside_previous_run(lang_dir) if fresh else None
    try:
        return _train(data, lang, lang_dir, fairseq_args, init, _stopped_hint(lang, previous, fresh))
    except BaseException:  # also Ctrl-C: the half-trained teacher must not take the finished one's place
        if previous is not None:
            restore_previous_run(lang_dir, previous)
        raise


def _stopped_hint(lang: str, previous: Optional[str], fresh: bool) -> str:
    """What to do after a stop: rerunning a --force command starts over, it does not resume."""
    if previous is not None:
        return (f"the teacher for {lang!r} it was replacing is put back; run the same command again to retrain "
                "it from scratch")
    if fresh:
        return "run the same command again to start over, or without --force to resume"
    return "run the same command again to resume"


def _train(data: str, lang: str, lang_dir: str, fairseq_args: List[str], init: Optional[dict],
           stopped_hint: str = "run the same command again to resume") -> str:
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
            returncode = run_child(cmd, stdout=log, stderr=subprocess.STDOUT, env=single_process_env(),
                                   stopped_hint=stopped_hint)
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
