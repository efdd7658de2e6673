"""Online soft labels: each language's teacher run on the student's batches (:class:`TeacherSet`).

The teachers come from ``--teachers`` (and ``--teacher-fallback``), parsed, checked and built by
:mod:`balkd_fairseq.soft_labels.teacher_loading`; with ``--max-resident-teachers`` only K of them are
held at once and the others are loaded when a batch needs them.

Teachers are plain attributes, never registered submodules of the criterion: fairseq would
otherwise optimise, DDP-wrap and checkpoint them with the student.
"""
import logging
import time
from collections import OrderedDict
from dataclasses import replace
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from fairseq.models.roberta import RobertaModel

from ..data.dictionary_hash import symbols_sha256
from ..errors import BalkdError
from . import SoftLabelSource
from .fallback import choose_teachers
from .manifest import TeacherRecord, record_dict
from .positions import MaskedPositions
from .targets import SoftTargets, teacher_soft_targets
from .teacher_loading import (
    DTYPES,
    TeacherLoader,
    TeacherSpec,
    build_teacher,
    check_coverage,
    check_teacher,
    parse_teacher_spec,
    state_loader,
    teacher_name,
)

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ running teachers
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


def masked_lm_logits(model, tokens: torch.Tensor, masked: torch.Tensor, masked_last_layer: bool = True) -> torch.Tensor:
    """``model(tokens, masked_tokens=masked)[0]`` of a frozen teacher, skipping work nobody reads.

    Only the masked positions' outputs are used, so the last layer computes its attention
    queries, FFN and layer norms at those positions only (same numbers as fairseq's forward, up
    to float rounding). Models this does not recognise run their own forward.
    """
    if not masked_last_layer or not _masked_last_layer_supported(model):
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


class TeacherSet(SoftLabelSource):
    """One frozen teacher per language, run once per language present in a batch.

    With ``max_resident`` K > 0 at most K teachers are held at once: a teacher is built by
    ``loader(lang_id, spare)`` on first use and the least recently used one is dropped when a K+1-th is
    needed (every teacher was checked at start-up; only its weights wait). The dropped model is the
    ``spare`` the loader may refill instead of building a new one (:class:`TeacherLoader`). Loads and
    their seconds are counted for the training log (``teacher_loads``, ``teacher_load_seconds``), so
    thrashing shows: order batches by language (``--batch-by-language``) to avoid it.

    With ``offload`` teachers live in host memory (pinned for CUDA) and a teacher's weights are
    copied to the device only when a batch has its language; the last one used stays there, so
    language-homogeneous batches (``--batch-by-language``) of one language copy nothing. Teachers are
    frozen, so a teacher leaves the device by pointing its parameters back at their host copies:
    nothing is ever copied back. On CPU there is nothing to offload and ``offload`` is ignored unless
    ``offload_on_cpu`` asks for the host-to-host swapping (to test or benchmark it without a GPU).
    """

    def __init__(self, models: Dict[int, RobertaModel], records: List[TeacherRecord], vocab_size: int,
                 sample_address: Callable, dtype: str = "fp32", offload: bool = False, offload_on_cpu: bool = False,
                 loader: Optional[Callable[[int], RobertaModel]] = None, max_resident: int = 0):
        self.models: OrderedDict[int, RobertaModel] = OrderedDict(models)  # lang_id -> resident model, LRU first
        self.records = records
        self.vocab_size = vocab_size
        self.sample_address = sample_address  # sample -> SampleAddress (the task's)
        self.dtype = DTYPES[dtype]
        self.offload = offload
        self.offload_on_cpu = offload_on_cpu
        self.loader = loader
        self.max_resident = max_resident
        self._placed_on = None
        self._host = {}  # lang_id -> host tensors of the model's parameters and buffers (offload)
        self._resident = None  # lang_id of the offloaded teacher now on the device
        self._loads, self._load_seconds = 0, 0.0

    @classmethod
    def from_task(cls, task) -> "TeacherSet":
        mapping = parse_teacher_spec(task.cfg.teachers)
        check_coverage(task.languages, mapping)
        choices = choose_teachers(task, mapping, task.languages) if task.cfg.teacher_fallback else {}
        # a language served by the fallback simply maps to the fallback model (one more loadable model)
        serving = {lang: TeacherSpec(task.cfg.teacher_fallback) if choices.get(lang, {}).get("served_by") == "fallback"
                   else mapping[lang] for lang in task.languages}
        dtype = DTYPES[task.cfg.teacher_dtype]
        if task.cfg.max_resident_teachers < 0:
            raise BalkdError(f"--max-resident-teachers must be >= 0 (0 = all teachers), got {task.cfg.max_resident_teachers}")
        lazy = 0 < task.cfg.max_resident_teachers < len(task.languages)

        # every teacher is checked from remembered facts; a checkpoint is unpickled here only to build its
        # model (all resident) or when its facts are not remembered yet
        student_sha256 = symbols_sha256(task.source_dictionary.symbols)
        models, records, built = {}, [], {}
        for lang_id, lang in enumerate(task.languages):
            spec = serving[lang]
            load_state = state_loader(spec.checkpoint, teacher_name(lang))
            record = check_teacher(task, lang, spec, student_sha256, load_state)
            records.append(replace(record, init_from=spec.init_from, **choices.get(lang, {})))
            if not lazy:  # languages served by one checkpoint (the fallback) share its model
                if record.sha256 not in built:
                    built[record.sha256] = build_teacher(task, lang, load_state(), spec.checkpoint).to(dtype)
                models[lang_id] = built[record.sha256]
                logger.info(f"teacher for {lang}: {spec.checkpoint} ({sum(p.numel() for p in models[lang_id].parameters())} parameters)")
            del load_state
        loader = TeacherLoader(task, [serving[lang].checkpoint for lang in task.languages], dtype) if lazy else None
        if lazy:
            logger.info(f"{len(records)} teachers checked; at most {task.cfg.max_resident_teachers} held at once "
                        "(--max-resident-teachers), each loaded on first use")
        return cls(models, records, vocab_size=len(task.source_dictionary), sample_address=task.sample_address,
                   dtype=task.cfg.teacher_dtype, offload=task.cfg.teacher_offload, loader=loader,
                   max_resident=task.cfg.max_resident_teachers if lazy else 0)

    def manifest(self) -> List[dict]:
        return [record_dict(r) for r in self.records]

    def language_name(self, lang_id: int) -> str:
        return self.records[lang_id].language

    def parameter_bytes(self, lang_id: int) -> int:
        return sum(t.numel() * t.element_size() for t in _tensors(self.models[lang_id]))

    def take_stats(self) -> Dict[str, float]:
        """Teacher loads and the seconds they took since the last call (for the training log)."""
        stats = {"teacher_loads": self._loads, "teacher_load_seconds": self._load_seconds}
        self._loads, self._load_seconds = 0, 0.0
        return stats

    # -------------------------------------------------------------- residency and placement
    def _model(self, lang_id: int) -> RobertaModel:
        """The teacher of ``lang_id``, loaded if it is not resident (dropping the least recently used)."""
        if lang_id in self.models:
            self.models.move_to_end(lang_id)
            return self.models[lang_id]
        if self.loader is None:
            raise KeyError(f"no teacher for language id {lang_id}")
        spare = None
        while self.max_resident and len(self.models) >= self.max_resident:
            spare = self._drop_least_recent()
        start = time.perf_counter()
        model = self.loader(lang_id, spare)
        self._loads += 1
        self._load_seconds += time.perf_counter() - start
        self.models[lang_id] = model
        if self._placed_on is not None:
            self._adopt(lang_id, model, self._placed_on)
        return model

    def _drop_least_recent(self) -> Optional[RobertaModel]:
        """Drops the least recently used teacher; returns its model for the loader to refill, unless another
        language still uses it."""
        dropped, model = self.models.popitem(last=False)
        host = self._host.pop(dropped, None)
        resident = self._resident == dropped
        if resident:
            self._resident = None
        if any(other is model for other in self.models.values()):
            return None
        if resident:  # point it back at its host buffers, the ones a refill writes
            for t, buffer in zip(_tensors(model), host):
                t.data = buffer
        if host is not None and self._placed_on is not None and self._placed_on.type == "cuda":
            torch.cuda.synchronize(self._placed_on)  # copies from its pinned buffers to the device may still run
        return model

    def _swaps(self, device: torch.device) -> bool:
        return self.offload and (device.type != "cpu" or self.offload_on_cpu)

    def _adopt(self, lang_id: int, model: RobertaModel, device: torch.device) -> None:
        """Put a teacher where this set keeps its teachers: on ``device``, or in host memory when offloading."""
        if not self._swaps(device):
            model.to(device)
            return
        model.to("cpu")
        pin = device.type == "cuda"
        self._host[lang_id] = [t.data.pin_memory() if pin else t.data for t in _tensors(model)]
        for t, host in zip(_tensors(model), self._host[lang_id]):
            t.data = host

    def _place(self, device: torch.device) -> None:
        if self._placed_on == device:
            return
        self._evict()
        if self.offload and not self._swaps(device):
            logger.info("--teacher-offload has no effect on CPU: teachers already live in host memory")
        for lang_id, model in self.models.items():
            self._adopt(lang_id, model, device)
        if self._swaps(device):
            logger.info(f"--teacher-offload: teachers in host memory, moved to {device} per language group")
        self._placed_on = device

    def _evict(self) -> None:
        if self._resident is not None:
            for t, host in zip(_tensors(self.models[self._resident]), self._host[self._resident]):
                t.data = host
            self._resident = None

    def on_device(self, lang_id: int, device: torch.device):
        """The teacher of ``lang_id``, its weights on ``device`` (copied there if offloaded and not resident)."""
        model = self._model(lang_id)
        if lang_id in self._host and self._resident != lang_id:
            self._evict()
            for t, host in zip(_tensors(model), self._host[lang_id]):
                t.data = host.to(device, non_blocking=True, copy=True)
            self._resident = lang_id
        return model

    # -------------------------------------------------------------- soft labels
    def _run(self, lang_id: int, tokens: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        return masked_lm_logits(self.on_device(lang_id, tokens.device), tokens, masked).float()

    @torch.inference_mode()
    def masked_logits(self, src_tokens: torch.Tensor, masked: torch.Tensor, lang_ids: torch.Tensor):
        """Teacher logits (float32) at every masked position, row-major like the student's.

        Returns ``(logits [M, V], position_langs [M])``. Samples are grouped by language on the
        host (one read-back per batch); each teacher runs once, on its language's rows only, and
        its rows of the output are filled with index_copy_. A batch of one language needs neither.
        """
        self._place(src_tokens.device)
        positions = MaskedPositions.of(masked, lang_ids)
        groups = list(positions.groups())
        if len(groups) == 1 and len(groups[0][1]) == len(lang_ids):
            return self._run(groups[0][0], src_tokens, masked), positions.position_langs
        device = src_tokens.device
        logits = torch.empty((positions.total, self.vocab_size), dtype=torch.float32, device=device)
        for lang_id, samples, rows in groups:
            samples = torch.from_numpy(samples).to(device, non_blocking=True)
            group_logits = self._run(lang_id, src_tokens.index_select(0, samples), masked.index_select(0, samples))
            logits.index_copy_(0, torch.from_numpy(rows).to(device, non_blocking=True), group_logits)
        return logits, positions.position_langs

    def soft_targets(self, sample: dict, masked: torch.Tensor, temperature: float = 1.0, topk: int = 0,
                     tail: bool = False) -> SoftTargets:
        lang_ids = self.sample_address(sample).lang_ids
        logits, position_langs = self.masked_logits(sample["net_input"]["src_tokens"], masked, lang_ids)
        return teacher_soft_targets(logits, position_langs, len(self.records), temperature, topk, tail)


def _tensors(model) -> List[torch.Tensor]:
    """Parameters and buffers of a model, in a fixed order."""
    return list(model.parameters()) + list(model.buffers())
