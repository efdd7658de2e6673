"""A batch's masked positions, grouped by language, read back from the device once per batch."""
from dataclasses import dataclass
from typing import Iterator, Tuple

import numpy as np
import torch


def ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + c) for every (s, c), without a Python loop."""
    ends = np.cumsum(counts)
    return np.repeat(starts - (ends - counts), counts) + np.arange(int(ends[-1]) if len(ends) else 0)


@dataclass
class MaskedPositions:
    """Per sample: its language, its number of masked positions and where its rows start in the output.

    The output rows are the batch's masked positions in row-major order (the order of
    ``model(..., masked_tokens=masked)``). Built with one device-to-host copy; everything a source
    needs to route samples (which languages, which rows) is then known on the host.
    """

    langs: np.ndarray  # [B] language id of each sample
    counts: np.ndarray  # [B] masked positions of each sample
    extra: np.ndarray  # [N, B] further per-sample values copied along (e.g. sample ids)
    position_langs: torch.Tensor  # [M] language id of each masked position (on the batch's device)

    @classmethod
    def of(cls, masked: torch.Tensor, lang_ids: torch.Tensor, *extra: torch.Tensor) -> "MaskedPositions":
        counts = masked.sum(1)
        columns = [counts, lang_ids.to(counts.dtype)] + [e.to(counts.dtype) for e in extra]
        host = torch.stack(columns).cpu().numpy()  # the batch's one read-back
        total = int(host[0].sum())
        position_langs = torch.repeat_interleave(lang_ids, counts, output_size=total)
        return cls(langs=host[1], counts=host[0], extra=host[2:], position_langs=position_langs)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    @property
    def first_rows(self) -> np.ndarray:
        return np.cumsum(self.counts) - self.counts

    def groups(self, with_masks_only: bool = True) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
        """(language id, its samples, their output rows) for each language in the batch."""
        first = self.first_rows
        for lang_id in np.unique(self.langs).tolist():
            samples = np.nonzero(self.langs == lang_id)[0]
            if with_masks_only and not self.counts[samples].any():
                continue
            yield lang_id, samples, ranges(first[samples], self.counts[samples])
