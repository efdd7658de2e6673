"""The paper's results table over several runs per model: groups x (model x metric), Markdown, CSV, PNG.

Runs (one per result directory; a model may have several, its seeds) are read by
:mod:`balkd_fairseq.eval.report_runs`; the plot is :mod:`balkd_fairseq.eval.report_plot`. A run's group value
is the mean over the group's languages of its per-language values (languages without a value, e.g.
Z-S with a single probed language, are left out); MLM-PPL and PPPL (lower is better) are averaged
geometrically. A cell is the mean ± standard deviation of the group value over the model's runs.
MRR is shown as a fraction, probing scores as percentages, as in the paper. Paired differences with
bootstrap intervals are in :mod:`balkd_fairseq.eval.bootstrap`.

Runs scored on different benchmarks (``balkd-report --across-benchmarks``, e.g. data seeds) are a second
level: the intervals resample benchmarks first, and a table splits each model's spread into the part between
benchmarks and the part between runs (seeds) on one benchmark.
"""
import csv
import io
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import BalkdError
from . import bootstrap
from .probe_results import OWN_WORDS_EPOCHS, WHOLE_SPLIT_EPOCHS
from .report_runs import METRICS, OPTIONAL_METRICS, Metric, Model, Run


# ---------------------------------------------------------------------------------------------- cells
def shown_metrics(models: List[Model]) -> List[Metric]:
    return [m for m in METRICS if m.key not in OPTIONAL_METRICS or any(model.has(m.key) for model in models)]


def run_value(run: Run, metric: Metric, languages: Sequence[str]) -> Optional[float]:
    """One run's group value (display units): mean over languages (geometric for perplexities)."""
    values = [run.values[metric.key].get(lang) for lang in languages]
    values = np.array([v for v in values if v is not None], dtype=np.float64)
    if values.size == 0:
        return None
    average = np.exp(np.log(values).mean()) if metric.log_scale else values.mean()
    return float(average) * metric.scale


def cell(model: Model, metric: Metric, languages: Sequence[str]) -> Tuple[Optional[float], Optional[float]]:
    """(mean, std) over the model's runs of its group value."""
    return bootstrap.mean_and_std([run_value(run, metric, languages) for run in model.runs])


def level_spread(model: Model, metric: Metric, languages: Sequence[str]) -> Tuple[Optional[float], Optional[float]]:
    """(between, within): the standard deviation of the model's per-benchmark means, and the pooled standard
    deviation of its runs around their benchmark's mean (None where there is only one to spread)."""
    per_benchmark = [[v for v in (run_value(run, metric, languages) for run in runs) if v is not None]
                     for runs in model.by_benchmark().values()]
    per_benchmark = [values for values in per_benchmark if values]
    means = [float(np.mean(values)) for values in per_benchmark]
    between = float(np.std(means, ddof=1)) if len(means) > 1 else None
    variances = [float(np.var(values, ddof=1)) for values in per_benchmark if len(values) > 1]
    within = float(np.sqrt(np.mean(variances))) if variances else None
    return between, within


def benchmark_names(models: List[Model]) -> List[str]:
    """The benchmarks the runs were scored on (as report_runs.assign_benchmarks named them), in order."""
    return list(dict.fromkeys(run.benchmark for model in models for run in model.runs))


# ---------------------------------------------------------------------------------------------- comparisons
@dataclass
class Comparison:
    ours: str
    baseline: str
    group: str
    metric: Metric
    difference: Optional[float]
    interval: Optional[bootstrap.Interval]  # None: no per-item scores, or bootstrap switched off


def paired_languages(a: Model, b: Model, metric: Metric, languages: Sequence[str]) -> List[str]:
    """Languages of the group where every run of both models has a value and per-item scores."""
    return [lang for lang in languages
            if all(run.values[metric.key].get(lang) is not None and lang in run.items[metric.key]
                   for run in (*a.runs, *b.runs))]


def _benchmark_pairs(a: Model, b: Model) -> List[Tuple[List[Run], List[Run]]]:
    """Both models' runs per benchmark (in A's order), checked to pair: the same benchmarks, and on every
    benchmark the same number of runs of each model as on every other (seeds x benchmarks)."""
    runs_a, runs_b = a.by_benchmark(), b.by_benchmark()
    if set(runs_a) != set(runs_b):
        raise BalkdError(f"--compare {a.name}:{b.name}: the models were scored on different benchmarks "
                         f"({len(runs_a)} and {len(runs_b)}, not all shared); give both the runs of the same ones")
    counts = {len(runs) for benchmark in runs_a for runs in (runs_a[benchmark], runs_b[benchmark])}
    if len(counts) != 1:
        raise BalkdError(f"--compare {a.name}:{b.name}: every benchmark needs as many runs of each model "
                         f"(runs per benchmark: {sorted(len(r) for r in runs_a.values())} and "
                         f"{sorted(len(runs_b[k]) for k in runs_a)})")
    return [(runs_a[benchmark], runs_b[benchmark]) for benchmark in runs_a]


def _paired_items(a: Model, b: Model, runs_a: List[Run], runs_b: List[Run], metric: Metric, languages: List[str]):
    items_a = [bootstrap.stack_runs([run.items[metric.key][lang] for run in runs_a]) for lang in languages]
    items_b = [bootstrap.stack_runs([run.items[metric.key][lang] for run in runs_b]) for lang in languages]
    for lang, x, y in zip(languages, items_a, items_b):
        problem = bootstrap.check_same_items(x, y, f"{metric.title} of {lang}")
        if problem is not None:
            raise BalkdError(f"--compare {a.name}:{b.name}: the models were not scored on the same items ({problem})")
    return items_a, items_b


def compare(a: Model, b: Model, metric: Metric, group: str, languages: Sequence[str], replicates: int,
            seed: int, confidence: float = 0.95, across_benchmarks: bool = False) -> Comparison:
    pairs = _benchmark_pairs(a, b) if across_benchmarks else [(a.runs, b.runs)]  # checked even without intervals
    mean_a, _ = cell(a, metric, languages)
    mean_b, _ = cell(b, metric, languages)
    difference = None if mean_a is None or mean_b is None else mean_a - mean_b
    comparison = Comparison(a.name, b.name, group, metric, difference, None)
    with_items = paired_languages(a, b, metric, languages)
    expected = [lang for lang in languages
                if all(run.values[metric.key].get(lang) is not None for run in (*a.runs, *b.runs))]
    if replicates <= 0 or not expected or with_items != expected:
        return comparison
    if len(pairs) == 1:
        items_a, items_b = _paired_items(a, b, a.runs, b.runs, metric, with_items)
        comparison.interval = bootstrap.paired_bootstrap(items_a, items_b, metric.log_scale, replicates, seed,
                                                         metric.scale, confidence)
    else:
        per_benchmark = [_paired_items(a, b, runs_a, runs_b, metric, with_items) for runs_a, runs_b in pairs]
        comparison.interval = bootstrap.paired_bootstrap_levels(per_benchmark, metric.log_scale, replicates, seed,
                                                                metric.scale, confidence)
    return comparison


# ---------------------------------------------------------------------------------------------- output
def _digits(metric: Metric) -> int:
    return 3 if metric.key == "mrr" else 1


def format_cell(mean: Optional[float], std: Optional[float], metric: Metric) -> str:
    if mean is None:
        return "–"
    digits = _digits(metric)
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def format_comparison(c: Comparison) -> str:
    if c.difference is None:
        return "–"
    digits = _digits(c.metric) + (1 if c.metric.key == "mrr" else 0)
    text = f"{c.difference:+.{digits}f}"
    if c.interval is None:
        return text
    mark = " *" if c.interval.excludes_zero else ""
    return f"{text} [{c.interval.low:+.{digits}f}, {c.interval.high:+.{digits}f}]{mark}"


def main_table(models: List[Model], metrics: List[Metric], rows) -> str:
    header = ["group"] + [f"{model.name} {m.title}" for model in models for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, langs in rows:
        cells = [format_cell(*cell(model, m, langs), m) for model in models for m in metrics]
        lines.append("| " + " | ".join([label] + cells) + " |")
    return "\n".join(lines)


def comparison_table(comparisons: List[Comparison], metrics: List[Metric], rows) -> str:
    pairs = list(dict.fromkeys((c.ours, c.baseline) for c in comparisons))
    header = ["group"] + [f"{ours} − {base} {m.title}" for ours, base in pairs for m in metrics]
    index = {(c.ours, c.baseline, c.group, c.metric.key): c for c in comparisons}
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, _ in rows:
        cells = [format_comparison(index[(ours, base, label, m.key)]) for ours, base in pairs for m in metrics]
        lines.append("| " + " | ".join([label] + cells) + " |")
    return "\n".join(lines)


def level_table(models: List[Model], metrics: List[Metric], rows) -> str:
    header = ["group"] + [f"{model.name} {m.title}" for model in models for m in metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, langs in rows:
        cells = []
        for model in models:
            for m in metrics:
                spread = level_spread(model, m, langs)
                cells.append(" / ".join("–" if s is None else f"{s:.{_digits(m)}f}" for s in spread))
        lines.append("| " + " | ".join([label] + cells) + " |")
    return "\n".join(lines)


def benchmarks_note(models: List[Model]) -> str:
    names = benchmark_names(models)
    listed = "; ".join(f"{name}: " + ", ".join(f"{model.name} {len(model.by_benchmark().get(name, []))}"
                                                for model in models)
                       for name in names)
    return (f"The runs were scored on {len(names)} benchmarks (different test data, vocabulary or evaluation masks, "
            f"e.g. data seeds; runs per model: {listed}). The spread of each cell, split by level: standard "
            "deviation of the per-benchmark means / pooled standard deviation of the runs (seeds) within a "
            "benchmark:\n\n" + "{table}\n")


def probe_training_note(runs: List[Run]) -> str:
    """How the probes behind these runs' scores were trained, when that is not the whole train splits of
    first-subword states."""
    return _train_sentences_note(runs) + _word_pooling_note(runs)


def _word_pooling_note(runs: List[Run]) -> str:
    poolings = sorted({run.settings["probing"].get("word_pooling", "first") for run in runs if "probing" in run.settings})
    if poolings in ([], ["first"]):
        return ""
    return f" A word's features for the probes: the {' or '.join(poolings)} of its subwords' states (balkd-probe --word-pooling)."


def _train_sentences_note(runs: List[Run]) -> str:
    recorded = {run.settings["probing"].get("train_sentences") for run in runs if "probing" in run.settings}
    if not recorded - {None}:
        return ""
    sizes = [f"the first {count} sentences" for count in sorted(recorded - {None})]
    sizes += ["the whole split"] if None in recorded else []  # (mixed: only with --allow-mixed)
    epochs = {run.settings["probing"].get("epoch_size") for run in runs
              if run.settings.get("probing", {}).get("train_sentences") is not None}
    updates = {WHOLE_SPLIT_EPOCHS: ", each epoch drawing as many words as the whole split holds",
               OWN_WORDS_EPOCHS: ", with one pass over those sentences per epoch"}
    how = updates.get(epochs.pop(), "") if len(epochs) == 1 else ""
    return (f" POS/NER probes were trained on {' or '.join(sizes)} of each language's train split "
            f"(balkd-probe --train-sentences){how}.")


def mask_rate(runs) -> str:
    """The share of tokens balkd-eval-lm masked at once (its --mask-prob), as the runs record it."""
    rates = {run.settings["lm"].get("masking.mask_prob", 0.15) for run in runs if "lm" in run.settings}
    if len(rates) == 1:
        return f"{100 * rates.pop():g} %"
    return "each evaluation's --mask-prob" if rates else "15 %"


def to_markdown(models, metrics, rows, comparisons, replicates: int, mixed: List[str], confidence: float = 0.95,
                across_benchmarks: bool = False) -> str:
    parts = []
    if mixed:
        parts.append("**Mixed evaluations (--allow-mixed): these numbers were not computed on the same test items "
                     "and settings.** " + " ".join(f"{d}." for d in mixed) + "\n")
    parts.append(main_table(models, metrics, rows) + "\n")
    runs = "; ".join(f"{m.name}: {len(m.runs)} run{'s' if len(m.runs) != 1 else ''}" for m in models)
    groups = "; ".join(f"{label}: {', '.join(langs)}" for label, langs in rows)
    parts.append(
        "Mean ± standard deviation over runs (seeds) where a model has several. MRR as a fraction; "
        f"MLM-PPL = exp of the mean cross-entropy of the masked positions with {mask_rate(r for m in models for r in m.runs)} of the tokens "
        "masked at once"
        + ("; PPPL = pseudo-perplexity, every token masked in turn (Salazar et al. 2020)" if any(m.key == "pppl" for m in metrics) else "")
        + " (perplexities: lower is better, geometric mean over a group); POS accuracy and NER F1 in %. "
        f"Runs: {runs}. Groups: {groups}.{probe_training_note([run for model in models for run in model.runs])}\n"
    )
    levels = across_benchmarks and len(benchmark_names(models)) > 1
    if levels:
        parts.append(benchmarks_note(models).format(table=level_table(models, metrics, rows)))
    if comparisons:
        parts.append(f"Paired differences (first model minus second), with {100 * confidence:g} % intervals from a "
                     f"paired bootstrap ({replicates} replicates: "
                     + ("benchmarks resampled, then runs within each benchmark, then test items within each run"
                        if levels else "runs resampled, then test items within each run")
                     + ", the same items for both models); * marks an interval that excludes zero. A difference without an interval lacks "
                     "per-item scores (re-run the evaluation) or the bootstrap was switched off.\n")
        parts.append(comparison_table(comparisons, metrics, rows) + "\n")
    return "\n".join(parts)


def runs_csv(models: List[Model], metrics: List[Metric], rows, across_benchmarks: bool = False) -> str:
    """Every run's group values (display units): one row per group, model and run; across benchmarks, also the
    run's benchmark (B1, B2, ... as in the Markdown)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["group", "model", "run"] + (["benchmark"] if across_benchmarks else []) + [m.title for m in metrics])
    for label, langs in rows:
        for model in models:
            for run in model.runs:
                values = [run_value(run, m, langs) for m in metrics]
                where = [run.benchmark] if across_benchmarks else []
                writer.writerow([label, model.name, run.label] + where + ["" if v is None else repr(v) for v in values])
    return out.getvalue()


def comparisons_csv(comparisons: List[Comparison]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["group", "model", "baseline", "metric", "difference", "ci_low", "ci_high", "excludes_zero"])
    for c in comparisons:
        iv = c.interval
        writer.writerow([c.group, c.ours, c.baseline, c.metric.title, "" if c.difference is None else repr(c.difference),
                         "" if iv is None else repr(iv.low), "" if iv is None else repr(iv.high),
                         "" if iv is None else str(iv.excludes_zero).lower()])
    return out.getvalue()
