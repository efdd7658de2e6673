"""Directory locks: one process at a time writes a save directory, teacher directory, cache or output.

Two runs sharing a ``--save-dir`` would load each other's ``checkpoint_last.pt`` and overwrite each
other's checkpoints without a word. A lock is a file holding the holder's PID, host and command,
locked with ``flock``: the kernel releases it when the holder ends in any way (even ``kill -9``), so
a lock file left by a dead process is recognised as stale and taken over with a warning. The next
process asking for a held lock is refused with one line naming the holder.

Call sites: the plugin's training tasks lock their ``--save-dir`` (:mod:`balkd_fairseq.task_run`);
``balkd-prepare`` locks ``--out``; ``balkd-cache-teachers`` (``--cache-dir``), ``balkd-train-teachers``
(its teacher directory), ``balkd-synth`` and ``balkd-export`` can use :func:`output_lock` or
:func:`hold_directory_lock` the same way.
"""
import atexit
import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Dict, Optional

from .errors import BalkdError

logger = logging.getLogger(__name__)

LOCK_NAME = ".balkd.lock"
_held: Dict[str, int] = {}  # lock file -> open descriptor holding the flock


def _holder_record() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:500]}


def _read_record(fd: int) -> Optional[dict]:
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, 65536)
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _describe(record: Optional[dict]) -> str:
    if not record:
        return "another process"
    return f"process {record.get('pid')} on {record.get('host')} ({record.get('command', '?')[:120]})"


def acquire(lock_path, what: str, wait: bool = False) -> None:
    """Hold ``lock_path`` until :func:`release` or the end of the process; refuse if another process holds it
    (or, with ``wait``, block until it is released: for short critical sections such as merging a sharded output)."""
    lock_path = os.path.abspath(lock_path)
    if lock_path in _held:
        return
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = _read_record(fd)
            os.close(fd)
            raise BalkdError(f"{what} is in use by {_describe(holder)} (lock file {lock_path}); wait until it "
                             "ends, or use another directory") from None
        try:
            same_file = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(fd)  # the holder removed the file between our open and flock: lock the new one
    stale = _read_record(fd)
    if stale:
        logger.warning(f"{what}: taking over the lock left by {_describe(stale)}, which is no longer running")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(_holder_record()).encode("utf-8"))
    _held[lock_path] = fd
    if len(_held) == 1:
        atexit.register(release_all)


def release(lock_path) -> None:
    lock_path = os.path.abspath(lock_path)
    fd = _held.pop(lock_path, None)
    if fd is None:
        return
    with contextlib.suppress(FileNotFoundError):
        os.remove(lock_path)  # before unlocking: a waiting process then locks a new file, never this one
    os.close(fd)


def release_all() -> None:
    for lock_path in list(_held):
        release(lock_path)


@contextlib.contextmanager
def held_lock(path, what: str, wait: bool = False):
    """``path`` locked for the ``with`` block (see :func:`acquire`)."""
    acquire(path, what, wait=wait)
    try:
        yield
    finally:
        release(path)


@contextlib.contextmanager
def lock_if_free(path, what: str):
    """Yields whether ``path`` is locked for the ``with`` block: False, at once, while another process holds
    it. A lock this process already holds stays held after the block."""
    if os.path.abspath(path) in _held:
        yield True
        return
    try:
        acquire(path, what)
    except BalkdError:
        yield False
        return
    try:
        yield True
    finally:
        release(path)


def hold_directory_lock(directory, what: str) -> None:
    """Lock ``directory`` (created if missing) for the rest of this process: ``DIR/.balkd.lock``."""
    directory = Path(os.path.realpath(directory))
    directory.mkdir(parents=True, exist_ok=True)
    acquire(directory / LOCK_NAME, f"{what} {directory}")


@contextlib.contextmanager
def output_lock(out, what: str):
    """Lock an output that a command replaces as a whole: the lock file sits beside it (``.NAME.balkd.lock``)."""
    real = Path(os.path.realpath(out))
    real.parent.mkdir(parents=True, exist_ok=True)
    lock_path = real.parent / f".{real.name}{LOCK_NAME}"
    acquire(lock_path, f"{what} {out}")
    try:
        yield
    finally:
        release(lock_path)
