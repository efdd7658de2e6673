"""Check the sweep's student configurations against issue 16's targets; one Markdown ablation table.

    python examples/toy/targets.py --out outputs/sweep [--presets shared,diverse] > ablation.md

Reads ``<out>/<preset>/report/report.csv`` (every run's group values) and ``report_compare.csv`` (paired
bootstrap differences with 95% intervals) that ``pipeline.py sweep`` wrote, and, per preset and student
configuration, checks the three targets of a configuration that beats the paper's recipe:

1. better than HL-balanced on Low-Res MLM-PPL, POS I-L and NER I-L, the 95% interval excluding zero;
2. High-Res MLM-PPL mean over seeds at most 1.05 x HL's;
3. All POS Z-S and NER Z-S means at least the worse of HL's and HL-balanced's.

``--report-name report-probeN`` reads the report of a sweep run with ``--probe-train-sentences N``
(few-shot probes; the LM columns are the same).
"""
import argparse
import csv
import os
import statistics
import sys
from collections import defaultdict
from typing import Dict, List, Optional, Tuple

BASELINES = ("HL", "HL-balanced")
BETTER_THAN_HL_BALANCED = (("MLM-PPL", -1), ("POS I-L", +1), ("NER I-L", +1))  # (metric, sign of an improvement)
ZERO_SHOT = ("POS Z-S", "NER Z-S")


def read_csv(path: str) -> List[dict]:
    if not os.path.isfile(path):
        raise SystemExit(f"targets.py: error: {path} does not exist (run pipeline.py sweep first)")
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def run_means(rows: List[dict]) -> Dict[Tuple[str, str, str], Tuple[float, int]]:
    """(group, model, metric) -> (mean over runs, number of runs)."""
    values = defaultdict(list)
    for row in rows:
        for metric, value in row.items():
            if metric not in ("group", "model", "run", "benchmark") and value not in ("", None):
                values[(row["group"], row["model"], metric)].append(float(value))
    return {key: (statistics.fmean(v), len(v)) for key, v in values.items()}


def compared(rows: List[dict]) -> Dict[Tuple[str, str, str, str], dict]:
    """(group, model, baseline, metric) -> the comparison row."""
    return {(r["group"], r["model"], r["baseline"], r["metric"]): r for r in rows}


def improvement(comparison: Optional[dict], sign: int) -> Tuple[str, bool]:
    """The difference with its interval, and whether it is an improvement whose interval excludes zero."""
    if comparison is None or comparison["difference"] == "":
        return "–", False
    diff = float(comparison["difference"])
    if comparison["ci_low"] == "":
        return f"{diff:+.1f}", False
    low, high = float(comparison["ci_low"]), float(comparison["ci_high"])
    significant = (low > 0 if sign > 0 else high < 0)
    return f"{diff:+.1f} [{low:+.1f}, {high:+.1f}]", significant


def check(preset: str, model: str, means, comparisons) -> Tuple[List[str], bool]:
    cells, met = [], True
    for metric, sign in BETTER_THAN_HL_BALANCED:
        text, ok = improvement(comparisons.get(("Low-Res", model, "HL-balanced", metric)), sign)
        cells.append(text + (" ✓" if ok else ""))
        met &= ok
    ours_high, hl_high = means.get(("High-Res", model, "MLM-PPL")), means.get(("High-Res", "HL", "MLM-PPL"))
    if ours_high and hl_high:
        ratio = ours_high[0] / hl_high[0]
        cells.append(f"{ratio:.3f}" + (" ✓" if ratio <= 1.05 else ""))
        met &= ratio <= 1.05
    else:
        cells.append("–")
        met = False
    for metric in ZERO_SHOT:
        ours = means.get(("All", model, metric))
        floor = [means.get(("All", base, metric)) for base in BASELINES]
        if ours is None or None in floor:
            cells.append("–")
            met = False
            continue
        worse = min(f[0] for f in floor)
        cells.append(f"{ours[0]:.1f} vs {worse:.1f}" + (" ✓" if ours[0] >= worse else ""))
        met &= ours[0] >= worse
    pppl = comparisons.get(("Low-Res", model, "HL-balanced", "PPPL"))
    cells.append(improvement(pppl, -1)[0])
    return cells, met


def table(out: str, presets: List[str], report_name: str = "report") -> str:
    header = ["preset", "configuration", "seeds", "Low MLM-PPL − HL-bal", "Low POS I-L − HL-bal",
              "Low NER I-L − HL-bal", "High MLM-PPL / HL", "All POS Z-S vs worse baseline",
              "All NER Z-S vs worse baseline", "Low PPPL − HL-bal", "all targets"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for preset in presets:
        report = os.path.join(out, preset, report_name)
        means = run_means(read_csv(os.path.join(report, "report.csv")))
        comparisons = compared(read_csv(os.path.join(report, "report_compare.csv")))
        students = sorted({key[1] for key in comparisons}, key=lambda m: (m != "Ours", m))
        for model in students:
            cells, met = check(preset, model, means, comparisons)
            seeds = means.get(("All", model, "MLM-PPL"), (None, 0))[1]
            lines.append("| " + " | ".join([preset, model, str(seeds), *cells, "**yes**" if met else "no"]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/sweep", help="the sweep's output root (pipeline.py sweep --out)")
    parser.add_argument("--presets", default="shared,diverse", help="comma-separated presets to read")
    parser.add_argument("--report-name", default="report", help="the sweep's --report-name to read (default: report)")
    args = parser.parse_args(argv)
    sys.stdout.write(table(args.out, [p.strip() for p in args.presets.split(",") if p.strip()], args.report_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
