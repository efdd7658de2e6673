"""The order a split's samples are batched in: shuffled from (seed, epoch), then sorted by size.

This is fairseq's ``masked_lm`` order (``SortDataset`` over a seeded permutation and the sizes). When
the samples change every epoch (a balanced training split), the permutation is redrawn for each
epoch in ``set_epoch`` and the dataset tells fairseq not to reuse its epoch iterator, so every epoch
is batched afresh: fairseq's own mechanism for epoch-dependent datasets (as ``ResamplingDataset``).
"""
import numpy as np
from fairseq.data import SortDataset, data_utils


class EpochShuffledDataset(SortDataset):
    def __init__(self, dataset, seed: int, epoch: int, reshuffle: bool):
        self.seed = int(seed)
        self.reshuffle = bool(reshuffle)
        self.epoch = int(epoch)
        super().__init__(dataset, sort_order=self._sort_order(dataset, self.epoch))

    def _sort_order(self, dataset, epoch: int):
        with data_utils.numpy_seed(self.seed, epoch):
            shuffle = np.random.permutation(len(dataset))
        return [shuffle, dataset.sizes]

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return not self.reshuffle

    def set_epoch(self, epoch):
        super().set_epoch(epoch)  # the samples below first: the sort order uses their sizes
        epoch = int(epoch)
        if self.reshuffle and epoch != self.epoch:
            self.epoch = epoch
            self.sort_order = self._sort_order(self.dataset, epoch)
