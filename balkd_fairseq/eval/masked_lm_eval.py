"""Scoring a masked LM on deterministic masks of ``DATA/<lang>/<split>``.

Blocks are built by the training task's own loading (``data/blocks.py``: fairseq's ``masked_lm``
pipeline), then fairseq's ``MaskTokensDataset`` masks them with a fixed seed and every chosen position
replaced by ``<mask>`` (no random or kept tokens), so every model sharing ``DATA/dict.txt`` is scored
on identical masks. Only masked positions whose gold token is a real token count (``<s>``, ``</s>``
and ``<pad>`` never do). ``<unk>`` targets count, as in fairseq's masked-LM loss, and their number is
reported (``n_unknown``): text the vocabulary does not cover makes them common and easy to predict.
"""
import hashlib
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from fairseq.data import NestedDictionaryDataset, RightPadDataset

from ..data.blocks import language_blocks, masked_pair, split_files
from ..errors import BalkdError
from .mrr import MaskedLMScores

BREAK_MODES = ["none", "complete", "complete_doc", "eos"]


@dataclass
class MaskingConfig:
    seed: int = 1
    mask_prob: float = 0.15
    tokens_per_sample: int = 512
    sample_break_mode: str = "none"
    max_samples: int = 0  # 0 = every block of the split
    leave_unmasked_prob: float = 0.0  # every chosen position becomes <mask>
    random_token_prob: float = 0.0


def split_prefix(data: str, lang: str, split: str) -> str:
    """``DATA/<lang>/<split>``, checked to hold a binarized data set."""
    return split_files(data, lang, split)


def masked_dataset(prefix: str, dictionary, cfg: MaskingConfig) -> NestedDictionaryDataset:
    """Masked blocks of one binarized split: ``net_input.src_tokens`` and ``target`` (pad = not masked)."""
    mask_idx = dictionary.index("<mask>")
    if mask_idx == dictionary.unk():
        raise BalkdError("the model's dictionary has no <mask> symbol; is this a masked-LM checkpoint?")
    data_dir, split = os.path.split(prefix)
    root, lang = os.path.split(data_dir)
    blocks = language_blocks(root, lang, split, dictionary, cfg)
    src, tgt = masked_pair(blocks, dictionary, mask_idx, cfg, cfg.seed)
    return NestedDictionaryDataset(
        {
            "net_input": {"src_tokens": RightPadDataset(src, pad_idx=dictionary.pad())},
            "target": RightPadDataset(tgt, pad_idx=dictionary.pad()),
        },
        sizes=[src.sizes],
    )


def scored_positions(target: torch.Tensor, dictionary) -> torch.Tensor:
    """Masked positions whose gold token is not <s>, </s> or <pad>."""
    special = torch.tensor([dictionary.bos(), dictionary.eos(), dictionary.pad()], device=target.device)
    return ~torch.isin(target, special)


def evaluation_indices(dataset, max_samples: int) -> np.ndarray:
    """The first ``max_samples`` blocks (all if 0), ordered by length for efficient batches."""
    count = len(dataset) if max_samples <= 0 else min(max_samples, len(dataset))
    indices = np.arange(count)
    return indices[np.argsort(dataset.sizes[0][indices], kind="stable")]


class MaskFingerprint:
    """SHA-256 over every scored block's masked input, in block order: equal iff the masks are equal."""

    def __init__(self):
        self.digests = {}

    def add(self, index: int, src_tokens: torch.Tensor) -> None:
        self.digests[int(index)] = hashlib.sha256(src_tokens.numpy().astype(np.int64).tobytes()).digest()

    def hexdigest(self) -> str:
        total = hashlib.sha256()
        for index in sorted(self.digests):
            total.update(self.digests[index])
        return total.hexdigest()


@torch.no_grad()
def score_dataset(model, dataset, dictionary, max_tokens: int, device: str, progress=None, max_samples: int = 0,
                  scores: Optional[MaskedLMScores] = None) -> dict:
    """MRR, accuracy@1 and MLM-PPL of ``model`` over ``dataset``'s scored masked positions.

    Pass ``scores`` to keep the per-position scores (in block order, then position order).
    """
    model.eval()
    scores = MaskedLMScores() if scores is None else scores
    fingerprint = MaskFingerprint()
    unknown_targets = 0
    indices = evaluation_indices(dataset, max_samples)
    for batch in dataset.batch_by_size(indices, max_tokens=max_tokens):
        items = [dataset[i] for i in batch]
        for index, item in zip(batch, items):
            fingerprint.add(index, item["net_input.src_tokens"])
        sample = dataset.collater(items)
        target = sample["target"]
        positions = scored_positions(target, dictionary)
        unknown_targets += int(target[positions].eq(dictionary.unk()).sum())
        if positions.any():
            src = sample["net_input"]["src_tokens"].to(device)
            logits = model(src, masked_tokens=positions.to(device))[0]
            scores.add(logits, target[positions].to(device))
        if progress is not None:
            progress.update(len(batch))
    return {**scores.summary(), "n_unknown": unknown_targets, "n_blocks": int(len(indices)),
            "mask_sha256": fingerprint.hexdigest()}


def check_positions(model, cfg: MaskingConfig, source: str) -> None:
    """Refuse blocks longer than the model's position embeddings."""
    limit = model.max_positions() if hasattr(model, "max_positions") else None
    if limit is not None and cfg.tokens_per_sample > limit:
        raise BalkdError(
            f"{source} handles at most {limit} positions; pass --tokens-per-sample {limit} (or less) "
            "for every model you compare"
        )
