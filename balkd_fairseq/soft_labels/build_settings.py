"""The settings a sharded teacher-cache build is under way with, shared by all its workers.

Workers of one ``balkd-cache-teachers`` build write into the same ``ROOT.partial``, and the merge
needs every language built with the same settings. A worker started with another ``--seed`` (or
masking, balancing, top-k, epochs, data or teacher) would otherwise compute its languages under a
signature no other worker shares: the build then never merges, and every worker reports that it
waits for the others. So the first worker records the build's settings in ``ROOT.partial/.build.json``
and every later worker compares its own with them before it touches anything, refusing a mismatch
in one line that names the differing flags.
"""
import json
import os
from typing import Dict, Iterator, List, Tuple

from ..errors import BalkdError
from ..files import read_json
from ..outputs import write_json

BUILD_SETTINGS = ".build.json"  # in ROOT.partial; removed at the merge
SHOWN_DIFFERENCES = 4  # a line stays readable when e.g. every language's data changed
# the mappings every record holds (parents first): what differs is named by its place in them
SECTIONS = (("fingerprint",), ("fingerprint", "data"), ("fingerprint", "data", "files"), ("fingerprint", "masking"),
            ("fingerprint", "balancing"), ("splits",), ("teachers",))


def build_settings_path(partial: str) -> str:
    return os.path.join(partial, BUILD_SETTINGS)


def claim_or_check(partial: str, settings: dict) -> None:
    """Record ``settings`` as the build's if none are recorded yet, else refuse settings that differ.

    The caller holds the build's merge lock, so two workers starting at once agree on one record.
    """
    path = build_settings_path(partial)
    settings = json.loads(json.dumps(settings))  # compared as it reads back (tuples become lists)
    if not os.path.exists(path):
        write_json(path, settings, indent=1)
        return
    recorded = _read_recorded(path)
    differences = list(_differences(recorded, settings))
    if differences:
        mine = [f"{name} {now}" for name, _, now in differences[:SHOWN_DIFFERENCES]]
        theirs = [f"{name} {then}" for name, then, _ in differences[:SHOWN_DIFFERENCES]]
        more = f" (and {len(differences) - SHOWN_DIFFERENCES} more differences)" if len(differences) > SHOWN_DIFFERENCES else ""
        raise BalkdError(
            f"{', '.join(mine)}, but the cache in {partial} is being built with {', '.join(theirs)}{more}: start every "
            f"worker of a build with the same settings (to build with these instead, delete {path} once no worker of "
            "that build runs: a language finished with other settings is then redone, one that still matches is kept)")


def _read_recorded(path: str) -> dict:
    """The recorded settings, refused in one line naming the file if unreadable or lacking a section (e.g. one
    hand-edited to null): no difference could be named against it."""
    advice = "delete it once no worker of that build runs, to go on with these settings"
    try:
        recorded = read_json(path, "--cache-dir")
    except BalkdError as err:
        raise BalkdError(f"{err}; {advice}") from None
    why = "not a JSON object" if not isinstance(recorded, dict) else _misshapen(recorded)
    if why:
        raise BalkdError(f"--cache-dir: {path} is not a record of a balkd-cache-teachers build ({why}); {advice}")
    return recorded


def _misshapen(recorded: dict) -> str:
    """What is wrong with the first of the SECTIONS that ``recorded`` lacks as a mapping, or ''."""
    for section in SECTIONS:
        value = recorded
        for key in section:
            value = value.get(key) if isinstance(value, dict) else None
        if not isinstance(value, dict):
            return f"its {'/'.join(section)!r} is missing or not a mapping"
    return ""


def _differences(recorded, current, path: Tuple[str, ...] = ()) -> Iterator[Tuple[str, str, str]]:
    """(what, recorded value, current value) of every differing leaf, named as the user set it."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        for key in sorted(set(recorded) | set(current)):
            yield from _differences(recorded.get(key, "absent"), current.get(key, "absent"), (*path, key))
    elif recorded != current:
        yield _name(path), _show(path, recorded), _show(path, current)


def _name(path: Tuple[str, ...]) -> str:
    """The flag (or file) a settings path comes from: ('fingerprint', 'masking', 'mask_prob') -> --mask-prob."""
    head, rest = path[0], path[1:]
    if head == "teachers" and len(rest) == 1:
        return f"a teacher for {rest[0]!r}"
    if head == "teachers":
        return f"the {rest[0]!r} teacher's {'checkpoint' if rest[-1] == 'sha256' else 'dictionary'} sha256"
    if head == "splits":
        return f"{rest[0]} epochs"  # --max-epoch for the train split, --valid-subset for which others
    if head != "fingerprint":
        return {"topk": "--cache-topk", "teacher_dtype": "--teacher-dtype"}.get(head, head)
    section = rest[0]
    if section == "data":
        return "DATA dict.txt sha256" if rest[1] == "dict_sha256" else f"DATA {' '.join(rest[2:])}"
    if section in ("masking", "balancing"):
        return "--" + rest[1].replace("_", "-")
    return "--" + section  # --seed, --languages


def _show(path: Tuple[str, ...], value) -> str:
    if isinstance(value, str) and len(value) == 64 and "sha256" in path[-1]:
        return value[:12] + "…"  # a hash: enough of it to tell two apart
    if isinstance(value, list) and len(value) > 1 and path[0] == "splits" and all(type(e) is int for e in value) \
            and value == list(range(value[0], value[-1] + 1)):
        return f"{value[0]}..{value[-1]}"
    if isinstance(value, dict):  # against "absent" or "missing": its contents would not fit on the line
        return "present"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def teachers_settings(records: List[dict]) -> Dict[str, dict]:
    """What of each language's teacher decides its cached outputs (its checkpoint and dictionary contents)."""
    return {record["language"]: {name: record[name] for name in ("sha256", "dictionary_sha256")} for record in records}
