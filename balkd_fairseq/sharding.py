"""Splitting per-language work (training teachers, caching their soft labels) across workers.

A worker is told its shard explicitly (``--shard I/N``, I counted from 0) or takes it from the
scheduler that started it: torchrun (``RANK``/``WORLD_SIZE``) or a SLURM array job
(``SLURM_ARRAY_TASK_ID`` within ``SLURM_ARRAY_TASK_MIN..SLURM_ARRAY_TASK_MAX``). Languages are
assigned to shards by size, largest first onto the least-loaded shard (LPT scheduling), so the
workers of a 100-language run finish at about the same time; the assignment depends only on the
languages and their sizes, never on the worker, so every worker computes the same split.
"""
import heapq
import os
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence

from .errors import BalkdError


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(value: str, flag: str = "--shard") -> Shard:
    """``'I/N'`` with 0 <= I < N."""
    index, sep, count = (value or "").partition("/")
    try:
        shard = Shard(int(index), int(count))
    except ValueError:
        raise BalkdError(f"{flag}: cannot read {value!r}; expected I/N, e.g. 0/4 for the first of four workers") from None
    if not sep or shard.count < 1 or not 0 <= shard.index < shard.count:
        raise BalkdError(f"{flag} {value}: need 0 <= I < N (I counts from 0)")
    return shard


def shard_from_scheduler(env: Mapping[str, str]) -> Optional[Shard]:
    """The shard a torchrun rank or a SLURM array task stands for; None outside both."""
    if "SLURM_ARRAY_TASK_ID" in env:
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        last = int(env.get("SLURM_ARRAY_TASK_MAX", env["SLURM_ARRAY_TASK_ID"]))
        step = int(env.get("SLURM_ARRAY_TASK_STEP", "1"))
        return Shard((int(env["SLURM_ARRAY_TASK_ID"]) - first) // step, (last - first) // step + 1)
    if "RANK" in env and "WORLD_SIZE" in env and int(env["WORLD_SIZE"]) > 1:
        return Shard(int(env["RANK"]), int(env["WORLD_SIZE"]))
    return None


def resolve_shard(value: Optional[str], env: Mapping[str, str] = os.environ) -> Optional[Shard]:
    """``--shard`` if given, else the scheduler's, else None (one worker does everything)."""
    return parse_shard(value) if value else shard_from_scheduler(env)


def assign_languages(sizes: Mapping[str, int], count: int) -> List[List[str]]:
    """Languages per shard: largest first onto the least-loaded shard; each shard's list sorted."""
    heap = [(0, shard) for shard in range(count)]
    shards: List[List[str]] = [[] for _ in range(count)]
    for lang in sorted(sizes, key=lambda lang: (-int(sizes[lang]), lang)):
        load, shard = heapq.heappop(heap)
        shards[shard].append(lang)
        heapq.heappush(heap, (load + max(1, int(sizes[lang])), shard))
    return [sorted(langs) for langs in shards]


def languages_of_shard(languages: Sequence[str], sizes: Mapping[str, int], shard: Optional[Shard]) -> List[str]:
    """The languages ``shard`` works on, in the order of ``languages``; all of them without a shard."""
    if shard is None:
        return list(languages)
    mine = set(assign_languages({lang: sizes.get(lang, 1) for lang in languages}, shard.count)[shard.index])
    return [lang for lang in languages if lang in mine]


def missing_languages(languages: Sequence[str], complete: Dict[str, bool]) -> List[str]:
    return [lang for lang in languages if not complete.get(lang, False)]
