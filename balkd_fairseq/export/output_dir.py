"""The export folder: built in a temporary sibling and moved into place only when complete.

``--force`` replaces an existing folder only if an earlier ``balkd-export`` made it (it holds
:data:`MARKER`) and it neither is nor contains an input (the checkpoint, the data directory): a
mistyped ``--out`` must never delete training results.
"""
import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from ..errors import BalkdError

MARKER = ".balkd-export"


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_out(out: Path, force: bool, inputs: Iterable[str]) -> None:
    out = out.resolve()
    for given in inputs:
        path = Path(given).resolve()
        if _inside(path, out) or _inside(out, path):
            raise BalkdError(f"--out {out}: overlaps the input {given}; export into a folder of its own")
    if out.exists() and not out.is_dir():
        raise BalkdError(f"--out: {out} exists and is not a directory")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise BalkdError(f"--out: {out} is not empty (use --force to replace an earlier export)")
    if not (out / MARKER).is_file():
        raise BalkdError(f"--out: {out} was not written by balkd-export ({MARKER} missing); --force replaces only "
                         "earlier exports, remove it yourself if you mean it")


@contextlib.contextmanager
def staged_export_dir(out: Path, force: bool, inputs: Iterable[str]):
    """Yield an empty temporary folder beside ``out``; on success it replaces ``out``."""
    out = Path(out)
    check_out(out, force, inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; the result should look like mkdir's
    try:
        yield staging
        (staging / MARKER).write_text("written by balkd-export; balkd-export --force may replace this folder\n")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)
