"""A Python program that imports the plugin itself and then runs fairseq's hydra entry point (no --user-dir import
by fairseq, so the plugin's add_args is never called): the plugin's run still ends a user mistake in one line with
exit 2, and a stock recipe run by the same kind of program keeps hydra's own error report."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROGRAM = """
import sys
import balkd_fairseq  # registers the plugin's tasks; fairseq's import_user_module then skips it
from fairseq_cli.hydra_train import cli_main
cli_main()
"""


def run_program(config: str, overrides, tmp_path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", PROGRAM, "--config-dir", str(REPO / "examples/paper/config"), "--config-name", config,
           "common.fp16=false", "common.cpu=true", "common.tensorboard_logdir=null",
           f"hydra.run.dir={tmp_path / 'hydra'}", *overrides]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=dict(env, OMP_NUM_THREADS="1"))


@pytest.mark.slow
def test_a_program_importing_the_plugin_gets_the_one_line_error_under_hydra(tiny_data, tmp_path):
    save = tmp_path / "save"
    proc = run_program("student_ours", [f"task.data={tiny_data}", f"checkpoint.save_dir={save}",
                                        "task.teacher_dtype=fp32"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("balkd-fairseq: error: soft labels need --teachers"), lines[-3:]
    assert sum("balkd-fairseq: error:" in line for line in lines) == 1
    assert not (save / "crash.pt").exists() and not (save / ".balkd.lock").exists()


@pytest.mark.slow
def test_a_stock_recipe_in_such_a_program_keeps_hydras_error_report(tmp_path):
    """fairseq's own error (here: no dictionary in task.data) is reported by hydra as without the plugin."""
    missing = tmp_path / "no_data"
    proc = run_program("teacher", [f"task.data={missing}", f"checkpoint.save_dir={tmp_path / 'save'}"], tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "balkd-fairseq: error:" not in proc.stderr
    assert str(missing / "dict.txt") in proc.stderr
    assert "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace." in proc.stderr
