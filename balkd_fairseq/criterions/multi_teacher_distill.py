"""``multi_teacher_distill``: masked-LM distillation from the teacher of each sample's language.

At every masked position the soft target is the output distribution of that sample's language
teacher, computed on exactly the masked input the student sees. The loss per position is
``KL(p_teacher,T || p_student,T) * T^2`` (``--distill-loss kl``) or the soft cross-entropy
(``ce``), optionally mixed with the hard masked-LM loss: ``(1 - a) * soft + a * hard``.
"""
import logging
import math
from dataclasses import dataclass, field
from typing import Dict, List

import torch
import torch.nn.functional as F
from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from ..errors import BalkdError
from .soft_targets import SoftTargets, cached_soft_targets, row_dot, teacher_soft_targets

logger = logging.getLogger(__name__)

LANG_PREFIX = "distill_"


@dataclass
class MultiTeacherDistillConfig(FairseqDataclass):
    distill_loss: ChoiceEnum(["kl", "ce"]) = field(
        default="kl", metadata={"help": "soft loss: kl = KL(teacher || student) * T^2; ce = soft cross-entropy * T^2"}
    )
    temperature: float = field(default=1.0, metadata={"help": "softmax temperature T for teacher and student (> 0)"})
    hard_label_weight: float = field(
        default=0.0,
        metadata={"help": "weight a in [0, 1] of the hard masked-LM loss: (1-a)*soft + a*hard (0 = soft labels only, the paper)"},
    )
    topk: int = field(
        default=0,
        metadata={"help": "keep only the teacher's top-k tokens per position, renormalised (0 = full vocabulary, "
                          "or with --teacher-cache every token the cache holds)"},
    )
    teacher_cache: str = field(
        default="",
        metadata={"help": "directory written by balkd-cache-teachers: read the teachers' top-k soft labels from it "
                          "instead of running teachers (teachers are then not loaded); refused if built for other "
                          "data, masks, seed, epochs or teachers"},
    )


@register_criterion("multi_teacher_distill", dataclass=MultiTeacherDistillConfig)
class MultiTeacherDistillCriterion(FairseqCriterion):
    def __init__(self, cfg: MultiTeacherDistillConfig, task):
        super().__init__(task)
        if not cfg.temperature > 0:
            raise BalkdError(f"--temperature must be > 0, got {cfg.temperature}")
        if not 0.0 <= cfg.hard_label_weight <= 1.0:
            raise BalkdError(f"--hard-label-weight must be in [0, 1], got {cfg.hard_label_weight}")
        if cfg.topk < 0:
            raise BalkdError(f"--topk must be >= 0, got {cfg.topk}")
        if not hasattr(task, "languages"):
            raise BalkdError("--criterion multi_teacher_distill needs --task balanced_distill (samples must carry language ids)")
        self.cfg = cfg
        self.languages: List[str] = list(task.languages)
        self.teacher_cache = self._open_cache(cfg, task) if cfg.teacher_cache else None
        self.teachers = None if self.teacher_cache is not None else task.load_teachers()

    @staticmethod
    def _open_cache(cfg, task):
        from ..teacher_cache import TeacherCache

        cache = TeacherCache.open(cfg.teacher_cache, task)
        if cfg.topk > cache.k:
            raise BalkdError(f"--topk {cfg.topk} exceeds the {cache.k} tokens per position stored in --teacher-cache {cfg.teacher_cache}")
        logger.info(f"soft labels from the teacher cache {cfg.teacher_cache} (top-{cfg.topk or cache.k}); teachers are not loaded")
        if hasattr(task, "state"):  # the checkpoint's teacher manifest: the teachers that built the cache
            from ..teacher_manifest import MANIFEST_KEY

            task.state.merge_state_dict({MANIFEST_KEY: cache.manifest()})
        return cache

    # ------------------------------------------------------------------ loss
    def forward(self, model, sample, reduce=True):
        masked = sample["target"].ne(self.padding_idx)
        sample_size = int(masked.sum())
        targets = sample["target"][masked]
        lang_ids = sample["lang_id"]
        student_logits = model(**sample["net_input"], masked_tokens=masked)[0] if sample_size else None
        if sample_size == 0:
            return self._empty_output(model, sample)

        soft = self._soft_targets(sample, masked, lang_ids)
        T = self.cfg.temperature
        student_logp_T = F.log_softmax(student_logits.float() / T if T != 1.0 else student_logits.float(), dim=-1)
        soft_per_pos = self._soft_loss_per_position(student_logp_T, soft) * (T * T)
        valid = soft.valid
        distill_loss = soft_per_pos[valid].sum()
        hard_loss = self._hard_loss(student_logits, student_logp_T, targets)
        a = self.cfg.hard_label_weight
        loss = (1.0 - a) * distill_loss + a * hard_loss if a > 0 else distill_loss

        logging_output = {
            "loss": loss.detach(),
            "distill_loss": distill_loss.detach(),
            "hard_loss": hard_loss.detach(),
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": sample_size,
            "distill_positions": int(valid.sum()),
            "teacher_entropy": soft.entropy[valid].sum().detach(),
            "top1_agree": (student_logits.argmax(-1) == soft.top1)[valid].sum().detach(),
            "nonfinite_teacher_batches": len(soft.nonfinite_langs),
        }
        logging_output.update(self._per_language(soft_per_pos.detach(), soft.position_langs, valid))
        return loss, sample_size, logging_output

    def _soft_targets(self, sample, masked, lang_ids) -> SoftTargets:
        if self.teacher_cache is not None:
            ids, probs, position_langs = self._cached(sample, masked, lang_ids)
            soft = cached_soft_targets(ids, probs, position_langs, self.cfg.temperature, self.cfg.topk)
        else:
            teacher_logits, position_langs = self.teachers.masked_logits(sample["net_input"]["src_tokens"], masked, lang_ids)
            soft = teacher_soft_targets(teacher_logits, position_langs, self.cfg.temperature, self.cfg.topk)
        for lang_id in soft.nonfinite_langs:
            logger.warning(f"teacher for {self.languages[lang_id]!r} gave non-finite soft labels; skipping its distill loss in this batch")
        return soft

    def _cached(self, sample, masked, lang_ids):
        origin = sample.get("mask_origin")
        if origin is None or "id" not in sample:
            raise BalkdError("--teacher-cache needs batches of --task balanced_distill (they carry sample ids and their mask epoch)")
        return self.teacher_cache.lookup(origin["split"], origin["epoch"], lang_ids, sample["id"], masked)

    def _hard_loss(self, student_logits, student_logp_T, targets) -> torch.Tensor:
        if self.cfg.temperature == 1.0:  # reuse the log-softmax already computed
            return -student_logp_T.gather(-1, targets.unsqueeze(-1)).sum()
        return F.cross_entropy(student_logits.float(), targets, reduction="sum")

    def _soft_loss_per_position(self, student_logp_T, soft: SoftTargets) -> torch.Tensor:
        """Per masked position: KL(p || q) or -sum p log q, over the teacher's support."""
        student_logp = student_logp_T if soft.ids is None else student_logp_T.gather(-1, soft.ids)
        cross = -row_dot(soft.probs, student_logp)
        if self.cfg.distill_loss == "ce":
            return cross
        return cross - soft.entropy

    def _per_language(self, per_pos, position_langs, valid) -> Dict[str, torch.Tensor]:
        """Every worker emits every language's keys (zeros when absent), so outputs can be summed."""
        out = {}
        weights = valid.to(per_pos.dtype)
        sums = per_pos.new_zeros(len(self.languages)).index_add_(0, position_langs, per_pos * weights)
        counts = per_pos.new_zeros(len(self.languages)).index_add_(0, position_langs, weights)
        for lang_id, lang in enumerate(self.languages):
            out[f"{LANG_PREFIX}{lang}_sum"] = sums[lang_id]
            out[f"{LANG_PREFIX}{lang}_count"] = counts[lang_id]
        return out

    def _empty_output(self, model, sample):
        # No masked position in the batch: a zero loss that still touches the student's parameters
        # (so DDP's gradient buckets fill) and the full set of logging keys.
        loss = sum(p.sum() for p in model.parameters()) * 0.0
        zero = torch.zeros((), device=sample["target"].device)
        logging_output = {
            "loss": zero, "distill_loss": zero, "hard_loss": zero, "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"], "sample_size": 0, "distill_positions": 0,
            "teacher_entropy": zero, "top1_agree": zero, "nonfinite_teacher_batches": 0,
        }
        for lang in self.languages:
            logging_output[f"{LANG_PREFIX}{lang}_sum"] = zero
            logging_output[f"{LANG_PREFIX}{lang}_count"] = zero
        return loss, 0, logging_output

    # ------------------------------------------------------------------ logging
    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return float(sum(log.get(key, 0) for log in logging_outputs))

        sample_size = total("sample_size")
        positions = total("distill_positions")
        ln2 = math.log(2)
        if sample_size > 0:
            metrics.log_scalar("loss", total("loss") / sample_size / ln2, sample_size, round=3)
            metrics.log_scalar("hard_loss", total("hard_loss") / sample_size / ln2, sample_size, round=3)
            metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["hard_loss"].avg))
        if positions > 0:
            metrics.log_scalar("distill_loss", total("distill_loss") / positions / ln2, positions, round=4)
            metrics.log_scalar("teacher_entropy", total("teacher_entropy") / positions / ln2, positions, round=3)
            metrics.log_scalar("top1_agree", total("top1_agree") / positions, positions, round=4)
        metrics.log_scalar_sum("nonfinite_teacher_batches", total("nonfinite_teacher_batches"))
        langs = sorted({k[len(LANG_PREFIX):-len("_sum")] for log in logging_outputs for k in log
                        if k.startswith(LANG_PREFIX) and k.endswith("_sum")})
        for lang in langs:
            count = total(f"{LANG_PREFIX}{lang}_count")
            if count > 0:
                metrics.log_scalar(f"{LANG_PREFIX}{lang}", total(f"{LANG_PREFIX}{lang}_sum") / count / ln2, count, round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
