"""Teachers named by ``--teachers``: parsed, checked against the student, built and (re)loaded.

``--teachers`` maps languages to teacher checkpoints: ``'de:/x/de.pt,en:/x/en.pt'`` or a JSON file
whose values are a checkpoint path or ``{"checkpoint": PATH, "dict": PATH}``. A teacher's dictionary
is the ``dict.txt`` beside its checkpoint (``balkd-train-teachers`` writes it there) unless the JSON
names one; it must be the student's, symbol for symbol, and match the checkpoint's embedding.
What these checks read from a checkpoint and a dictionary is remembered beside them while the files
are unchanged (:mod:`balkd_fairseq.hash_memo`): a start-up with unchanged teachers unpickles a
checkpoint only to build a resident model, and with ``--max-resident-teachers`` none.

With ``--max-resident-teachers`` a teacher dropped to make room is refilled with the next one's
weights when both have one architecture (:class:`TeacherLoader`): no model is built per load.
Running the teachers on the student's batches is :mod:`balkd_fairseq.soft_labels.online`.
"""
import contextlib
import functools
import logging
import os
import weakref
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
from fairseq.data import Dictionary
from fairseq.models.roberta import RobertaModel

from ..checkpoints import ModelConfigs, checkpoint_facts, load_checkpoint_state, model_config
from ..data.dictionary_hash import (
    dict_file_sha256,
    dictionary_sha256,
    first_symbol_difference,
    load_model_dictionary,
    symbols_sha256,
)
from ..errors import BalkdError
from ..files import read_json
from ..hash_memo import memoized_hash, memoized_sha256
from .manifest import TeacherRecord

logger = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DICT_FILE = "dict.txt"
DICTIONARY_FACT = "dictionary_sha256"  # what a dict.txt's memo remembers: dictionary_sha256 of its symbols


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher as ``--teachers`` names it: its checkpoint and, if given, its dictionary file."""

    checkpoint: str
    dict: Optional[str] = None
    init_from: Optional[dict] = None  # {"path", "sha256"}: what balkd-train-teachers --init-from started it from

    @property
    def dictionary_file(self) -> str:
        return self.dict or os.path.join(os.path.dirname(os.path.abspath(self.checkpoint)), DICT_FILE)


# ------------------------------------------------------------------------------ --teachers
def parse_teacher_spec(spec: str) -> Dict[str, TeacherSpec]:
    """``'de:/x/de.pt,en:/x/en.pt'`` or the path of a JSON object ``{"de": "/x/de.pt", ...}``."""
    spec = spec.strip()
    if not spec:
        raise BalkdError("--teachers is empty: give 'lang:checkpoint,...' or a JSON file mapping languages to checkpoints")
    if spec.endswith(".json") or os.path.isfile(spec):
        return _read_teacher_json(spec)
    mapping = {}
    for item in spec.split(","):
        lang, sep, path = item.strip().partition(":")
        if not sep or not lang or not path:
            raise BalkdError(f"--teachers: cannot read {item!r}; expected 'lang:/path/to/checkpoint.pt'")
        if lang in mapping:
            raise BalkdError(f"--teachers names language {lang!r} twice")
        mapping[lang] = TeacherSpec(path)
    return mapping


def _read_teacher_json(path: str) -> Dict[str, TeacherSpec]:
    mapping = read_json(path, "--teachers")
    if not isinstance(mapping, dict):
        raise BalkdError(f"--teachers: {path} must hold a JSON object mapping language to checkpoint path")
    base = os.path.dirname(os.path.abspath(path))

    def resolve(p: str) -> str:
        return p if os.path.isabs(p) else os.path.join(base, p)

    teachers = {}
    for lang, value in mapping.items():
        if isinstance(value, str):
            teachers[lang] = TeacherSpec(resolve(value))
        elif isinstance(value, dict) and isinstance(value.get("checkpoint"), str) \
                and set(value) <= {"checkpoint", "dict", "init_from"} and isinstance(value.get("dict", ""), str):
            teachers[lang] = TeacherSpec(resolve(value["checkpoint"]), resolve(value["dict"]) if value.get("dict") else None,
                                         value.get("init_from") if isinstance(value.get("init_from"), dict) else None)
        else:
            raise BalkdError(f"--teachers: {path}: the value for {lang!r} must be a checkpoint path or "
                             '{"checkpoint": PATH, "dict": PATH}')
    return teachers


def check_coverage(languages: List[str], mapping: Dict[str, object]) -> None:
    missing = [lang for lang in languages if lang not in mapping]
    if missing:
        raise BalkdError(
            f"no teacher for language(s) {', '.join(missing)} in --teachers (teachers given for: "
            f"{', '.join(sorted(mapping)) or 'none'})"
        )
    for lang in sorted(set(mapping) - set(languages)):
        checkpoint = getattr(mapping[lang], "checkpoint", mapping[lang])
        logger.warning(f"teacher for language {lang!r} ({checkpoint}) is not used: {lang!r} is not among this run's "
                       f"languages ({', '.join(languages)})")


def check_dictionary(spec: TeacherSpec, student: Dictionary, student_sha256: str, embed_rows: Optional[int],
                     what: str) -> str:
    """The sha256 of the teacher's own dictionary, which must be the student's and match the checkpoint's embedding.

    The dictionary's hash is remembered beside it; only a dictionary whose hash is not the student's
    is read, to name the first symbol that differs.
    """
    dict_file = spec.dictionary_file
    if not os.path.isfile(dict_file):
        raise BalkdError(
            f"{what}: no dictionary for {spec.checkpoint}: {dict_file} not found (put the dict.txt the teacher was "
            'trained with beside its checkpoint, or name it in the --teachers JSON as {"checkpoint": ..., "dict": ...})'
        )
    teacher_sha256 = memoized_hash(dict_file, DICTIONARY_FACT, lambda: dict_file_sha256(dict_file, what))
    symbols = len(student)
    if teacher_sha256 != student_sha256:
        teacher = load_model_dictionary(dict_file, what)
        difference = first_symbol_difference(teacher.symbols, student.symbols)
        if difference:
            index, t_sym, s_sym = difference
            raise BalkdError(
                f"{what}: dictionary of {spec.checkpoint} ({dict_file}) differs from the student's dict.txt: teacher has "
                f"{len(teacher)} symbols, student has {len(student)}; first difference at index {index}: teacher {t_sym!r} "
                f"vs student {s_sym!r}"
            )
        teacher_sha256 = dictionary_sha256(teacher)  # (a memo that lied about an equal dictionary)
    if embed_rows is not None and embed_rows != symbols:
        raise BalkdError(
            f"{what}: {spec.checkpoint} embeds {embed_rows} symbols but its dictionary {dict_file} has {symbols}: "
            "this is not the dictionary the teacher was trained with"
        )
    return teacher_sha256


def check_serves_task(positions: Optional[int], task, what: str, path: str) -> None:
    """A teacher must take every block the student's batches hold (``positions``: :class:`CheckpointFacts`')."""
    needed = task.cfg.tokens_per_sample
    if positions is not None and int(positions) < needed:
        raise BalkdError(
            f"{what}: {path} takes at most {positions} positions but the student's batches hold blocks of "
            f"--tokens-per-sample {needed}: use a teacher with --max-positions >= {needed} or a smaller --tokens-per-sample"
        )


FALLBACK_TEACHER = "<fallback>"  # the language argument that means the --teacher-fallback model


def teacher_name(lang: str) -> str:
    return "--teacher-fallback" if lang == FALLBACK_TEACHER else f"teacher for language {lang!r}"


def state_loader(path: str, what: str) -> Callable[[], dict]:
    """Loads the checkpoint's state on first call and returns that same state after: the checks and the
    model built after them share one load."""
    return functools.cache(functools.partial(load_checkpoint_state, path, what))


def refuse_teacher_being_retrained(checkpoint: str, what: str) -> None:
    """balkd-train-teachers --force sets the finished teacher aside in ``.previous`` beside the checkpoint until
    its retraining has finished (or puts it back if stopped): until then the checkpoint teachers.json names is
    partial, or missing after a kill -9, and would teach what a few updates learnt."""
    from ..teacher_training.runs import PREVIOUS_RUN

    directory = os.path.dirname(os.path.abspath(checkpoint))
    if os.path.isdir(os.path.join(directory, PREVIOUS_RUN)):
        raise BalkdError(f"{what}: {directory} is being retrained by balkd-train-teachers --force (the finished "
                         f"teacher is set aside in {PREVIOUS_RUN} until then): wait until that retraining has "
                         "finished, or run it again if it was killed")


def check_teacher(task, lang: str, spec: TeacherSpec, student_sha256: Optional[str] = None,
                  load_state: Optional[Callable[[], dict]] = None) -> TeacherRecord:
    """The manifest record of ``lang``'s teacher after every check that needs no model.

    The checks read remembered facts of the checkpoint and its dictionary (:mod:`balkd_fairseq.hash_memo`);
    the checkpoint is unpickled (``load_state()``) only when its facts are not remembered.
    ``student_sha256`` is ``symbols_sha256`` of the student's dictionary (computed if not given).
    """
    what = teacher_name(lang)
    refuse_teacher_being_retrained(spec.checkpoint, what)
    facts = checkpoint_facts(spec.checkpoint, what, load_state)
    facts.require_masked_lm(what, spec.checkpoint)
    student = task.source_dictionary
    dict_sha256 = check_dictionary(spec, student, student_sha256 or symbols_sha256(student.symbols), facts.embed_rows,
                                   what)
    check_serves_task(facts.max_positions, task, what, spec.checkpoint)
    trained_on = facts.trained_language()
    if trained_on is not None and trained_on != lang and lang != FALLBACK_TEACHER:
        logger.warning(f"{what}: {spec.checkpoint} was trained on {facts.train_subset!r} (its --train-subset), "
                       f"not on {lang!r}: is --teachers mapping {lang!r} to another language's teacher?")
    return TeacherRecord(lang, os.path.abspath(spec.checkpoint), memoized_sha256(spec.checkpoint), dict_sha256)


def build_teacher(task, lang: str, state: dict, path: str) -> RobertaModel:
    """The model of a checked checkpoint state, frozen, in eval mode."""
    cfg = model_config(state, teacher_name(lang), path)  # (a file replaced since its check)
    with _fitting(lang, path):
        model = task.build_model(cfg.model, from_checkpoint=True)
        model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)
    model.eval()
    model.requires_grad_(False)
    return model


def refill_teacher(model: RobertaModel, lang: str, state: dict, path: str) -> RobertaModel:
    """``model`` (a teacher built from the same model configuration) holding the weights of ``state`` instead.

    Strict loading copies every parameter and buffer of the state into the model's own tensors (cast
    to their dtype, on their device) and fails as :func:`build_teacher` would for a state that does
    not fit: no model is built, nothing is randomly initialised. Teachers are built and refilled
    under inference mode, where their tensors may be inference tensors.
    """
    cfg = model_config(state, teacher_name(lang), path)
    with _fitting(lang, path), torch.inference_mode():
        model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)
    return model


def _same_shapes(model_state: dict, state: dict) -> bool:
    """The same tensor names and shapes: a state that does not fit goes to a fresh build, which says why."""
    return model_state.keys() == state.keys() and all(model_state[k].shape == state[k].shape for k in state)


@contextlib.contextmanager
def _fitting(lang: str, path: str):
    try:
        yield
    except Exception as err:  # noqa: BLE001  (fairseq/torch raise many types for a state that does not fit its config)
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise BalkdError(f"teacher for language {lang!r}: cannot build the model stored in {path}: {first_line}") from None


class TeacherLoader:
    """Loads the teachers of a set that holds at most K at once (``--max-resident-teachers``), as cheaply as it can.

    Each checkpoint's configuration is parsed once (:class:`~balkd_fairseq.checkpoints.ModelConfigs`).
    The model the set has just dropped (``spare``) is refilled in place (:func:`refill_teacher`) when
    it was built for the same architecture and hyperparameters (:func:`~balkd_fairseq.checkpoints.model_key`)
    and has the checkpoint's tensor names and shapes, so after the first K loads teachers of one
    architecture cost an unpickling and a copy of their weights. Otherwise a model is built as
    before, its random initialisation drawn from a forked RNG: loading a teacher mid-training does not
    move the random stream of the student's dropout.
    """

    def __init__(self, task, checkpoints: List[str], dtype: torch.dtype):
        self.task = task
        self.checkpoints = checkpoints  # lang_id -> checkpoint of the teacher serving it
        self.dtype = dtype
        self.configs = ModelConfigs()
        self._built_from = weakref.WeakKeyDictionary()  # model -> model key of the configuration it was built from
        # the files as checked at start-up, which the manifest records: a teacher retrained in place during a
        # long run (balkd-train-teachers --force, a larger --max-update) must not be used under the old record
        self._checked = {path: _content_stamp(path) for path in set(checkpoints)}

    def __call__(self, lang_id: int, spare: Optional[RobertaModel] = None) -> RobertaModel:
        lang, path = self.task.languages[lang_id], self.checkpoints[lang_id]
        self._check_unchanged(lang, path)
        state, model_key = self.configs.load(path, teacher_name(lang))
        if spare is not None and model_key is not None and self._built_from.get(spare) == model_key \
                and _same_shapes(spare.state_dict(), state["model"]):
            return refill_teacher(spare, lang, state, path)
        with torch.random.fork_rng(devices=[]):
            model = build_teacher(self.task, lang, state, path).to(self.dtype)
        if model_key is not None:
            self._built_from[model] = model_key
        return model


    def _check_unchanged(self, lang: str, path: str) -> None:
        try:
            unchanged = _content_stamp(path) == self._checked[path]
        except OSError:
            unchanged = False
        if not unchanged:
            raise BalkdError(f"{teacher_name(lang)}: {path} was replaced or changed after the run checked it at start-up "
                             "(was the teacher retrained?): the checkpoints record the teacher as it was; put it back, "
                             "or resume with --reset-teachers to continue with the new one")


def _content_stamp(path: str):
    """(size, mtime): what rewriting a file changes, unlike chmod or a new hard link (ctime)."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def check_and_build_teacher(task, lang: str, spec: TeacherSpec, student_sha256: Optional[str] = None):
    """(model, manifest record) of ``lang``'s teacher: checked, then built from one load of its checkpoint."""
    load_state = state_loader(spec.checkpoint, teacher_name(lang))
    record = check_teacher(task, lang, spec, student_sha256, load_state)
    return build_teacher(task, lang, load_state(), spec.checkpoint), record


def load_teacher(task, lang: str, spec) -> RobertaModel:
    """Load one teacher checkpoint for ``lang``, checked against the task, frozen, eval mode."""
    spec = spec if isinstance(spec, TeacherSpec) else TeacherSpec(str(spec))
    return check_and_build_teacher(task, lang, spec)[0]
