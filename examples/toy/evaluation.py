"""What the toy pipeline's runs score: balkd-eval-lm and balkd-probe of each student (the probes' untrained control,
the sweep's few-shot and word-pooling probe variants), and balkd-report of a preset's runs side by side.

Every command goes through ``runner.run`` (called through its module, so that one stand-in replaces every command).
"""
import json
import os
from typing import Dict, List, Optional, Tuple

import runner
from configurations import CONTROL, PRESET_GROUPS, Settings, distills, with_control
from runner import done, mark_done, step
from stages import Layout, hl_balanced_checkpoint, probe_variant_suffix


def languages(layout: Layout) -> str:
    with open(os.path.join(layout.synth, "languages.json"), encoding="utf-8") as f:
        return ",".join(json.load(f)["languages"])


def evaluate(layout: Layout, s: Settings, name: str) -> None:
    checkpoint = os.path.join(layout.checkpoints, name, "checkpoint_last.pt")
    evaluate_whole(layout, s, name, checkpoint)
    if probe_variant_suffix(s):
        probe_variant(layout, s, name, checkpoint)


def evaluate_whole(layout: Layout, s: Settings, name: str, checkpoint: str) -> None:
    out = os.path.join(layout.results, name)
    if done(out):
        return
    step(f"evaluate {name}: masked LM per language and POS/NER probes")
    # evaluation masks and probe data come from the data seed: identical for every run of the preset
    runner.run(["balkd-eval-lm", "--checkpoint", f"{name}={checkpoint}", "--data", layout.data, "--languages",
                languages(layout), "--split", "test", "--tokens-per-sample", "64", "--seed", str(layout.data_seed),
                "--pppl", "--output-dir", layout.results, "--cpu"])
    runner.run(["balkd-probe", "--checkpoint", f"{name}={checkpoint}", "--data", layout.data, "--languages",
                languages(layout), "--probe-dir", layout.synth, "--seed", str(layout.data_seed), "--output-dir",
                layout.results, "--cpu"])
    mark_done(out)


def evaluate_control(layout: Layout, s: Settings) -> None:
    """The POS/NER probes on the HL-balanced student's architecture with fresh weights, seeded by the run's seed."""
    control = ["--random-init", str(layout.seed)]
    out = os.path.join(layout.results, CONTROL)
    if not done(out):
        step(f"evaluate {CONTROL}: POS/NER probes on the untrained architecture (the probes' control)")
        runner.run(["balkd-probe", "--checkpoint", f"{CONTROL}={hl_balanced_checkpoint(layout)}", *control, "--data",
                    layout.data, "--languages", languages(layout), "--probe-dir", layout.synth, "--seed",
                    str(layout.data_seed), "--output-dir", layout.results, "--cpu"])
        mark_done(out)
    if probe_variant_suffix(s):
        probe_variant(layout, s, CONTROL, hl_balanced_checkpoint(layout), control)


def probe_variant(layout: Layout, s: Settings, name: str, checkpoint: str, extra: Tuple[str, ...] = ()) -> None:
    """balkd-probe with the sweep's few-shot size (--train-sentences N) and word pooling into their own results,
    beside links to the model's LM scores (the report reads a model's LM and probing results from one directory)."""
    root = layout.results_for(s)
    out = os.path.join(root, name)
    if done(out):
        return
    variant = (["--train-sentences", str(s.probe_train_sentences)] if s.probe_train_sentences else []) + (
        ["--word-pooling", s.probe_pooling] if s.probe_pooling != "first" else [])
    step(f"evaluate {name}: POS/NER probes with {' '.join(variant)}")
    runner.run(["balkd-probe", "--checkpoint", f"{name}={checkpoint}", *extra, "--data", layout.data, "--languages",
                languages(layout), "--probe-dir", layout.synth, "--seed", str(layout.data_seed), *variant,
                "--output-dir", root, "--cpu"])
    os.makedirs(out, exist_ok=True)
    for lm_file in ("lm.json", "lm_items.npz"):
        whole = os.path.join(layout.results, name, lm_file)
        if os.path.exists(whole) and not os.path.lexists(os.path.join(out, lm_file)):
            os.symlink(os.path.relpath(whole, out), os.path.join(out, lm_file))
    mark_done(out)


def report(s: Settings, preset: str, layouts: List[Layout], configs: List[str], out: str,
           against_control: bool = False, shown: Optional[List[str]] = None) -> None:
    """The preset's report of ``layouts`` (runs every model in it finished); with ``against_control``, also every
    model against the untrained control in OUT/control. ``shown``: the models to report (default: ``configs`` and
    the control)."""
    shown = shown if shown is not None else with_control(configs)
    step(f"report ({preset}: {len(layouts)} seed(s) x {len(configs)} configuration(s)) -> {out}")
    groups = PRESET_GROUPS[preset]
    group_flags = ["--low", *groups["low"].split(), "--high", *groups["high"].split(), "--single", groups["single"]]
    models = [f"--model={name}={os.path.join(layout.results_for(s), name)}" for name in shown for layout in layouts]
    if len({layout.data_seed for layout in layouts}) > 1:  # each data seed is a benchmark: a level of its own
        group_flags.append("--across-benchmarks")
    students = [name for name in shown if name != CONTROL and distills(name)]
    baselines = [name for name in shown if name != CONTROL and not distills(name)]  # the control is never compared
    compare = [f"--compare={name}:{','.join(baselines)}" for name in students] if baselines else []
    runner.run(["balkd-report", *models, *compare, *group_flags, "--output-dir", out])
    if against_control and CONTROL in shown:  # what pretraining adds above an untrained encoder
        against = [name for name in shown if name != CONTROL]
        runner.run(["balkd-report", *models, *[f"--compare={name}:{CONTROL}" for name in against], *group_flags,
                    "--no-plot", "--output-dir", os.path.join(out, "control")])


def common_runs(layouts: List[Layout], runs: Dict[str, List[Layout]]) -> Tuple[List[str], List[Layout]]:
    """The models with a finished run, and the runs every one of them finished. A report's table averages each
    model over its runs, so after a failure a model with fewer runs would stand beside means over other seeds
    (or, with several data seeds, other test data): the report keeps to the runs they share."""
    shown = [name for name, finished_runs in runs.items() if finished_runs]
    return shown, [layout for layout in layouts if shown and all(layout in runs[name] for name in shown)]
