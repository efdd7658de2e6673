"""The paper's results table: language groups x (model x metric), as Markdown, CSV and a PNG plot.

Inputs are the JSON files of ``balkd-eval-lm`` (``kind: lm``) and ``balkd-probe`` (``kind: probing``).
A cell is the plain mean over the group's languages of the per-language values (languages with no
value, e.g. Z-S with a single probed language, are left out; an empty group gives an empty cell);
pseudo-perplexity (PPPL, lower is better) is averaged geometrically, i.e. exp of the mean masked
cross-entropy per language. MRR is shown as a fraction, probing scores as percentages, as in the paper.
"""
import csv
import glob
import io
import os
from dataclasses import dataclass, field
from statistics import geometric_mean, mean
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import BalkdError
from .results_io import read_json

METRICS = [  # key, column title, scale for display
    ("mrr", "MRR", 1.0),
    ("pppl", "PPPL", 1.0),
    ("pos_il", "POS I-L", 100.0),
    ("pos_zs", "POS Z-S", 100.0),
    ("ner_il", "NER I-L", 100.0),
    ("ner_zs", "NER Z-S", 100.0),
]
METRIC_SCALE = {key: scale for key, _, scale in METRICS}
GROUP_AVERAGE = {"pppl": geometric_mean}  # every other metric: the arithmetic mean


@dataclass
class ModelResults:
    """Per-language values of one model: ``values[metric][lang]`` (unscaled), plus LM mask fingerprints."""

    name: str
    values: Dict[str, Dict[str, Optional[float]]] = field(default_factory=lambda: {key: {} for key, _, _ in METRICS})
    mask_sha256: Dict[str, str] = field(default_factory=dict)

    def languages(self) -> List[str]:
        seen = []
        for per_lang in self.values.values():
            seen.extend(lang for lang in per_lang if lang not in seen)
        return seen


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


def load_model_results(name: str, spec: str) -> ModelResults:
    model = ModelResults(name)
    kinds = set()
    for path in result_files(spec):
        payload = read_json(path)
        kind = payload.get("kind")
        if kind in kinds:
            raise BalkdError(f"--model {name}: two {kind} result files (second: {path})")
        if kind == "lm":
            _add_lm(model, payload, path)
        elif kind == "probing":
            _add_probing(model, payload, path)
        else:
            raise BalkdError(f"{path}: not a balkd-eval-lm or balkd-probe result (\"kind\" is {kind!r})")
        kinds.add(kind)
    return model


def _add_lm(model: ModelResults, payload: dict, path: str) -> None:
    languages = payload.get("languages")
    if not isinstance(languages, dict):
        raise BalkdError(f"{path}: no per-language LM scores")
    for lang, scores in languages.items():
        model.values["mrr"][lang] = scores.get("mrr")
        model.values["pppl"][lang] = scores.get("pseudo_perplexity")
        if scores.get("mask_sha256"):
            model.mask_sha256[lang] = scores["mask_sha256"]


def _add_probing(model: ModelResults, payload: dict, path: str) -> None:
    tasks = payload.get("tasks")
    if not isinstance(tasks, dict):
        raise BalkdError(f"{path}: no probing tasks")
    for task in ("pos", "ner"):
        block = tasks.get(task)
        if block is None:
            continue
        try:
            model.values[f"{task}_il"].update(block["in_language"])
            model.values[f"{task}_zs"].update(block["zero_shot"])
        except (KeyError, TypeError):
            raise BalkdError(f"{path}: {task} block lacks in_language / zero_shot scores") from None


def group_rows(low: Sequence[str], high: Sequence[str], single: Sequence[str], fallback: Sequence[str]):
    """[(row label, languages)]: Low-Res, High-Res, one {lang} row per single language, All."""
    rows = []
    if low:
        rows.append(("Low-Res", list(low)))
    if high:
        rows.append(("High-Res", list(high)))
    rows.extend((f"{{{lang}}}", [lang]) for lang in single)
    everything = []
    for lang in [*low, *high, *single] or list(fallback):
        if lang not in everything:
            everything.append(lang)
    rows.append(("All", everything))
    return rows


def check_coverage(models: List[ModelResults], languages: Sequence[str]) -> None:
    """Every model must report every grouped language for each kind of result it has."""
    for model in models:
        for key, title, _ in METRICS:
            per_lang = model.values[key]
            if not per_lang:
                continue
            missing = [lang for lang in languages if lang not in per_lang]
            if missing:
                raise BalkdError(f"model {model.name} has no {title} for language(s) {', '.join(missing)}")


def mismatched_masks(models: List[ModelResults]) -> List[str]:
    """Languages whose LM scores come from different masks in different models."""
    langs = {lang for m in models for lang in m.mask_sha256}
    return sorted(lang for lang in langs if len({m.mask_sha256[lang] for m in models if lang in m.mask_sha256}) > 1)


def cell(model: ModelResults, key: str, languages: Sequence[str]) -> Optional[float]:
    """Group average over ``languages`` of the model's values (display units); None when there are none."""
    values = [model.values[key].get(lang) for lang in languages]
    values = [v for v in values if v is not None]
    return GROUP_AVERAGE.get(key, mean)(values) * METRIC_SCALE[key] if values else None


def build_table(models: List[ModelResults], rows) -> Tuple[List[str], List[List]]:
    header = ["group"] + [f"{m.name} {title}" for m in models for _, title, _ in METRICS]
    body = [[label] + [cell(m, key, langs) for m in models for key, _, _ in METRICS] for label, langs in rows]
    return header, body


def _format(value: Optional[float], column: int) -> str:
    if value is None:
        return "–"
    key = METRICS[(column - 1) % len(METRICS)][0]
    return f"{value:.3f}" if key == "mrr" else f"{value:.1f}"  # PPPL and percentages: one decimal


def to_markdown(header, body, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in body:
        lines.append("| " + " | ".join([row[0]] + [_format(v, i) for i, v in enumerate(row[1:], start=1)]) + " |")
    groups = "; ".join(f"{label}: {', '.join(langs)}" for label, langs in rows)
    lines.append("")
    lines.append(
        "MRR as a fraction; PPPL = masked-LM pseudo-perplexity (lower is better, geometric mean over a group); "
        f"POS accuracy and NER F1 in %. Groups: {groups}."
    )
    return "\n".join(lines) + "\n"


def to_csv(header, body) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in body:
        writer.writerow([row[0]] + ["" if v is None else repr(v) for v in row[1:]])
    return out.getvalue()


def plot_png(models: List[ModelResults], languages: Sequence[str], path: str) -> None:
    """Grouped bars per language and model, one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(METRICS), 1, figsize=(max(6, 0.9 * len(languages) * max(1, len(models)) / 2 + 3), 2.6 * len(METRICS)))
    width = 0.8 / max(1, len(models))
    for ax, (key, title, scale) in zip(axes, METRICS):
        for i, model in enumerate(models):
            offset = (i - (len(models) - 1) / 2) * width
            present = [(x, model.values[key].get(lang)) for x, lang in enumerate(languages)]
            present = [(x + offset, value * scale) for x, value in present if value is not None]
            ax.bar([x for x, _ in present], [h for _, h in present], width=width, label=model.name, color=f"C{i}")
        ax.set_title(title + (" (%)" if scale == 100.0 else "") + (" (lower is better, log scale)" if key == "pppl" else ""))
        if key == "pppl":
            ax.set_yscale("log")
        ax.set_xticks(range(len(languages)))
        ax.set_xticklabels(languages)
    axes[0].legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
