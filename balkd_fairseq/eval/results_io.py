"""Small helpers shared by the ``balkd-eval-lm`` / ``balkd-probe`` / ``balkd-report`` commands."""
import logging
import os
from typing import List, Optional, Tuple

from ..data import languages as data_languages
from ..errors import BalkdError
from ..files import read_json as read_json_file
from ..outputs import write_json as write_json_file

logger = logging.getLogger(__name__)

LM_RESULTS = "lm.json"
PROBING_RESULTS = "probe.json"


def parse_languages(value: str, flag: str) -> List[str]:
    """``'de,en'`` (or several space-separated values joined by the caller) -> ``['de', 'en']``."""
    languages = data_languages.parse_languages(value.replace(" ", ","), flag)
    if not languages:
        raise BalkdError(f"{flag} is empty: give comma-separated language codes, e.g. de,en")
    return languages


def parse_named_path(value: str, flag: str) -> Tuple[str, str]:
    """``NAME=PATH`` -> (NAME, PATH); a bare ``PATH`` is named after its directory (``ckpts/HL/x.pt`` -> HL).

    A value that is an existing file as a whole is a bare path even when it holds ``=`` (``runs/lr=5e-4/x.pt``),
    unless the part after the first ``=`` is an existing file too."""
    name, sep, path = value.partition("=")
    if sep and os.path.isfile(value) and not os.path.isfile(path):
        sep = ""
    if not sep:
        path = value
        name = os.path.basename(os.path.dirname(os.path.abspath(path))) or os.path.splitext(os.path.basename(path))[0]
    if not name or not path:
        raise BalkdError(f"{flag}: cannot read {value!r}; expected NAME=PATH")
    if os.sep in name or name in (".", ".."):
        raise BalkdError(f"{flag}: model name {name!r} must not contain {os.sep!r}")
    return name, path


def parse_named_checkpoints(values: List[str], flag: str = "--checkpoint") -> List[Tuple[str, str]]:
    """Every ``[NAME=]PATH`` of a repeated checkpoint flag, as (NAME, PATH).

    Two models of one NAME are refused: their results would share ``OUT/NAME``, the later overwriting the
    earlier (as a NAME taken from the directory of two checkpoints beside each other would)."""
    models = [parse_named_path(value, flag) for value in values]
    names = [name for name, _ in models]
    if len(set(names)) != len(names):
        raise BalkdError(f"{flag}: two models share a name ({', '.join(names)}); use NAME=PATH")
    from ..checkpoints import check_checkpoint_file

    for name, path in models:
        check_checkpoint_file(path, f"{flag} {name}")
    return models


def check_can_write(out_dir: str, flag: str = "--output-dir") -> None:
    """Refuse an output directory that cannot be written now rather than after the models are scored."""
    existing = out_dir
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing) or "."
    if not os.path.isdir(existing):
        raise BalkdError(f"{flag}: {existing} exists and is not a directory (cannot write {out_dir})")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BalkdError(f"{flag}: {existing} is not writable (cannot write {out_dir})")


def checkpoint_difference(a: dict, b: dict) -> Optional[Tuple[str, str, bool]]:
    """How the weights two result payloads were computed from differ: (a's, b's, known by content), or None.

    By content (``checkpoint_sha256``, and ``random_init`` for balkd-probe's untrained control) where both
    record it; else by resolved path (older lm.json files), which a moved project changes: not proof."""
    if a.get("random_init") != b.get("random_init"):
        return _weights(a), _weights(b), True
    if a.get("checkpoint_sha256") and b.get("checkpoint_sha256"):
        if a["checkpoint_sha256"] == b["checkpoint_sha256"]:
            return None
        return f"sha256 {a['checkpoint_sha256'][:12]}", f"sha256 {b['checkpoint_sha256'][:12]}", True
    paths = [p.get("checkpoint") for p in (a, b)]
    if all(paths) and os.path.realpath(paths[0]) != os.path.realpath(paths[1]):
        return paths[0], paths[1], False
    return None


def _weights(payload: dict) -> str:
    seed = payload.get("random_init")
    return f"the untrained weights of --random-init {seed}" if seed is not None else "trained weights"


def refuse_other_checkpoint(out_dir: str, other: str, ours: dict) -> None:
    """Refuse to write results of ``ours['checkpoint']`` into ``out_dir`` when its file ``other`` holds another
    checkpoint's: ``balkd-report`` reads one directory as one model, so they would be shown as one, and a
    results file of the same name would be replaced (a loop over seeds' ``ck/s<N>/Ours/x.pt``, all named
    ``Ours`` by default, would keep the last seed only)."""
    path = os.path.join(out_dir, other)
    if os.path.isfile(path):
        check_results_checkpoint(path, ours, "", "refusing to replace them or put both in one directory, which "
                                 "balkd-report reads as one model: remove the stale results there, or use another "
                                 "--output-dir or checkpoint NAME")


def check_results_checkpoint(path: str, ours: dict, flag: str, refusal: str) -> None:
    """Refuse (``flag``: the option to name, ``refusal``: what to do) a results file of another checkpoint
    than ``ours``; a difference known by path only (older files, a moved project) is a warning."""
    theirs = read_json(path)
    difference = checkpoint_difference(theirs, ours)
    if difference is None:
        return
    there, now, by_content = difference
    prefix = f"{flag}: " if flag else ""
    if not by_content:
        logger.warning(f"{prefix}{path} holds results of {there} (recorded by path only), these are of {now}; if that "
                       "is not the same file moved, use the results of this checkpoint")
        return
    changed = (os.path.realpath(theirs.get("checkpoint") or "") == os.path.realpath(ours["checkpoint"])
               and theirs.get("checkpoint_sha256") != ours.get("checkpoint_sha256"))  # e.g. checkpoint_last.pt
    what = "an earlier version of this checkpoint file (it changed since)" if changed else "another checkpoint"
    raise BalkdError(f"{prefix}{path} holds results of {what} ({there} there, {now} now); {refusal}")


def refuse_other_results(out_dir: str, ours: dict) -> None:
    """:func:`refuse_other_checkpoint` for every results file a model's directory can hold."""
    for results in (LM_RESULTS, PROBING_RESULTS):
        refuse_other_checkpoint(out_dir, results, ours)


def write_json(path: str, payload: dict) -> None:
    """Write ``payload`` atomically (a crash never leaves a half-written results file)."""
    write_json_file(path, payload)


def read_json(path: str) -> dict:
    payload = read_json_file(path, "results file")
    if not isinstance(payload, dict):
        raise BalkdError(f"{path}: expected a JSON object")
    return payload
