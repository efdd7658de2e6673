"""sha256 of large files (teacher checkpoints), remembered beside them by size and change times.

Every training start compares each teacher's hash with the teacher manifest; hashing 500
checkpoints on every start would take minutes. The hash of ``DIR/FILE`` is remembered in
``DIR/.FILE.sha256.json`` with the file's size, ``mtime_ns`` and ``ctime_ns`` when it was hashed
(the ctime too because copy tools set the mtime back, never the ctime). A memo that does not match
the file now, or cannot be read or parsed, is ignored and the hash recomputed; a directory that
cannot be written simply gets no memo.
"""
import json
import os
import re

from .files import file_sha256
from .outputs import write_json

MEMO_SUFFIX = ".sha256.json"
SHA256 = re.compile(r"[0-9a-f]{64}")


def memo_path(path: str) -> str:
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}{MEMO_SUFFIX}")


def _stamp(path: str) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def _remembered(memo: str, name: str, stamp: dict):
    try:
        with open(memo, "rb") as f:
            record = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):  # missing, unreadable, not UTF-8 or not JSON: recompute
        return None
    if not isinstance(record, dict) or record.get("file") != name or any(record.get(k) != v for k, v in stamp.items()):
        return None
    digest = record.get("sha256")
    return digest if isinstance(digest, str) and SHA256.fullmatch(digest) else None


def memoized_sha256(path: str) -> str:
    """``file_sha256(path)``, from the memo beside the file when it is still valid."""
    memo, name = memo_path(path), os.path.basename(path)
    stamp = _stamp(path)
    digest = _remembered(memo, name, stamp)
    if digest is not None:
        return digest
    digest = file_sha256(path)
    if _stamp(path) == stamp:  # a file that changed while it was hashed is not remembered
        try:
            write_json(memo, {"file": name, **stamp, "sha256": digest}, indent=1)
        except OSError:  # read-only teacher directory: hash again next time
            pass
    return digest
