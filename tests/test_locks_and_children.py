"""Directory locks (one process per save/output directory) and child processes that end with their parent."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from balkd_fairseq.errors import BalkdError
from balkd_fairseq.locks import LOCK_NAME, acquire, hold_directory_lock, lock_if_free, release, release_all

HOLD_LOCK = """
import sys, time
from balkd_fairseq.locks import hold_directory_lock
hold_directory_lock(sys.argv[1], "--save-dir")
print("locked", flush=True)
time.sleep(60)
"""


def start_holder(directory: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(directory)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_directory_in_use_is_refused_naming_the_holder(tmp_path):
    holder = start_holder(tmp_path)
    try:
        with pytest.raises(BalkdError) as err:
            hold_directory_lock(tmp_path, "--save-dir")
        message = str(err.value)
        assert f"process {holder.pid} on {os.uname().nodename}" in message and str(tmp_path) in message
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_killed_process_is_taken_over_with_a_warning(tmp_path, caplog):
    holder = start_holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    record = json.loads((tmp_path / LOCK_NAME).read_text())
    assert record["pid"] == holder.pid  # the kill left the lock file behind
    hold_directory_lock(tmp_path, "--save-dir")
    try:
        assert f"process {holder.pid}" in caplog.text and "no longer running" in caplog.text
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    finally:
        release_all()
    assert not (tmp_path / LOCK_NAME).exists()


def test_released_lock_can_be_taken_again(tmp_path):
    lock = tmp_path / "x.lock"
    acquire(lock, "x")
    release(lock)
    acquire(lock, "x")
    release(lock)
    assert not lock.exists()


def test_lock_if_free_neither_waits_nor_releases_a_lock_held_before(tmp_path):
    holder = start_holder(tmp_path)
    try:
        with lock_if_free(tmp_path / LOCK_NAME, "x") as locked:
            assert not locked, "held by another process: no wait"
    finally:
        holder.kill()
        holder.wait()
    with lock_if_free(tmp_path / LOCK_NAME, "x") as locked:
        assert locked
    assert not (tmp_path / LOCK_NAME).exists()
    hold_directory_lock(tmp_path, "--save-dir")
    try:
        with lock_if_free(tmp_path / LOCK_NAME, "x") as locked:
            assert locked
        assert (tmp_path / LOCK_NAME).exists(), "the lock this process held before is held still"
    finally:
        release_all()


CHILD_OF_A_COMMAND = """
import sys
from balkd_fairseq.processes import run_child
run_child([sys.executable, "-c", "import os, time; open(os.environ['PIDFILE'], 'w').write(str(os.getpid())); time.sleep(120)"])
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_command_ends_its_child(tmp_path, sig):
    pidfile = tmp_path / "child.pid"
    # started as `nohup cmd &` starts it (SIGINT ignored, which a child would inherit): the forwarded
    # signal must still end the child
    parent = subprocess.Popen([sys.executable, "-c", CHILD_OF_A_COMMAND], env=dict(os.environ, PIDFILE=str(pidfile)),
                              stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.time() + 60
    while not (pidfile.exists() and pidfile.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    child = int(pidfile.read_text())
    parent.send_signal(sig)
    _, err = parent.communicate(timeout=60)
    assert parent.returncode == 128 + sig
    assert err.strip().splitlines()[-1].startswith(f"balkd-fairseq: stopped by {sig.name}")
    assert not _alive(child)


def test_a_killed_command_takes_its_child_with_it(tmp_path):
    pidfile = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", CHILD_OF_A_COMMAND], env=dict(os.environ, PIDFILE=str(pidfile)))
    deadline = time.time() + 60
    while not (pidfile.exists() and pidfile.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    child = int(pidfile.read_text())
    parent.kill()
    parent.wait()
    deadline = time.time() + 10
    while _alive(child) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (ended, not yet reaped by init) counts as ended
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"
