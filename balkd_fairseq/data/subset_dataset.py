"""A view of a fairseq dataset restricted to (possibly repeated) indices."""
import numpy as np
from fairseq.data import BaseWrapperDataset


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
