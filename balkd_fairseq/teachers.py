"""Monolingual teachers: parsing ``--teachers``, loading and checking checkpoints, routing by language.

Teachers are plain attributes, never registered submodules of the criterion: fairseq would
otherwise optimise, DDP-wrap and checkpoint them with the student.
"""
import hashlib
import logging
import os
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from fairseq import checkpoint_utils
from fairseq.data import Dictionary
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
from fairseq.models.roberta import RobertaModel
from omegaconf import DictConfig

from .checkpoint_compat import read_checkpoint
from .errors import BalkdError
from .files import read_json

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
    mapping = read_json(path, "--teachers")
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
    return read_checkpoint(path, what)


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


def _masked_last_layer_supported(model) -> bool:
    """A fairseq RoBERTa in eval mode whose last encoder layer is the standard one (what we re-implement)."""
    from fairseq.modules.transformer_layer import TransformerEncoderLayerBase

    encoder = getattr(getattr(model, "encoder", None), "sentence_encoder", None)
    layers = getattr(encoder, "layers", None)
    if model.training or not layers or not hasattr(model.encoder, "lm_head"):
        return False
    layer = layers[-1]
    attn = getattr(layer, "self_attn", None)
    return (
        isinstance(layer, TransformerEncoderLayerBase) and attn is not None and not getattr(layer, "return_fc", False)
        and attn.bias_k is None and not attn.add_zero_attn and not getattr(attn, "use_xformers", False)
        and not getattr(attn, "skip_embed_dim_check", False) and not attn.dropout_module.apply_during_inference
    )


def _last_layer_at_masked(layer, x: torch.Tensor, padding_mask: Optional[torch.Tensor], masked: torch.Tensor) -> torch.Tensor:
    """fairseq's TransformerEncoderLayer (eval mode) with queries only at the masked positions.

    Keys and values still come from every position; attention output, FFN and layer norms are
    computed for the masked positions alone. ``x`` is T x B x C; returns [M, C], row-major.
    """
    attn = layer.self_attn
    length, batch, dim = x.shape
    h = layer.self_attn_layer_norm(x) if layer.normalize_before else x
    h = h.transpose(0, 1)  # B x T x C
    counts = masked.sum(1)
    queries = int(counts.max())
    # each row's masked positions first, in order (a stable sort of "not masked"), padded to the longest row
    positions = torch.argsort((~masked).to(torch.uint8), dim=1, stable=True)[:, :queries]
    real = torch.arange(queries, device=x.device).unsqueeze(0) < counts.unsqueeze(1)
    h_queries = h.gather(1, positions.unsqueeze(-1).expand(batch, queries, dim))
    heads, head_dim = attn.num_heads, attn.head_dim
    q = attn.q_proj(h_queries).view(batch, queries, heads, head_dim).transpose(1, 2)
    k = attn.k_proj(h).view(batch, length, heads, head_dim).transpose(1, 2)
    v = attn.v_proj(h).view(batch, length, heads, head_dim).transpose(1, 2)
    keep = None if padding_mask is None else ~padding_mask[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=attn.scaling)
    out = attn.out_proj(out.transpose(1, 2).reshape(batch, queries, dim)[real])
    y = layer.residual_connection(out, x.transpose(0, 1)[masked])
    if not layer.normalize_before:
        y = layer.self_attn_layer_norm(y)
    residual = y
    if layer.normalize_before:
        y = layer.final_layer_norm(y)
    y = layer.residual_connection(layer.fc2(layer.activation_fn(layer.fc1(y))), residual)
    if not layer.normalize_before:
        y = layer.final_layer_norm(y)
    return y


def masked_lm_logits(model, tokens: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """``model(tokens, masked_tokens=masked)[0]`` of a frozen teacher, skipping work nobody reads.

    Only the masked positions' outputs are used, so the last layer computes its attention
    queries, FFN and layer norms at those positions only (same numbers as fairseq's forward, up
    to float rounding). Models this does not recognise run their own forward.
    """
    if not _masked_last_layer_supported(model):
        return model(tokens, masked_tokens=masked)[0]
    encoder = model.encoder.sentence_encoder
    padding_mask = tokens.eq(encoder.padding_idx)
    if not bool(padding_mask.any()):
        padding_mask = None
    x, _ = encoder.forward_embedding(tokens)
    if padding_mask is not None:
        x = x * (1 - padding_mask.unsqueeze(-1).type_as(x))
    x = x.transpose(0, 1)
    for layer in encoder.layers[:-1]:
        x = layer(x, encoder_padding_mask=padding_mask)
    x = _last_layer_at_masked(encoder.layers[-1], x, padding_mask, masked)
    if encoder.layer_norm is not None:
        x = encoder.layer_norm(x)
    return model.encoder.lm_head(x)


class TeacherSet:
    """One frozen teacher per language, run once per language present in a batch.

    With ``offload`` (and an accelerator) teachers live in host memory (pinned) and a teacher's
    weights are copied to the device only when a batch has its language; the last one used stays
    there, so language-homogeneous batches (``--batch-by-language``) of one language copy nothing.
    Teachers are frozen, so a teacher leaves the device by pointing its parameters back at their
    host copies: nothing is ever copied back. On CPU there is nothing to offload; ``swap_on_cpu``
    still runs the swapping (host-to-host copies) so tests and the benchmark can exercise it.
    """

    swap_on_cpu = False

    def __init__(self, models: Dict[int, RobertaModel], records: List[TeacherRecord], dtype: str = "fp32", offload: bool = False):
        self.models = models  # lang_id -> model
        self.records = records
        self.dtype = DTYPES[dtype]
        self.offload = offload
        self._placed_on = None
        self._host = {}  # lang_id -> host tensors of the model's parameters and buffers (offload)
        self._resident = None  # lang_id of the offloaded teacher now on the device

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

    def parameter_bytes(self, lang_id: int) -> int:
        return sum(t.numel() * t.element_size() for t in _tensors(self.models[lang_id]))

    def _place(self, device: torch.device) -> None:
        if self._placed_on == device:
            return
        if self.offload and (device.type != "cpu" or self.swap_on_cpu):
            self._evict()
            for lang_id, model in self.models.items():
                model.to("cpu")
                pin = device.type == "cuda"
                self._host[lang_id] = [t.data.pin_memory() if pin else t.data for t in _tensors(model)]
                for t, host in zip(_tensors(model), self._host[lang_id]):
                    t.data = host
            logger.info(f"--teacher-offload: {len(self.models)} teachers in host memory, moved to {device} per language group")
        else:
            if self.offload:
                logger.info("--teacher-offload has no effect on CPU: teachers already live in host memory")
            self._evict()
            for model in self.models.values():
                model.to(device)
        self._placed_on = device

    def _evict(self) -> None:
        if self._resident is not None:
            for t, host in zip(_tensors(self.models[self._resident]), self._host[self._resident]):
                t.data = host
            self._resident = None

    def on_device(self, lang_id: int, device: torch.device):
        """The teacher of ``lang_id``, its weights on ``device`` (copied there if offloaded and not resident)."""
        model = self.models[lang_id]
        if lang_id in self._host and self._resident != lang_id:
            self._evict()
            for t, host in zip(_tensors(model), self._host[lang_id]):
                t.data = host.to(device, non_blocking=True, copy=True)
            self._resident = lang_id
        return model

    def _run(self, lang_id: int, tokens: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        return masked_lm_logits(self.on_device(lang_id, tokens.device), tokens, masked).float()

    @torch.inference_mode()
    def masked_logits(self, src_tokens: torch.Tensor, masked: torch.Tensor, lang_ids: torch.Tensor):
        """Teacher logits (float32) at every masked position, row-major like the student's.

        Returns ``(logits [M, V], position_langs [M])``. Samples are grouped by language with
        index_select; each teacher runs once, on its language's rows only, and its rows of the
        output are filled with index_copy_. A batch of one language needs neither.
        """
        self._place(src_tokens.device)
        position_langs = lang_ids.unsqueeze(1).expand_as(masked)[masked]
        present = torch.unique(lang_ids).tolist()
        if len(present) == 1:
            return self._run(present[0], src_tokens, masked), position_langs
        logits = None
        for lang_id in present:
            rows = (lang_ids == lang_id).nonzero().squeeze(1)
            rows_masked = masked.index_select(0, rows)
            if not rows_masked.any():
                continue
            group_logits = self._run(lang_id, src_tokens.index_select(0, rows), rows_masked)
            if logits is None:
                logits = group_logits.new_empty((position_langs.numel(), group_logits.size(-1)))
            logits.index_copy_(0, (position_langs == lang_id).nonzero().squeeze(1), group_logits)
        return logits, position_langs


def _tensors(model) -> List[torch.Tensor]:
    """Parameters and buffers of a model, in a fixed order."""
    return list(model.parameters()) + list(model.buffers())
