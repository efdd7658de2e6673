"""Per-language sample sizes and deterministic per-epoch draws for balanced multilingual training.

Everything here is a pure function of its arguments: the draw for a language depends only on
(seed, epoch, language index), so every process of a distributed run, and a resumed run, draws
exactly the same samples.
"""
from typing import Dict, List, Optional, Sequence

import numpy as np

BALANCE_MODES = ("none", "subsample", "upsample", "temperature")
BALANCE_DRAWS = ("fixed", "per_epoch")  # one draw for the whole run, or a fresh one every epoch


def target_sizes(
    sizes: Sequence[int],
    mode: str,
    alpha: float = 0.3,
    samples_per_language: Optional[int] = None,
) -> List[int]:
    """How many samples each language contributes to one epoch.

    none        every sample of every language, once;
    subsample   every language the same count: ``samples_per_language`` or the smallest language's size
                (the paper's setting), never more than a language has;
    upsample    every language the same count: ``samples_per_language`` or the largest language's size,
                repeating the samples of smaller languages;
    temperature XLM-R style: language l gets a share q_l ∝ (n_l / N) ** alpha of an epoch of
                N = sum(n) samples (or ``samples_per_language`` × languages).
    """
    sizes = [int(n) for n in sizes]
    if mode not in BALANCE_MODES:
        raise ValueError(f"unknown balance mode {mode!r}; expected one of {BALANCE_MODES}")
    if mode == "none":
        return list(sizes)
    if mode == "subsample":
        target = samples_per_language or min(sizes)
        return [min(target, n) for n in sizes]
    if mode == "upsample":
        target = samples_per_language or max(sizes)
        return [target for _ in sizes]
    total = samples_per_language * len(sizes) if samples_per_language else sum(sizes)
    probs = np.asarray(sizes, dtype=np.float64) / sum(sizes)
    smoothed = probs**alpha
    smoothed /= smoothed.sum()
    return [max(1, int(round(q * total))) for q in smoothed]


def draw_indices(size: int, count: int, seed: int, epoch: int, lang_index: int) -> np.ndarray:
    """``count`` indices into a dataset of ``size`` samples, for one language and epoch.

    When ``count <= size`` the draw is without replacement. When it is larger, every sample
    appears ``count // size`` times and the remainder is drawn without replacement, so an
    upsampled language repeats its data as evenly as possible. The result is sorted, which keeps
    reads from memory-mapped data sequential; the epoch's training order is shuffled separately.
    """
    if size <= 0:
        raise ValueError("cannot draw from an empty dataset")
    if count == size:
        return np.arange(size, dtype=np.int64)
    rng = np.random.default_rng([seed, epoch, lang_index])
    repeats, remainder = divmod(count, size)
    parts = [np.tile(np.arange(size, dtype=np.int64), repeats)]
    parts.append(rng.choice(size, remainder, replace=False).astype(np.int64))
    return np.sort(np.concatenate(parts))


def draw_epoch(
    sizes: Sequence[int],
    mode: str,
    seed: int,
    epoch: int,
    alpha: float = 0.3,
    samples_per_language: Optional[int] = None,
) -> List[np.ndarray]:
    """One epoch's indices for every language (list aligned with ``sizes``)."""
    counts = target_sizes(sizes, mode, alpha, samples_per_language)
    return [
        draw_indices(size, count, seed, epoch, lang_index)
        for lang_index, (size, count) in enumerate(zip(sizes, counts))
    ]


def describe_sizes(languages: Sequence[str], original: Sequence[int], sampled: Sequence[int]) -> Dict[str, str]:
    return {lang: f"{n} -> {m}" for lang, n, m in zip(languages, original, sampled)}
