"""Runs of consecutive one-language batches, so a bounded set of resident teachers is not thrashed.

With ``--batch-by-language`` every batch holds one language, but fairseq's epoch iterator shuffles
the batches one by one: with L languages and K < L resident teachers nearly every step needs a
teacher that is not loaded. ``--language-run-batches R`` makes the order a shuffle of *runs*: R
consecutive (global) batches of one language, the runs' order drawn from (seed, epoch) exactly as
fairseq draws its batch order, so a resumed run fast-forwards to the same position. Under data
parallelism a run is R steps of every worker (R x world-size batches), so all workers share the
language of a step (R counts batches: with ``--update-freq F`` a multiple of F keeps steps whole).
A language's last run is shorter when its batches do not divide evenly; those runs come at the
epoch's end, where steps may then mix languages.
"""
from typing import List, Sequence

import numpy as np
from fairseq.data import data_utils, iterators


def language_runs(batches: Sequence[Sequence[int]], sample_langs: np.ndarray, run_length: int) -> List[List[list]]:
    """Consecutive batches of one language cut into runs of at most ``run_length`` batches."""
    runs: List[List[list]] = []
    current_lang = None
    for batch in batches:
        lang = int(sample_langs[batch[0]]) if len(batch) else current_lang
        if lang != current_lang or len(runs[-1]) >= run_length:
            runs.append([])
            current_lang = lang
        runs[-1].append(list(batch))
    return runs


def shuffled_runs(batches, sample_langs: np.ndarray, run_length: int, seed: int) -> List[list]:
    """The runs in an order drawn from ``seed``: the full runs shuffled, then the shorter ones (each language's
    last) shuffled. A short run in the middle would shift every later run across step boundaries (steps of
    several batches: data parallelism, --update-freq); last, only the steps at the epoch's end mix languages."""
    runs = language_runs(batches, sample_langs, run_length)
    full = [run for run in runs if len(run) == run_length]
    short = [run for run in runs if len(run) < run_length]
    with data_utils.numpy_seed(seed):
        ordered = [full[i] for i in np.random.permutation(len(full))] + [short[i] for i in np.random.permutation(len(short))]
    return [batch for run in ordered for batch in run]


class LanguageRunBatchIterator(iterators.EpochBatchIterator):
    """fairseq's epoch iterator with the epoch's batch order shuffled by language runs, not by batch."""

    @classmethod
    def from_iterator(cls, itr: iterators.EpochBatchIterator, sample_langs: np.ndarray, run_length: int):
        """The same iterator (dataset, batches, sharding, seed, state) with runs of ``run_length`` steps."""
        runs = cls.__new__(cls)
        runs.__dict__.update(itr.__dict__)
        runs.sample_langs = np.asarray(sample_langs)
        runs.run_length = int(run_length)
        return runs

    def ordered_batches(self, epoch, fix_batches_to_gpus, shuffle):
        batches = list(self.frozen_batches)
        if shuffle:
            batches = shuffled_runs(batches, self.sample_langs, self.run_length * self.num_shards, self.seed + epoch)
        # one run = run_length steps of every worker: worker i takes every num_shards-th batch
        return list(iterators.ShardedIterator(batches, self.num_shards, self.shard_id, fill_value=[]))
