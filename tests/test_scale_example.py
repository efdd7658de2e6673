"""examples/scale/run.py (the method at a hundred languages) end to end, at 12 languages and tiny budgets."""
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
LANGUAGES = 12


def test_scale_runner_trains_reports_and_plots_twelve_languages(tmp_path):
    out = tmp_path / "scale"
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    cmd = [sys.executable, str(REPO / "examples" / "scale" / "run.py"), "--out", str(out), "--num-languages",
           str(LANGUAGES), "--high-size", "300", "--low-size", "40", "--vocab", "400", "--embed-dim", "32",
           "--teacher-epochs", "2", "--teacher-max-updates", "4", "--teacher-valid-every", "2", "--teacher-shards", "2",
           "--student-updates", "6"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    languages = json.loads((out / "synth" / "languages.json").read_text())["languages"]
    assert len(languages) == LANGUAGES
    teachers = json.loads((out / "teachers" / "teachers.json").read_text())
    assert sorted(teachers) == sorted(languages)
    assert all(path.endswith("checkpoint_best.pt") and os.path.isfile(path) for path in teachers.values())

    # budgets: min(CAP, E x batches per epoch), with batches from the train tokens balkd-prepare counted
    stats = json.loads((out / "data" / "stats.json").read_text())["languages"]
    budgets = json.loads((out / "teachers" / "budgets.json").read_text())
    for lang in languages:
        train = stats[lang]["train"]
        batches = math.ceil(math.ceil((train["tokens"] + train["lines"]) / 63) / 32)
        assert budgets[lang]["budget"] == min(4, 2 * batches), lang
        assert 0 < budgets[lang]["ran"] <= budgets[lang]["budget"], lang
    sizes = [budgets[lang]["budget"] for lang in sorted(languages, key=lambda lang: stats[lang]["train"]["lines"])]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]  # budgets grow with the language's size

    rows = list(csv.DictReader(open(out / "report" / "report.csv")))
    assert {r["model"] for r in rows} == {"HL", "HL-balanced", "Ours"}
    groups = [g for g in dict.fromkeys(r["group"] for r in rows) if g != "All"]
    assert len(groups) == 3 and all(g.startswith("Size ") for g in groups)
    report_md = (out / "report" / "report.md").read_text()
    grouped = [lang for g in groups for lang in report_md.split(f"{g}: ")[1].split(";")[0].split(", ")]
    assert sorted(grouped) == sorted(languages)  # every language in exactly one size group
    by_size = sorted(languages, key=lambda lang: (stats[lang]["train"]["lines"], lang))
    assert set(report_md.split(f"{groups[0]}: ")[1].split(";")[0].split(", ")) == set(by_size[:4])
    for name in ("HL", "HL-balanced", "Ours"):
        scores = json.loads((out / "results" / name / "lm.json").read_text())["languages"]
        assert sorted(scores) == sorted(languages) and all(s["mlm_ppl"] > 1 for s in scores.values())
    plot = out / "report" / "per_language_mlm_ppl.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000

    # a rerun with other settings would reuse the finished stages: refused, naming the setting
    rerun = subprocess.run([*cmd, "--student-updates", "7"], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode != 0 and "--student-updates 6 -> 7" in rerun.stderr, rerun.stderr[-2000:]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
