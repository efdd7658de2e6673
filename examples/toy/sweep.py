"""The job graph of the toy pipeline: every step of a preset's runs (data seeds x seeds) as a job after what it
needs, run side by side in lanes, then the preset's report of the runs that finished.

A failed step costs only the jobs that need it: ``prerequisites`` names, as jobs of their own, the steps
``stages.teachers_of`` takes before a student, so that a student whose teachers failed is skipped, not tried.
"""
import os
from dataclasses import replace
from typing import Dict, List, Optional

from configurations import CONFIGS, CONTROL, PAPER_CONFIGS, TEACHER_SETS, Settings, distills, with_control
from cost import write_cost
from evaluation import common_runs, evaluate, evaluate_control, report
from report_record import report_covers, write_record
from runner import Job, Outcome, StepFailed, run_jobs, step
from stages import (
    Layout,
    build_cache,
    hl_balanced_checkpoint,
    make_benchmark,
    oracle_data,
    train_oracle_teachers,
    train_teachers,
    trained,
)


def prerequisites(name: str) -> List[str]:
    """The steps teachers_of trains before a configuration's student (other students by their names): the
    sweep runs each as a job of its own, so a failed one is not tried again for the next student that needs
    it, and those students are skipped. tests/test_sweep_runner.py checks this against teachers_of."""
    flags = set(CONFIGS[name])
    if not flags & set(TEACHER_SETS):
        return []
    if "{ours_fallback}" in flags:  # the first generation brings everything it took
        return ["Ours+fallback"]
    needs = ["HL-balanced"] if {"{hl_balanced}", "{teachers_init}", "{cache}"} & flags else []
    needs.append("teachers from HL-balanced" if "{teachers_init}" in flags else "teachers")
    if "{teachers_oracle}" in flags:
        needs.append("oracle teachers")
    if "{cache}" in flags:
        needs.append("teacher cache")
    return needs


def student_order(configs: List[str]) -> List[str]:
    """The students ``configs`` need, each after those its teachers need (trained even when not in ``configs``: the
    HL-balanced student, a born-again fallback's first generation); the distilled ones, the longest chain, first."""
    order: List[str] = []

    def add(name: str) -> None:
        for need in prerequisites(name):
            if need in CONFIGS:
                add(need)
        if name not in order:
            order.append(name)
    for name in configs:
        add(name)
    return [name for name in order if distills(name)] + [name for name in order if not distills(name)]


def benchmark_jobs(layout: Layout, s: Settings, configs: List[str]) -> List[Job]:
    """The benchmark of a data seed, shared by its seeds' runs (and the oracle text, if a configuration needs it)."""
    data = layout.job("data", of_benchmark=True)
    jobs = [Job(data, lambda: make_benchmark(layout, s))]
    if any("{teachers_oracle}" in CONFIGS[name] for name in student_order(configs)):
        jobs.append(Job(layout.job("oracle data", of_benchmark=True), lambda: oracle_data(layout, s), (data,)))
    return jobs


def run_jobs_of(layout: Layout, s: Settings, configs: List[str]) -> List[Job]:
    """Every step of one run of ``configs`` as jobs, each after what it needs: the teachers (in several lanes, one
    shard of the languages per lane first), the other steps teachers_of would take, the students, their
    evaluations. Listed longest chain first, for the lanes; one lane runs them in this order."""
    job, benchmark = layout.job, (layout.job("data", of_benchmark=True),)
    students = student_order(configs)
    needed = {need for name in students for need in prerequisites(name)}
    jobs = []
    if "teachers" in needed:
        shards = [f"{i}/{s.lanes}" for i in range(s.lanes)] if s.lanes > 1 else []
        jobs += [Job(job(f"teachers {shard}"), lambda shard=shard: train_teachers(layout, s, shard=shard), benchmark)
                 for shard in shards]
        jobs.append(Job(job("teachers"), lambda: train_teachers(layout, s),
                        benchmark + tuple(job(f"teachers {shard}") for shard in shards)))
    if "teachers from HL-balanced" in needed:
        jobs.append(Job(job("teachers from HL-balanced"),
                        lambda: train_teachers(layout, s, init_from=hl_balanced_checkpoint(layout)), (job("HL-balanced"),)))
    if "oracle teachers" in needed:
        jobs.append(Job(job("oracle teachers"), lambda: train_oracle_teachers(layout, s),
                        (job("teachers"), layout.job("oracle data", of_benchmark=True))))
    if "teacher cache" in needed:  # one cache, built with the first configuration reading it
        first = next(name for name in students if "{cache}" in CONFIGS[name])
        jobs.append(Job(job("teacher cache"), lambda: build_cache(layout, s, first), (job("teachers"), job("HL-balanced"))))
    jobs += [Job(job(name), lambda name=name: trained(layout, s, name), benchmark + tuple(map(job, prerequisites(name))))
             for name in students]
    jobs += [Job(job(f"evaluate {name}"), lambda name=name: evaluate(layout, s, name), (job(name),))
             for name in students if name in configs]
    if CONTROL in with_control(configs):
        jobs.append(Job(job(f"evaluate {CONTROL}"), lambda: evaluate_control(layout, s), (job("HL-balanced"),)))
    return jobs


def run_side_by_side(jobs: List[Job], s: Settings) -> Outcome:
    """run_jobs in ``s.lanes`` lanes of THREADS // LANES threads each (one lane: the threads as they are)."""
    if s.lanes <= 1:
        return run_jobs(jobs, 1)
    threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(max(1, s.threads // s.lanes))
    try:
        return run_jobs(jobs, s.lanes)
    finally:
        if threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = threads


def report_dir_of(s: Settings, preset: str, report_name: str, single_run: bool = False) -> str:
    return os.path.join(s.out, "report") if single_run else os.path.join(s.out, preset, report_name)


def tell_missing(preset: str, layouts: List[Layout], names: List[str], runs: Dict[str, List[Layout]],
                 outcome: Outcome) -> None:
    """Which runs the report lacks, and the failed step (with its log) that kept each from finishing."""
    missing = [(layout, name) for name in names for layout in layouts if layout not in runs[name]]
    if missing:
        step(f"{preset}: {len(missing)} run(s) missing from the report")
    for layout, name in missing:
        cause = outcome.cause(layout.job(f"evaluate {name}"))
        print(f"  {layout.job(name)}: missing, as {cause} {outcome.failed[cause]}", flush=True)


def run_preset(s: Settings, preset: str, seeds: List[int], configs: List[str], single_run: bool = False,
               report_name: str = "report", data_seeds: Optional[List[int]] = None) -> Outcome:
    """Every (data seed, seed) run of ``configs`` on the preset, then its report (with several data seeds, one
    across benchmarks: balkd-report --across-benchmarks) of the runs that finished. A failed step costs only what
    needs it; the returned outcome names the failed steps and what did not run for them."""
    data_seeds = data_seeds or [s.data_seed]
    layouts = [Layout(s.out, preset, seed, single_run, data_seed) for data_seed in data_seeds for seed in seeds]
    if s.lanes > 1 and any(name not in PAPER_CONFIGS for name in configs):  # side by side only what the demo tried
        print(f"LANES={s.lanes} schedules the paper's three configurations only: these run one step at a time", flush=True)
        s = replace(s, lanes=1)
    jobs = [job for first in layouts[::len(seeds)] for job in benchmark_jobs(first, s, configs)]
    outcome = run_side_by_side(jobs + [job for layout in layouts for job in run_jobs_of(layout, s, configs)], s)
    runs = {name: [layout for layout in layouts if layout.job(f"evaluate {name}") in outcome.results]
            for name in with_control(configs)}
    tell_missing(preset, layouts, with_control(configs), runs, outcome)
    report_finished(s, preset, layouts, runs, configs, report_covers(s, configs, seeds, data_seeds),
                    report_dir_of(s, preset, report_name, single_run), outcome, single_run)
    return outcome


def report_finished(s: Settings, preset: str, layouts: List[Layout], runs: Dict[str, List[Layout]],
                    configs: List[str], covers: dict, report_dir: str, outcome: Outcome, single_run: bool) -> None:
    """The report of the runs every model with a finished run finished (none: no report), after the record of what
    it covers and lacks, and the cost of each model; a report that fails is added to ``outcome``."""
    shown, common = common_runs(layouts, runs)
    if not common:
        print(f"  {preset}: no run that every model finished; no report", flush=True)
        return
    left_out = [layout.job(name) for name in shown for layout in runs[name] if layout not in common]
    if left_out:
        print(f"  {preset}: the report keeps to the runs every model finished; left out: {', '.join(left_out)}",
              flush=True)
    os.makedirs(report_dir, exist_ok=True)
    write_record(report_dir, covers,  # first: the directory is ours now
                 missing=[layout.job(name) for name in with_control(configs) for layout in layouts
                          if layout not in runs[name]], left_out=left_out)
    try:
        report(s, preset, common, [name for name in configs if name in shown], report_dir,
               against_control=not single_run, shown=shown)
    except StepFailed as failure:
        outcome.failed[f"{preset}: report"] = str(failure)
    write_cost({name: [outcome.results[layout.job(name)] for layout in common] for name in configs if name in shown},
               os.path.join(report_dir, "cost.md"))
