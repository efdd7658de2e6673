"""One language's masked-LM samples, built by fairseq's own ``masked_lm`` loading.

Training (the ``balanced_distill`` task) and evaluation (``balkd-eval-lm``) both read
``DATA/<lang>/<split>`` through :func:`language_blocks`, which runs ``MaskedLMTask._load_dataset_split``
on the language's directory: the same indexed-dataset loading, ``--combine``, shortening
(``--shorten-method``, ``--shorten-data-split-list`` with plain split names), token blocks and ``<s>``.
"""
import os
import struct

from fairseq.data import MaskTokensDataset
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
    return MaskedLMTask(block_cfg, dictionary)


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
    check_block_lengths(blocks, cfg, lang, split, prefix)
    return blocks


def check_block_lengths(blocks, cfg, lang: str, split: str, prefix: str) -> None:
    """A line longer than a block (break modes complete, complete_doc, eos keep lines whole) is refused here,
    by name, instead of failing at its first batch (fairseq refuses it only when it is drawn)."""
    longest = int(blocks.sizes.max())
    if longest > cfg.tokens_per_sample:
        raise BalkdError(
            f"language {lang!r}: {prefix}.bin holds a line of {longest - 1} tokens (item {int(blocks.sizes.argmax())}), "
            f"longer than a block of --tokens-per-sample {cfg.tokens_per_sample} with --sample-break-mode "
            f"{cfg.sample_break_mode}: use --sample-break-mode none (blocks cross line ends), a larger "
            "--tokens-per-sample, or split long lines when preparing (balkd-prepare --max-line-chars)"
        )


def masked_pair(blocks, dictionary, mask_idx: int, cfg, seed: int, mask_whole_words=None):
    """(input, target) ``MaskTokensDataset`` views of ``blocks``: masks a pure function of (seed, epoch, index).

    Unlike ``MaskTokensDataset.apply_mask`` no index-keyed LRU cache sits in between, so the views stay
    right when the samples below them change with the epoch (a per-epoch balanced draw).
    """
    settings = dict(
        vocab=dictionary, pad_idx=dictionary.pad(), mask_idx=mask_idx, seed=seed,
        mask_prob=cfg.mask_prob, leave_unmasked_prob=cfg.leave_unmasked_prob, random_token_prob=cfg.random_token_prob,
        freq_weighted_replacement=getattr(cfg, "freq_weighted_replacement", False), mask_whole_words=mask_whole_words,
        mask_multiple_length=getattr(cfg, "mask_multiple_length", 1), mask_stdev=getattr(cfg, "mask_stdev", 0.0),
        skip_masking=getattr(cfg, "skip_masking", False),
    )
    return (MaskTokensDataset(blocks, return_masked_tokens=False, **settings),
            MaskTokensDataset(blocks, return_masked_tokens=True, **settings))
