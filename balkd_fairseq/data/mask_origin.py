"""Where a batch's masks come from: its base split and the epoch its masks were drawn for.

fairseq's ``MaskTokensDataset`` masks sample ``i`` as a pure function of (seed, epoch, i). A batch
carries ``sample["mask_origin"] = {"split": "train", "epoch": 3}`` (with ``sample["id"]``, the
index within its language's part, and ``sample["lang_id"]``), which is exactly the address of its
teachers' outputs in an offline teacher cache (see ``balkd_fairseq/soft_labels/cache.py``). The epoch
is the one the dataset itself was set to, so it is right in DataLoader workers and for validation
(which fairseq always runs at epoch 1).
"""
from dataclasses import dataclass

import torch
from fairseq.data import FairseqDataset


class MaskOriginDataset(FairseqDataset):
    """Adds ``{"split", "epoch"}`` to each collated batch; length 0 (like ``IdDataset``), no per-sample data."""

    def __init__(self, split: str):
        super().__init__()
        self.split = split
        self.epoch = 0  # as MaskTokensDataset before fairseq's first set_epoch

    def set_epoch(self, epoch, **unused):
        self.epoch = int(epoch)

    def __getitem__(self, index):
        return None

    def __len__(self):
        return 0

    def collater(self, samples):
        return {"split": self.split, "epoch": self.epoch}


@dataclass(frozen=True)
class SampleAddress:
    """Where a batch's samples come from, as the offline teacher cache files them.

    ``split`` is the base split (``valid`` also for ``valid_de``), ``epoch`` the epoch its masks were
    drawn for, ``lang_ids[i]`` the language of sample ``i`` (index into ``task.languages``) and
    ``sample_ids[i]`` its index within that language's dataset of ``task.language_datasets(split, epoch)``.
    """

    split: str
    epoch: int
    lang_ids: torch.Tensor
    sample_ids: torch.Tensor

    @classmethod
    def of(cls, sample: dict) -> "SampleAddress":
        origin = sample["mask_origin"]
        return cls(str(origin["split"]), int(origin["epoch"]), sample["lang_id"], sample["id"])
