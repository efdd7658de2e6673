"""The `make demo` pipeline (examples/toy/run.sh) end to end, at a tiny size."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def test_toy_pipeline_produces_the_report(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "toy"), HIGH_SIZE="600", LOW_SIZE="150", PROBE_TRAIN="120",
               PROBE_TEST="60", EVAL_LINES="20", VOCAB="400", TEACHER_UPDATES="6", STUDENT_UPDATES="6",
               OMP_NUM_THREADS="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(["bash", str(REPO / "examples" / "toy" / "run.sh")], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = tmp_path / "toy" / "report"
    rows = list(csv.DictReader(open(report / "report.csv")))
    assert list(dict.fromkeys(r["group"] for r in rows)) == ["Low-Res", "High-Res", "{de}", "All"]
    for name in ("HL", "HL-balanced", "Ours"):
        (everything,) = [r for r in rows if r["group"] == "All" and r["model"] == name]
        assert float(everything["MLM-PPL"]) > 1 and float(everything["PPPL"]) > 1 and 0 < float(everything["MRR"]) <= 1
    # the probes' control: the untrained architecture, probed only, shown and never compared
    (control,) = [r for r in rows if r["group"] == "All" and r["model"] == "Random-init"]
    assert control["MLM-PPL"] == "" and 0 <= float(control["POS I-L"]) <= 100
    assert json.loads((tmp_path / "toy" / "results" / "Random-init" / "probe.json").read_text())["random_init"] == 1
    compared = list(csv.DictReader(open(report / "report_compare.csv")))
    assert {(r["model"], r["baseline"]) for r in compared} == {("Ours", "HL"), ("Ours", "HL-balanced")}
    assert (report / "report.png").stat().st_size > 0
    teachers = json.loads((tmp_path / "toy" / "teachers" / "teachers.json").read_text())
    assert sorted(teachers) == ["de", "es", "eu", "tr"]
    assert all(path.endswith("checkpoint_best.pt") and os.path.isfile(path) for path in teachers.values())
    assert "Done in" in proc.stdout and "tensorboard --logdir" in proc.stdout
    for name in ("HL", "HL-balanced", "Ours"):
        assert (tmp_path / "toy" / "checkpoints" / name / "checkpoint_last.pt").is_file()
        assert (tmp_path / "toy" / "results" / name / "lm.json").is_file()
        assert (tmp_path / "toy" / "results" / name / "probe.json").is_file()
    exported = tmp_path / "toy" / "export"
    assert (exported / "fairseq" / "model.pt").is_file() and (exported / "hf" / "config.json").is_file()
    assert "  fairseq: " in proc.stdout and "  transformers: " in proc.stdout
