"""What a teacher directory records about its training: completion, the flags of every run, the stamp.

``TEACHERS/<lang>/teacher_done.json`` marks a complete teacher: the signature of its settings (flags and
``--init-from`` content), its flags, its dictionary's hash and its training split's fingerprint
(``train_data``: :func:`~balkd_fairseq.data.fingerprint.split_fingerprint`, as the teacher cache records
data; records written before it have none and still count as complete). ``teacher_runs.json`` lists every set of
flags the teacher was trained under, written before each run starts, so a teacher interrupted and
resumed with other flags (fairseq continues it under them) says so instead of claiming the last ones.
"""
import hashlib
import os
from typing import List, Optional

from ..data.dictionary_hash import dict_file_sha256
from ..data.fingerprint import split_fingerprint
from ..errors import BalkdError
from ..files import read_json
from ..outputs import write_json

DONE_FILE = "teacher_done.json"
RUNS_FILE = "teacher_runs.json"
COMPLETE, ABSENT = "complete", "absent"  # what a language's directory holds (else: how its settings differ)
DATA_CHANGED = "its training data"  # how a difference of the training data starts


def run_signature(fairseq_args: List[str], init: Optional[dict] = None) -> str:
    """What makes a teacher complete: its flags and, with --init-from, the content of its init checkpoint."""
    return hashlib.sha256("\0".join(fairseq_args + ([f"init:{init['sha256']}"] if init else [])).encode("utf-8")).hexdigest()


def training_data(data: str, lang: str, train_subset: str) -> dict:
    """What a teacher records of the data it was trained on: its training split and that split's fingerprint
    (another DATA with the same dict.txt, or text added with fairseq-preprocess --srcdict, changes it)."""
    path = os.path.join(lang, train_subset)
    return {"split": path, "fingerprint": split_fingerprint(os.path.join(data, path))}


def read_done(lang_dir: str) -> Optional[dict]:
    """The completion record, or None when the teacher is not complete."""
    record = _read_record(lang_dir, DONE_FILE)
    return record if isinstance(record, dict) else None


def is_complete(lang_dir: str, signature: str, train_data: dict) -> bool:
    record = read_done(lang_dir)
    return record is not None and not _differences(record, signature, [], train_data)


def finished_teacher(lang: str, lang_dir: str, signature: str, fairseq_args: List[str], dictionary: str,
                     train_data: dict) -> str:
    """COMPLETE (a finished teacher of these settings and data: skipped), ABSENT (none finished: train or
    resume), or how the finished teacher's settings or data differ from these (fairseq then resumes it, which
    trains it further or not at all). A finished teacher trained with another dictionary (DATA prepared
    again) is refused."""
    record = read_done(lang_dir)
    if record is None:
        return ABSENT
    if record.get("dictionary_sha256") not in (None, dict_file_sha256(dictionary)):
        raise BalkdError(f"teacher for {lang!r} in {lang_dir} was trained with another dictionary than {dictionary} "
                         "(was DATA prepared again?): pass --force to retrain it, or use another --save-dir")
    return _differences(record, signature, fairseq_args, train_data) or COMPLETE


def _differences(record: dict, signature: str, fairseq_args: List[str], train_data: dict) -> str:
    """How a completion record differs from these settings and data ("" when it does not)."""
    found = []
    if record.get("signature") != signature:
        found.append(_flag_difference(record.get("fairseq_args") or [], fairseq_args))
    # a record from before training data was recorded has none: it counts as trained on this data
    if record.get("train_data") not in (None, train_data):
        found.append(f"{DATA_CHANGED} {train_data['split']} changed since")
    return "; ".join(found)


def checkpoint_stamp(lang_dir: str):
    """(size, mtime) of checkpoint_last.pt: fairseq rewrites it whenever it trains."""
    path = os.path.join(lang_dir, "checkpoint_last.pt")
    return (os.path.getsize(path), os.stat(path).st_mtime_ns) if os.path.isfile(path) else None


def _flag_difference(before: List[str], now: List[str]) -> str:
    if before == now:
        return "the same flags, another --init-from checkpoint"
    i = next((k for k, (a, b) in enumerate(zip(before, now)) if a != b), min(len(before), len(now)))
    if 0 < i and not (before[i:i + 1] or now[i:i + 1] or ["--"])[0].startswith("--"):
        i -= 1  # a value differs: show its flag too
    return f"flags from {' '.join(before[i:i + 2]) or 'their end'!r} there, {' '.join(now[i:i + 2]) or 'their end'!r} now"


def _read_record(lang_dir: str, name: str):
    path = os.path.join(lang_dir, name)
    return read_json(path, "balkd-train-teachers") if os.path.isfile(path) else None


def recorded_runs(lang_dir: str) -> List[dict]:
    """The settings each training run of this teacher had, oldest first ({"fairseq_args", "init_from"}).

    A teacher finished before runs were recorded counts its completion record's settings as its one run."""
    runs = _read_record(lang_dir, RUNS_FILE)
    if isinstance(runs, list):
        return runs
    done = _read_record(lang_dir, DONE_FILE)
    if isinstance(done, dict) and "fairseq_args" in done:
        return [{"fairseq_args": done["fairseq_args"], "init_from": done.get("init_from")}]
    return []


def record_run(lang_dir: str, fairseq_args: List[str], init: Optional[dict]) -> List[dict]:
    """Before a run starts: add its settings to the teacher's runs (once; a rerun with the same ones adds
    nothing). Returns the runs as they were, so a run that trained nothing can be taken back."""
    before = recorded_runs(lang_dir)
    run = {"fairseq_args": fairseq_args, "init_from": init}
    if not before or before[-1] != run:
        write_json(os.path.join(lang_dir, RUNS_FILE), before + [run])
    return before


def restore_runs(lang_dir: str, runs: List[dict]) -> None:
    write_json(os.path.join(lang_dir, RUNS_FILE), runs)


def mark_complete(lang_dir: str, signature: str, fairseq_args: List[str], digest: str, init: Optional[dict],
                  train_data: dict) -> Optional[str]:
    """Write the completion record; it lists every run's settings when they changed along the way. Returns
    how they changed (for a warning), or None when the teacher was trained under these settings alone."""
    runs = recorded_runs(lang_dir)
    record = {"signature": signature, "fairseq_args": fairseq_args, "dictionary_sha256": digest, "init_from": init,
              "train_data": train_data}
    earlier = [run for run in runs if run != {"fairseq_args": fairseq_args, "init_from": init}]
    if earlier:
        record["trained_under"] = runs
    write_json(os.path.join(lang_dir, DONE_FILE), record)
    if not earlier:
        return None
    return _flag_difference(earlier[-1]["fairseq_args"] or [], fairseq_args)

