"""Masked-LM quality from the logits at masked positions: gold rank, MRR, accuracy@1, MLM-PPL.

The rank of the gold token is 1 + the number of vocabulary entries whose logit is *strictly*
higher than the gold token's logit, so ties never push the gold token down.

MLM-PPL is the exponentiated mean cross-entropy of the masked positions when a fraction of the
tokens (15 % by default) is masked at once. It is not the pseudo-perplexity of Salazar et al.
(2020), which masks one token at a time (:mod:`balkd_fairseq.eval.pppl`).
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BalkdError

MLM_PPL = "mlm_ppl"
LEGACY_MLM_PPL = "pseudo_perplexity"  # the key result files used before the rename


def gold_ranks(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Rank (1 = best) of each gold token: ``logits`` is (N, V), ``targets`` is (N,)."""
    gold = logits.gather(-1, targets.unsqueeze(-1))
    return 1 + (logits > gold).sum(dim=-1)


class NonFiniteLogits(BalkdError):
    """A diverged model: no logit is above a NaN gold logit, so every rank would be 1 and the MRR 1.0."""


def check_finite(logits: torch.Tensor) -> None:
    if not torch.isfinite(logits).all():
        raise NonFiniteLogits("the model's logits are not finite (NaN or inf): a diverged checkpoint, whose MRR "
                              "would read 1.0; evaluate an earlier checkpoint")


@dataclass
class MaskedLMScores:
    """Per-position reciprocal ranks and NLLs; :meth:`summary` turns them into the reported metrics."""

    reciprocal_ranks: List[np.ndarray] = field(default_factory=list)
    nlls: List[np.ndarray] = field(default_factory=list)  # natural log

    def add(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Accumulate one batch of masked positions (``logits`` (N, V), ``targets`` (N,))."""
        if targets.numel() == 0:
            return
        logits = logits.float()
        check_finite(logits)
        ranks = gold_ranks(logits, targets)
        self.reciprocal_ranks.append((1.0 / ranks.double()).cpu().numpy())
        self.nlls.append(F.cross_entropy(logits, targets, reduction="none").double().cpu().numpy())

    def items(self) -> Dict[str, np.ndarray]:
        """Per masked position, in scoring order: ``rr`` and ``nll`` (see :mod:`.item_scores`)."""
        rr = np.concatenate(self.reciprocal_ranks) if self.reciprocal_ranks else np.zeros(0)
        nll = np.concatenate(self.nlls) if self.nlls else np.zeros(0)
        return {"rr": rr.astype(np.float32), "nll": nll.astype(np.float32)}

    def summary(self) -> dict:
        rr = np.concatenate(self.reciprocal_ranks) if self.reciprocal_ranks else np.zeros(0)
        if rr.size == 0:
            return {"n_masked": 0, "mrr": None, "acc1": None, MLM_PPL: None}
        nll = np.concatenate(self.nlls)
        return {
            "n_masked": int(rr.size),
            "mrr": float(rr.mean()),
            "acc1": float((rr == 1.0).mean()),
            MLM_PPL: math.exp(float(nll.mean())),
        }
