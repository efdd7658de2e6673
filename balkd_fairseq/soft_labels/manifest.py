"""The teacher manifest: which teacher served each language, recorded in the student's checkpoints.

A manifest is a list of :class:`TeacherRecord` dicts (language, path, sha256 of the checkpoint file,
sha256 of the teacher's own dictionary, see :mod:`balkd_fairseq.data.dictionary_hash`). Both soft-label
sources describe their teachers this way (an offline cache stores the records of the teachers it was
built from). The ``balanced_distill`` task stores the manifest of its source in its task state
(:func:`record_manifest`, the one place it is written); fairseq saves that state in every checkpoint
(``task_state``, and through the task's resume hook in ``extra_state``). On resume the recorded
manifest must match the current one, language by language, by content (a teacher that only moved
to another path is the same teacher, but a language served by the ``--teacher-fallback`` model instead of
its own teacher is a different one); ``--reset-teachers`` accepts a different teacher set.
"""
import logging
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

from ..errors import BalkdError

logger = logging.getLogger(__name__)

MANIFEST_KEY = "teacher_manifest"


@dataclass
class TeacherRecord:
    """What served a language: recorded in the student's checkpoint (the teacher manifest)."""

    language: str
    path: str
    sha256: str
    dictionary_sha256: str
    served_by: str = "teacher"  # or "fallback": the --teacher-fallback model (see fallback.py)
    # with --teacher-fallback: the rule and both candidates ({"path", "sha256", "valid_loss"} each)
    fallback: Optional[dict] = None
    init_from: Optional[dict] = None  # {"path", "sha256"} of the teacher's --init-from, as teachers.json records it




def record_dict(record: TeacherRecord) -> dict:
    """A record as manifests store it: the optional lever fields only when a lever was used (so manifests
    of plain teachers are the same as before the levers existed)."""
    values = asdict(record)
    if record.fallback is None:
        values.pop("served_by")
    return {key: value for key, value in values.items() if value is not None}


def record_manifest(task_state, manifest: List[dict]) -> None:
    """Store ``manifest`` in a task's state (``task.state``), which every checkpoint saves."""
    task_state.merge_state_dict({MANIFEST_KEY: manifest})


def recorded_manifest(task_state) -> Optional[List[dict]]:
    return task_state.state_dict.get(MANIFEST_KEY)


def _by_language(manifest: List[dict]) -> Dict[str, dict]:
    return {record["language"]: record for record in manifest}


def served_by(record: dict) -> str:
    return record.get("served_by", "teacher")  # manifests written before --teacher-fallback: own teachers


def _short(record: dict) -> str:
    fallback = ", served by the fallback" if served_by(record) == "fallback" else ""
    return f"{record['path']} (sha256 {record['sha256'][:12]}, dictionary {record['dictionary_sha256'][:12]}{fallback})"


def manifest_differences(recorded: List[dict], current: List[dict]) -> List[str]:
    """Human-readable differences between two manifests (empty when every language has the same teacher)."""
    old, new = _by_language(recorded), _by_language(current)
    differences = []
    if set(old) != set(new):
        differences.append(f"languages {','.join(sorted(old))} in the checkpoint, {','.join(sorted(new))} now")
    for lang in sorted(set(old) & set(new)):
        same_content = ((old[lang]["sha256"], old[lang]["dictionary_sha256"], served_by(old[lang]))
                        == (new[lang]["sha256"], new[lang]["dictionary_sha256"], served_by(new[lang])))
        if not same_content:
            differences.append(f"{lang!r}: {_short(old[lang])} in the checkpoint, now {_short(new[lang])}")
    return differences


def check_resumed_manifest(recorded: List[dict], current: Optional[List[dict]], reset_teachers: bool) -> None:
    """Raise :class:`BalkdError` when a resumed run's teachers differ from the checkpoint's (unless reset)."""
    if current is None:
        return
    differences = manifest_differences(recorded, current)
    if not differences:
        for lang, record in _by_language(current).items():
            if record["path"] != _by_language(recorded)[lang]["path"]:
                logger.info(f"teacher for {lang!r} moved: {_by_language(recorded)[lang]['path']} -> {record['path']} (same content)")
        return
    summary = "; ".join(differences)
    if reset_teachers:
        logger.warning(f"--reset-teachers: resuming with a different teacher set ({summary})")
        return
    raise BalkdError(
        f"the checkpoint being resumed was trained with different teachers: {summary}; "
        "pass --reset-teachers to continue with the new teachers"
    )
