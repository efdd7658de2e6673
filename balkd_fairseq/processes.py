"""Child processes that end with their parent: a ``balkd-*`` command stopped by SIGTERM, SIGHUP or Ctrl-C
stops the training runs it started instead of leaving them running as orphans.

:func:`run_child` starts the child in its own process group (so a Ctrl-C in the terminal reaches it
once, through the parent), forwards SIGINT/SIGTERM/SIGHUP to it, waits for it to end (killing it
after a grace period) and then ends the parent with exit code 128 + the signal number. On Linux the
child is also asked to receive SIGTERM if the parent dies without a chance to forward anything
(``kill -9``). What the child leaves is what fairseq leaves on SIGTERM: the last saved checkpoint, from
which running the same command again resumes.
"""
import ctypes
import logging
import signal
import subprocess
import sys
from typing import List, Optional

logger = logging.getLogger(__name__)

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_SECONDS = 60.0
_PR_SET_PDEATHSIG = 1


class Interrupted(SystemExit):
    """The parent was told to stop; its child has ended. Exit code 128 + signal number, like a shell's."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


def _prepare_child() -> None:  # runs in the child between fork and exec
    # a command started with SIGINT ignored (`nohup cmd &`, a test runner's worker) would pass that on,
    # and the child would never see the signal this process forwards to it
    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):  # forwarding still covers SIGTERM/SIGINT/SIGHUP
            pass


def run_child(cmd: List[str], grace_seconds: float = GRACE_SECONDS,
              stopped_hint: str = "run the same command again to resume", **popen_kwargs) -> int:
    """``subprocess.run(cmd, **popen_kwargs).returncode`` that stops the child when this process is stopped.

    ``stopped_hint`` ends the line printed when stopped: what the user can do next (a caller whose rerun
    would not resume says what it would do)."""
    received: List[int] = []
    proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=_prepare_child, **popen_kwargs)

    def forward(signum, frame):
        if not received:
            logger.warning(f"{signal.Signals(signum).name}: stopping the child process {proc.pid}")
        received.append(signum)
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        returncode = _wait(proc, received, grace_seconds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:  # an exception in this process: never leave the child behind
            proc.kill()
            proc.wait()
    if received:
        sys.stderr.write(f"balkd-fairseq: stopped by {signal.Signals(received[0]).name}; the child process has "
                         f"ended ({stopped_hint})\n")
        raise Interrupted(received[0])
    return returncode


def _wait(proc: subprocess.Popen, received: List[int], grace_seconds: float) -> int:
    while True:
        try:
            timeout: Optional[float] = grace_seconds if received else None
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            logger.warning(f"child process {proc.pid} did not stop within {grace_seconds:.0f}s; killing it")
            proc.kill()
