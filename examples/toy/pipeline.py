"""The embedded benchmark's pipeline: one run (`make demo`) or a sweep over seeds x presets x configurations.

    python examples/toy/pipeline.py demo                       # what `make demo` runs (OUT is rebuilt)
    python examples/toy/pipeline.py sweep --seeds 1,2,3 --presets shared,diverse --configs HL,HL-balanced,Ours

Stages: balkd-synth -> balkd-prepare -> balkd-train-teachers -> students -> balkd-eval-lm -> balkd-probe
-> balkd-report. A seed varies the training only (initialisation, training masks, the balanced draw,
teachers); the benchmark (synthetic data, vocabulary, evaluation masks) of a preset comes from the
data seed (``DATA_SEED``, or each of the sweep's ``--data-seeds``) and is the same for every seed, so
every run on it is scored on the same test items.

The sweep reuses what configurations share (a preset's data; a seed's teachers), skips every stage
whose output is complete (a ``.done`` marker written last), and writes one report per preset with
all configurations side by side, plus ``cost.md``: what each model cost (teacher and student
updates, tokens, wall time). A step that fails costs only the steps that need it: the others go on, the
reports show what finished, and the sweep exits non-zero naming the failed steps. A report directory keeps
what it covers (``runs.json``); a sweep of other configurations or seeds into it is refused (another
``--report-name``, or ``--replace-report``). The settings, model and named configurations are in
``configurations.py`` (environment variables named like the settings, upper case, e.g.
``STUDENT_UPDATES=250``, override them).

This file is the command line; the rest lives beside it, one concept per module:
``stages.py`` (where a run keeps its outputs, and each stage of one run: benchmark, teachers, teacher cache,
students, the demo's export), ``evaluation.py`` (each student's LM and probe scores, the preset's report),
``sweep.py`` (a preset's runs as jobs after what they need, side by side, then the report),
``runner.py`` (running commands and jobs, completion markers, the failure summary), ``report_record.py``
(what a report covers), ``cost.py`` (what each model cost) and ``oracle_teachers.py``.
"""
import argparse
import os
import shutil
import sys
import time
from typing import List, Optional

from balkd_fairseq.eval.word_pooling import WORD_POOLINGS

# the sibling modules, however this file is loaded (a script, or by path in the tests)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from configurations import (  # noqa: E402
    CONFIGS,
    PAPER_CONFIGS,
    PRESET_GROUPS,
    REPO,
    Settings,
    check_settings,
    settings_from_env,
)
from report_record import check_report_dir, report_covers  # noqa: E402
from runner import failure_summary  # noqa: E402
from stages import Layout, export_and_query, probe_variant_suffix  # noqa: E402
from sweep import report_dir_of, run_preset  # noqa: E402

DEFAULT_DEMO_OUT = os.path.join(REPO, "outputs", "toy")
DEMO_MARKER = ".made-by-toy-demo"  # the demo replaces only a directory it made


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="one run of the three paper models (what `make demo` runs); OUT is rebuilt")
    demo.add_argument("--preset", default=os.environ.get("PRESET", "shared"), choices=sorted(PRESET_GROUPS))
    demo.add_argument("--seed", type=int, default=int(os.environ.get("SEED", "1")),
                      help="training seed; the benchmark uses the same seed in the demo (default: 1)")
    sweep = sub.add_parser("sweep", help="seeds x presets x configurations; reuses and skips finished work")
    sweep.add_argument("--seeds", default="1,2,3", help="comma-separated training seeds (default: 1,2,3)")
    sweep.add_argument("--presets", default="shared,diverse", help="comma-separated presets (default: shared,diverse)")
    sweep.add_argument("--data-seeds", default=None, metavar="D1,D2",
                       help="comma-separated data seeds: each is another benchmark of the preset (synthetic data, "
                       "vocabulary, evaluation masks and probe data), in OUT/<preset>/benchmark-data<D>/ with its runs in "
                       "OUT/<preset>/data<D>-seed<S>/ (data seed 1: benchmark/ and seed<S>/). With several, the report "
                       "treats each as a level of its own (balkd-report --across-benchmarks): intervals resample data "
                       "seeds, then training seeds, then test items (default: $DATA_SEED or 1)")
    sweep.add_argument("--configs", default=",".join(PAPER_CONFIGS),
                       help=f"comma-separated configurations out of {', '.join(CONFIGS)} (default: the paper's three)")
    sweep.add_argument("--report-name", default=None,
                       help="the report's directory under OUT/<preset>/ (default: report, or report-probeN with "
                            "--probe-train-sentences N); e.g. 'screen' for a one-seed screening of every configuration "
                            "beside the 3-seed report of the finalists")
    sweep.add_argument("--replace-report", action="store_true",
                       help="replace the report under --report-name even when it was made from other configurations, "
                            "seeds or probes (otherwise refused, so that an earlier comparison is not lost)")
    sweep.add_argument("--probe-train-sentences", type=int, default=None, metavar="N", help="also probe every run with probes trained on the first N sentences of each "
                       "language (balkd-probe --train-sentences), into OUT/<preset>/seed<S>/results-probeN/, and report "
                       "those (the LM scores stay the whole evaluation's); 0: whole splits only (default: $PROBE_TRAIN_SENTENCES or 0)")
    sweep.add_argument("--probe-pooling", choices=list(WORD_POOLINGS), default=None,
                       help="the probes' word features (balkd-probe --word-pooling); other than 'first', every run is "
                            "probed again into OUT/<preset>/seed<S>/results[-probeN]-<pooling>/ and those are reported "
                            "(default: $PROBE_POOLING or first)")
    for p in (demo, sweep):
        p.add_argument("--out", default=None, help="output root (default: outputs/toy for demo, outputs/sweep for sweep)")
    return parser


def seed_list(value: str, flag: str) -> List[int]:
    """``'1,2,3'`` -> [1, 2, 3]: distinct non-negative integers, at least one."""
    try:
        seeds = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"pipeline.py: error: {flag} takes comma-separated integers, got {value!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise SystemExit(f"pipeline.py: error: {flag} takes distinct non-negative integers, got {value!r}")
    return seeds


def name_list(value: str, flag: str, known) -> List[str]:
    """``'HL,Ours'`` -> ['HL', 'Ours']: distinct known names, at least one (checked before any work)."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"pipeline.py: error: {flag}: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    if not names or len(set(names)) != len(names):
        raise SystemExit(f"pipeline.py: error: {flag} takes distinct names, at least one, got {value!r}")
    reserved = [name for name in names if set(name) & set("|:,")]
    if reserved:  # balkd-report refuses them after every run was trained
        raise SystemExit(f"pipeline.py: error: {flag}: the name(s) {', '.join(reserved)} hold | or :, which balkd-report "
                         "refuses as model names; rename them in configurations.py")
    return names


def prepare_demo_out(out: str) -> None:
    """The demo rebuilds OUT each run: remove only a directory an earlier demo made (or the default one)."""
    if os.path.isdir(out) and os.listdir(out) and not os.path.isfile(os.path.join(out, DEMO_MARKER)) \
            and os.path.realpath(out) != os.path.realpath(DEFAULT_DEMO_OUT):
        raise SystemExit(f"pipeline.py: error: --out {out} is not empty and no earlier demo made it; the demo "
                         "replaces its output directory, so give a new or empty one")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    with open(os.path.join(out, DEMO_MARKER), "w", encoding="utf-8") as f:
        f.write("made by examples/toy/pipeline.py demo, which replaces this directory each run\n")


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("THREADS", "2"))
    return run_demo(args, time.monotonic()) if args.command == "demo" else run_sweep(args, time.monotonic())


def run_demo(args: argparse.Namespace, start: float) -> int:
    """One run of the paper's three models in a rebuilt OUT, its report, and the export of Ours."""
    s = settings_from_env(Settings(out=args.out or os.environ.get("OUT", DEFAULT_DEMO_OUT), data_seed=args.seed,
                                   lanes=2))
    s.probe_train_sentences, s.probe_pooling = 0, "first"  # the demo reports the benchmark's probes; the others are sweep options
    prepare_demo_out(s.out)
    failures = failure_summary([run_preset(s, args.preset, [args.seed], PAPER_CONFIGS, single_run=True)])
    if failures:
        raise SystemExit(failures)
    export_and_query(Layout(s.out, args.preset, args.seed, single_run=True, data_seed=args.seed), "Ours")
    print(f"\nDone in {time.monotonic() - start:.0f}s.\n  table: {s.out}/report/report.md (and report.csv, report_compare.csv)\n"
          f"  plot:  {s.out}/report/report.png\n  cost:  {s.out}/report/cost.md\n"
          f"  checkpoints: {s.out}/checkpoints/{{HL,HL-balanced,Ours}}/checkpoint_last.pt, teachers in {s.out}/teachers\n"
          f"  TensorBoard: tensorboard --logdir {s.out}/tensorboard\n"
          f"  exported:    {s.out}/export/{{fairseq,hf,README.md}} (balkd-export)")
    return 0


def sweep_settings(args: argparse.Namespace) -> Settings:
    """The sweep's settings: the environment's, the probe variants of the command line over them, checked."""
    s = settings_from_env(Settings(out=args.out or os.path.join(REPO, "outputs", "sweep")))
    if args.probe_train_sentences is not None:
        s.probe_train_sentences = args.probe_train_sentences
    if s.probe_train_sentences < 0:
        raise SystemExit(f"--probe-train-sentences must be 0 (whole splits) or more, got {s.probe_train_sentences}")
    if args.probe_pooling is not None:
        s.probe_pooling = args.probe_pooling
    if s.probe_pooling not in WORD_POOLINGS:
        raise SystemExit(f"pipeline.py: error: PROBE_POOLING={s.probe_pooling!r} is not one of {', '.join(WORD_POOLINGS)}")
    return s


def run_sweep(args: argparse.Namespace, start: float) -> int:
    """Every preset's runs and report; names and report directories are checked before any work."""
    s = sweep_settings(args)
    report_name = args.report_name or "report" + "".join(probe_variant_suffix(s))
    configs = name_list(args.configs, "--configs", CONFIGS)
    presets = name_list(args.presets, "--presets", PRESET_GROUPS)
    data_seeds = seed_list(args.data_seeds, "--data-seeds") if args.data_seeds is not None else [s.data_seed]
    seeds = seed_list(args.seeds, "--seeds")
    if not args.replace_report:
        for preset in presets:
            check_report_dir(report_dir_of(s, preset, report_name), report_covers(s, configs, seeds, data_seeds))
    check_settings(s)
    outcomes = [run_preset(s, preset, seeds, configs, report_name=report_name, data_seeds=data_seeds)
                for preset in presets]
    failures = failure_summary(outcomes)
    if failures:
        raise SystemExit(failures)
    print(f"\nSweep done in {(time.monotonic() - start) / 60:.1f} min: reports in {s.out}/<preset>/{report_name}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
