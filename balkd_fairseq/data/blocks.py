"""One language's masked-LM samples, built by fairseq's own ``masked_lm`` loading.

Training (the ``balanced_distill`` task) and evaluation (``balkd-eval-lm``) both read
``DATA/<lang>/<split>`` through :func:`language_blocks`, which runs ``MaskedLMTask._load_dataset_split``
on the language's directory: the same indexed-dataset loading, ``--combine``, shortening
(``--shorten-method``, ``--shorten-data-split-list`` with plain split names), token blocks and ``<s>``.
"""
import os
import struct
from typing import Optional

import numpy as np
from fairseq.data import MaskTokensDataset
from fairseq.data.indexed_dataset import MMapIndexedDataset
from fairseq.tasks.masked_lm import MaskedLMConfig, MaskedLMTask

from ..errors import BalkdError


def split_files(root: str, lang: str, split: str) -> str:
    """``DATA/<lang>/<split>``, checked to hold a non-empty binarized data set."""
    prefix = os.path.join(root, lang, split)
    if not os.path.isfile(prefix + ".idx") or not os.path.isfile(prefix + ".bin"):
        raise BalkdError(f"language {lang!r} has no {split} split: {prefix}.{{bin,idx}} not found")
    if os.path.getsize(prefix + ".bin") == 0:
        raise BalkdError(f"language {lang!r} has an empty {split} split: {prefix}.bin")
    return prefix


def _loader(cfg, data_dir: str, dictionary) -> MaskedLMTask:
    """A ``masked_lm`` task over one language directory, sharing ``dictionary`` (which already has <mask>)."""
    block_cfg = MaskedLMConfig(
        data=data_dir,
        tokens_per_sample=cfg.tokens_per_sample,
        sample_break_mode=str(cfg.sample_break_mode),
        shorten_method=str(getattr(cfg, "shorten_method", "none")),
        shorten_data_split_list=getattr(cfg, "shorten_data_split_list", "") or "",
        seed=int(cfg.seed),
    )
    # MaskedLMTask.__init__ adds <mask> again, which bumps its count in the shared dictionary on every
    # call; --freq-weighted-replacement reads those counts, so masks would depend on how many splits a
    # process had loaded before (the cache builder and training load different numbers)
    counts = list(dictionary.count)
    loader = MaskedLMTask(block_cfg, dictionary)
    dictionary.count[:] = counts
    return loader


def language_blocks(root: str, lang: str, split: str, dictionary, cfg, combine: bool = False):
    """Token blocks (``<s>`` prepended) of ``DATA/<lang>/<split>``; ``cfg`` holds the masked-LM block settings."""
    prefix = split_files(root, lang, split)
    try:
        blocks = _loader(cfg, os.path.dirname(prefix), dictionary)._load_dataset_split(split, 1, combine)
    except (OSError, ValueError, IndexError, struct.error, AssertionError) as err:
        # fairseq's indexed-dataset reader asserts on a malformed .idx header
        raise BalkdError(f"language {lang!r}: cannot read {prefix}.{{bin,idx}}: {err}") from None
    if len(blocks) == 0:
        raise BalkdError(f"language {lang!r} has an empty {split} split: {prefix}.bin")
    check_bin_complete(prefix, lang)
    check_block_lengths(blocks, cfg, lang, split, prefix)
    return blocks


def check_bin_complete(prefix: str, lang: str) -> None:
    """A ``.bin`` shorter than its index says (an interrupted copy, a full disk) fails only when a missing
    item is read, deep inside a batch: refuse it at load time."""
    try:
        index = MMapIndexedDataset.Index(prefix + ".idx")
    except (OSError, ValueError, AssertionError, struct.error):
        return  # not fairseq's mmap format: the other readers check their own files
    if len(index) == 0:
        return
    pointer, size = index[len(index) - 1]
    expected = int(pointer) + int(size) * np.dtype(index.dtype).itemsize
    found = os.path.getsize(prefix + ".bin")
    if found < expected:
        raise BalkdError(f"language {lang!r}: {prefix}.bin is truncated ({found:,} bytes; its index describes "
                         f"{expected:,}): copy or prepare it again")


def check_block_lengths(blocks, cfg, lang: str, split: str, prefix: str) -> None:
    """A line longer than a block (break modes complete, complete_doc, eos keep lines whole) is refused here,
    by name, instead of failing at its first batch (fairseq refuses it only when it is drawn)."""
    longest = int(blocks.sizes.max())
    if longest > cfg.tokens_per_sample:
        truncated = str(getattr(cfg, "shorten_method", "none")) == "truncate"
        why = (" (--shorten-method truncate cuts lines to --tokens-per-sample tokens, one more than a block holds "
               "beside <s>: fairseq's masked_lm skips such lines, this task refuses them)") if truncated else ""
        raise BalkdError(
            f"language {lang!r}: {prefix}.bin holds a line of {longest - 1} tokens (in block "
            f"{int(blocks.sizes.argmax())}), longer than a block of --tokens-per-sample {cfg.tokens_per_sample} with "
            f"--sample-break-mode {cfg.sample_break_mode}{why}: use --sample-break-mode none (blocks cross line "
            "ends), a larger --tokens-per-sample, or split long lines when preparing (balkd-prepare --max-line-chars)"
        )


def masked_pair(blocks, dictionary, mask_idx: int, cfg, seed: int, mask_whole_words=None,
                shared_weights: Optional["SharedReplacementWeights"] = None):
    """(input, target) ``MaskTokensDataset`` views of ``blocks``: masks a pure function of (seed, epoch, index).

    Unlike ``MaskTokensDataset.apply_mask`` no index-keyed LRU cache sits in between, so the views stay
    right when the samples below them change with the epoch (a per-epoch balanced draw).
    ``shared_weights`` lets every view built over one dictionary hold one copy of the random-replacement
    distribution (see :class:`SharedReplacementWeights`); without it the pair still shares one.
    """
    settings = dict(
        vocab=dictionary, pad_idx=dictionary.pad(), mask_idx=mask_idx, seed=seed,
        mask_prob=cfg.mask_prob, leave_unmasked_prob=cfg.leave_unmasked_prob, random_token_prob=cfg.random_token_prob,
        freq_weighted_replacement=getattr(cfg, "freq_weighted_replacement", False), mask_whole_words=mask_whole_words,
        mask_multiple_length=getattr(cfg, "mask_multiple_length", 1), mask_stdev=getattr(cfg, "mask_stdev", 0.0),
        skip_masking=getattr(cfg, "skip_masking", False),
    )
    shared_weights = shared_weights if shared_weights is not None else SharedReplacementWeights()
    return (shared_weights.adopt(MaskTokensDataset(blocks, return_masked_tokens=False, **settings)),
            shared_weights.adopt(MaskTokensDataset(blocks, return_masked_tokens=True, **settings)))


class SharedReplacementWeights:
    """One copy of ``MaskTokensDataset.weights`` (the random-replacement distribution) for many views.

    fairseq computes it in every ``MaskTokensDataset``: a float64 per dictionary symbol (64 KB for 8k
    symbols, 2 MB for XLM-R's 250k), and a multilingual task holds four views per language (input and
    target of train and valid), so the copies made the task's memory grow with the number of languages.
    The distribution depends only on the dictionary, so a view whose weights equal the kept ones gets
    the kept array (same values: the masks drawn are unchanged).
    """

    def __init__(self):
        self.weights: Optional[np.ndarray] = None

    def adopt(self, view: MaskTokensDataset) -> MaskTokensDataset:
        weights = getattr(view, "weights", None)  # absent with --random-token-prob 0
        if weights is None:
            return view
        if self.weights is not None and np.array_equal(self.weights, weights):
            view.weights = self.weights
        else:
            weights.flags.writeable = False  # shared from now on
            self.weights = weights
        return view
