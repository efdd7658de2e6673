"""Monolingual teachers: parsing ``--teachers``, loading and checking checkpoints, routing by language.

Teachers are plain attributes, never registered submodules of the criterion: fairseq would
otherwise optimise, DDP-wrap and checkpoint them with the student.
"""
import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

import torch
from fairseq import checkpoint_utils
from fairseq.data import Dictionary
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
from fairseq.models.roberta import RobertaModel
from omegaconf import DictConfig

from .errors import BalkdError

logger = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
EMBED_KEY = "encoder.sentence_encoder.embed_tokens.weight"


def parse_teacher_spec(spec: str) -> Dict[str, str]:
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
        mapping[lang] = path
    return mapping


def _read_teacher_json(path: str) -> Dict[str, str]:
    try:
        with open(path, encoding="utf-8") as f:
            mapping = json.load(f)
    except FileNotFoundError:
        raise BalkdError(f"--teachers: JSON file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BalkdError(f"--teachers: {path} is not valid JSON: {err}") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise BalkdError(f"--teachers: {path} must hold a JSON object mapping language to checkpoint path")
    base = os.path.dirname(os.path.abspath(path))
    return {lang: p if os.path.isabs(p) else os.path.join(base, p) for lang, p in mapping.items()}


def check_coverage(languages: List[str], mapping: Dict[str, str]) -> None:
    missing = [lang for lang in languages if lang not in mapping]
    if missing:
        raise BalkdError(
            f"no teacher for language(s) {', '.join(missing)} in --teachers (teachers given for: "
            f"{', '.join(sorted(mapping)) or 'none'})"
        )
    for lang in sorted(set(mapping) - set(languages)):
        logger.warning(f"teacher for language {lang!r} ({mapping[lang]}) is not used: {lang!r} is not in the data")


def file_sha256(path: str, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def dictionary_sha256(dictionary: Dictionary) -> str:
    return hashlib.sha256("\n".join(dictionary.symbols).encode("utf-8")).hexdigest()


@dataclass
class TeacherRecord:
    """What served a language: recorded in the student's checkpoint (the teacher manifest)."""

    language: str
    path: str
    sha256: str
    dictionary_sha256: str


def load_checkpoint_state(path: str, what: str) -> dict:
    """``checkpoint_utils.load_checkpoint_to_cpu`` with one-line errors naming ``what`` and ``path``."""
    if not os.path.isfile(path):
        raise BalkdError(f"{what}: checkpoint not found: {path}")
    try:
        return checkpoint_utils.load_checkpoint_to_cpu(path)
    except Exception as err:  # torch raises many types for corrupt or refused pickles
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "Weights only load failed" in str(err):
            reason = "it contains a pickled object outside balkd-fairseq's checkpoint allowlist (refused, not executed): " + _unsupported_global(err)
        raise BalkdError(f"{what}: cannot load checkpoint {path}: {reason}") from None


def _unsupported_global(err: Exception) -> str:
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    return found.group(1) if found else type(err).__name__


def model_config(state: dict, what: str, path: str) -> DictConfig:
    cfg = state.get("cfg") if isinstance(state, dict) else None
    if cfg is None or getattr(cfg, "model", None) is None:
        raise BalkdError(f"{what}: {path} has no model configuration (not a fairseq checkpoint?)")
    arch = getattr(cfg.model, "_name", None) or getattr(cfg.model, "arch", None)
    model_cls = ARCH_MODEL_REGISTRY.get(arch) or MODEL_REGISTRY.get(arch)
    if model_cls is None or not issubclass(model_cls, RobertaModel) or "model" not in state:
        raise BalkdError(f"{what}: {path} is not a masked LM checkpoint (architecture {arch!r}; expected a roberta_* arch)")
    return cfg


def teacher_dictionary_file(path: str, cfg: DictConfig) -> Optional[str]:
    """dict.txt next to the checkpoint, else in the data directory the teacher was trained on."""
    candidates = [os.path.join(os.path.dirname(os.path.abspath(path)), "dict.txt")]
    data = getattr(getattr(cfg, "task", None), "data", None)
    if data:
        candidates.append(os.path.join(str(data).split(os.pathsep)[0], "dict.txt"))
    return next((c for c in candidates if os.path.isfile(c)), None)


def check_dictionary(state: dict, cfg: DictConfig, dictionary: Dictionary, what: str, path: str) -> None:
    rows = state["model"].get(EMBED_KEY)
    dict_file = teacher_dictionary_file(path, cfg)
    if dict_file is not None:
        teacher_dict = Dictionary.load(dict_file)
        teacher_dict.add_symbol("<mask>")
        _compare_symbols(teacher_dict.symbols, dictionary.symbols, what, path)
    if rows is not None and rows.shape[0] != len(dictionary):
        raise BalkdError(
            f"{what}: dictionary of {path} differs from the student's dict.txt: teacher embeds "
            f"{rows.shape[0]} symbols, student has {len(dictionary)}"
        )
    if dict_file is None:
        logger.warning(f"{what}: no dict.txt found next to {path} or in its data directory; checked sizes only")


def _compare_symbols(teacher: List[str], student: List[str], what: str, path: str) -> None:
    if teacher == student:
        return
    first = next((i for i, (a, b) in enumerate(zip(teacher, student)) if a != b), min(len(teacher), len(student)))
    t_sym = teacher[first] if first < len(teacher) else "<end>"
    s_sym = student[first] if first < len(student) else "<end>"
    raise BalkdError(
        f"{what}: dictionary of {path} differs from the student's dict.txt: teacher has {len(teacher)} symbols, "
        f"student has {len(student)}; first difference at index {first}: teacher {t_sym!r} vs student {s_sym!r}"
    )


def load_teacher(task, lang: str, path: str) -> RobertaModel:
    """Load one teacher checkpoint for ``lang``, checked against the task's dictionary, frozen, eval mode."""
    what = f"teacher for language {lang!r}"
    state = load_checkpoint_state(path, what)
    cfg = model_config(state, what, path)
    check_dictionary(state, cfg, task.source_dictionary, what, path)
    try:
        model = task.build_model(cfg.model, from_checkpoint=True)
        model.load_state_dict(state["model"], strict=True, model_cfg=cfg.model)
    except Exception as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise BalkdError(f"{what}: cannot build the model stored in {path}: {first_line}") from None
    model.eval()
    model.requires_grad_(False)
    return model


class TeacherSet:
    """One frozen teacher per language, run once per language present in a batch."""

    def __init__(self, models: Dict[int, RobertaModel], records: List[TeacherRecord], dtype: str = "fp32", offload: bool = False):
        self.models = models  # lang_id -> model
        self.records = records
        self.dtype = DTYPES[dtype]
        self.offload = offload
        self._placed_on = None

    @classmethod
    def from_task(cls, task) -> "TeacherSet":
        mapping = parse_teacher_spec(task.cfg.teachers)
        check_coverage(task.languages, mapping)
        models, records = {}, []
        for lang_id, lang in enumerate(task.languages):
            path = mapping[lang]
            models[lang_id] = load_teacher(task, lang, path).to(DTYPES[task.cfg.teacher_dtype])
            records.append(TeacherRecord(lang, os.path.abspath(path), file_sha256(path), dictionary_sha256(task.source_dictionary)))
            logger.info(f"teacher for {lang}: {path} ({sum(p.numel() for p in models[lang_id].parameters())} parameters)")
        return cls(models, records, dtype=task.cfg.teacher_dtype, offload=task.cfg.teacher_offload)

    def manifest(self) -> List[dict]:
        return [asdict(r) for r in self.records]

    def language_name(self, lang_id: int) -> str:
        return self.records[lang_id].language

    def _place(self, device: torch.device) -> None:
        if self._placed_on == device:
            return
        if not self.offload:
            for model in self.models.values():
                model.to(device)
        self._placed_on = device

    def _run(self, lang_id: int, tokens: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        model = self.models[lang_id]
        if self.offload and tokens.device.type != "cpu":
            model.to(tokens.device)
        try:
            return model(tokens, masked_tokens=masked)[0].float()
        finally:
            if self.offload and tokens.device.type != "cpu":
                model.to("cpu")

    @torch.inference_mode()
    def masked_logits(self, src_tokens: torch.Tensor, masked: torch.Tensor, lang_ids: torch.Tensor):
        """Teacher logits (float32) at every masked position, row-major like the student's.

        Returns ``(logits [M, V], position_langs [M])``. Samples are grouped by language with
        index_select; each teacher runs once, on its language's rows only.
        """
        self._place(src_tokens.device)
        position_langs = lang_ids.unsqueeze(1).expand_as(masked)[masked]
        logits = None
        for lang_id in torch.unique(lang_ids).tolist():
            rows = (lang_ids == lang_id).nonzero().squeeze(1)
            rows_masked = masked.index_select(0, rows)
            if not rows_masked.any():
                continue
            group_logits = self._run(lang_id, src_tokens.index_select(0, rows), rows_masked)
            if logits is None:
                logits = group_logits.new_empty((position_langs.numel(), group_logits.size(-1)))
            logits[position_langs == lang_id] = group_logits
        return logits, position_langs
