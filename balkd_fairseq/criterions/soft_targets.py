"""Soft labels from teacher outputs: temperature, optional top-k, and the non-finite guard.

Online, they come from the teacher's logits (:func:`teacher_soft_targets`); from an offline cache,
from the stored top-k probabilities (:func:`cached_soft_targets`). Both give the same soft labels
for the same top-k: softmax over the kept tokens of logit / T, i.e. of log p / T.
"""
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F


@dataclass
class SoftTargets:
    """Teacher distributions at the batch's masked positions (row-major, like the student's logits)."""

    probs: torch.Tensor  # [M, V] or [M, K]: teacher probabilities at temperature T
    ids: Optional[torch.Tensor]  # [M, K] vocabulary ids of ``probs`` columns, or None for the full vocabulary
    entropy: torch.Tensor  # [M]: entropy of ``probs`` (nats)
    top1: torch.Tensor  # [M]: the teacher's most likely token
    position_langs: torch.Tensor  # [M]: language id of each position
    valid: torch.Tensor  # [M] bool: False where the position's teacher gave non-finite outputs
    nonfinite_langs: List[int]


def row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot product of two [M, V] tensors as one batched matmul: no [M, V] temporary."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


def _finite_languages(finite_rows: torch.Tensor, position_langs: torch.Tensor) -> Tuple[torch.Tensor, List[int]]:
    """Positions to keep: a language with any non-finite output is dropped from the whole batch."""
    if bool(finite_rows.all()):
        return finite_rows, []
    nonfinite_langs = torch.unique(position_langs[~finite_rows]).tolist()
    return ~torch.isin(position_langs, position_langs.new_tensor(nonfinite_langs)), nonfinite_langs


def _zero_invalid(values: torch.Tensor, valid: torch.Tensor, fill: float) -> torch.Tensor:
    return torch.where(valid.unsqueeze(-1), values, torch.full((), fill, dtype=values.dtype, device=values.device))


def _softmax_with_entropy(logits: torch.Tensor, temperature: float):
    logp = F.log_softmax(logits / temperature if temperature != 1.0 else logits, dim=-1)
    probs = logp.exp()
    return probs, -row_dot(probs, logp)


def teacher_soft_targets(logits: torch.Tensor, position_langs: torch.Tensor, temperature: float, topk: int = 0) -> SoftTargets:
    ids = None
    if 0 < topk < logits.size(-1):
        logits, ids = logits.topk(topk, dim=-1)
        top1 = ids[:, 0]
    else:
        top1 = logits.argmax(-1)
    probs, entropy = _softmax_with_entropy(logits, temperature)
    # a row's entropy is finite exactly when all its (kept) logits are: inf - inf, 0 * log 0 and nan give nan
    valid, nonfinite_langs = _finite_languages(torch.isfinite(entropy), position_langs)
    if nonfinite_langs:
        probs, entropy = _softmax_with_entropy(_zero_invalid(logits, valid, 0.0), temperature)
    return SoftTargets(probs, ids, entropy, top1, position_langs, valid, nonfinite_langs)


def cached_soft_targets(ids: torch.Tensor, probs: torch.Tensor, position_langs: torch.Tensor, temperature: float,
                        topk: int = 0) -> SoftTargets:
    """From a teacher cache: ``ids``/``probs`` [M, K] are the teacher's top-k, most likely first."""
    if 0 < topk < ids.size(-1):
        ids, probs = ids[:, :topk], probs[:, :topk]
    valid, nonfinite_langs = _finite_languages(torch.isfinite(probs).all(-1), position_langs)
    if nonfinite_langs:
        probs = _zero_invalid(probs, valid, 1.0)
    logp = F.log_softmax(probs.log() / temperature, dim=-1)  # renormalised over the kept tokens
    probs = logp.exp()
    entropy = torch.special.entr(probs).sum(-1)  # 0 * log 0 = 0 for probabilities that underflowed fp16
    return SoftTargets(probs, ids, entropy, ids[:, 0], position_langs, valid, nonfinite_langs)
