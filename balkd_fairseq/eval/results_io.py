"""Small helpers shared by the ``balkd-eval-lm`` / ``balkd-probe`` / ``balkd-report`` commands."""
import os
from typing import List, Tuple

from ..data import languages as data_languages
from ..errors import BalkdError
from ..files import read_json as read_json_file
from ..outputs import write_json as write_json_file

LM_RESULTS = "lm.json"
PROBING_RESULTS = "probe.json"


def parse_languages(value: str, flag: str) -> List[str]:
    """``'de,en'`` (or several space-separated values joined by the caller) -> ``['de', 'en']``."""
    languages = data_languages.parse_languages(value.replace(" ", ","), flag)
    if not languages:
        raise BalkdError(f"{flag} is empty: give comma-separated language codes, e.g. de,en")
    return languages


def parse_named_path(value: str, flag: str) -> Tuple[str, str]:
    """``NAME=PATH`` -> (NAME, PATH); a bare ``PATH`` is named after its directory (``ckpts/HL/x.pt`` -> HL)."""
    name, sep, path = value.partition("=")
    if not sep:
        path = value
        name = os.path.basename(os.path.dirname(os.path.abspath(path))) or os.path.splitext(os.path.basename(path))[0]
    if not name or not path:
        raise BalkdError(f"{flag}: cannot read {value!r}; expected NAME=PATH")
    if os.sep in name or name in (".", ".."):
        raise BalkdError(f"{flag}: model name {name!r} must not contain {os.sep!r}")
    return name, path


def write_json(path: str, payload: dict) -> None:
    """Write ``payload`` atomically (a crash never leaves a half-written results file)."""
    write_json_file(path, payload)


def read_json(path: str) -> dict:
    payload = read_json_file(path, "results file")
    if not isinstance(payload, dict):
        raise BalkdError(f"{path}: expected a JSON object")
    return payload
