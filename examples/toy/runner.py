"""Running the toy pipeline's steps: commands with their logs, completion markers, and jobs side by side."""
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


class StepFailed(SystemExit):
    """A command of a step exited non-zero. A sweep goes on with the steps that do not need that one; any other
    SystemExit (a refusal, a user's mistake) still stops it at once."""


def run(cmd: List[str], log: Optional[str] = None, progress_total: int = 0, label: str = "") -> float:
    """Run a command (output to ``log`` if given, with a line every 100 updates, ``label`` first); its wall seconds."""
    start = time.monotonic()
    if log is None:
        code = subprocess.run(cmd).returncode
        if code != 0:  # the command printed its own one-line error
            raise StepFailed(f"failed (exit {code}): {' '.join(cmd[:3])} ... (its output is above)")
        return time.monotonic() - start
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            out.write(line)
            shown = _progress_line(line, progress_total)
            if shown:
                print(f"  {label}{shown}" if label else f"  {shown}", flush=True)
        code = proc.wait()
    if code != 0:
        with open(log, encoding="utf-8") as f:
            sys.stdout.write("".join(f.readlines()[-20:]))
        raise StepFailed(f"failed (exit {code}): {' '.join(cmd[:3])} ...; log: {log}")
    return time.monotonic() - start


def _progress_line(line: str, total: int) -> Optional[str]:
    if total <= 0 or "| train_inner |" not in line:
        return None
    updates = re.search(r"num_updates[= ](\d+)", line)
    loss = re.search(r"\bloss[= ]([0-9.]+)", line)
    if updates and int(updates.group(1)) % 100 == 0 and loss:
        return f"update {updates.group(1)}/{total}  loss {loss.group(1)}"
    return None


def done(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, ".done"))


def mark_done(directory: str, info: Optional[dict] = None) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, ".done"), "w", encoding="utf-8") as f:
        json.dump(info or {}, f, indent=1)


def finished(directory: str, made_with: dict, what: str) -> Optional[dict]:
    """What a finished step recorded (None: not finished); refused when it was made with other inputs than
    ``made_with`` now gives (a configuration's flags edited since), which reusing would report under its name."""
    if not done(directory):
        return None
    info = read_done(directory)
    recorded = info.get("made_with")
    if recorded is not None and recorded != made_with:
        changed = [key for key in made_with if recorded.get(key) != made_with[key]]
        raise SystemExit(f"pipeline.py: error: {what} in {directory} was made with other {', '.join(changed)} than "
                         f"now ({recorded} there, {made_with} now): remove {directory} to train it again, or give the "
                         "changed configuration a new name")
    return info


def read_done(directory: str) -> dict:
    with open(os.path.join(directory, ".done"), encoding="utf-8") as f:
        return json.load(f)


@dataclass
class Job:
    """One step of a run; it starts once the jobs named in ``after`` have finished."""

    name: str
    work: Callable[[], object]
    after: Tuple[str, ...] = ()


@dataclass
class Outcome:
    """What run_jobs did: each finished job's result, each failed job's error, and for each job not run the failed
    job it needed."""

    results: Dict[str, object] = field(default_factory=dict)
    failed: Dict[str, str] = field(default_factory=dict)
    skipped: Dict[str, str] = field(default_factory=dict)

    def cause(self, name: str) -> Optional[str]:
        """The failed job that kept ``name`` from finishing (itself, or one it needed); None when it finished."""
        return name if name in self.failed else self.skipped.get(name)


def run_jobs(jobs: List[Job], lanes: int) -> Outcome:
    """Run ``jobs`` in ``lanes`` parallel lanes: whenever a lane is free, the first job (in list order, so
    list the longest chain first) whose dependencies are done starts. A job whose command fails (StepFailed)
    is recorded and the jobs after it are not run, while the others go on: one broken configuration of a long
    sweep costs only what needs it. Any other error stops the run once the jobs already running have ended."""
    outcome = Outcome()
    pending, running = list(jobs), {}
    with ThreadPoolExecutor(max_workers=lanes) as pool:
        while pending or running:
            _skip_after_failures(pending, outcome)
            ready = [job for job in pending if all(name in outcome.results for name in job.after)]
            for job in ready[: lanes - len(running)]:
                pending.remove(job)
                running[pool.submit(job.work)] = job
            if not running:
                if not pending:
                    break
                raise SystemExit(f"jobs {[job.name for job in pending]} wait for jobs that never run")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                try:
                    outcome.results[job.name] = future.result()  # re-raises the job's failure
                except StepFailed as failure:
                    outcome.failed[job.name] = str(failure)
    return outcome


def _skip_after_failures(pending: List[Job], outcome: Outcome) -> None:
    """Take the jobs that need a failed (or itself skipped) job out of ``pending``, naming the failed one."""
    changed = True
    while changed:
        changed = False
        for job in list(pending):
            cause = next((outcome.cause(name) for name in job.after if outcome.cause(name)), None)
            if cause is not None:
                pending.remove(job)
                outcome.skipped[job.name] = cause
                changed = True


def tokens_trained(log_path: str) -> int:
    """Tokens processed by a fairseq-train run: per epoch, words per batch x updates in that epoch."""
    total, last_updates = 0.0, 0
    with open(log_path, encoding="utf-8") as f:
        for line in f:
            if "| train |" not in line:
                continue
            wpb = re.search(r"\bwpb[= ]([0-9.]+)", line)
            updates = re.search(r"num_updates[= ](\d+)", line)
            if wpb and updates:
                total += float(wpb.group(1)) * (int(updates.group(1)) - last_updates)
                last_updates = int(updates.group(1))
    return int(total)


def failure_summary(outcomes: List[Outcome]) -> Optional[str]:
    """One line naming the failed steps (None: none failed)."""
    failed = [name for outcome in outcomes for name in outcome.failed]
    if not failed:
        return None
    skipped = sum(len(outcome.skipped) for outcome in outcomes)
    return (f"pipeline.py: error: {len(failed)} step(s) failed ({'; '.join(failed)})"
            + (f" and {skipped} that needed them did not run" if skipped else "")
            + "; the report(s) show what finished, the missing runs and the logs are listed above")
