"""A view of a fairseq dataset restricted to (possibly repeated) indices, optionally redrawn every epoch."""
import logging
from dataclasses import dataclass

import numpy as np
from fairseq.data import BaseWrapperDataset

from .balancing import draw_indices

logger = logging.getLogger(__name__)


class IndexedSubsetDataset(BaseWrapperDataset):
    """``dataset[indices[i]]`` for i in range(len(indices)); sizes follow the selection."""

    def __init__(self, dataset, indices: np.ndarray):
        super().__init__(dataset)
        self.indices = np.asarray(indices, dtype=np.int64)
        self._sizes = np.asarray(dataset.sizes)[self.indices]

    def __getitem__(self, index):
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)

    @property
    def sizes(self):
        return self._sizes

    def num_tokens(self, index):
        return self._sizes[index]

    def size(self, index):
        return self._sizes[index]

    def ordered_indices(self):
        return np.arange(len(self))

    @property
    def supports_prefetch(self):
        return False


@dataclass(frozen=True)
class LanguageDraw:
    """One language's balanced draw: ``count`` of its ``size`` samples, a pure function of (seed, draw, position).

    ``per_epoch`` draws anew every epoch (draw number = epoch); otherwise draw 1 serves the whole run.
    ``position`` is the language's place in the split's language list (it seeds the draw).
    """

    language: str
    position: int
    size: int
    count: int
    seed: int
    per_epoch: bool
    mode: str

    def number(self, epoch: int) -> int:
        return epoch if self.per_epoch else 1

    def indices(self, epoch: int) -> np.ndarray:
        return draw_indices(self.size, self.count, self.seed, self.number(epoch), self.position)


class EpochSubsetDataset(IndexedSubsetDataset):
    """The samples of one language drawn for the current epoch (see :class:`LanguageDraw`).

    The draw's length is the same every epoch, so the datasets above it keep their shape; ``sizes``
    is updated in place because fairseq's ``NestedDictionaryDataset`` holds on to the array.
    """

    def __init__(self, dataset, draw: LanguageDraw, epoch: int):
        self.draw = draw
        self.epoch = int(epoch)
        super().__init__(dataset, draw.indices(self.epoch))
        self._base_sizes = np.asarray(dataset.sizes)
        self._log()

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return not self.draw.per_epoch

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        epoch = int(epoch)
        if epoch == self.epoch:
            return
        redraw = self.draw.number(epoch) != self.draw.number(self.epoch)
        self.epoch = epoch
        if redraw:
            self.indices = self.draw.indices(epoch)
            self._sizes[:] = self._base_sizes[self.indices]
        self._log()

    def _log(self):
        logger.info(
            f"balance={self.draw.mode} epoch {self.epoch} (draw {self.draw.number(self.epoch)}): "
            f"{self.draw.language}: {self.draw.size} samples -> {self.draw.count} sampled"
        )
