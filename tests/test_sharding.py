"""Splitting per-language work across workers: explicit --shard, torchrun and SLURM arrays."""
import itertools

import numpy as np
import pytest

from balkd_fairseq.errors import BalkdError
from balkd_fairseq.sharding import (
    Shard,
    assign_languages,
    languages_of_shard,
    parse_shard,
    resolve_shard,
    shard_from_scheduler,
)


def power_law_sizes(count, seed=0):
    rng = np.random.default_rng(seed)
    return {f"l{i}": int(40 + 100000 / (i + 1) ** 1.2 * rng.uniform(0.8, 1.2)) for i in range(count)}


@pytest.mark.parametrize("count,workers", [(7, 2), (100, 2), (100, 8), (500, 16), (3, 5)])
def test_shards_are_disjoint_cover_every_language_and_are_balanced(count, workers):
    sizes = power_law_sizes(count)
    shards = [languages_of_shard(sorted(sizes), sizes, Shard(i, workers)) for i in range(workers)]
    flat = list(itertools.chain.from_iterable(shards))
    assert sorted(flat) == sorted(sizes) and len(flat) == len(set(flat))
    loads = [sum(sizes[lang] for lang in shard) for shard in shards]
    # LPT: no shard exceeds the ideal share by more than the largest single language
    assert max(loads) <= sum(loads) / workers + max(sizes.values())


def test_assignment_does_not_depend_on_order_or_worker():
    sizes = power_law_sizes(50, seed=3)
    reordered = dict(reversed(list(sizes.items())))
    assert assign_languages(sizes, 4) == assign_languages(reordered, 4)


def test_parse_shard_and_errors():
    assert parse_shard("1/4") == Shard(1, 4)
    for bad in ["4/4", "-1/2", "1", "a/b", "0/0", ""]:
        with pytest.raises(BalkdError, match="--shard"):
            parse_shard(bad)


def test_scheduler_environments():
    assert shard_from_scheduler({"RANK": "1", "WORLD_SIZE": "2"}) == Shard(1, 2)
    assert shard_from_scheduler({"RANK": "0", "WORLD_SIZE": "1"}) is None
    slurm = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_MAX": "8"}
    assert shard_from_scheduler(slurm) == Shard(2, 4)
    assert resolve_shard("0/3", slurm) == Shard(0, 3), "an explicit --shard wins over the scheduler"
    assert resolve_shard(None, {}) is None
