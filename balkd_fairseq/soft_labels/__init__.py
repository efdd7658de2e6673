"""Where the student's soft labels come from: one interface, two sources.

- :class:`~balkd_fairseq.soft_labels.online.TeacherSet` (``--teachers``): runs each language's teacher
  on the batch the student sees;
- :class:`~balkd_fairseq.soft_labels.cache.TeacherCache` (``--teacher-cache``): reads the teachers'
  top-k outputs that ``balkd-cache-teachers`` stored for exactly these masks (built by
  :mod:`.cache_build`).

The ``balanced_distill`` task builds the one the flags ask for (``task.build_soft_label_source()``);
the ``multi_teacher_distill`` criterion only calls :meth:`SoftLabelSource.soft_targets`. Each source
describes its teachers with the same manifest records (:mod:`.manifest`), which the task stores in
the student's checkpoints.
"""
from abc import ABC, abstractmethod
from typing import Dict, List

import torch

from .targets import SoftTargets


class SoftLabelSource(ABC):
    """The teachers' distributions at a batch's masked positions."""

    @abstractmethod
    def soft_targets(self, sample: dict, masked: torch.Tensor, temperature: float = 1.0, topk: int = 0,
                     tail: bool = False) -> SoftTargets:
        """Soft labels at ``masked`` positions of ``sample``, row-major like the student's masked logits.

        ``topk`` > 0 keeps each position's ``topk`` most likely tokens (0: everything the source has).
        The kept tokens are renormalised, or with ``tail`` keep their probabilities, and the rest of the
        probability mass is spread evenly over the tokens not kept (:attr:`SoftTargets.tail`).
        """

    @abstractmethod
    def manifest(self) -> List[dict]:
        """One :class:`~balkd_fairseq.soft_labels.manifest.TeacherRecord` dict per language, in language order."""

    def take_stats(self) -> Dict[str, float]:
        """Counters since the last call, for the training log (the same keys on every call)."""
        return {}

    def check_topk(self, topk: int) -> None:  # noqa: B027  (optional hook: every source but the cache accepts any k)
        """Raise :class:`~balkd_fairseq.errors.BalkdError` if this source cannot give ``topk`` tokens per position."""


__all__ = ["SoftLabelSource", "SoftTargets"]
