"""Refuse a split that fairseq would turn into no batch at all.

fairseq's ``batch_by_size`` drops the last ``len % --required-batch-size-multiple`` samples of a split
(default multiple 8), so a split (or one language's ``valid_<lang>`` subset) with fewer blocks than that
gives zero batches, as does one whose every block is skipped as longer than ``--max-tokens``
(``--skip-invalid-size-inputs-valid-test``). fairseq then ends with
"The dataset is empty" (a traceback) at its first batch; this names the split, its size and the flag.
A block longer than ``--max-tokens`` is dropped from the training split (fairseq skips it) and fails the
other splits' batching with an assertion (a traceback; their size filter is by ``--tokens-per-sample``
only); :func:`check_blocks_fit` names the flags instead.
"""
from typing import List, Optional

import numpy as np

from ..errors import BalkdError


def check_blocks_fit(dataset, split: str, max_tokens: Optional[int], flag: str = "--max-tokens") -> None:
    """Refuse a split with a block longer than ``max_tokens`` (given by ``flag``)."""
    sizes = getattr(dataset, "sizes", None)  # what fairseq batches by: a block's tokens
    if isinstance(sizes, (list, tuple)):
        sizes = sizes[0] if sizes else None
    if not max_tokens or sizes is None or len(sizes) == 0:
        return
    longest = int(np.max(sizes))
    if longest > max_tokens:
        raise BalkdError(f"{flag} {max_tokens} is smaller than the {split!r} split's longest block "
                         f"({longest} tokens): raise {flag} to at least {longest} or lower --tokens-per-sample")


def check_split_has_batches(batches, split: str, languages: List[str], blocks: int, required_multiple: int,
                            max_tokens: Optional[int], max_sentences: Optional[int]) -> None:
    """``batches``: the split's batches (fairseq's ``frozen_batches``); BalkdError when there are none."""
    if len(batches) > 0:
        return
    where = f"the {split!r} split of language {languages[0]!r}" if len(languages) == 1 else \
        f"the {split!r} split ({len(languages)} languages)"
    if blocks < required_multiple:
        raise BalkdError(f"{where} has {blocks} block(s), fewer than --required-batch-size-multiple "
                         f"{required_multiple}, so it gives no batch: lower --required-batch-size-multiple "
                         f"(e.g. 1) or add data")
    raise BalkdError(f"{where} has {blocks} block(s) but gives no batch under --max-tokens {max_tokens}, "
                     f"--batch-size {max_sentences}, --required-batch-size-multiple {required_multiple}: "
                     f"raise --max-tokens or lower --tokens-per-sample (longer blocks are skipped)")
