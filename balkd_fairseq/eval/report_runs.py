"""What ``balkd-report`` compares: runs (one evaluated checkpoint each) read from result files, checked.

Inputs are the JSON files of ``balkd-eval-lm`` (``kind: lm``) and ``balkd-probe`` (``kind: probing``),
one directory (or list of files) per run; a model may have several runs (seeds). A run keeps its
per-language values, the per-item scores written beside them (for the paired bootstrap) and the
evaluation settings that must agree across runs for their numbers to be comparable.
"""
import glob
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import BalkdError
from .item_scores import LM_ITEMS, PROBE_ITEMS, group_items, read_items
from .mrr import LEGACY_MLM_PPL, MLM_PPL
from .probe_results import OWN_WORDS_EPOCHS
from .results_io import checkpoint_difference, read_json

logger = logging.getLogger(__name__)


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


def is_benchmark_setting(key: str) -> bool:
    """What a benchmark fixes: its test data, vocabulary and evaluation masks (and the seed drawing them). Runs
    that differ only in these were scored on another benchmark (e.g. another data seed), not evaluated differently."""
    return key == "masking.seed" or "sha256" in key


@dataclass
class Run:
    """One evaluated checkpoint (one seed): per-language values, per-item scores and evaluation settings."""

    label: str
    values: Dict[str, Dict[str, Optional[float]]] = field(default_factory=lambda: {m.key: {} for m in METRICS})
    items: Dict[str, Dict[str, Components]] = field(default_factory=lambda: {m.key: {} for m in METRICS})
    settings: Dict[str, Dict[str, object]] = field(default_factory=dict)  # kind -> setting -> value
    sources: Dict[str, str] = field(default_factory=dict)  # kind -> result file
    benchmark: str = "B1"  # which benchmark it was scored on: B1, B2, ... (assign_benchmarks)

    def benchmark_settings(self) -> Dict[Tuple[str, str], str]:
        """The settings that identify the benchmark the run was scored on (test data, vocabulary, masks)."""
        return {(kind, key): repr(value) for kind, settings in self.settings.items()
                for key, value in settings.items() if is_benchmark_setting(key)}

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

    def by_benchmark(self) -> Dict[str, List[Run]]:
        """The model's runs per benchmark, benchmarks in the order their first run was given."""
        groups: Dict[str, List[Run]] = {}
        for run in self.runs:
            groups.setdefault(run.benchmark, []).append(run)
        return groups


# ---------------------------------------------------------------------------------------------- reading
def spec_paths(spec: str) -> List[str]:
    """The paths of one ``--model`` spec: comma-separated, unless the spec is an existing path as a whole."""
    return [spec] if os.path.exists(spec) else [p for p in spec.split(",") if p]


def result_files(spec: str, flag: str = "--model") -> List[str]:
    """Files of one ``--model`` spec (balkd-export: ``--results``): comma-separated JSON files and/or directories
    of them; ``flag`` names the option in errors."""
    files = []
    for path in spec_paths(spec):
        if os.path.isdir(path):
            found = sorted(glob.glob(os.path.join(path, "*.json")))
            if not found:
                raise BalkdError(f"{flag}: directory {path} holds no .json results")
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise BalkdError(f"{flag}: no such file or directory: {path}")
    return files


def load_run(name: str, spec: str, flag: str = "--model") -> Run:
    """One run's results; errors name ``flag`` (balkd-report's ``--model NAME``, else ``flag`` alone)."""
    where = f"--model {name}" if flag == "--model" else flag
    run = Run(label=spec_paths(spec)[0].rstrip(os.sep))
    payloads = {}
    for path in result_files(spec, flag):
        payload = read_json(path)
        kind = payload.get("kind")
        if kind in run.sources:
            raise BalkdError(f"{where}: two {kind} result files in one run ({run.sources[kind]}, {path})")
        if kind == "lm":
            _add_lm(run, payload, path)
        elif kind == "probing":
            _add_probing(run, payload, path)
        else:
            raise BalkdError(f"{path}: not a balkd-eval-lm or balkd-probe result (\"kind\" is {kind!r})")
        run.sources[kind] = path
        payloads[kind] = payload
    _check_one_checkpoint(where, run, payloads)
    return run


def _check_one_checkpoint(where: str, run: Run, payloads: Dict[str, dict]) -> None:
    """A run's LM scores and probes must come from one checkpoint: the table shows them as one model."""
    if "lm" not in payloads or "probing" not in payloads:
        return
    difference = checkpoint_difference(payloads["lm"], payloads["probing"])
    if difference is None:
        return
    scored, probed, by_content = difference
    message = f"{where}: {run.sources['lm']} scores {scored} but {run.sources['probing']} probes {probed}"
    if not by_content:  # older lm.json files record the path only; a moved project changes it
        logger.warning(f"{message} (recorded by path only: the same file moved, or another checkpoint?)")
        return
    raise BalkdError(f"{message}; a run's results must come from one checkpoint")


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
        run.values["mrr"][lang] = _score(scores.get("mrr"), path, lang, "mrr", upper=1.0)
        run.values[MLM_PPL][lang] = _score(scores.get(MLM_PPL, scores.get(LEGACY_MLM_PPL)), path, lang, MLM_PPL)
        if scores.get("pppl") is not None:
            run.values["pppl"][lang] = _score(scores["pppl"], path, lang, "pppl")
        if items is not None:
            _add_lm_items(run, group_items(items, lang), lang)
    run.settings["lm"] = lm_settings(payload)


def _score(value, path: str, lang: str, metric: str, upper: float = math.inf) -> Optional[float]:
    """A recorded score, refused when it is not a number in range: a NaN (a diverged model's) would be
    averaged and compared like any other, and an MRR of inf is not a fraction."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value)
                                                                              and 0.0 <= value <= upper):
        bounds = "[0, 1]" if upper == 1.0 else "finite and >= 0"
        raise BalkdError(f"{path}: {lang} {metric} is {value!r}, not a number {bounds} (a diverged model? evaluate "
                         "it again)")
    return value


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
    settings["word_pooling"] = payload.get("word_pooling", "first")  # absent before the flag existed: first subwords
    settings["epoch_size"] = payload.get("epoch_size", OWN_WORDS_EPOCHS)  # absent before: one pass over own words
    settings.update({f"training.{k}": v for k, v in (payload.get("training") or {}).items() if k != "seed"})
    # balkd-probe records the probing data's hash per task (the top-level one depends on which tasks ran)
    for task, block in sorted((payload.get("tasks") or {}).items()):
        if isinstance(block, dict) and block.get("data_sha256"):
            settings[f"data_sha256[{task}]"] = block["data_sha256"]
    return settings


def assign_benchmarks(models: List[Model]) -> List[str]:
    """Name the benchmarks the runs were scored on, B1, B2, ... in the order given; the names.

    Runs that record the most (no other run records a strict superset of their benchmark settings) define
    the benchmarks: equal settings, same benchmark. A run recording less (the untrained control is only
    probed; results from before the hashes record nothing) joins the one benchmark it agrees with on what
    it records; if it agrees with several, which one it was scored on is unknown, and that is an error."""
    runs = [run for model in models for run in model.runs]
    settings = [run.benchmark_settings() for run in runs]
    defining = [i for i, mine in enumerate(settings)
                if not any(set(mine) < set(other) for other in settings)]
    benchmarks: Dict[Tuple, List[int]] = {}
    for i in defining:
        benchmarks.setdefault(tuple(sorted(settings[i].items())), []).append(i)
    members = {i: key for key, group in benchmarks.items() for i in group}
    for i, mine in enumerate(settings):
        if i in members:
            continue
        matches = [key for key in benchmarks if all(dict(key).get(k) == v for k, v in mine.items())]
        if len(matches) != 1:
            which = "none of the benchmarks of the other runs" if not matches else f"{len(matches)} benchmarks"
            raise BalkdError(f"{runs[i].label}: cannot tell which benchmark its results were scored on (the "
                             f"benchmark settings it records match {which}); give runs whose results record the "
                             "same data, mask and probe hashes")
        members[i] = matches[0]
    names: Dict[Tuple, str] = {}
    for i, run in enumerate(runs):  # named in the order the runs were given
        run.benchmark = names.setdefault(members[i], f"B{len(names) + 1}")
    return list(names.values())


# ---------------------------------------------------------------------------------------------- checks
def evaluation_differences(models: List[Model], across_benchmarks: bool = False) -> List[str]:
    """One line per run evaluated differently from the first run that records the same setting; with
    ``across_benchmarks``, a different benchmark (test data, vocabulary, masks) is not a difference."""
    differences = []
    for kind in ("lm", "probing"):
        runs = [run for model in models for run in model.runs if kind in run.settings]
        keys = [key for key in dict.fromkeys(key for run in runs for key in run.settings[kind])
                if not (across_benchmarks and is_benchmark_setting(key))]
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
                        f"model {model.name} ({run.label}) has no {metric.title} for language(s) {', '.join(missing)}; "
                        "report the others with --languages"
                    )
