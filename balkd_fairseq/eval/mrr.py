"""Masked-LM quality from the logits at masked positions: gold rank, MRR, accuracy@1, pseudo-perplexity.

The rank of the gold token is 1 + the number of vocabulary entries whose logit is *strictly*
higher than the gold token's logit, so ties never push the gold token down.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def gold_ranks(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Rank (1 = best) of each gold token: ``logits`` is (N, V), ``targets`` is (N,)."""
    gold = logits.gather(-1, targets.unsqueeze(-1))
    return 1 + (logits > gold).sum(dim=-1)


@dataclass
class MaskedLMScores:
    """Running sums over masked positions; :meth:`summary` turns them into the reported metrics."""

    n_masked: int = 0
    reciprocal_rank_sum: float = 0.0
    top1_correct: int = 0
    nll_sum: float = 0.0  # natural log

    def add(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Accumulate one batch of masked positions (``logits`` (N, V), ``targets`` (N,))."""
        if targets.numel() == 0:
            return
        logits = logits.float()
        ranks = gold_ranks(logits, targets)
        self.n_masked += int(targets.numel())
        self.reciprocal_rank_sum += float((1.0 / ranks.double()).sum())
        self.top1_correct += int((ranks == 1).sum())
        self.nll_sum += float(F.cross_entropy(logits, targets, reduction="sum"))

    def summary(self) -> dict:
        if self.n_masked == 0:
            return {"n_masked": 0, "mrr": None, "acc1": None, "pseudo_perplexity": None}
        return {
            "n_masked": self.n_masked,
            "mrr": self.reciprocal_rank_sum / self.n_masked,
            "acc1": self.top1_correct / self.n_masked,
            "pseudo_perplexity": math.exp(self.nll_sum / self.n_masked),
        }
