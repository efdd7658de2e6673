"""balkd-report: the paper's table from several models' balkd-eval-lm / balkd-probe results.

Rows Low-Res / High-Res / {lang} / All; columns per model x (MRR, PPPL, POS I-L, POS Z-S, NER I-L, NER Z-S).
Each cell is the mean over the row's languages (geometric for PPPL). Writes OUT/report.md, OUT/report.csv, OUT/report.png.
"""
import argparse
import logging
import os
import sys

from ..errors import BalkdError
from ..outputs import atomic_write
from .common import run_cli
from ..eval.report import (
    build_table,
    check_coverage,
    group_rows,
    load_model_results,
    mismatched_masks,
    plot_png,
    to_csv,
    to_markdown,
)
from ..eval.results_io import parse_languages

logger = logging.getLogger("balkd_fairseq.report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="balkd-report",
        description="Build the results table (rows Low-Res / High-Res / {lang} / All; columns model x "
        "(MRR, PPPL, POS I-L, POS Z-S, NER I-L, NER Z-S)) as Markdown and CSV, plus a PNG plot per language.",
    )
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH[,PATH]",
                        help="a model's results: NAME=directory (its lm.json / probe.json) or NAME=file.json,file.json; "
                        "repeat per model, in column order (e.g. --model HL=res/HL --model Ours=res/Ours)")
    parser.add_argument("--low", nargs="+", default=[], metavar="LANG", help="low-resource languages (Low-Res row)")
    parser.add_argument("--high", nargs="+", default=[], metavar="LANG", help="high-resource languages (High-Res row)")
    parser.add_argument("--single", nargs="+", default=[], metavar="LANG",
                        help="languages also reported on their own row, e.g. de gives the {de} row")
    parser.add_argument("--output-dir", required=True, metavar="OUT", help="writes OUT/<prefix>.{md,csv,png}")
    parser.add_argument("--prefix", default="report", help="file name stem of the outputs (default: report)")
    return parser


def _languages(values, flag):
    return parse_languages(",".join(values), flag) if values else []


def _models(args):
    models = []
    for spec in args.model:
        name, sep, paths = spec.partition("=")
        if not sep or not name or not paths:
            raise BalkdError(f"--model: cannot read {spec!r}; expected NAME=PATH[,PATH]")
        if name in [m.name for m in models]:
            raise BalkdError(f"--model: name {name!r} given twice")
        models.append(load_model_results(name, paths))
    return models


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if os.sep in args.prefix or not args.prefix:
        raise BalkdError(f"--prefix must be a plain file name stem, got {args.prefix!r}")
    low, high, single = (_languages(getattr(args, f), f"--{f}") for f in ("low", "high", "single"))
    models = _models(args)
    fallback = [lang for lang in models[0].languages() if all(lang in m.languages() for m in models)]
    rows = group_rows(low, high, single, fallback)
    languages = rows[-1][1]
    if not languages:
        raise BalkdError("no language is shared by all models; pass --low/--high/--single")
    check_coverage(models, languages)
    for lang in mismatched_masks(models):
        logger.warning(f"MRR of {lang}: the models were scored on different masks (different --seed/--mask-prob/data?)")
    header, body = build_table(models, rows)
    markdown = to_markdown(header, body, rows)
    _write_outputs(args, markdown, to_csv(header, body), models, languages)
    print(markdown, end="")
    return 0


def _write_outputs(args, markdown, csv_text, models, languages):
    os.makedirs(args.output_dir, exist_ok=True)
    stem = os.path.join(args.output_dir, args.prefix)
    for suffix, text in ((".md", markdown), (".csv", csv_text)):
        with atomic_write(stem + suffix) as f:
            f.write(text)
    plot_png(models, languages, stem + ".png")
    logger.info(f"wrote {stem}.md, {stem}.csv and {stem}.png")


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
