"""Soft labels from teacher outputs: temperature, optional top-k, and the non-finite guard.

Online, they come from the teacher's logits (:func:`teacher_soft_targets`); from an offline cache,
from the stored top-k probabilities (:func:`cached_soft_targets`). Both give the same soft labels
for the same top-k: softmax over the kept tokens of logit / T, i.e. of log p / T.

A top-k renormalised over k tokens is a much sharper target than the teacher when the teacher is
unsure: a student that matches it learns to give the other V - k tokens no probability at all, and
its perplexity on gold tokens outside the teacher's top-k explodes (measured: examples/toy/RESULTS.md,
``Ours+cache``). With ``tail`` the kept tokens keep their probabilities and the rest of the teacher's
mass is spread evenly over the other tokens (:attr:`SoftTargets.tail`, each such token's probability):
exact when the teacher's own tail is flat, and never a zero target.

Nothing here reads a value back to the host: which languages gave non-finite outputs is kept as
tensors, so the criterion's forward does not wait for the device.
"""
import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F


@dataclass
class SoftTargets:
    """Teacher distributions at the batch's masked positions (row-major, like the student's logits)."""

    probs: torch.Tensor  # [M, V] or [M, K]: teacher probabilities at temperature T (0 where not valid)
    ids: Optional[torch.Tensor]  # [M, K] vocabulary ids of ``probs`` columns, or None for the full vocabulary
    entropy: torch.Tensor  # [M]: entropy of ``probs`` (nats; 0 where not valid)
    top1: torch.Tensor  # [M]: the teacher's most likely token
    position_langs: torch.Tensor  # [M]: language id of each position
    valid: torch.Tensor  # [M] bool: False where the position's teacher gave non-finite outputs
    nonfinite_langs: torch.Tensor  # [L] bool: languages whose teacher gave non-finite outputs in this batch
    tail: Optional[torch.Tensor] = None  # [M]: probability of each token not in ``ids`` (None: renormalised top-k)


def row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot product of two [M, V] tensors as one batched matmul: no [M, V] temporary."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


def finite_languages(finite_rows: torch.Tensor, position_langs: torch.Tensor, num_languages: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(positions to keep [M], non-finite languages [L]): a language with any non-finite output is dropped
    from the whole batch."""
    bad_rows = (~finite_rows).to(torch.int32)
    bad = torch.zeros(num_languages, dtype=torch.int32, device=finite_rows.device).index_add_(0, position_langs, bad_rows) > 0
    return ~bad[position_langs], bad


def _sanitised(probs: torch.Tensor, entropy: torch.Tensor, valid: torch.Tensor):
    # a NaN would reach the student's gradient through the soft loss even where that loss is masked out
    return probs.masked_fill_(~valid.unsqueeze(-1), 0.0), entropy.masked_fill(~valid, 0.0)


def teacher_soft_targets(logits: torch.Tensor, position_langs: torch.Tensor, num_languages: int, temperature: float,
                         topk: int = 0, tail: bool = False) -> SoftTargets:
    ids = None
    if 0 < topk < logits.size(-1) and tail:
        logp, ids = F.log_softmax(logits / temperature if temperature != 1.0 else logits, dim=-1).topk(topk, dim=-1)
        return _with_flat_tail(logp, ids, logits.size(-1), position_langs, num_languages)
    if 0 < topk < logits.size(-1):
        logits, ids = logits.topk(topk, dim=-1)
        top1 = ids[:, 0]
    else:
        top1 = logits.argmax(-1)
    logp = F.log_softmax(logits / temperature if temperature != 1.0 else logits, dim=-1)
    probs = logp.exp()
    entropy = -row_dot(probs, logp)
    # a row's entropy is finite exactly when all its (kept) logits are: inf - inf, 0 * log 0 and nan give nan
    valid, nonfinite = finite_languages(torch.isfinite(entropy), position_langs, num_languages)
    probs, entropy = _sanitised(probs, entropy, valid)
    return SoftTargets(probs, ids, entropy, top1, position_langs, valid, nonfinite)


def cached_soft_targets(ids: torch.Tensor, probs: torch.Tensor, position_langs: torch.Tensor, num_languages: int,
                        temperature: float, topk: int = 0, vocab_size: int = 0) -> SoftTargets:
    """From a teacher cache: ``ids``/``probs`` [M, K] are the teacher's top-k, most likely first.

    ``vocab_size`` > K: the flat tail (module docstring). The teacher at T = 1 is taken to be the stored
    top-k plus an even spread of the rest over the other tokens; that distribution is then tempered.
    """
    if 0 < topk < ids.size(-1):
        ids, probs = ids[:, :topk], probs[:, :topk]
    if vocab_size > ids.size(-1):
        outside = vocab_size - ids.size(-1)
        rest = (1.0 - probs.sum(-1, keepdim=True)).clamp(min=0.0) / outside  # fp16 top-k may sum past 1
        logp = torch.cat([probs.log(), rest.log()], dim=-1) / temperature
        logp = logp - torch.logsumexp(torch.cat([logp[:, :-1], logp[:, -1:] + math.log(outside)], dim=-1), -1, keepdim=True)
        return _with_flat_tail(logp, ids, vocab_size, position_langs, num_languages)
    valid, nonfinite = finite_languages(torch.isfinite(probs).all(-1), position_langs, num_languages)
    logp = F.log_softmax(probs.log() / temperature, dim=-1)  # renormalised over the kept tokens
    probs = logp.exp()
    entropy = torch.special.entr(probs).sum(-1)  # 0 * log 0 = 0 for probabilities that underflowed fp16
    probs, entropy = _sanitised(probs, entropy, valid)
    return SoftTargets(probs, ids, entropy, ids[:, 0], position_langs, valid, nonfinite)


def _with_flat_tail(logp: torch.Tensor, ids: torch.Tensor, vocab_size: int, position_langs: torch.Tensor,
                    num_languages: int) -> SoftTargets:
    """``logp`` [M, k] of the kept tokens (full-distribution log-probabilities), or [M, k + 1] with the
    log-probability of each token outside them last; the rest of the mass goes evenly to the V - k others."""
    k = ids.size(-1)
    if logp.size(-1) == k:
        probs = logp.exp()
        tail = (1.0 - probs.sum(-1)).clamp(min=0.0) / (vocab_size - k)
    else:
        probs, tail = logp[:, :k].exp(), logp[:, k].exp()
    entropy = torch.special.entr(probs).sum(-1) + (vocab_size - k) * torch.special.entr(tail)
    valid, nonfinite = finite_languages(torch.isfinite(entropy) & torch.isfinite(probs).all(-1), position_langs, num_languages)
    probs, entropy = _sanitised(probs, entropy, valid)
    return SoftTargets(probs, ids, entropy, ids[:, 0], position_langs, valid, nonfinite, tail.masked_fill(~valid, 0.0))
