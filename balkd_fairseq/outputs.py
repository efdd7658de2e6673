"""Writing outputs without losing anything: atomic files, and output directories a command may replace.

* :func:`atomic_write` / :func:`write_json` / :func:`atomic_copy`: the one way a file is written;
  it goes to a temporary name in the same directory and is renamed over the target when complete,
  so a crash, a kill or a full disk leaves the previous file (or none), never half of one.
* :func:`staged_output_dir`: a command's whole output directory is written into a hidden sibling
  ``.<name>.<random>.partial`` and moved into place only when everything succeeded. A killed
  command leaves only that hidden folder, which holds an incomplete :data:`MARKER` and is
  removed (with a warning) by the next command writing the same output.
* :func:`check_replaceable`: the guard of every ``--force`` / ``--overwrite``. A directory is
  replaced only if it holds the :data:`MARKER` the same balkd command wrote when it created it, and
  if it neither is nor contains any of the command's inputs.
"""
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Optional, Union

from .errors import BalkdError

logger = logging.getLogger(__name__)

MARKER = ".balkd-output.json"  # written into every output directory a balkd command creates
PARTIAL_SUFFIX = ".partial"
PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def remove_quietly(path: PathLike) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w", encoding: Optional[str] = "utf-8"):
    """``with atomic_write(path) as f: ...`` writes ``path`` all at once, or not at all."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the result should look like open()'s
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise


def write_json(path: PathLike, payload, indent: int = 2) -> None:
    """``payload`` as UTF-8 JSON (non-ASCII kept readable), written atomically."""
    with atomic_write(path) as f:
        json.dump(payload, f, indent=indent, ensure_ascii=False)
        f.write("\n")


def atomic_copy(src_path: PathLike, dst_path: PathLike) -> None:
    """``shutil.copyfile(src, dst)`` that replaces ``dst`` only once the copy is complete."""
    with atomic_write(dst_path, "wb") as out, open(src_path, "rb") as src:
        shutil.copyfileobj(src, out, 16 * 1024 * 1024)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# --------------------------------------------------------------------------------------------------
# Output directories
# --------------------------------------------------------------------------------------------------


def _contains(directory: Path, path: Path) -> bool:
    return path == directory or directory in path.parents


def lies_within(path: PathLike, directory: PathLike) -> bool:
    """Whether ``path`` is ``directory`` or lies inside it, links resolved."""
    return _contains(Path(os.path.realpath(directory)), Path(os.path.realpath(path)))


def check_replaceable(out: PathLike, inputs: Iterable[PathLike] = (), flag: str = "--out",
                      marker: str = MARKER, command: Optional[str] = None) -> None:
    """Refuse to remove or replace ``out`` unless a balkd command created it (it holds ``marker``, the
    file that command writes into every output of its own) and it neither is nor holds an input. With
    ``command``, that command must be the one that created it: ``balkd-export --force`` must not replace
    the data ``balkd-prepare`` wrote."""
    real = Path(os.path.realpath(out))
    for given in inputs:
        if given is None:
            continue
        source = Path(os.path.realpath(given))
        if _contains(real, source):
            raise BalkdError(f"{flag}: {out} is or contains the input {given}; refusing to replace it "
                             "(choose another output directory)")
    if real.is_dir() and any(real.iterdir()) and not (real / marker).is_file():
        raise BalkdError(f"{flag}: {out} was not created by balkd-fairseq (it has no {marker}); refusing to "
                         "replace it: remove it yourself or choose another directory")
    creator = _marker_command(real / marker) if command and (real / marker).is_file() else command
    if _command_stem(creator) != _command_stem(command):
        raise BalkdError(f"{flag}: {out} was written by {creator}, not {command}; refusing to replace it: "
                         "choose another directory")


def _command_stem(command: Optional[str]) -> str:
    """``balkd-synth``, ``synth.py`` (``python -m balkd_fairseq.cli.synth``) and ``synth`` name one command."""
    name = os.path.basename(str(command))
    name = name[:-len(".py")] if name.endswith(".py") else name
    return name[len("balkd-"):] if name.startswith("balkd-") else name


def _marker_command(path: Path) -> str:
    from .files import read_json

    payload = read_json(str(path), "output marker")
    return str(payload.get("command")) if isinstance(payload, dict) else "an unknown command"


def check_output_dir(out: PathLike, force: bool, flag: str = "--out", inputs: Iterable[PathLike] = (),
                     command: Optional[str] = None) -> None:
    """Refuse a file in the place of ``out``, and a non-empty ``out`` unless ``force`` and replaceable (by
    ``command``, when given: see :func:`check_replaceable`)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BalkdError(f"{flag}: {out} exists and is not a directory")
    blocking = next((p for p in out.parents if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise BalkdError(f"{flag}: {blocking} is a file, so {out} cannot be created under it")
    if out.is_symlink() and not out.exists():
        raise BalkdError(f"{flag}: {out} is a symbolic link to a missing directory ({os.readlink(out)})")
    inputs = list(inputs)
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise BalkdError(f"{flag}: {out} is not empty (use --force to replace it)")
        check_replaceable(out, inputs, flag, command=command)
    else:
        check_replaceable(out, inputs, flag)  # an empty or absent output may still be an input's parent


def write_marker(directory: PathLike, command: str, complete: bool) -> None:
    write_json(Path(directory) / MARKER, {"command": command, "complete": complete, "pid": os.getpid()})


def is_complete_output(directory: PathLike) -> bool:
    """Whether ``directory`` was written to the end by a balkd command (False for a killed one's leftovers)."""
    from .files import read_json

    marker = Path(directory) / MARKER
    if not marker.is_file():
        return False
    payload = read_json(str(marker), "output marker")
    return isinstance(payload, dict) and payload.get("complete") is True


def remove_stale_partials(real_out: Path) -> None:
    """Remove what killed runs writing ``real_out`` left behind (hidden ``.<name>.*.partial`` siblings)."""
    for partial in real_out.parent.glob(f".{real_out.name}.*{PARTIAL_SUFFIX}"):
        if partial.is_dir() and (partial / MARKER).is_file() and not is_complete_output(partial):
            if _pid_alive(_marker_pid(partial)):
                continue  # another running command is writing it (its lock refuses this one anyway)
            logger.warning(f"removing {partial}: the incomplete output of an interrupted run")
            shutil.rmtree(partial, ignore_errors=True)


def _marker_pid(directory: Path) -> Optional[int]:
    from .files import read_json

    payload = read_json(str(directory / MARKER), "output marker")
    pid = payload.get("pid") if isinstance(payload, dict) else None
    return pid if isinstance(pid, int) else None


def _pid_alive(pid: Optional[int]) -> bool:
    if pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def staged_output_dir(out: PathLike, force: bool, flag: str = "--out", inputs: Iterable[PathLike] = (),
                      command: Optional[str] = None):
    """Yield an empty hidden directory beside ``out``; on success it replaces ``out``.

    ``out`` may be a symbolic link to a directory: the directory it points to is replaced and the
    link kept. Refuses (before any work) what :func:`check_output_dir` refuses.
    """
    out = Path(out)
    command = command or os.path.basename(sys.argv[0])
    check_output_dir(out, force, flag, inputs, command)
    real = Path(os.path.realpath(out))
    real.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(real)
    staging = Path(tempfile.mkdtemp(prefix=f".{real.name}.", suffix=PARTIAL_SUFFIX, dir=real.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; the result should look like mkdir's
    try:
        write_marker(staging, command, complete=False)
        yield staging
        write_marker(staging, command, complete=True)
        _replace_dir(staging, real)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_dir(staging: Path, real: Path) -> None:
    """Move ``staging`` to ``real``; an existing ``real`` is moved aside first and removed last."""
    if not real.exists():
        os.replace(staging, real)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{real.name}.", suffix=".old", dir=real.parent))
    os.rmdir(old)
    os.replace(real, old)
    try:
        os.replace(staging, real)
    except OSError:
        os.replace(old, real)
        raise
    shutil.rmtree(old, ignore_errors=True)
