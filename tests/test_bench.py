"""The distillation benchmark runs on a tiny configuration and reports what it promises."""
import json
import subprocess
import sys

import pytest
from helpers import REPO

BENCH = REPO / "benchmarks" / "bench_distill.py"
TINY = ["--layers", "1", "--dim", "32", "--vocab", "120", "--languages", "3", "--batch", "6", "--seq-len", "16",
        "--steps", "2", "--warmup", "1", "--cache-topk", "4", "--threads", "1", "--json"]
PHASES = ["masked_lm", "distill_1", "distill_7_as_1", "distill_7", "distill_cache", "distill_offload"]


def run_bench(*extra):
    proc = subprocess.run([sys.executable, str(BENCH), *TINY, *extra], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_bench_runs_every_phase_and_reports_the_ratios():
    result = run_bench("--no-memory", "--last-layer-rounds", "2")
    assert set(result) == {"machine", "config", "phases", "ratios", "offload", "masked_last_layer"}
    ab = result["masked_last_layer"]
    assert ab["rounds"] == 2 and ab["masked_last_layer_ms"] > 0 and ab["fairseq_forward_ms"] > 0 and ab["ratio"] > 0
    assert {"cpu", "cores", "torch", "device", "load_average"} <= set(result["machine"])
    assert list(result["phases"]) == PHASES
    for phase in result["phases"].values():
        assert phase["steps"] == 2 and len(phase["ms_each"]) == 2 and phase["ms_per_step"] > 0
    assert set(result["ratios"]) == {"online_vs_masked_lm", "mixed_7_vs_1_teacher", "cache_vs_masked_lm"}
    for ratio in result["ratios"].values():
        assert ratio["value"] > 0 and ratio["met"] == (ratio["value"] <= ratio["target"])
    assert [r["target"] for r in result["ratios"].values()] == [1.40, 1.10, 1.10]
    assert result["offload"]["bytes_per_teacher"] > 0 and result["offload"]["teachers_per_mixed_step"] == 3
    assert result["config"]["masked_positions"] > 0


@pytest.mark.slow
def test_bench_measures_peak_memory_per_phase(tmp_path):
    markdown = tmp_path / "results.md"
    result = run_bench("--phases", "masked_lm,distill_7", "--markdown", str(markdown))
    assert list(result["phases"]) == ["masked_lm", "distill_7"]
    for phase in result["phases"].values():
        assert phase["memory"]["peak_rss_mb"] > 0 and phase["memory"]["model_and_step_mb"] >= 0
    assert result["ratios"] == {}  # each ratio needs both of its phases
    text = markdown.read_text()
    assert "| masked_lm |" in text and "| distill_7 |" in text and f"{result['machine']['cores']} cores" in text


def test_bench_rejects_unknown_phase():
    proc = subprocess.run([sys.executable, str(BENCH), "--phases", "masked_lm,nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown phase(s) nope" in proc.stderr
