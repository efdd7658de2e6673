"""Training a probe in-process on cached word features (a plain Adam loop; fast on CPU).

The probe is a linear layer or a one-hidden-layer MLP over the frozen encoder's word states (pooled
from its subwords), computed once per split (:mod:`balkd_fairseq.eval.features`); the encoder is never
part of the probe, so its weights cannot change. Batches are words, not sentences: the states already
carry the sentence context. The epoch with the best development score is kept when a scorer is given.

A probe trained on a few sentences (``balkd-probe --train-sentences``) would get a handful of updates
per epoch: an under-trained probe (on NER, an F1 far below what the encoder allows) says more about
the number of updates than about the encoder. ``words_per_epoch`` gives it the updates and development checks of
a probe trained on that many words, by reshuffled passes over its own words.
"""
import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


@dataclass
class ProbeTrainingConfig:
    hidden_dim: int = 0  # 0 = linear probe
    activation: str = "relu"
    dropout: float = 0.0
    epochs: int = 20
    lr: float = 5e-3
    batch_size: int = 64  # words per update
    seed: int = 1
    words_per_epoch: int = 0  # 0: an epoch is one pass over the training words; N: N words in reshuffled passes


def build_probe_head(input_dim: int, num_labels: int, hidden_dim: int = 0, activation: str = "relu", dropout: float = 0.0):
    """``Linear(input_dim, num_labels)``, or a one-hidden-layer MLP when ``hidden_dim > 0``."""
    if hidden_dim <= 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(input_dim, num_labels))
    return nn.Sequential(
        nn.Dropout(dropout), nn.Linear(input_dim, hidden_dim), ACTIVATIONS[activation](), nn.Linear(hidden_dim, num_labels)
    )


@contextmanager
def single_thread():
    """Small probe updates run fastest on one CPU thread (intra-op threading costs more than it saves)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_labels: int,
    cfg: ProbeTrainingConfig,
    dev_score: Optional[Callable[[nn.Module], float]] = None,
) -> nn.Module:
    """Fit a probe on (N, dim) ``features`` and (N,) ``labels``; labels >= ``num_labels`` are skipped."""
    with single_thread():
        return _train(features, labels, num_labels, cfg, dev_score)


def _train(features, labels, num_labels, cfg, dev_score):
    generator = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    head = build_probe_head(features.size(1), num_labels, cfg.hidden_dim, cfg.activation, cfg.dropout)
    keep = labels < num_labels
    features, labels = features[keep], labels[keep]
    optimizer = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    best_score, best_state = None, None
    for _ in range(cfg.epochs):
        head.train()
        for batch in epoch_order(len(labels), cfg.words_per_epoch, generator).split(cfg.batch_size):
            optimizer.zero_grad()
            F.cross_entropy(head(features[batch]), labels[batch]).backward()
            optimizer.step()
        if dev_score is not None:
            score = dev_score(head)
            if best_score is None or score > best_score:
                best_score, best_state = score, copy.deepcopy(head.state_dict())
    if best_state is not None:
        head.load_state_dict(best_state)
    return head.eval()


def epoch_order(count: int, words_per_epoch: int, generator: torch.Generator) -> torch.Tensor:
    """The training words of one epoch, by index: one shuffled pass, or ``words_per_epoch`` words of reshuffled passes."""
    if words_per_epoch <= count:
        return torch.randperm(count, generator=generator)
    passes = [torch.randperm(count, generator=generator) for _ in range(math.ceil(words_per_epoch / count))]
    return torch.cat(passes)[:words_per_epoch]


@torch.no_grad()
def predict(head: nn.Module, features: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Arg-max label id of each row of ``features``."""
    head.eval()
    if len(features) == 0:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat([head(chunk).argmax(-1) for chunk in features.split(batch_size)])
