"""Reading user files: the one JSON reader and the one line reader, with one-line errors naming the file.

Every JSON file the project reads (``--teachers`` mappings, results, manifests, ``languages.json``,
``stats.json``) goes through :func:`read_json`, which rejects a duplicate key (``json`` would keep
the last one silently: two teachers for one language would become one). Every text file read line
by line (raw text, CoNLL-U, IOB2) goes through :func:`numbered_lines`.
"""
import hashlib
import json
import re
from typing import Callable, Iterator, Optional, Tuple

from .errors import BalkdError

BOM = "\ufeff"


class _DuplicateKey(ValueError):
    pass


def _object_without_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def parse_json(text: str, where: str) -> object:
    """The JSON value of ``text``; ``where`` names its origin in the error (``FILE`` or ``flag FILE``)."""
    try:
        return json.loads(text, object_pairs_hook=_object_without_duplicates)
    except _DuplicateKey as err:
        raise BalkdError(f"{where}: {err} (every key may appear once per object)") from None
    except RecursionError:
        raise BalkdError(f"{where}: not valid JSON: nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, and integers longer than Python's digit limit
        raise BalkdError(f"{where}: not valid JSON: {err}") from None


def read_json(path: str, what: str) -> object:
    """The JSON value in ``path``; ``what`` prefixes the error (e.g. '--teachers', 'results file')."""
    where = f"{what}: {path}"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BalkdError(f"{what}: file not found: {path}") from None
    except IsADirectoryError:
        raise BalkdError(f"{what}: {path} is a directory, expected a JSON file") from None
    except PermissionError:
        raise BalkdError(f"{what}: {path}: permission denied") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise BalkdError(f"{where}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    return parse_json(text, where)


COMPRESSION_MAGIC = {b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
BZIP2_MAGIC = re.compile(rb"^BZh[1-9]1AY&SY")  # "BZh" alone starts ordinary text too; the block header does not


def compression(head: bytes) -> Optional[str]:
    """The compression format whose magic number ``head`` starts with, or None."""
    if BZIP2_MAGIC.match(head):
        return "bzip2"
    return next((name for magic, name in COMPRESSION_MAGIC.items() if head.startswith(magic)), None)


def numbered_lines(path, kind: str, on_bytes: Optional[Callable[[int], None]] = None) -> Iterator[Tuple[int, str]]:
    """(line number from 1, line without its line break) of a UTF-8 text file of the given ``kind``.

    A byte-order mark at the start is dropped; invalid UTF-8 names the file and line. ``on_bytes``
    is called with each line's size in bytes (for progress bars).
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise BalkdError(f"{kind} file not found: {path}") from None
    except IsADirectoryError:
        raise BalkdError(f"{kind} file {path} is a directory") from None
    except PermissionError:
        raise BalkdError(f"{kind} file {path}: permission denied") from None
    with f:
        for line_no, raw in enumerate(f, start=1):
            if on_bytes is not None:
                on_bytes(len(raw))
            compressed = compression(raw) if line_no == 1 else None
            if compressed is not None:  # corpora ship compressed (CC-100: .txt.xz): say so, not "not UTF-8"
                raise BalkdError(f"{path}: {compressed}-compressed, not text: decompress it first")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise BalkdError(
                    f"{path}: line {line_no}: not UTF-8 text ({err.reason} at byte {err.start} of the line)"
                ) from None
            if line_no == 1 and text.startswith(BOM):
                text = text[len(BOM):]
            yield line_no, text.rstrip("\r\n")


def file_sha256(path: str, chunk: int = 1 << 22) -> str:
    """sha256 of a file's bytes, read in chunks (checkpoints and data files are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
