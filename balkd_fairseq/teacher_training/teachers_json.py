"""TEACHERS/teachers.json: the ``--teachers`` mapping the student reads (language -> teacher checkpoint)."""
import os
from typing import Dict, Optional

from tqdm import tqdm

from ..errors import BalkdError
from ..files import read_json
from .records import DONE_FILE, read_done


def teacher_checkpoint(lang_dir: str, which: str, lang: str) -> str:
    path = os.path.join(lang_dir, f"checkpoint_{which}.pt")
    if os.path.isfile(path):
        return os.path.abspath(path)
    done = read_done(lang_dir) or {}
    if which == "best" and "--disable-validation" in (done.get("fairseq_args") or []):
        raise BalkdError(f"no {os.path.basename(path)} in {lang_dir}: its teacher was trained without validation "
                         "(use --use-checkpoint last, or retrain it with validation)")
    # a complete teacher saved it (validation was on): it was deleted or moved since
    raise BalkdError(f"teacher for {lang!r} in {lang_dir} is recorded complete but its {os.path.basename(path)} "
                     f"is missing: retrain it with --languages {lang} --force")


def teacher_entry(checkpoint: str, init: Optional[dict]):
    """A teachers.json value: the checkpoint path, or with --init-from ``{"checkpoint": PATH, "init_from": {...}}``."""
    return {"checkpoint": checkpoint, "init_from": init} if init else checkpoint


def previous_entries(path: str, mapping: Dict[str, object], dictionary_sha256: str) -> Dict[str, object]:
    """With --languages, the entries of other languages already in teachers.json: training teachers a few
    languages at a time (one job per language) must not drop the ones trained before. An entry whose
    checkpoint is gone, or whose completion record names another dictionary (DATA prepared again), is
    dropped with a warning, so the file never points at nothing or at a teacher of other symbols."""
    if not os.path.isfile(path):
        return {}
    previous = read_json(path, "balkd-train-teachers: existing teachers.json")
    if not isinstance(previous, dict):
        raise BalkdError(f"{path} is not a teachers.json (a JSON object language -> checkpoint): "
                         "move it away, it would be replaced")
    kept = {}
    for lang, entry in previous.items():
        checkpoint = entry.get("checkpoint") if isinstance(entry, dict) else entry
        if lang in mapping:
            continue
        if not (isinstance(checkpoint, str) and os.path.isfile(checkpoint)):
            tqdm.write(f"warning: {path}: dropped {lang!r}, its checkpoint {checkpoint!r} no longer exists")
        elif _recorded_dictionary(checkpoint) not in (None, dictionary_sha256):
            tqdm.write(f"warning: {path}: dropped {lang!r}, its teacher {checkpoint} was trained with another "
                       "dictionary than DATA/dict.txt")
        else:
            kept[lang] = entry
    return kept


def _recorded_dictionary(checkpoint: str) -> Optional[str]:
    done = os.path.join(os.path.dirname(checkpoint), DONE_FILE)
    record = read_json(done, "balkd-train-teachers") if os.path.isfile(done) else None
    return record.get("dictionary_sha256") if isinstance(record, dict) else None
