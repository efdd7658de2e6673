"""Paired bootstrap over seeds and test items: an interval (95 % by default) for the difference of two models.

A metric of one run on one language is a mean over *components* of ``sum(num) / sum(den)`` over the
language's test items (one component for MRR, MLM-PPL, PPPL and I-L; one per other training language
for Z-S), e.g. MRR: num = reciprocal rank, den = 1; PPPL: num = summed NLL of a sentence, den = its
tokens; NER F1: num = 2 tp, den = pred + gold. A group's value is the mean of its languages' values
(of the log-perplexities for MLM-PPL and PPPL, i.e. the geometric mean of the perplexities), and a
model's value is the mean over its runs.

One bootstrap replicate resamples the runs (seeds) with replacement, the same seed slots for both
models (runs are paired in the order given), then, within each slot, each language's test items with
replacement, the same items for both models. The interval is the 2.5 and 97.5 percentiles of the
replicates' differences A - B (at another ``confidence`` C, the (1 - C) / 2 and (1 + C) / 2 quantiles). Everything is vectorised over replicates with numpy.

When the runs come from several benchmarks (e.g. data seeds: other data, vocabulary and evaluation masks),
:func:`paired_bootstrap_levels` adds the benchmark as the outer level: a replicate resamples the benchmarks,
then the runs within each drawn benchmark, then its test items, each draw independent of the others. With
few benchmarks K this is approximate: the outer percentile interval is narrow by about sqrt((K - 1) / K) when
the benchmarks differ most, and resampling every level counts the inner noise more than once when they do not.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

# Upper bound on the elements of one fancy-indexed array (replicates x slots x components x items).
CHUNK_ELEMENTS = 4_000_000


@dataclass
class LanguageItems:
    """One language's per-item arrays of every run of a model: ``num``, ``den`` of shape (runs, components, items)."""

    num: np.ndarray
    den: np.ndarray


@dataclass
class Interval:
    difference: float  # mean over runs of A minus mean over runs of B, on all items
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)


def stack_runs(per_run: Sequence[Sequence[Tuple[np.ndarray, np.ndarray]]]) -> LanguageItems:
    """``per_run[run][component] = (num, den)`` (1-D, same length everywhere) -> :class:`LanguageItems`."""
    num = np.array([[np.asarray(n, dtype=np.float64) for n, _ in run] for run in per_run])
    den = np.array([[np.asarray(d, dtype=np.float64) for _, d in run] for run in per_run])
    return LanguageItems(num, den)


def _language_values(items: LanguageItems, seeds: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """(replicates, slots) language values: runs ``seeds`` (b, s), items ``picks`` (b, s, n)."""
    components = np.arange(items.num.shape[1])[None, None, :, None]
    run = seeds[:, :, None, None]
    chosen = picks[:, :, None, :]
    num = items.num[run, components, chosen].sum(-1)
    den = items.den[run, components, chosen].sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nanmean(num / den, axis=-1) if num.shape[-1] > 1 else (num / den)[..., 0]


def _group_value(per_language: List[np.ndarray], log_scale: bool) -> np.ndarray:
    mean = np.mean(np.stack(per_language), axis=0)
    return np.exp(mean) if log_scale else mean


def group_statistic(languages: Sequence[LanguageItems], log_scale: bool) -> np.ndarray:
    """A group's value per run on all items (no resampling): shape (runs,)."""
    runs = languages[0].num.shape[0]
    seeds = np.arange(runs)[None, :]
    values = [_language_values(lang, seeds, np.broadcast_to(np.arange(lang.num.shape[2]), (1, runs, lang.num.shape[2])))
              for lang in languages]
    return _group_value(values, log_scale)[0]


def _replicate_differences(a: Sequence[LanguageItems], b: Sequence[LanguageItems], log_scale: bool, replicates: int,
                           rng: np.random.Generator) -> np.ndarray:
    """(replicates,) differences A - B of the model means, runs and then items resampled (unscaled)."""
    runs = a[0].num.shape[0]
    differences = []
    largest = max(lang.num.shape[1] * lang.num.shape[2] for lang in (*a, *b))
    chunk = max(1, CHUNK_ELEMENTS // max(1, runs * largest))
    done = 0
    while done < replicates:
        size = min(chunk, replicates - done)
        seeds = rng.integers(0, runs, size=(size, runs))
        values_a, values_b = [], []
        for lang_a, lang_b in zip(a, b):
            picks = rng.integers(0, lang_a.num.shape[2], size=(size, runs, lang_a.num.shape[2]))
            values_a.append(_language_values(lang_a, seeds, picks))
            values_b.append(_language_values(lang_b, seeds, picks))
        model_a = _group_value(values_a, log_scale).mean(axis=1)
        model_b = _group_value(values_b, log_scale).mean(axis=1)
        differences.append(model_a - model_b)
        done += size
    return np.concatenate(differences)


def _interval(point: float, differences: np.ndarray, confidence: float) -> Interval:
    tail = 50.0 * (1.0 - confidence)  # percent on each side
    low, high = np.nanpercentile(differences, [tail, 100.0 - tail])
    return Interval(float(point), float(low), float(high))


def _point(a: Sequence[LanguageItems], b: Sequence[LanguageItems], log_scale: bool) -> float:
    return float(group_statistic(a, log_scale).mean() - group_statistic(b, log_scale).mean())


def paired_bootstrap(a: Sequence[LanguageItems], b: Sequence[LanguageItems], log_scale: bool, replicates: int,
                     seed: int, scale: float = 1.0, confidence: float = 0.95) -> Interval:
    """``confidence`` interval of (A - B) for one group and metric; ``a[i]`` and ``b[i]`` hold the same language's items."""
    differences = _replicate_differences(a, b, log_scale, replicates, np.random.default_rng(seed)) * scale
    return _interval(_point(a, b, log_scale) * scale, differences, confidence)


def paired_bootstrap_levels(benchmarks: Sequence[Tuple[Sequence[LanguageItems], Sequence[LanguageItems]]],
                            log_scale: bool, replicates: int, seed: int, scale: float = 1.0,
                            confidence: float = 0.95) -> Interval:
    """:func:`paired_bootstrap` with the benchmarks as the outer level: ``benchmarks[k] = (a, b)`` of benchmark k.

    The point is the mean over benchmarks of the per-benchmark difference (with as many runs on every
    benchmark, the difference of the models' means over all runs). A benchmark drawn twice in a replicate gets
    two independent inner resamples, so the runs and items of each draw vary as they would on a new benchmark."""
    rng = np.random.default_rng(seed)
    count = len(benchmarks)
    drawn = rng.integers(0, count, size=(replicates, count))
    total = np.zeros(replicates)
    for slot in range(count):
        for k, (a, b) in enumerate(benchmarks):  # inner resamples only for the replicates that drew k here
            rows = np.flatnonzero(drawn[:, slot] == k)
            if rows.size:
                total[rows] += _replicate_differences(a, b, log_scale, rows.size, rng)
    point = float(np.mean([_point(a, b, log_scale) for a, b in benchmarks]))
    return _interval(point * scale, total / count * scale, confidence)


def mean_and_std(values: Sequence[Optional[float]]) -> Tuple[Optional[float], Optional[float]]:
    """Mean and sample standard deviation (ddof 1; None with one run) of the runs that have a value."""
    present = np.array([v for v in values if v is not None], dtype=np.float64)
    if present.size == 0:
        return None, None
    return float(present.mean()), (float(present.std(ddof=1)) if present.size > 1 else None)


def check_same_items(a: LanguageItems, b: LanguageItems, what: str) -> Optional[str]:
    """A description of why ``a`` and ``b`` cannot be paired, or None."""
    if a.num.shape[2] != b.num.shape[2]:
        return f"{what}: {a.num.shape[2]} vs {b.num.shape[2]} test items"
    return None

