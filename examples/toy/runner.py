"""Running the toy pipeline's steps: commands with their logs, completion markers, and jobs side by side."""
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def run(cmd: List[str], log: Optional[str] = None, progress_total: int = 0, label: str = "") -> float:
    """Run a command (output to ``log`` if given, with a line every 100 updates, ``label`` first); its wall seconds."""
    start = time.monotonic()
    if log is None:
        code = subprocess.run(cmd).returncode
        if code != 0:  # the command printed its own one-line error
            raise SystemExit(f"failed (exit {code}): {' '.join(cmd[:3])} ...")
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
        raise SystemExit(f"failed (exit {code}): {' '.join(cmd[:3])} ...; log: {log}")
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


def run_jobs(jobs: List[Job], lanes: int) -> Dict[str, object]:
    """Run ``jobs`` in ``lanes`` parallel lanes: whenever a lane is free, the first job (in list order, so
    list the longest chain first) whose dependencies are done starts. A failed job stops the run once the
    jobs already running have ended."""
    results: Dict[str, object] = {}
    pending, running = list(jobs), {}
    with ThreadPoolExecutor(max_workers=lanes) as pool:
        while pending or running:
            ready = [job for job in pending if all(name in results for name in job.after)]
            for job in ready[: lanes - len(running)]:
                pending.remove(job)
                running[pool.submit(job.work)] = job
            if not running:
                raise SystemExit(f"jobs {[job.name for job in pending]} wait for jobs that never run")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                results[running.pop(future).name] = future.result()  # re-raises the job's failure
    return results


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
