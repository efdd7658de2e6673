"""tests/warm.py: a command forked from the warm server behaves as the same command started cold."""
import os
import signal
import subprocess
import sys
import time

import pytest
import warm

pytestmark = pytest.mark.skipif(warm.COLD, reason="BALKD_TESTS_COLD=1: every command already runs cold")


def both(cmd, cwd, extra_env=None):
    """(cold, warm) CompletedProcess of ``cmd`` (a console command of the venv, or python ...)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", **(extra_env or {}))
    bin_dir = os.path.dirname(sys.executable)
    cold = subprocess.run([os.path.join(bin_dir, cmd[0]) if cmd[0] != "python" else sys.executable, *cmd[1:]],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    hot = subprocess.run(cmd, cwd=cwd, env=warm.warm_env(env), capture_output=True, text=True, timeout=300)
    return cold, hot


@pytest.mark.parametrize("cmd", [
    ["balkd-synth", "--zipf-exponent", "nan", "--out", "OUT"],  # the project's one error line, exit 2
    ["fairseq-train", "--help"],
    ["python", "-c", "import os, sys; print(os.getcwd(), os.environ['PROBE'], sys.argv[1:]); sys.exit(5)", "x"],
    ["python", "-c", "raise ValueError('uncaught')"],  # the interpreter's traceback and status 1
])
def test_a_warm_command_is_the_cold_command(cmd, tmp_path):
    cold, hot = both(cmd, tmp_path, {"PROBE": "seen"})
    assert (hot.returncode, hot.stdout) == (cold.returncode, cold.stdout)
    assert hot.stderr.strip().splitlines()[-1:] == cold.stderr.strip().splitlines()[-1:]
    assert not (tmp_path / "OUT").exists()


def test_a_warm_command_is_warm_and_its_children_too(tmp_path):
    """The python it sees as sys.executable is the shim, so what it starts with it forks from the server too."""
    env = warm.warm_env(dict(os.environ))
    code = ("import subprocess, sys; print(subprocess.run([sys.executable, '-c', 'import torch, sys; "
            "print(\"fairseq\" in sys.modules)'], capture_output=True, text=True).stdout.strip())")
    started = time.monotonic()
    proc = subprocess.run(warm.python_command() + ["-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr  # imported before the command ran
    assert time.monotonic() - started < 60


def test_a_signal_to_the_client_reaches_the_command_and_its_status_comes_back(tmp_path):
    env = warm.warm_env(dict(os.environ))
    ready = tmp_path / "ready"
    code = f"import pathlib, time; pathlib.Path({str(ready)!r}).touch(); time.sleep(120)"
    proc = subprocess.Popen(warm.python_command() + ["-c", code], env=env)
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == -signal.SIGTERM
