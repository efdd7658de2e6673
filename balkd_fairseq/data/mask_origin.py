"""Where a batch's masks come from: its base split and the epoch its masks were drawn for.

fairseq's ``MaskTokensDataset`` masks sample ``i`` as a pure function of (seed, epoch, i). A batch
carries ``sample["mask_origin"] = {"split": "train", "epoch": 3}`` (with ``sample["id"]``, the
index within its language's part, and ``sample["lang_id"]``), which is exactly the address of its
teachers' outputs in an offline teacher cache (see ``balkd_fairseq/soft_labels/cache.py``). The epoch
is the one the dataset itself was set to, so it is right in DataLoader workers and for validation
(which fairseq always runs at epoch 1).
"""
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


# --- PROVISIONAL (branch `soft`): the task helper's branch provides the real SampleAddress; keep theirs at merge.
from dataclasses import dataclass  # noqa: E402

import torch  # noqa: E402


@dataclass(frozen=True)
class SampleAddress:
    """Where a batch's samples and masks come from: what a teacher cache is keyed by."""

    split: str  # base split ('valid' for 'valid_de')
    epoch: int  # the epoch the masks were drawn for
    lang_ids: torch.Tensor  # [B] index into task.languages
    sample_ids: torch.Tensor  # [B] index within the sample's language part of the split


def sample_address(sample: dict) -> SampleAddress:
    origin = sample["mask_origin"]
    return SampleAddress(origin["split"], int(origin["epoch"]), sample["lang_id"], sample["id"])
