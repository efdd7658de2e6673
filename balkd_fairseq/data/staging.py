"""Write a command's output directory all at once: into a temporary sibling, then moved into place.

A command that fails half-way (bad input found late, Ctrl-C) leaves the existing output untouched
and no partial directory behind.
"""
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import BalkdError


def check_output_dir(out: Path, force: bool, flag: str = "--out") -> None:
    """Refuse a non-empty output directory unless ``force``; refuse a file in its place."""
    if out.exists() and not out.is_dir():
        raise BalkdError(f"{flag}: {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise BalkdError(f"{flag}: {out} is not empty (use --force to replace it)")


@contextlib.contextmanager
def staged_output_dir(out: Path, force: bool, flag: str = "--out"):
    """Yield an empty temporary directory beside ``out``; on success it replaces ``out``."""
    out = Path(out)
    check_output_dir(out, force, flag)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; the result should look like mkdir's
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)
