"""What a teacher directory records about its training: completion, the flags of every run, the stamp.

``TEACHERS/<lang>/teacher_done.json`` marks a complete teacher: the signature of its settings (flags and
``--init-from`` content), its flags, its dictionary's hash and its training split's fingerprint
(``train_data``: :func:`~balkd_fairseq.data.fingerprint.split_fingerprint`, as the teacher cache records
data; records written before it have none and still count as complete). ``teacher_runs.json`` lists every set of
flags the teacher was trained under, written before each run starts, so a teacher interrupted and
resumed with other flags (fairseq continues it under them) says so instead of claiming the last ones.

``train_data`` also holds the .idx/.bin files' stamps (size, mtime, ctime): while they are unchanged the
recorded fingerprint stands for the files. Every start (every worker of a sharded run) compares all
languages' records; hashing their .idx again each time took 3-6 s at 100 languages with 2 GB of .idx.
A record without the current stamps (written before they were, or its files touched since) whose
fingerprint is found to match is given them (:func:`restamp`), else it would be hashed at every start.
Nothing is remembered inside DATA: it is an input, never written.
"""
import hashlib
import os
from typing import Callable, Dict, Iterable, List, Optional

from ..data.dictionary_hash import dict_file_sha256
from ..data.fingerprint import split_fingerprint
from ..errors import BalkdError
from ..files import read_json
from ..hash_memo import file_stamp
from ..locks import LOCK_NAME, lock_if_free
from ..outputs import write_json

DONE_FILE = "teacher_done.json"
RUNS_FILE = "teacher_runs.json"
COMPLETE, ABSENT = "complete", "absent"  # what a language's directory holds (else: how its settings differ)
DATA_CHANGED = "its training data"  # how a difference of the training data starts


def run_signature(fairseq_args: List[str], init: Optional[dict] = None) -> str:
    """What makes a teacher complete: its flags and, with --init-from, the content of its init checkpoint."""
    return hashlib.sha256("\0".join(fairseq_args + ([f"init:{init['sha256']}"] if init else [])).encode("utf-8")).hexdigest()


def training_data(data: str, lang: str, train_subset: str, recorded: Optional[dict] = None) -> dict:
    """What a teacher records of the data it was trained on: its training split, that split's fingerprint
    (another DATA with the same dict.txt, or text added with fairseq-preprocess --srcdict, changes it) and
    the files' stamps. A ``recorded`` train_data whose stamps are the files' now gives its fingerprint unhashed."""
    path = os.path.join(lang, train_subset)
    stamps = split_stamps(os.path.join(data, path))  # before hashing: a file changed meanwhile is hashed next time
    if isinstance(recorded, dict) and stamps and recorded.get("split") == path and recorded.get("stamps") == stamps:
        return {"split": path, "fingerprint": recorded.get("fingerprint"), "stamps": stamps}
    return {"split": path, "fingerprint": split_fingerprint(os.path.join(data, path)), "stamps": stamps}


def split_stamps(prefix: str) -> Optional[Dict[str, dict]]:
    if not os.path.isfile(prefix + ".idx") or not os.path.isfile(prefix + ".bin"):
        return None
    return {ext: file_stamp(f"{prefix}.{ext}") for ext in ("idx", "bin")}


class TrainingData:
    """Each language's :func:`training_data`, found when first asked for and then kept for this process.

    Records of the ``own`` languages (this worker's shard) are given missing stamps (:func:`restamp`); another
    worker's, never: locking its teacher's directory even briefly could refuse that worker starting to train it.
    """

    def __init__(self, data: str, save_dir: str, train_subset: str, own: Iterable[str] = ()):
        self.data, self.save_dir, self.train_subset, self.own = data, save_dir, train_subset, set(own)
        self._found: Dict[str, dict] = {}

    def __getitem__(self, lang: str) -> dict:
        if lang not in self._found:
            lang_dir = os.path.join(self.save_dir, lang)
            record = read_done(lang_dir) or {}
            found = training_data(self.data, lang, self.train_subset, record.get("train_data"))
            if lang in self.own and _restampable(record.get("train_data"), found):
                restamp(lang_dir, record, found["stamps"])
            self._found[lang] = found
        return self._found[lang]


def _restampable(recorded, found: dict) -> bool:
    """Whether a recorded train_data without the files' current stamps (one written before they were
    recorded, or the files touched since) was just hashed to its own fingerprint."""
    return (isinstance(recorded, dict) and found["stamps"] is not None and recorded.get("stamps") != found["stamps"]
            and _data_identity(recorded) == _data_identity(found))


def restamp(lang_dir: str, record: dict, stamps: Dict[str, dict]) -> None:
    """Record ``stamps`` in the completion record (every other field as it is), so that later starts hash
    nothing. Only an optimisation: skipped while another process holds the teacher's directory (it may be
    rewriting the record) or where the record cannot be written; the data is then hashed at the next start."""
    try:
        with lock_if_free(os.path.join(lang_dir, LOCK_NAME), f"teacher directory {lang_dir}") as locked:
            if locked and read_done(lang_dir) == record:  # still the record that was compared
                train_data = dict(record["train_data"], stamps=stamps)
                write_json(os.path.join(lang_dir, DONE_FILE), dict(record, train_data=train_data))
    except OSError:
        pass


def read_done(lang_dir: str) -> Optional[dict]:
    """The completion record, or None when the teacher is not complete."""
    record = _read_record(lang_dir, DONE_FILE)
    return record if isinstance(record, dict) else None


def is_complete(lang_dir: str, signature: str, train_data: Callable[[], dict]) -> bool:
    """``train_data()`` is asked for only when there is a record to compare it with."""
    record = read_done(lang_dir)
    return record is not None and not _differences(record, signature, [], train_data)


def finished_teacher(lang: str, lang_dir: str, signature: str, fairseq_args: List[str], dictionary: str,
                     train_data: Callable[[], dict]) -> str:
    """COMPLETE (a finished teacher of these settings and data: skipped), ABSENT (none finished: train or
    resume), or how the finished teacher's settings or data differ from these (fairseq then resumes it, which
    trains it further or not at all). A finished teacher trained with another dictionary (DATA prepared
    again) is refused."""
    record = read_done(lang_dir)
    if record is None:
        return ABSENT
    if record.get("dictionary_sha256") not in (None, _dictionary_sha256(dictionary)):
        raise BalkdError(f"teacher for {lang!r} in {lang_dir} was trained with another dictionary than {dictionary} "
                         "(was DATA prepared again?): pass --force to retrain it, or use another --save-dir")
    return _differences(record, signature, fairseq_args, train_data) or COMPLETE


_DICTIONARY_DIGESTS: Dict[tuple, str] = {}


def _dictionary_sha256(path: str) -> str:
    """:func:`dict_file_sha256` once per process and version of the file: every language's record is compared
    with the one DATA/dict.txt, and loading a 250k-symbol dictionary 100 times would take half a minute."""
    if not os.path.isfile(path):
        return dict_file_sha256(path)  # which names the missing file
    key = (os.path.abspath(path), *file_stamp(path).values())
    if key not in _DICTIONARY_DIGESTS:
        _DICTIONARY_DIGESTS[key] = dict_file_sha256(path)
    return _DICTIONARY_DIGESTS[key]


def _differences(record: dict, signature: str, fairseq_args: List[str], train_data: Callable[[], dict]) -> str:
    """How a completion record differs from these settings and data ("" when it does not)."""
    found = []
    if record.get("signature") != signature:
        found.append(_flag_difference(record.get("fairseq_args") or [], fairseq_args))
    # a record from before training data was recorded has none: it counts as trained on this data (unhashed)
    if record.get("train_data") is not None and _data_identity(record["train_data"]) != _data_identity(train_data()):
        found.append(f"{DATA_CHANGED} {train_data()['split']} changed since")
    return "; ".join(found)


def _data_identity(train_data) -> tuple:
    """What a training-data record says of the data (its stamps only spare hashing; a copy has other ones)."""
    return (train_data.get("split"), train_data.get("fingerprint")) if isinstance(train_data, dict) else (train_data,)


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

