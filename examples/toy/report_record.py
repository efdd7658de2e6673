"""What a sweep's report covers (its configurations, seeds and probes, kept beside it in ``runs.json``), and the
check that keeps a later sweep of other runs from replacing it unasked."""
import json
import os
from typing import List, Optional

from configurations import Settings

REPORT_RECORD = "runs.json"  # beside a report: the configurations, seeds and probes it covers, and the runs it lacks


def report_covers(s: Settings, configs: List[str], seeds: List[int], data_seeds: List[int]) -> dict:
    """What a sweep's report shows (kept beside it in REPORT_RECORD): its configurations, seeds and probes."""
    return {"configs": sorted(configs), "seeds": sorted(seeds), "data_seeds": sorted(data_seeds),
            "probe_train_sentences": s.probe_train_sentences, "probe_pooling": s.probe_pooling}


def check_report_dir(report_dir: str, covers: dict) -> None:
    """A report directory holds one side-by-side comparison. A sweep of other configurations or seeds into it would
    replace that comparison with its own without a word (and merging in every finished configuration would mix
    models trained on other seeds into one table), so it is refused before any work: the same sweep again (e.g. to
    fill in runs that failed) rewrites its report; another takes another --report-name, or --replace-report."""
    if not os.path.isdir(report_dir) or not os.listdir(report_dir):
        return
    recorded = read_record(report_dir)
    if recorded is None:
        # made before reports recorded their runs, or by something else: what it covers is unknown
        what = f"a report without {REPORT_RECORD} (what it covers is unknown: made by an earlier version, or not by a sweep)"
    else:
        changed = [key for key in covers if recorded.get(key) != covers[key]]
        if not changed:
            return
        what = "the report of " + "; ".join(f"{key} {_listed(recorded.get(key))} (now {_listed(covers[key])})"
                                             for key in changed)
    raise SystemExit(f"pipeline.py: error: {report_dir} holds {what}: pass another --report-name to keep it, or "
                     "--replace-report to replace it")


def read_record(report_dir: str) -> Optional[dict]:
    try:
        with open(os.path.join(report_dir, REPORT_RECORD), encoding="utf-8") as f:
            recorded = json.load(f)
    except (OSError, ValueError):  # none, or not ours: the report's runs are unknown
        return None
    return recorded if isinstance(recorded, dict) else None


def _listed(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def write_record(report_dir: str, covers: dict, missing: List[str], left_out: List[str]) -> None:
    """Record what the report in ``report_dir`` covers (``covers``), the runs that did not finish (``missing``) and
    those that finished but are not in it (``left_out``: another model lacks that run)."""
    with open(os.path.join(report_dir, REPORT_RECORD), "w", encoding="utf-8") as f:
        json.dump({**covers, "missing": missing, "left_out": left_out}, f, indent=1)
