"""The identity of a vocabulary, and what a checkpoint records about its data.

A model's vocabulary is ``DATA/dict.txt`` as fairseq's ``masked_lm`` task sees it: the four special
symbols, the file's symbols in file order, then ``<mask>``. Two vocabularies are the same exactly when
their symbol lists are; :func:`dictionary_sha256` hashes that list, so it can be recorded in a
checkpoint (the task does this) and compared later without the data at hand (export, evaluation,
resume, teachers).

What a ``balanced_distill`` checkpoint records:
- ``cfg.task.languages``: the resolved, comma-separated language list (also when it was discovered);
- ``task_state[DICTIONARY_HASH_KEY]``: :func:`dictionary_sha256` of the task's dictionary.
Checkpoints written before these were recorded give ``None`` from the readers below.
"""
import hashlib
import os
from typing import List, Optional, Sequence

from fairseq.data import Dictionary

from ..errors import BalkdError
from ..locks import LOCK_NAME
from ..outputs import atomic_copy

DICTIONARY_HASH_KEY = "dictionary_sha256"
MASK_SYMBOL = "<mask>"


def symbols_sha256(symbols: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(symbols).encode("utf-8")).hexdigest()


def dictionary_sha256(dictionary: Dictionary) -> str:
    """Hash of a loaded dictionary's symbols (``<mask>`` appended when the dictionary lacks it)."""
    symbols = list(dictionary.symbols)
    if MASK_SYMBOL not in symbols:
        symbols.append(MASK_SYMBOL)
    return symbols_sha256(symbols)


def load_model_dictionary(path: str, what: str = "dictionary") -> Dictionary:
    """``dict.txt`` as a masked LM sees it (``<mask>`` added as fairseq's masked_lm task does)."""
    try:
        dictionary = Dictionary.load(path)
    except FileNotFoundError:
        raise BalkdError(f"{what}: file not found: {path}") from None
    except (ValueError, RuntimeError, UnicodeDecodeError) as err:
        raise BalkdError(f"{what}: {path} is not a fairseq dict.txt: {err}") from None
    dictionary.add_symbol(MASK_SYMBOL)
    return dictionary


def dict_file_sha256(path: str, what: str = "dictionary") -> str:
    return dictionary_sha256(load_model_dictionary(path, what))


# what a run that failed before its first checkpoint leaves in its save dir (the teachers' records included)
RUN_LEFTOVERS = {"dict.txt", "train.log", LOCK_NAME, "teacher_init.json", "teacher_runs.json"}


def record_dictionary(source: str, save_dir: str) -> str:
    """Copy the dictionary a model trains with beside its checkpoints (atomically); its sha256.

    A save directory is then a model on its own: ``RobertaModel.from_pretrained(SAVE)``, a teacher,
    a ``--teacher-fallback`` or ``balkd-export`` find their vocabulary there. A ``dict.txt`` with
    other symbols beside a checkpoint (``*.pt``) is refused, never replaced: it belongs to the
    checkpoints beside it, or the directory is not the one the user meant (another DATA, say). Only
    when the directory holds nothing but what a run that failed before its first save leaves
    (:data:`RUN_LEFTOVERS`) is it replaced.
    """
    target = os.path.join(save_dir, "dict.txt")
    digest = dict_file_sha256(source, "shared dictionary")
    if os.path.isfile(target):
        if dict_file_sha256(target, "dictionary in --save-dir") == digest:
            return digest
        if set(os.listdir(save_dir)) - RUN_LEFTOVERS:
            raise BalkdError(f"--save-dir {save_dir} holds another dictionary ({target} differs from {source}): "
                             "it belongs to a model trained on other data; use another --save-dir")
        # nothing else there: left by a run that failed before its first save, it belongs to no model
    os.makedirs(save_dir, exist_ok=True)
    atomic_copy(source, target)
    return digest


def first_symbol_difference(a: Sequence[str], b: Sequence[str]) -> Optional[tuple]:
    """(index, symbol in a, symbol in b) of the first difference, ``'<end>'`` past a list's end; None if equal."""
    if list(a) == list(b):
        return None
    index = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return index, (a[index] if index < len(a) else "<end>"), (b[index] if index < len(b) else "<end>")


def recorded_languages(state: dict) -> Optional[List[str]]:
    """The language list a checkpoint recorded (``cfg.task.languages``), or None if it recorded none."""
    task_cfg = getattr(state.get("cfg"), "task", None) if isinstance(state, dict) else None
    value = getattr(task_cfg, "languages", "") if task_cfg is not None else ""
    languages = [lang.strip() for lang in str(value or "").split(",") if lang.strip()]
    return languages or None


def recorded_dictionary_sha256(state: dict) -> Optional[str]:
    """The dictionary hash a checkpoint recorded in its task state, or None (older checkpoints)."""
    task_state = state.get("task_state") if isinstance(state, dict) else None
    if isinstance(task_state, dict):
        return task_state.get(DICTIONARY_HASH_KEY)
    return None
