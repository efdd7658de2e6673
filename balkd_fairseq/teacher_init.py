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
import os
from typing import List, Optional

from .checkpoints import EMBED_KEY, load_checkpoint_state, model_config
from .data.dictionary_hash import dict_file_sha256, load_model_dictionary, recorded_dictionary_sha256
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
    dictionary = load_model_dictionary(data_dict, "shared dictionary")
    rows = state["model"].get(EMBED_KEY)
    if rows is None or rows.shape[0] != len(dictionary):
        raise BalkdError(f"{what}: the checkpoint embeds {None if rows is None else rows.shape[0]} symbols but "
                         f"{data_dict} has {len(dictionary)}: teachers must share the student's vocabulary")
    recorded = recorded_dictionary_sha256(state)
    if recorded is not None and recorded != dict_file_sha256(data_dict, "shared dictionary"):
        raise BalkdError(f"{what}: the checkpoint was trained with another dictionary than {data_dict}")
    given = passthrough_values(fairseq_args)
    for name in SHAPE_FLAGS:
        stored = getattr(cfg.model, "_name" if name == "arch" else name, None)
        if name in given and stored is not None and str(stored) != given[name]:
            raise BalkdError(f"{what}: the checkpoint has --{name.replace('_', '-')} {stored} but the teachers are "
                             f"given {given[name]}: pass the init checkpoint's architecture after '--'")
    return {"path": os.path.abspath(path), "sha256": file_sha256(path)}


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
                             "(--init-from); use another --save-dir")
    write_json(path, init or {})
