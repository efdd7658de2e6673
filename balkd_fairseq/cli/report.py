"""balkd-report: the paper's table from several models' balkd-eval-lm / balkd-probe results, over seeds.

Rows Low-Res / High-Res / size groups / {lang} / All; columns model x (MRR, MLM-PPL, [PPPL], POS I-L,
POS Z-S, NER I-L, NER Z-S), each the mean ± std over the model's runs. ``--compare`` adds paired
differences with bootstrap intervals. Writes OUT/<prefix>.md, .csv (every run), _compare.csv, .png.
"""
import argparse
import logging
import os
import sys

from ..errors import BalkdError
from ..eval import groups as table_groups
from ..eval.report import compare, comparisons_csv, runs_csv, shown_metrics, to_markdown
from ..eval.report_files import check_replaceable, remove_stale
from ..eval.report_plot import plot_png
from ..eval.report_runs import Model, assign_benchmarks, check_coverage, evaluation_differences, load_run
from ..eval.results_io import parse_languages, read_json
from ..outputs import atomic_write
from .common import ArgumentParser, run_cli

logger = logging.getLogger("balkd_fairseq.report")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="balkd-report",
        description="Build the results table (rows Low-Res / High-Res / size groups / {lang} / All; columns model x "
        "(MRR, MLM-PPL, PPPL when evaluated with --pppl, POS I-L, POS Z-S, NER I-L, NER Z-S)) as Markdown and CSV, "
        "plus a PNG plot per language. A cell is the mean ± standard deviation over a model's runs (seeds); "
        "MLM-PPL is the perplexity of masked text (balkd-eval-lm --mask-prob, 15% by default), PPPL the pseudo-perplexity "
        "(one token masked at a time).",
    )
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH[,PATH]",
                        help="one run of a model: NAME=directory (its lm.json / probe.json and per-item .npz) or "
                        "NAME=file.json,file.json. Repeat with the same NAME for several runs (seeds) of a model, "
                        "one result directory per run; models appear in the order first named "
                        "(e.g. --model HL=res/s1/HL --model HL=res/s2/HL --model Ours=res/s1/Ours ...)")
    parser.add_argument("--compare", action="append", default=[], metavar="OURS:BASE[,BASE]",
                        help="paired differences OURS - BASE for each group and metric with bootstrap intervals (--confidence), "
                        "e.g. --compare Ours:HL,HL-balanced; repeatable. Runs are paired in the order given, so "
                        "list each model's seeds in the same order; compared models need the same number of runs")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                        help="bootstrap replicates for --compare (default: 1000; 0 = differences without intervals)")
    parser.add_argument("--bootstrap-seed", type=int, default=1, help="seed of the bootstrap resampling (default: 1)")
    parser.add_argument("--confidence", type=float, default=0.95, metavar="C",
                        help="level of the --compare intervals, in (0, 1): e.g. 0.99, or 1 - 0.05/k to keep a 5%% "
                             "family-wise error over k comparisons (Bonferroni); more --bootstrap replicates keep a "
                             "narrow tail stable (default: 0.95)")
    parser.add_argument("--languages", metavar="L1,L2",
                        help="report only these languages (comma-separated; the All row and the plot are over them); "
                        "default: every language some run evaluated, which every run must then cover")
    parser.add_argument("--low", nargs="+", default=[], metavar="LANG", help="low-resource languages (Low-Res row)")
    parser.add_argument("--high", nargs="+", default=[], metavar="LANG", help="high-resource languages (High-Res row)")
    parser.add_argument("--single", nargs="+", default=[], metavar="LANG",
                        help="languages also reported on their own row, e.g. de gives the {de} row")
    parser.add_argument("--groups-by-size", nargs="?", const="", default=None, metavar="Q1,Q2",
                        help="rows by training size: the evaluated languages sorted by size and cut at these quantiles "
                        "of their rank (default without a value: thirds, i.e. bottom / middle / top third)")
    parser.add_argument("--sizes", metavar="FILE",
                        help="training sizes for --groups-by-size: balkd-prepare's stats.json or balkd-synth's "
                        "languages.json (default: stats.json of the data directory recorded in lm.json)")
    parser.add_argument("--across-benchmarks", action="store_true",
                        help="the runs may come from different benchmarks (e.g. data seeds: other test data, "
                        "vocabulary and evaluation masks; every other evaluation setting must still agree). Each "
                        "benchmark is a level: --compare intervals resample benchmarks, then runs, then test items, "
                        "pairing runs within a benchmark in the order given (every benchmark needs as many runs of "
                        "each compared model), and the table adds the spread between and within benchmarks. The "
                        "CSV gets a benchmark column. Without it, runs on different benchmarks are refused")
    parser.add_argument("--allow-mixed", action="store_true",
                        help="build the table even from evaluations with different splits, masks, data or probe "
                        "settings (refused by default); the table then says so")
    parser.add_argument("--output-dir", required=True, metavar="OUT",
                        help="writes OUT/<prefix>.md, OUT/<prefix>.csv (every run), OUT/<prefix>_compare.csv "
                        "(with --compare) and OUT/<prefix>.png (unless --no-plot)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    parser.add_argument("--prefix", default="report", help="file name stem of the outputs (default: report)")
    return parser


def _languages(values, flag):
    return parse_languages(",".join(values), flag) if values else []


MODEL_NAME_RESERVED = ("|", ":", ",")


def _models(specs) -> list:
    models = {}
    for spec in specs:
        name, sep, paths = spec.partition("=")
        if not sep or not name or not paths:
            raise BalkdError(f"--model: cannot read {spec!r}; expected NAME=PATH[,PATH]")
        reserved = [c for c in MODEL_NAME_RESERVED if c in name]
        if reserved:  # '|' splits a Markdown table cell; ':' and ',' split --compare OURS:BASE,BASE
            raise BalkdError(f"--model: model name {name!r} holds {' '.join(reserved)}, which the table or --compare "
                             "would split; rename it")
        models.setdefault(name, Model(name)).runs.append(load_run(name, paths))
    for model in models.values():
        labels = [run.label for run in model.runs]
        if len(set(labels)) != len(labels):
            raise BalkdError(f"--model {model.name}: the same results are given twice ({', '.join(labels)})")
    return list(models.values())


def _comparisons(args, models):
    by_name = {model.name: model for model in models}
    pairs = []
    for spec in args.compare:
        ours, sep, bases = spec.partition(":")
        baselines = [b.strip() for b in bases.split(",") if b.strip()]
        if not sep or not ours or not baselines:
            raise BalkdError(f"--compare: cannot read {spec!r}; expected OURS:BASE[,BASE], e.g. Ours:HL,HL-balanced")
        for name in (ours, *baselines):
            if name not in by_name:
                raise BalkdError(f"--compare {spec}: no --model named {name!r} (models: {', '.join(by_name)})")
        for base in baselines:
            if base == ours:
                raise BalkdError(f"--compare {spec}: {ours} is compared with itself")
            a, b = by_name[ours], by_name[base]
            if len(a.runs) != len(b.runs):
                raise BalkdError(f"--compare {ours}:{base}: paired runs need the same number of runs "
                                 f"({len(a.runs)} vs {len(b.runs)})")
            pairs.append((a, b))
    return pairs


def _size_rows(args, models, evaluated):
    if args.groups_by_size is None:
        if args.sizes:
            raise BalkdError("--sizes is only used with --groups-by-size")
        return []
    quantiles = table_groups.parse_quantiles(args.groups_by_size)
    if args.sizes:
        path = args.sizes
    else:
        data_dirs = []
        for run in (run for model in models for run in model.runs if "lm" in run.sources):
            data = read_json(run.sources["lm"]).get("data")
            if data and data not in data_dirs:
                data_dirs.append(data)
        path = table_groups.default_sizes_file(data_dirs)
    return table_groups.size_groups(evaluated, table_groups.read_sizes(path), quantiles)


def _reported_languages(args, models, groups):
    """The languages of the table: --languages, or every evaluated one; each group flag's languages among them."""
    evaluated = list(dict.fromkeys(lang for model in models for run in model.runs for lang in run.languages()))
    if not evaluated:
        raise BalkdError("the results hold no language")
    if args.languages:
        chosen = parse_languages(args.languages, "--languages")
        _check_evaluated("--languages", chosen, evaluated, "was evaluated by no run")
        evaluated = chosen
    for flag, languages in groups.items():
        _check_evaluated(flag, languages, evaluated, "is not reported" if args.languages else "was evaluated by no run")
    return evaluated


def _check_evaluated(flag, languages, evaluated, reason):
    missing = [lang for lang in languages if lang not in evaluated]
    if missing:
        raise BalkdError(f"{flag}: {', '.join(missing)} {reason} (reported: {', '.join(evaluated)})")


def _check_output_dir(path: str) -> None:
    if os.path.exists(path) and not os.path.isdir(path):
        raise BalkdError(f"--output-dir {path} is an existing file, not a directory")


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if os.sep in args.prefix or not args.prefix:
        raise BalkdError(f"--prefix must be a plain file name stem, got {args.prefix!r}")
    if args.bootstrap < 0:
        raise BalkdError(f"--bootstrap must be 0 or more, got {args.bootstrap}")
    if not 0.0 < args.confidence < 1.0:
        raise BalkdError(f"--confidence must be between 0 and 1 (exclusive), got {args.confidence}")
    _check_output_dir(args.output_dir)
    check_replaceable(os.path.join(args.output_dir, args.prefix))
    low, high, single = (_languages(getattr(args, f), f"--{f}") for f in ("low", "high", "single"))
    table_groups.check_disjoint({"--low": low, "--high": high})
    models = _models(args.model)
    if args.across_benchmarks:
        assign_benchmarks(models)
    pairs = _comparisons(args, models)
    evaluated = _reported_languages(args, models, {"--low": low, "--high": high, "--single": single})
    rows = table_groups.table_rows(low, high, single, _size_rows(args, models, evaluated), evaluated)
    check_coverage(models, list(dict.fromkeys(lang for _, langs in rows for lang in langs)))
    if args.across_benchmarks and args.allow_mixed:
        raise BalkdError("--across-benchmarks and --allow-mixed do not go together: across benchmarks, every setting "
                         "but the benchmark must agree for the levels to mean something")
    mixed = evaluation_differences(models, across_benchmarks=args.across_benchmarks)
    if mixed and not args.allow_mixed:
        hint = "" if args.across_benchmarks else (" (runs on different benchmarks, e.g. data seeds: "
                                                  "--across-benchmarks)")
        raise BalkdError(f"{mixed[0]}; pass --allow-mixed to build the table anyway{hint}")
    for line in mixed:
        logger.warning(line)
    metrics = shown_metrics(models)
    comparisons = [compare(a, b, metric, label, langs, args.bootstrap, args.bootstrap_seed, args.confidence,
                           args.across_benchmarks)
                   for a, b in pairs for label, langs in rows for metric in metrics]
    markdown = to_markdown(models, metrics, rows, comparisons, args.bootstrap, mixed, args.confidence,
                           args.across_benchmarks)
    outputs = {".md": markdown, ".csv": runs_csv(models, metrics, rows, args.across_benchmarks)}
    if comparisons:
        outputs["_compare.csv"] = comparisons_csv(comparisons)
    _write_outputs(args, outputs, models, metrics, evaluated)
    print(markdown, end="")
    return 0


def _write_outputs(args, outputs, models, metrics, languages):
    os.makedirs(args.output_dir, exist_ok=True)
    stem = os.path.join(args.output_dir, args.prefix)
    for suffix, text in outputs.items():
        with atomic_write(stem + suffix) as f:
            f.write(text)
    written = [stem + suffix for suffix in outputs]
    plotted = [metric for metric in metrics if any(model.has(metric.key) for model in models)]  # no empty panels
    if not args.no_plot and plotted:
        with atomic_write(stem + ".png", mode="wb") as f:
            plot_png(models, plotted, languages, f)
        written.append(stem + ".png")
    remove_stale(stem, written)
    logger.info(f"wrote {', '.join(written)}")


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
