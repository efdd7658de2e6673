"""``balkd-train-teachers --init-from``: teachers that start from one (balanced multilingual) checkpoint.

Each teacher's fairseq-train run gets ``--finetune-from-model CHECKPOINT``: fairseq loads only the
weights, resets optimizer, scheduler, meters and data loader, and (unlike ``--restore-file``) an
interrupted teacher still resumes from its own ``checkpoint_last.pt``. The checkpoint is checked here
first, so a wrong one is one line instead of a traceback in a teacher's log: it must be a masked LM
over DATA/dict.txt (embedding rows, and the dictionary hash a balanced_distill checkpoint records)
whose architecture agrees with the architecture flags given for the teachers.

Which init a teacher directory was trained from is recorded in TEACHERS/<lang>/teacher_init.json
(written before training starts), so a rerun with another ``--init-from`` is refused instead of
continuing a teacher trained from another start.
"""
import argparse
import os
from typing import List, Optional

from fairseq.models import ARCH_CONFIG_REGISTRY

from .checkpoints import EMBED_KEY, load_checkpoint_state, model_config
from .data.dictionary_check import check_checkpoint_dictionary
from .errors import BalkdError
from .files import file_sha256, read_json
from .outputs import write_json

INIT_FILE = "teacher_init.json"
# flags that decide the shapes of a teacher's weights: they must agree with the init checkpoint's
SHAPE_FLAGS = ("arch", "encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads",
               "max_positions")
# fairseq refuses these together with --finetune-from-model; --init-from sets the start itself
CONFLICTING_FLAGS = ("--restore-file", "--finetune-from-model", "--reset-optimizer", "--reset-lr-scheduler",
                     "--reset-meters", "--reset-dataloader")


def passthrough_values(fairseq_args: List[str]) -> dict:
    """``{'encoder_layers': '2', ...}``: the ``--flag value`` / ``--flag=value`` pairs of the fairseq flags."""
    values, i = {}, 0
    while i < len(fairseq_args):
        flag, eq, value = fairseq_args[i].partition("=")
        if flag.startswith("--") and eq:
            values[flag[2:].replace("-", "_")] = value
        elif flag.startswith("--") and i + 1 < len(fairseq_args) and not fairseq_args[i + 1].startswith("--"):
            values[flag[2:].replace("-", "_")] = fairseq_args[i + 1]
            i += 1
        i += 1
    return values


def check_init_checkpoint(path: str, data_dict: str, fairseq_args: List[str]) -> dict:
    """``{"path", "sha256"}`` of a usable init checkpoint; :class:`BalkdError` naming the mismatch otherwise."""
    what = f"--init-from {path}"
    conflicting = [flag for flag in CONFLICTING_FLAGS if any(a.split("=")[0] == flag for a in fairseq_args)]
    if conflicting:
        raise BalkdError(f"--init-from sets where teachers start: do not pass {', '.join(conflicting)} after '--'")
    state = load_checkpoint_state(path, what)
    cfg = model_config(state, what, path)
    if state["model"].get(EMBED_KEY) is None:
        raise BalkdError(f"{what}: the checkpoint has no token embedding ({EMBED_KEY}): not a masked LM")
    try:  # the recorded hash, else a dict.txt beside the checkpoint (a teacher's), else the embedding size
        check_checkpoint_dictionary(state, path, data_dict, data_flag="DATA")
    except BalkdError as err:
        raise BalkdError(f"{what}: teachers must share the student's vocabulary: {err}") from None
    implied = implied_architecture(fairseq_args)
    for name, value in implied.items():
        stored = getattr(cfg.model, "_name" if name == "arch" else name, None)
        if stored is not None and str(stored) != str(value):
            raise BalkdError(f"{what}: the checkpoint has --{name.replace('_', '-')} {stored} but the teachers' flags "
                             f"give {value}: pass the init checkpoint's architecture after '--'")
    return {"path": os.path.abspath(path), "sha256": file_sha256(path)}


def implied_architecture(fairseq_args: List[str]) -> dict:
    """The shape settings the flags after '--' give a teacher: those passed, and the defaults of their --arch
    (a bare ``--arch roberta_base`` means 12 layers of 768). Only what is known: no --arch, no defaults."""
    given = passthrough_values(fairseq_args)
    arch = given.get("arch")
    values = {name: given[name] for name in SHAPE_FLAGS if name in given}
    if arch is None or arch not in ARCH_CONFIG_REGISTRY:
        return values
    namespace = argparse.Namespace(**{name: _number(value) for name, value in values.items() if name != "arch"})
    try:
        ARCH_CONFIG_REGISTRY[arch](namespace)
    except (AttributeError, AssertionError, TypeError, ValueError, KeyError):  # defaults needing other flags
        return values
    values.update({name: getattr(namespace, name) for name in SHAPE_FLAGS
                   if name != "arch" and getattr(namespace, name, None) is not None})
    return values


def _number(value: str):
    try:
        return int(value)
    except ValueError:
        return value


def init_flags(init: Optional[dict]) -> List[str]:
    return ["--finetune-from-model", init["path"]] if init else []


def record_init(lang_dir: str, lang: str, init: Optional[dict]) -> None:
    """Write the teacher's init record; refuse a directory holding a teacher trained from another init."""
    path = os.path.join(lang_dir, INIT_FILE)
    if os.path.isfile(os.path.join(lang_dir, "checkpoint_last.pt")):
        previous = read_json(path, "balkd-train-teachers") if os.path.isfile(path) else None
        old_sha = (previous or {}).get("sha256") if isinstance(previous, dict) else None
        new_sha = init["sha256"] if init else None
        if old_sha != new_sha:
            old = f"{previous['path']} (sha256 {old_sha[:12]})" if old_sha else "random initialisation"
            new = f"{init['path']} (sha256 {new_sha[:12]})" if new_sha else "random initialisation"
            raise BalkdError(f"{lang_dir} holds a teacher for {lang!r} trained from {old}, not from {new} "
                             "(--init-from): pass --force to retrain it from scratch from this one, or use another --save-dir")
    write_json(path, init or {})
