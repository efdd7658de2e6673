"""examples/toy/targets.py: issue 16's targets read from a sweep's report CSVs (no training)."""
import csv
from pathlib import Path

from helpers import load_example

targets = load_example("examples/toy/targets.py", "toy_targets")

METRICS = ["MRR", "MLM-PPL", "PPPL", "POS I-L", "POS Z-S", "NER I-L", "NER Z-S"]


def write_report(root: Path, runs, comparisons, benchmarks=False):
    """``benchmarks``: the runs come from two benchmarks (balkd-report --across-benchmarks writes their column)."""
    root.mkdir(parents=True)
    with open(root / "report.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["group", "model", "run"] + (["benchmark"] if benchmarks else []) + METRICS)
        for group, model, run, values in runs:
            where = [f"B{1 + run.endswith('2')}"] if benchmarks else []
            writer.writerow([group, model, run] + where + [values.get(m, "") for m in METRICS])
    with open(root / "report_compare.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["group", "model", "baseline", "metric", "difference", "ci_low", "ci_high", "excludes_zero"])
        writer.writerows(comparisons)


def runs_of(model, high_ppl, zs):
    return [("High-Res", model, f"s{i}", {"MLM-PPL": high_ppl + i}) for i in (1, 2)] + \
           [("All", model, f"s{i}", {"MLM-PPL": 100, "POS Z-S": zs, "NER Z-S": zs}) for i in (1, 2)]


def test_a_configuration_meets_the_targets_only_when_every_one_holds(tmp_path):
    runs = runs_of("HL", 200, 30) + runs_of("HL-balanced", 260, 28) + runs_of("Ours", 205, 29) + runs_of("Ours+x", 230, 27)
    significant = [("Low-Res", "Ours", "HL-balanced", "MLM-PPL", "-20", "-30", "-10", "true"),
                   ("Low-Res", "Ours", "HL-balanced", "POS I-L", "2", "1", "3", "true"),
                   ("Low-Res", "Ours", "HL-balanced", "NER I-L", "3", "0.5", "5", "true")]
    # Ours+x: better NER I-L on average, but its interval includes zero; and 230/201.5 > 1.05 on High-Res
    weaker = [("Low-Res", "Ours+x", "HL-balanced", "MLM-PPL", "-20", "-30", "-10", "true"),
              ("Low-Res", "Ours+x", "HL-balanced", "POS I-L", "2", "1", "3", "true"),
              ("Low-Res", "Ours+x", "HL-balanced", "NER I-L", "3", "-0.5", "5", "false")]
    write_report(tmp_path / "shared" / "report", runs, significant + weaker)
    rows = {line.split(" | ")[1]: line for line in targets.table(str(tmp_path), ["shared"]).splitlines()[2:]}
    write_report(tmp_path / "levels" / "shared" / "report", runs, significant + weaker, benchmarks=True)
    assert targets.table(str(tmp_path / "levels"), ["shared"]) == targets.table(str(tmp_path), ["shared"])
    assert rows["Ours"].endswith("**yes** |")
    assert "1.025 ✓" in rows["Ours"]  # 206.5 / 201.5
    assert rows["Ours+x"].endswith("no |")
    assert "+3.0 [-0.5, +5.0] |" in rows["Ours+x"] and "1.149 |" in rows["Ours+x"] and "27.0 vs 28.0 |" in rows["Ours+x"]
