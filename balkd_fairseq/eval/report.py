"""The paper's results table over several runs per model: groups x (model x metric), Markdown, CSV, PNG.

Inputs are the JSON files of ``balkd-eval-lm`` (``kind: lm``) and ``balkd-probe`` (``kind: probing``),
one directory (or list of files) per run; a model may have several runs (seeds). A run's group value
is the mean over the group's languages of its per-language values (languages without a value, e.g.
Z-S with a single probed language, are left out); MLM-PPL and PPPL (lower is better) are averaged
geometrically. A cell is the mean ± standard deviation of the group value over the model's runs.
MRR is shown as a fraction, probing scores as percentages, as in the paper. Paired differences with
bootstrap intervals are in :mod:`balkd_fairseq.eval.bootstrap`.
"""
import csv
import glob
import io
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import BalkdError
from . import bootstrap
from .item_scores import LM_ITEMS, PROBE_ITEMS, group_items, read_items
from .mrr import LEGACY_MLM_PPL, MLM_PPL
from .probe_results import OWN_WORDS_EPOCHS, WHOLE_SPLIT_EPOCHS
from .results_io import read_json


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    scale: float  # for display: 100 turns fractions into percentages
    log_scale: bool  # a perplexity: averaged geometrically, lower is better
    kind: str  # the result file it comes from: lm or probing


METRICS = [
    Metric("mrr", "MRR", 1.0, False, "lm"),
    Metric(MLM_PPL, "MLM-PPL", 1.0, True, "lm"),
    Metric("pppl", "PPPL", 1.0, True, "lm"),
    Metric("pos_il", "POS I-L", 100.0, False, "probing"),
    Metric("pos_zs", "POS Z-S", 100.0, False, "probing"),
    Metric("ner_il", "NER I-L", 100.0, False, "probing"),
    Metric("ner_zs", "NER Z-S", 100.0, False, "probing"),
]
METRIC_BY_KEY = {m.key: m for m in METRICS}
OPTIONAL_METRICS = {"pppl"}  # shown only when some run has it (balkd-eval-lm --pppl)
Components = List[Tuple[np.ndarray, np.ndarray]]


@dataclass
class Run:
    """One evaluated checkpoint (one seed): per-language values, per-item scores and evaluation settings."""

    label: str
    values: Dict[str, Dict[str, Optional[float]]] = field(default_factory=lambda: {m.key: {} for m in METRICS})
    items: Dict[str, Dict[str, Components]] = field(default_factory=lambda: {m.key: {} for m in METRICS})
    settings: Dict[str, Dict[str, object]] = field(default_factory=dict)  # kind -> setting -> value
    sources: Dict[str, str] = field(default_factory=dict)  # kind -> result file

    def languages(self) -> List[str]:
        seen = []
        for per_lang in self.values.values():
            seen.extend(lang for lang in per_lang if lang not in seen)
        return seen


@dataclass
class Model:
    name: str
    runs: List[Run] = field(default_factory=list)

    def has(self, key: str) -> bool:
        return any(run.values[key] for run in self.runs)


# ---------------------------------------------------------------------------------------------- reading
def result_files(spec: str) -> List[str]:
    """Files of one ``--model`` spec: comma-separated JSON files and/or directories of them."""
    files = []
    for path in (p for p in spec.split(",") if p):
        if os.path.isdir(path):
            found = sorted(glob.glob(os.path.join(path, "*.json")))
            if not found:
                raise BalkdError(f"--model: directory {path} holds no .json results")
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise BalkdError(f"--model: no such file or directory: {path}")
    return files


def load_run(name: str, spec: str) -> Run:
    run = Run(label=spec.split(",")[0].rstrip(os.sep))
    for path in result_files(spec):
        payload = read_json(path)
        kind = payload.get("kind")
        if kind in run.sources:
            raise BalkdError(f"--model {name}: two {kind} result files in one run ({run.sources[kind]}, {path})")
        if kind == "lm":
            _add_lm(run, payload, path)
        elif kind == "probing":
            _add_probing(run, payload, path)
        else:
            raise BalkdError(f"{path}: not a balkd-eval-lm or balkd-probe result (\"kind\" is {kind!r})")
        run.sources[kind] = path
    return run


def _items_beside(path: str, name: str) -> Optional[Dict[str, np.ndarray]]:
    items_path = os.path.join(os.path.dirname(os.path.abspath(path)), name)
    return read_items(items_path) if os.path.isfile(items_path) else None


def _add_lm(run: Run, payload: dict, path: str) -> None:
    languages = payload.get("languages")
    if not isinstance(languages, dict):
        raise BalkdError(f"{path}: no per-language LM scores")
    items = _items_beside(path, payload.get("items") or LM_ITEMS)
    for lang, scores in languages.items():
        if not isinstance(scores, dict):
            raise BalkdError(f"{path}: the scores of language {lang!r} are not a JSON object")
        run.values["mrr"][lang] = scores.get("mrr")
        run.values[MLM_PPL][lang] = scores.get(MLM_PPL, scores.get(LEGACY_MLM_PPL))  # files from before the rename
        if scores.get("pppl") is not None:
            run.values["pppl"][lang] = scores["pppl"]
        if items is not None:
            _add_lm_items(run, group_items(items, lang), lang)
    run.settings["lm"] = lm_settings(payload)


def _add_lm_items(run: Run, fields: Dict[str, np.ndarray], lang: str) -> None:
    if "rr" in fields and "nll" in fields:
        ones = np.ones(len(fields["rr"]))
        run.items["mrr"][lang] = [(fields["rr"], ones)]
        run.items[MLM_PPL][lang] = [(fields["nll"], ones)]
    if "pppl_nll" in fields and "pppl_count" in fields:
        run.items["pppl"][lang] = [(fields["pppl_nll"], fields["pppl_count"])]


def lm_settings(payload: dict) -> Dict[str, object]:
    """What must be equal for two LM evaluations to be comparable (flattened; absent in older files)."""
    settings = {"split": payload.get("split")}
    settings.update({f"masking.{k}": v for k, v in (payload.get("masking") or {}).items()})
    if payload.get("dictionary_sha256"):
        settings["dictionary_sha256"] = payload["dictionary_sha256"]
    settings.update({f"pppl_settings.{k}": v for k, v in (payload.get("pppl_settings") or {}).items()})
    for lang, digest in (payload.get("data_sha256") or {}).items():
        settings[f"data_sha256[{lang}]"] = digest
    for lang, scores in payload["languages"].items():
        if isinstance(scores, dict) and scores.get("mask_sha256"):
            settings[f"mask_sha256[{lang}]"] = scores["mask_sha256"]
    return settings


def _add_probing(run: Run, payload: dict, path: str) -> None:
    tasks = payload.get("tasks")
    if not isinstance(tasks, dict):
        raise BalkdError(f"{path}: no probing tasks")
    items = _items_beside(path, PROBE_ITEMS)
    for task in ("pos", "ner"):
        block = tasks.get(task)
        if block is None:
            continue
        try:
            run.values[f"{task}_il"].update(block["in_language"])
            run.values[f"{task}_zs"].update(block["zero_shot"])
        except (KeyError, TypeError):
            raise BalkdError(f"{path}: {task} block lacks in_language / zero_shot scores") from None
        if items is not None:
            _add_probe_items(run, items, task, list(block.get("languages") or block["in_language"]))
    run.settings["probing"] = probing_settings(payload)


def _probe_component(items: Dict[str, np.ndarray], task: str, train: str, test: str):
    fields = group_items(items, f"{task}/{train}/{test}")
    if task == "pos" and {"correct", "total"} <= set(fields):
        return fields["correct"], fields["total"]
    if task == "ner" and {"tp", "pred", "gold"} <= set(fields):
        return 2 * fields["tp"].astype(np.float64), fields["pred"].astype(np.float64) + fields["gold"]
    return None


def _add_probe_items(run: Run, items: Dict[str, np.ndarray], task: str, languages: List[str]) -> None:
    for test in languages:
        own = _probe_component(items, task, test, test)
        if own is not None:
            run.items[f"{task}_il"][test] = [own]
        others = [_probe_component(items, task, train, test) for train in languages if train != test]
        if others and all(c is not None for c in others):
            run.items[f"{task}_zs"][test] = others


def probing_settings(payload: dict) -> Dict[str, object]:
    """Probing settings that must agree across models (the probe's own seed may vary with the run)."""
    settings = {key: payload[key] for key in ("probe", "layer", "dictionary_sha256") if key in payload}
    settings["train_sentences"] = payload.get("train_sentences")  # absent before the flag existed: whole splits
    settings["epoch_size"] = payload.get("epoch_size", OWN_WORDS_EPOCHS)  # absent before: one pass over own words
    settings.update({f"training.{k}": v for k, v in (payload.get("training") or {}).items() if k != "seed"})
    # balkd-probe records the probing data's hash per task (the top-level one depends on which tasks ran)
    for task, block in sorted((payload.get("tasks") or {}).items()):
        if isinstance(block, dict) and block.get("data_sha256"):
            settings[f"data_sha256[{task}]"] = block["data_sha256"]
    return settings


# ---------------------------------------------------------------------------------------------- checks
def evaluation_differences(models: List[Model]) -> List[str]:
    """One line per run evaluated differently from the first run that records the same setting."""
    differences = []
    for kind in ("lm", "probing"):
        runs = [run for model in models for run in model.runs if kind in run.settings]
        keys = list(dict.fromkeys(key for run in runs for key in run.settings[kind]))
        reported = set()
        for key in keys:
            holders = [run for run in runs if key in run.settings[kind]]
            first = holders[0]
            for run in holders[1:]:
                value, other = first.settings[kind][key], run.settings[kind][key]
                if value != other and id(run) not in reported:
                    reported.add(id(run))
                    differences.append(
                        f"{_where(first, kind)} and {_where(run, kind)} were evaluated differently: {key} is "
                        f"{_short(value)} in the first, {_short(other)} in the second"
                    )
    return differences


def _where(run: Run, kind: str) -> str:
    return os.path.dirname(run.sources[kind]) or "."


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_coverage(models: List[Model], languages: Sequence[str]) -> None:
    """Every run must report every grouped language for each kind of result it has."""
    for model in models:
        for run in model.runs:
            for metric in METRICS:
                per_lang = run.values[metric.key]
                if not per_lang:
                    continue
                missing = [lang for lang in languages if lang not in per_lang]
                if missing:
                    raise BalkdError(
                        f"model {model.name} ({run.label}) has no {metric.title} for language(s) {', '.join(missing)}"
                    )


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


def _stacked(model: Model, metric: Metric, lang: str) -> bootstrap.LanguageItems:
    return bootstrap.stack_runs([run.items[metric.key][lang] for run in model.runs])


def compare(a: Model, b: Model, metric: Metric, group: str, languages: Sequence[str], replicates: int,
            seed: int) -> Comparison:
    mean_a, _ = cell(a, metric, languages)
    mean_b, _ = cell(b, metric, languages)
    difference = None if mean_a is None or mean_b is None else mean_a - mean_b
    comparison = Comparison(a.name, b.name, group, metric, difference, None)
    with_items = paired_languages(a, b, metric, languages)
    expected = [lang for lang in languages
                if all(run.values[metric.key].get(lang) is not None for run in (*a.runs, *b.runs))]
    if replicates <= 0 or not expected or with_items != expected:
        return comparison
    items_a = [_stacked(a, metric, lang) for lang in with_items]
    items_b = [_stacked(b, metric, lang) for lang in with_items]
    for lang, x, y in zip(with_items, items_a, items_b):
        problem = bootstrap.check_same_items(x, y, f"{metric.title} of {lang}")
        if problem is not None:
            raise BalkdError(f"--compare {a.name}:{b.name}: the models were not scored on the same items ({problem})")
    comparison.interval = bootstrap.paired_bootstrap(items_a, items_b, metric.log_scale, replicates, seed, metric.scale)
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


def probe_training_note(runs: List[Run]) -> str:
    """How the probes behind these runs' scores were trained, when that is not the whole train splits."""
    recorded = {run.settings["probing"].get("train_sentences") for run in runs if "probing" in run.settings}
    if not recorded - {None}:
        return ""
    sizes = [f"the first {count} sentences" for count in sorted(recorded - {None})]
    sizes += ["the whole split"] if None in recorded else []  # (mixed: only with --allow-mixed)
    epochs = {run.settings["probing"].get("epoch_size") for run in runs
              if run.settings.get("probing", {}).get("train_sentences") is not None}
    updates = {WHOLE_SPLIT_EPOCHS: ", with as many updates as a probe on the whole split",
               OWN_WORDS_EPOCHS: ", with one pass over those sentences per epoch"}
    how = "".join(updates[e] for e in sorted(epochs) if e in updates) if len(epochs) == 1 else ""
    return (f" POS/NER probes were trained on {' or '.join(sizes)} of each language's train split "
            f"(balkd-probe --train-sentences){how}.")


def to_markdown(models, metrics, rows, comparisons, replicates: int, mixed: List[str]) -> str:
    parts = []
    if mixed:
        parts.append("**Mixed evaluations (--allow-mixed): these numbers were not computed on the same test items "
                     "and settings.** " + " ".join(f"{d}." for d in mixed) + "\n")
    parts.append(main_table(models, metrics, rows) + "\n")
    runs = "; ".join(f"{m.name}: {len(m.runs)} run{'s' if len(m.runs) != 1 else ''}" for m in models)
    groups = "; ".join(f"{label}: {', '.join(langs)}" for label, langs in rows)
    parts.append(
        "Mean ± standard deviation over runs (seeds) where a model has several. MRR as a fraction; "
        "MLM-PPL = exp of the mean cross-entropy of the masked positions with 15 % of the tokens masked at once"
        + ("; PPPL = pseudo-perplexity, every token masked in turn (Salazar et al. 2020)" if any(m.key == "pppl" for m in metrics) else "")
        + " (perplexities: lower is better, geometric mean over a group); POS accuracy and NER F1 in %. "
        f"Runs: {runs}. Groups: {groups}.{probe_training_note([run for model in models for run in model.runs])}\n"
    )
    if comparisons:
        parts.append("Paired differences (first model minus second), with 95 % intervals from a paired bootstrap "
                     f"({replicates} replicates: runs resampled, then test items within each run, the same items for "
                     "both models); * marks an interval that excludes zero. A difference without an interval lacks "
                     "per-item scores (re-run the evaluation) or the bootstrap was switched off.\n")
        parts.append(comparison_table(comparisons, metrics, rows) + "\n")
    return "\n".join(parts)


def runs_csv(models: List[Model], metrics: List[Metric], rows) -> str:
    """Every run's group values (display units): one row per group, model and run."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["group", "model", "run"] + [m.title for m in metrics])
    for label, langs in rows:
        for model in models:
            for run in model.runs:
                values = [run_value(run, m, langs) for m in metrics]
                writer.writerow([label, model.name, run.label] + ["" if v is None else repr(v) for v in values])
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


def plot_png(models: List[Model], metrics: List[Metric], languages: Sequence[str], path) -> None:
    """Grouped bars per language and model (mean over runs, error bars: std over runs), one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plot_figure(models, metrics, languages)
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def model_colors(count: int) -> List[str]:
    """One colour per model, distinct for up to 20 models (matplotlib's tab10, then tab20)."""
    import matplotlib

    palette = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
    return [matplotlib.colors.to_hex(palette(i % palette.N)) for i in range(count)]


def plot_figure(models: List[Model], metrics: List[Metric], languages: Sequence[str]):
    """The figure of :func:`plot_png`. The legend is drawn from the models' colours, not from the first panel's
    bars: a model without that panel's metric (e.g. a probing-only control) still gets its own entry."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    width = 0.8 / max(1, len(models))
    colors = model_colors(len(models))
    fig, axes = plt.subplots(len(metrics), 1, squeeze=False,
                             figsize=(min(120, max(6, 0.45 * len(languages) * max(1, len(models)) + 3)), 2.6 * len(metrics)))
    for ax, metric in zip(axes[:, 0], metrics):
        for i, model in enumerate(models):
            xs, heights, errors = [], [], []
            for x, lang in enumerate(languages):
                mean, std = cell(model, metric, [lang])
                if mean is not None:
                    xs.append(x + (i - (len(models) - 1) / 2) * width)
                    heights.append(mean)
                    errors.append(std or 0.0)
            ax.bar(xs, heights, width=width, yerr=errors, capsize=2, color=colors[i])
        suffix = " (%)" if metric.scale == 100.0 else ""
        ax.set_title(metric.title + suffix + (" (lower is better, log scale)" if metric.log_scale else "")
                     + "; error bars: std over runs")
        if metric.log_scale:
            ax.set_yscale("log")
        ax.set_xticks(range(len(languages)))
        ax.set_xticklabels(languages, rotation=90 if len(languages) > 20 else 0)
    axes[0, 0].legend(handles=[Patch(color=c, label=m.name) for m, c in zip(models, colors)], loc="best", fontsize="small")
    fig.tight_layout()
    return fig
