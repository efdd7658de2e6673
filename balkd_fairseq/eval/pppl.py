"""Pseudo-perplexity (PPPL) of a masked LM, as Salazar et al. (ACL 2020, "Masked Language Model Scoring").

Every item of ``DATA/<lang>/<split>`` (one line of text, ending in ``</s>``) is a sentence. Each of its
tokens is masked in turn, one copy of the sentence per token, and scored by the model given the rest of
the sentence: PPPL = exp(sum of those NLLs / number of scored tokens) over the whole split. ``<s>``,
``</s>`` and ``<pad>`` are never scored (as for MLM-PPL); ``</s>`` stays in the context.

The copies of several sentences are scored together, up to ``max_tokens`` tokens per forward pass.

A sentence longer than the model's positions is cut into consecutive windows of ``max_positions - 1``
tokens (each window gets its own ``<s>``), and each token is scored with its own window as context, so
tokens near a cut see less context than they would in a longer model.
"""
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from fairseq.data import data_utils

from ..errors import BalkdError
from .batching import padded_batches
from .mrr import check_finite


@dataclass
class MaskedCopy:
    """One window of a sentence with a single position replaced by ``<mask>``."""

    sentence: int  # index of the sentence in the split
    window: torch.Tensor  # the window's tokens, ``<s>`` first
    position: int  # the masked position within ``window``
    target: int  # the gold token at that position


def sentence_windows(tokens: torch.Tensor, max_positions: Optional[int]) -> List[torch.Tensor]:
    """Consecutive pieces of ``tokens`` that fit the model once ``<s>`` is prepended."""
    if not max_positions:
        return [tokens]
    size = max_positions - 1
    if size < 1:
        raise BalkdError(f"a model with {max_positions} positions cannot score a token after <s>")
    return [tokens[start:start + size] for start in range(0, len(tokens), size)]


def masked_copies(sentence: int, tokens: torch.Tensor, dictionary, max_positions: Optional[int]) -> Iterator[MaskedCopy]:
    """One copy per scored token of the sentence (see the module docstring for the windows)."""
    special = {dictionary.bos(), dictionary.eos(), dictionary.pad()}
    bos = torch.tensor([dictionary.bos()], dtype=tokens.dtype)
    for piece in sentence_windows(tokens, max_positions):
        window = torch.cat([bos, piece])
        for position in range(1, len(window)):
            if int(window[position]) not in special:
                yield MaskedCopy(sentence, window, position, int(window[position]))


def batches(copies: Sequence[MaskedCopy], max_tokens: int) -> Iterator[List[MaskedCopy]]:
    """Consecutive copies whose padded batch stays within ``max_tokens`` (at least one copy each)."""
    return padded_batches(copies, lambda copy: len(copy.window), max_tokens)


def collate(batch: List[MaskedCopy], dictionary) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(src_tokens (B, T) with one ``<mask>`` per row, masked positions (B, T), targets (B,))."""
    src = data_utils.collate_tokens([copy.window for copy in batch], dictionary.pad())
    rows = torch.arange(len(batch))
    columns = torch.tensor([copy.position for copy in batch])
    src[rows, columns] = dictionary.index("<mask>")
    masked = torch.zeros_like(src, dtype=torch.bool)
    masked[rows, columns] = True
    return src, masked, torch.tensor([copy.target for copy in batch])


@torch.no_grad()
def score_sentences(model, sentences: Sequence[torch.Tensor], dictionary, max_tokens: int, device: str,
                    progress=None) -> Tuple[np.ndarray, np.ndarray]:
    """Per sentence: summed NLL (nats) of every scored token masked in turn, and the number of scored tokens."""
    model.eval()
    if dictionary.index("<mask>") == dictionary.unk():
        raise BalkdError("the model's dictionary has no <mask> symbol; is this a masked-LM checkpoint?")
    max_positions = model.max_positions() if hasattr(model, "max_positions") else None
    nll = np.zeros(len(sentences), dtype=np.float64)
    count = np.zeros(len(sentences), dtype=np.int64)
    # Copies of sentences of similar length share a batch: less padding.
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    copies = (copy for i in order for copy in masked_copies(i, sentences[i], dictionary, max_positions))
    for batch in batches(copies, max_tokens):
        src, masked, targets = collate(batch, dictionary)
        logits = model(src.to(device), masked_tokens=masked.to(device))[0]  # one row per copy, in batch order
        check_finite(logits)
        losses = F.cross_entropy(logits.float(), targets.to(device), reduction="none").double().cpu().numpy()
        ids = np.array([copy.sentence for copy in batch])
        np.add.at(nll, ids, losses)
        np.add.at(count, ids, 1)
        if progress is not None:
            progress.update(len(batch))
    return nll, count


def load_sentences(prefix: str, dictionary, max_sentences: int = 0) -> List[torch.Tensor]:
    """The items (lines, each ending in ``</s>``) of a binarized split, the first ``max_sentences`` if > 0."""
    dataset = data_utils.load_indexed_dataset(prefix, dictionary)
    if dataset is None or len(dataset) == 0:
        raise BalkdError(f"empty or unreadable data set: {prefix}.bin")
    count = len(dataset) if max_sentences <= 0 else min(max_sentences, len(dataset))
    return [dataset[i].long() for i in range(count)]


def count_copies(sentences: Sequence[torch.Tensor], dictionary) -> int:
    """Forward rows :func:`score_sentences` will run (for a progress bar)."""
    special = torch.tensor([dictionary.bos(), dictionary.eos(), dictionary.pad()])
    return int(sum((~torch.isin(s, special)).sum() for s in sentences))


def summary(nll: np.ndarray, count: np.ndarray) -> dict:
    total = int(count.sum())
    return {"pppl": float(np.exp(nll.sum() / total)) if total else None, "pppl_tokens": total,
            "pppl_sentences": int(len(count))}
