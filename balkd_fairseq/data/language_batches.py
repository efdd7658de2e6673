"""Language-homogeneous batching: every batch holds samples of one language only.

With ``--batch-by-language`` a distillation batch touches a single teacher, so the student pays
for exactly one teacher forward per batch. Within a language the order is fairseq's usual
(shuffled, then sorted by size); the batches of all languages are shuffled together by fairseq's
epoch iterator.
"""
import numpy as np

from .epoch_order import EpochShuffledDataset


class LanguageBatchedDataset(EpochShuffledDataset):
    def __init__(self, dataset, seed: int, epoch: int, reshuffle: bool, sample_langs: np.ndarray):
        super().__init__(dataset, seed=seed, epoch=epoch, reshuffle=reshuffle)
        self.sample_langs = np.asarray(sample_langs)

    def batch_by_size(self, indices, max_tokens=None, max_sentences=None, required_batch_size_multiple=1):
        indices = np.asarray(indices)
        langs = self.sample_langs[indices]
        batches = []
        for lang in np.unique(langs):
            batches.extend(
                super().batch_by_size(
                    indices[langs == lang],
                    max_tokens=max_tokens,
                    max_sentences=max_sentences,
                    required_batch_size_multiple=required_batch_size_multiple,
                )
            )
        return batches
