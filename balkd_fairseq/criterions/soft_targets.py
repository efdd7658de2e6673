"""Soft labels from teacher logits: temperature, optional top-k, and the non-finite guard."""
from dataclasses import dataclass
from typing import List, Optional

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


def teacher_soft_targets(logits: torch.Tensor, position_langs: torch.Tensor, temperature: float, topk: int = 0) -> SoftTargets:
    finite = torch.isfinite(logits).all(-1)
    nonfinite_langs = torch.unique(position_langs[~finite]).tolist() if not bool(finite.all()) else []
    valid = ~torch.isin(position_langs, position_langs.new_tensor(nonfinite_langs)) if nonfinite_langs else finite
    if nonfinite_langs:
        logits = torch.where(valid.unsqueeze(-1), logits, torch.zeros((), dtype=logits.dtype, device=logits.device))
    top1 = logits.argmax(-1)
    ids = None
    if 0 < topk < logits.size(-1):
        logits, ids = logits.topk(topk, dim=-1)
    logp = F.log_softmax(logits / temperature, dim=-1)
    probs = logp.exp()
    entropy = -(probs * logp).sum(-1)
    return SoftTargets(probs, ids, entropy, top1, position_langs, valid, nonfinite_langs)
