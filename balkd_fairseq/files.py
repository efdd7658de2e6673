"""Reading user files with one-line errors that name the file (and line)."""
import json
from typing import Iterator, Tuple

from .errors import BalkdError


def read_json(path: str, what: str) -> object:
    """The JSON value in ``path``; ``what`` prefixes the error (e.g. '--teachers', 'results file')."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise BalkdError(f"{what}: file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BalkdError(f"{what}: {path} is not valid JSON: {err}") from None


def numbered_lines(path: str, kind: str) -> Iterator[Tuple[int, str]]:
    """(line number from 1, line without its newline) of a UTF-8 text file of the given ``kind``."""
    try:
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                yield line_no, line.rstrip("\r\n")
    except FileNotFoundError:
        raise BalkdError(f"{kind} file not found: {path}") from None
    except UnicodeDecodeError as err:
        raise BalkdError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
