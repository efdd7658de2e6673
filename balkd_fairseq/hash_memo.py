"""Facts about large files (teacher checkpoints, their dictionaries), remembered beside them by size and change times.

Every training start checks each teacher: the hash of its checkpoint against the teacher manifest,
its architecture, positions and embedding against the task, its dictionary against the student's.
Hashing and unpickling 500 checkpoints on every start would take minutes. What was found out about
``DIR/FILE`` is remembered in ``DIR/.FILE.sha256.json`` (one JSON object of named facts, e.g.
``sha256``) with the file's size, ``mtime_ns`` and ``ctime_ns`` when it was read (the ctime too
because copy tools set the mtime back, never the ctime). A memo that does not match the file now, or
cannot be read or parsed, is ignored and the facts recomputed (a single fact that is malformed too);
a directory that cannot be written simply gets no memo. Memos are written atomically (temp file,
rename); two processes writing at once can at worst lose a fact, which is then recomputed.
"""
import json
import os
import re
from typing import Callable, Optional, TypeVar

from .files import file_sha256
from .outputs import write_json

MEMO_SUFFIX = ".sha256.json"
SHA256 = re.compile(r"[0-9a-f]{64}")
STAMP_KEYS = ("size", "mtime_ns", "ctime_ns")

T = TypeVar("T")


def memo_path(path: str) -> str:
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}{MEMO_SUFFIX}")


def file_stamp(path: str) -> dict:
    """What tells whether a file changed since it was read: its size, mtime and ctime (nanoseconds)."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def _remembered_facts(memo: str, name: str, stamp: dict) -> dict:
    """The facts of a memo that still describes the file (``{}`` when there is none)."""
    try:
        with open(memo, "rb") as f:
            record = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):  # missing, unreadable, not UTF-8 or not JSON: recompute
        return {}
    if not isinstance(record, dict) or record.get("file") != name or any(record.get(k) != v for k, v in stamp.items()):
        return {}
    return {key: value for key, value in record.items() if key != "file" and key not in STAMP_KEYS}


def remembered(path: str, fact: str, compute: Callable[[], T], parse: Callable[[object], Optional[T]],
               to_json: Callable[[T], object] = lambda value: value) -> T:
    """Fact ``fact`` of the file ``path``: ``parse`` of the memo's value while the memo is valid, else ``compute()``.

    ``parse`` returns None for a value it does not accept (the fact is then recomputed); ``to_json``
    gives what is stored (``parse(to_json(v))`` must equal ``v``). An exception from ``compute`` is
    not remembered.
    """
    memo, name = memo_path(path), os.path.basename(path)
    stamp = file_stamp(path)
    facts = _remembered_facts(memo, name, stamp)
    if fact in facts:
        value = parse(facts[fact])
        if value is not None:
            return value
    value = compute()
    if file_stamp(path) == stamp:  # a file that changed while it was read is not remembered
        try:
            write_json(memo, {"file": name, **stamp, **facts, fact: to_json(value)}, indent=1)
        except OSError:  # read-only directory: find out again next time
            pass
    return value


def _sha256(value) -> Optional[str]:
    return value if isinstance(value, str) and SHA256.fullmatch(value) else None


def memoized_sha256(path: str) -> str:
    """``file_sha256(path)``, from the memo beside the file when it is still valid."""
    return remembered(path, "sha256", lambda: file_sha256(path), _sha256)


def memoized_hash(path: str, fact: str, compute: Callable[[], str]) -> str:
    """A sha256 hex digest about ``path`` other than the file's own (e.g. of a dictionary's symbols), remembered as ``fact``."""
    return remembered(path, fact, compute, _sha256)
