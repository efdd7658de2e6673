"""``multi_teacher_distill``: masked-LM distillation from the teacher of each sample's language.

At every masked position the soft target is the output distribution of that sample's language
teacher, computed on exactly the masked input the student sees (online, ``--teachers``) or read
from an offline cache built for exactly these masks (``--teacher-cache``): the task builds the
source, this criterion only consumes its soft labels. The loss per position is
``KL(p_teacher,T || p_student,T) * T^2`` (``--distill-loss kl``) or the soft cross-entropy
(``ce``), optionally mixed with the hard masked-LM loss: ``(1 - a) * soft + a * hard``.

Like fairseq's ``masked_lm`` criterion, the forward reads nothing back from the device that it can
avoid (sample size and logging values stay tensors); per-language values are [L] vectors, so every
worker's logging output has the same keys and shapes whatever languages its batch holds.
"""
import logging
import math
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.logging import metrics

from ..errors import BalkdError
from ..soft_labels import SoftLabelSource, SoftTargets
from ..soft_labels.targets import row_dot

logger = logging.getLogger(__name__)

LANG_PREFIX = "distill_"
LANGUAGE_VECTORS = ("distill_lang_sum", "distill_lang_count", "distill_lang_nonfinite")  # [L] each
LN2 = math.log(2)
LOSS_DECIMALS = 5  # what --best-checkpoint-metric and --patience compare (see reduce_metrics)


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
        metadata={"help": "keep only the teacher's top-k tokens per position (0 = full vocabulary, or with "
                          "--teacher-cache every token the cache holds); see --topk-tail"},
    )
    topk_tail: ChoiceEnum(["renormalise", "uniform"]) = field(
        default="renormalise",
        metadata={"help": "what a top-k target does with the teacher's other tokens: renormalise = the k tokens are "
                          "the whole target (the other V-k get 0); uniform = the k keep their probabilities and the "
                          "rest of the mass is spread evenly over the other tokens (a cache's top-k comes close to "
                          "the full teacher; needs no rebuild of the cache)"},
    )


@register_criterion("multi_teacher_distill", dataclass=MultiTeacherDistillConfig)
class MultiTeacherDistillCriterion(FairseqCriterion):
    consumes_soft_labels = True  # the task warns when --teachers goes to a criterion without this
    def __init__(self, cfg: MultiTeacherDistillConfig, task, soft_labels: Optional[SoftLabelSource] = None):
        """``soft_labels``: a source built elsewhere (tests, benchmarks); by default the task builds the one
        its flags ask for."""
        super().__init__(task)
        if not cfg.temperature > 0:
            raise BalkdError(f"--temperature must be > 0, got {cfg.temperature}")
        if not math.isfinite(cfg.temperature):
            raise BalkdError(f"--temperature must be finite, got {cfg.temperature}")
        if not 0.0 <= cfg.hard_label_weight <= 1.0:
            raise BalkdError(f"--hard-label-weight must be in [0, 1], got {cfg.hard_label_weight}")
        if cfg.topk < 0:
            raise BalkdError(f"--topk must be >= 0, got {cfg.topk}")
        if soft_labels is None and not hasattr(task, "build_soft_label_source"):
            raise BalkdError("--criterion multi_teacher_distill needs --task balanced_distill (samples must carry language ids)")
        self.cfg = cfg
        self.languages: List[str] = list(task.languages)
        self.soft_labels = soft_labels if soft_labels is not None else task.build_soft_label_source()
        self.soft_labels.check_topk(cfg.topk)

    # ------------------------------------------------------------------ loss
    def forward(self, model, sample, reduce=True):
        masked = sample["target"].ne(self.padding_idx)
        sample_size = masked.sum()
        targets = sample["target"][masked]
        # a batch without masked positions gives [0, V] logits: a zero loss that still reaches every
        # parameter, so DDP's gradient buckets fill as usual
        student_logits = model(**sample["net_input"], masked_tokens=masked)[0]
        soft = self.soft_labels.soft_targets(sample, masked, self.cfg.temperature, self.cfg.topk,
                                             tail=self.cfg.topk_tail == "uniform")

        T = self.cfg.temperature
        student_logp_T = F.log_softmax(student_logits.float() / T if T != 1.0 else student_logits.float(), dim=-1)
        valid = soft.valid.to(student_logp_T.dtype)
        soft_per_pos = self._soft_loss_per_position(student_logp_T, soft) * (T * T) * valid
        distill_loss = soft_per_pos.sum()
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
            "distill_positions": valid.sum(),
            "teacher_entropy": (soft.entropy * valid).sum().detach(),
            "top1_agree": ((student_logits.argmax(-1) == soft.top1).to(valid.dtype) * valid).sum(),
            "nonfinite_teacher_batches": soft.nonfinite_langs.sum(),
        }
        logging_output.update(self._per_language(soft_per_pos.detach(), valid, soft))
        logging_output.update(self.soft_labels.take_stats())
        return loss, sample_size, logging_output

    def _hard_loss(self, student_logits, student_logp_T, targets) -> torch.Tensor:
        if self.cfg.temperature == 1.0:  # reuse the log-softmax already computed
            return -student_logp_T.gather(-1, targets.unsqueeze(-1)).sum()
        return F.cross_entropy(student_logits.float(), targets, reduction="sum")

    def _soft_loss_per_position(self, student_logp_T, soft: SoftTargets) -> torch.Tensor:
        """Per masked position: KL(p || q) or -sum p log q, over the teacher's support."""
        student_logp = student_logp_T if soft.ids is None else student_logp_T.gather(-1, soft.ids)
        cross = -row_dot(soft.probs, student_logp)
        if soft.tail is not None:  # every token outside ids has probability tail: -tail * sum of their log q
            cross = cross - soft.tail * (student_logp_T.sum(-1) - student_logp.sum(-1))
        if self.cfg.distill_loss == "ce":
            return cross
        return cross - soft.entropy

    def _per_language(self, per_pos, valid, soft: SoftTargets) -> dict:
        """[L] vectors: summed soft loss, counted positions and non-finite teachers per language."""
        sums = per_pos.new_zeros(len(self.languages)).index_add_(0, soft.position_langs, per_pos)
        counts = per_pos.new_zeros(len(self.languages)).index_add_(0, soft.position_langs, valid)
        return dict(zip(LANGUAGE_VECTORS, (sums, counts, soft.nonfinite_langs.to(per_pos.dtype))))

    # ------------------------------------------------------------------ logging
    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return sum(log.get(key, 0) for log in logging_outputs)

        loss, hard, distill, entropy, agree = (total(k) for k in ("loss", "hard_loss", "distill_loss", "teacher_entropy", "top1_agree"))
        # AverageMeter compares its weight with 0 on the host: read the weights back together, once
        sample_size, positions, nonfinite = _on_host(total("sample_size"), total("distill_positions"),
                                                     total("nonfinite_teacher_batches"))
        # fairseq picks checkpoint_best and stops on --patience by the *rounded* value: a distillation loss
        # is about 0.1 bit, where 3 decimals cannot tell an improvement of 1 % from none
        if sample_size > 0:
            metrics.log_scalar("loss", loss / sample_size / LN2, sample_size, round=LOSS_DECIMALS)
            metrics.log_scalar("hard_loss", hard / sample_size / LN2, sample_size, round=3)
            metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["hard_loss"].avg))
        if positions > 0:
            metrics.log_scalar("distill_loss", distill / positions / LN2, positions, round=LOSS_DECIMALS)
            metrics.log_scalar("teacher_entropy", entropy / positions / LN2, positions, round=3)
            metrics.log_scalar("top1_agree", agree / positions, positions, round=4)
        metrics.log_scalar_sum("nonfinite_teacher_batches", nonfinite)
        for key in ("teacher_loads", "teacher_load_seconds"):  # online with --max-resident-teachers
            if any(key in log for log in logging_outputs):
                metrics.log_scalar_sum(key, float(total(key)), round=3)

    def reduce_per_language_metrics(self, logging_outputs) -> None:
        """``distill_<lang>`` for the languages these outputs hold (called by the task's reduce_metrics).

        One read-back of the [L] counts; work per step grows with the languages present, not with L.
        """
        sums, counts, nonfinite = (sum(log[k] for log in logging_outputs if k in log) for k in LANGUAGE_VECTORS)
        if not torch.is_tensor(counts):
            return
        host_counts, host_nonfinite = torch.stack([counts, nonfinite.to(counts.dtype)]).cpu().numpy()
        means = sums / counts.clamp(min=1) / LN2
        for lang_id in np.flatnonzero(host_counts).tolist():
            metrics.log_scalar(f"{LANG_PREFIX}{self.languages[lang_id]}", means[lang_id], float(host_counts[lang_id]),
                              round=LOSS_DECIMALS)
        for lang_id in np.flatnonzero(host_nonfinite).tolist():
            logger.warning(f"teacher for {self.languages[lang_id]!r} gave non-finite soft labels in "
                           f"{int(host_nonfinite[lang_id])} batch(es); its distill loss was skipped there")

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


def _on_host(*values) -> List[float]:
    """Numbers and (device) tensors as floats, with a single device-to-host copy."""
    device = next((v.device for v in values if torch.is_tensor(v)), None)
    if device is None:
        return [float(v) for v in values]
    return torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(()) for v in values]).tolist()
