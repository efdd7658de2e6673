"""Scaling benchmark: how start-up, teacher memory, step time and the teacher cache grow with the number of languages L.

    python benchmarks/bench_scale.py                                  (make bench-scale: L = 7,25,50,100,200,500)
    python benchmarks/bench_scale.py --languages 7,25 --lines 60 --updates 20 --out /tmp/scale

For every L it writes, under --workdir, binarized data for L languages (one shared --vocab dictionary,
--lines training lines per language, each language its own Zipf distribution over the words) with
fairseq's own indexed-dataset builder, and L teacher checkpoints: ONE tiny RoBERTa (--layers, --dim)
written by stock ``fairseq-train --task masked_lm`` after a single update (so it is exactly the
checkpoint fairseq writes, not a hand-made pickle), copied to L separate files, each with the
dict.txt beside it as balkd-train-teachers leaves it. The weights are untrained: only time and
memory are measured. Then, per L, each measurement in its own process (peak RSS is the process's
own ``ru_maxrss`` from ``os.wait4``):

    setup         task set-up + loading the train and valid datasets (no teachers), in-process seconds
    checks        the start-up checks of all L teachers (TeacherSet.from_task with a resident cap of 1:
                  every checkpoint's hash, dictionary and architecture checked, no model kept), twice:
                  the first start hashes and unpickles every file, a later start reads the facts
                  remembered beside each file (balkd_fairseq/hash_memo.py)
    resident      fairseq-train --task balanced_distill --criterion multi_teacher_distill --teachers T.json
                  --batch-by-language --language-run-batches R, all teachers resident (no cap)
    capped        the same with --max-resident-teachers K (K = --resident, default 8); with --run-batches R,R2,...
                  once more per further R2 with --language-run-batches R2 (longer runs: fewer teacher loads per step)
    cache_build   balkd-cache-teachers for the same data, seed and --max-epoch 1
    cached        the same training from the cache (--teacher-cache)

Step time of a training mode: fairseq logs ``ups`` (updates per second) for every update
(``--log-interval 1``), timed from the previous log line, so it covers everything a step costs in
the loop (batch, teacher loads on a cache miss, criterion, backward, optimizer), but not start-up.
The step time is the MEAN of 1/ups over the updates after the first --warmup ones: a mean, not a
median, because the capped mode's teacher loads happen once per run of R batches and a median would
hide them. All three modes read the same batches in the same order (same seed).

Targets (ratios to L = 7 unless stated), printed met / missed at the end:

    capped peak RSS at L=500 / at L=7                 <= 1.20
    cached step at L=500 / at L=7                     <= 1.10
    cache build peak RSS at L=500 / at L=7            <= 1.20
    set-up seconds at L=500                           <= 30 s
    capped step / resident step at the same L         <= 1.25 (every L; reported for every R of --run-batches)
    teacher checks seconds at L=500 (later start)     <= 60 s

The largest L in --languages stands in for 500 when 500 is not measured. Writes --out/scale.json,
--out/scale.md (table, machine, command) and --out/scale.png (each quantity as a ratio to the
smallest L, log-x).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine_info import describe

REPO = Path(__file__).resolve().parents[1]
PLUGIN = str(REPO / "balkd_fairseq")
MODES = ["resident", "capped", "cached"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--languages", default="7,25,50,100,200,500", help="comma-separated numbers of languages L to measure")
    p.add_argument("--out", default=str(REPO / "benchmarks"), metavar="DIR",
                   help="where scale.json, scale.md and scale.png go (default: benchmarks/)")
    p.add_argument("--workdir", metavar="DIR", help="scratch directory for data, teachers and caches (default: a temp dir, removed)")
    p.add_argument("--lines", type=int, default=160, help="training lines per language (valid: a tenth, at least 8)")
    p.add_argument("--vocab", type=int, default=8000, help="dictionary size of student and teachers")
    p.add_argument("--layers", type=int, default=2, help="encoder layers of student and teachers")
    p.add_argument("--dim", type=int, default=64, help="embedding dimension (FFN 4x, one head)")
    p.add_argument("--tokens-per-sample", type=int, default=32, help="block size (--tokens-per-sample)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per batch")
    p.add_argument("--updates", type=int, default=120, help="updates per training run (enough that the mean step is stable to a few %%)")
    p.add_argument("--warmup", type=int, default=20, help="first updates left out of the step time")
    p.add_argument("--run-batches", default="8", metavar="R[,R2,...]",
                   help="--language-run-batches R of every training mode; each further R2 adds one capped run with "
                        "--language-run-batches R2 (columns 'step capped R=R2', how longer runs amortise teacher loads)")
    p.add_argument("--resident", type=int, default=8, help="--max-resident-teachers K of the capped mode")
    p.add_argument("--cache-topk", type=int, default=32, help="--cache-topk of the cache")
    p.add_argument("--from-json", metavar="FILE",
                   help="measure nothing: rebuild the table, targets and plot from a scale.json (e.g. of an interrupted run)")
    p.add_argument("--probe", choices=["setup", "checks"], help=argparse.SUPPRESS)  # internal: one in-process measurement
    p.add_argument("--probe-args", help=argparse.SUPPRESS)  # internal: JSON list of the training command line
    args = p.parse_args(argv)
    try:
        # measured in the order given (put the L that matters most early); reported sorted
        args.language_counts = list(dict.fromkeys(int(x) for x in args.languages.split(",") if x.strip()))
    except ValueError:
        p.error(f"--languages: expected comma-separated integers, got {args.languages!r}")
    if not args.language_counts or min(args.language_counts) < 1:
        p.error("--languages: give at least one L >= 1")
    if args.warmup >= args.updates:
        p.error("--warmup must be below --updates")
    try:
        args.run_batch_counts = list(dict.fromkeys(int(x) for x in str(args.run_batches).split(",") if x.strip()))
    except ValueError:
        p.error(f"--run-batches: expected comma-separated integers, got {args.run_batches!r}")
    if not args.run_batch_counts or min(args.run_batch_counts) < 1:
        p.error("--run-batches: give at least one R >= 1")
    args.run_batches = args.run_batch_counts[0]
    return args


def child_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return env


# ------------------------------------------------------------------------------ data and teachers
def language_codes(count: int):
    return [f"x{i:03d}" for i in range(count)]


def make_dictionary(vocab: int):
    from fairseq.data import Dictionary

    dictionary = Dictionary()
    for i in range(vocab - len(dictionary) - 1):  # the task adds <mask>
        dictionary.add_symbol(f"w{i}", n=vocab - i)
    return dictionary


def write_data(root: Path, languages, dictionary, lines: int) -> None:
    """DATA/dict.txt, DATA/<lang>/{dict.txt,train,valid}: each language its own Zipf ranking of the words."""
    import torch
    from fairseq.data.indexed_dataset import make_builder

    root.mkdir(parents=True, exist_ok=True)
    dictionary.save(str(root / "dict.txt"))
    words = np.arange(dictionary.nspecial, len(dictionary))
    zipf = 1.0 / np.arange(1, len(words) + 1)
    for n, lang in enumerate(languages):
        (root / lang).mkdir(exist_ok=True)
        rng = np.random.default_rng(n)
        probs = np.roll(zipf, n * 97) / zipf.sum()
        for split, count in (("train", lines), ("valid", max(8, lines // 10))):
            builder = make_builder(str(root / lang / f"{split}.bin"), impl="mmap", vocab_size=len(dictionary))
            for length in rng.integers(8, 31, size=count):
                tokens = np.append(rng.choice(words, size=length, p=probs), dictionary.eos()).astype(np.int32)
                builder.add_item(torch.from_numpy(tokens))
            builder.finalize(str(root / lang / f"{split}.idx"))


def arch_flags(args):
    return ["--arch", "roberta_base", "--encoder-layers", str(args.layers), "--encoder-embed-dim", str(args.dim),
            "--encoder-ffn-embed-dim", str(4 * args.dim), "--encoder-attention-heads", str(max(1, args.dim // 64)),
            "--max-positions", str(args.tokens_per_sample)]


def make_teacher(work: Path, args, dictionary) -> Path:
    """One fairseq masked-LM checkpoint (a single update of stock fairseq-train) and its dict.txt."""
    data = work / "teacher_data"
    write_data(data, ["x000"], dictionary, 40)
    save = work / "teacher"
    cmd = [sys.executable, "-m", "fairseq_cli.train", str(data / "x000"), "--user-dir", PLUGIN, "--task", "masked_lm",
           "--criterion", "masked_lm", *arch_flags(args), "--tokens-per-sample", str(args.tokens_per_sample),
           "--batch-size", "4", "--optimizer", "adam", "--lr", "1e-4", "--max-update", "1", "--cpu",
           "--save-dir", str(save), "--no-epoch-checkpoints", "--disable-validation", "--num-workers", "0",
           "--data-buffer-size", "0", "--log-format", "simple"]
    shutil.copy(data / "dict.txt", data / "x000" / "dict.txt")
    proc = subprocess.run(cmd, env=child_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench_scale: building the teacher failed:\n{proc.stderr[-3000:]}")
    dictionary.save(str(save / "dict.txt"))
    return save / "checkpoint_last.pt"


def write_teachers(root: Path, languages, checkpoint: Path) -> Path:
    """L separate, distinct checkpoint files, each with its dict.txt, and the teachers.json naming them.

    Each copy gets its own value in one weight: identical files would be one model to the teacher
    set (it shares a model between languages served by the same checkpoint contents).
    """
    import torch

    sys.path.insert(0, str(REPO))
    from balkd_fairseq.checkpoint_compat import allow_fairseq_checkpoints

    allow_fairseq_checkpoints()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    weights = state["model"]
    marked = next(name for name, tensor in weights.items() if tensor.is_floating_point())
    original = weights[marked].flatten()[0].item()
    mapping = {}
    for number, lang in enumerate(languages):
        (root / lang).mkdir(parents=True, exist_ok=True)
        weights[marked].view(-1)[0] = original + 1e-3 * (number + 1)
        torch.save(state, root / lang / "checkpoint.pt")
        shutil.copy(checkpoint.parent / "dict.txt", root / lang / "dict.txt")
        mapping[lang] = f"{lang}/checkpoint.pt"
    (root / "teachers.json").write_text(json.dumps(mapping, indent=1))
    return root / "teachers.json"


# ------------------------------------------------------------------------------ measured processes
def task_flags(args, data: Path, run_batches=None):
    return [str(data), "--task", "balanced_distill", "--tokens-per-sample", str(args.tokens_per_sample),
            "--batch-size", str(args.batch_size), "--seed", "1", "--max-epoch", "1", "--cpu", "--num-workers", "0",
            "--batch-by-language", "--language-run-batches", str(run_batches or args.run_batches),
            "--required-batch-size-multiple", "1"]


def train_command(args, data: Path, mode_flags, run_batches=None):
    return [*task_flags(args, data, run_batches), "--user-dir", PLUGIN, "--criterion", "multi_teacher_distill", *arch_flags(args),
            "--optimizer", "adam", "--lr", "1e-4", "--max-update", str(args.updates), "--no-save",
            "--disable-validation", "--log-format", "json", "--log-interval", "1", "--data-buffer-size", "0",
            *mode_flags]


def run_measured(cmd, log: Path):
    """(wall seconds, peak RSS MB of that process, its stdout) of one child process."""
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=child_env(), cwd=str(REPO))
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"bench_scale: {' '.join(cmd[:6])} ... failed ({proc.returncode}); log {log}:\n{text[-3000:]}")
    return wall, usage.ru_maxrss / 1024.0, text


def step_seconds(log_text: str, warmup: int):
    """(mean s/update after warm-up, teacher loads after warm-up) from fairseq's per-update json log."""
    records = [json.loads(line.split("| train_inner | ", 1)[1]) for line in log_text.splitlines() if "| train_inner | " in line]
    timed = [r for r in records if int(r["num_updates"]) > warmup]
    if not timed:
        raise RuntimeError("no train_inner records after warm-up")
    seconds = [1.0 / float(r["ups"]) for r in timed]
    loads = sum(float(r.get("teacher_loads", 0)) for r in timed)
    return float(np.mean(seconds)), float(np.median(seconds)), loads, len(timed)


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure_one(args, work: Path, count: int, teacher_ckpt: Path, dictionary) -> dict:
    root = work / f"L{count}"
    languages = language_codes(count)
    data, logs = root / "data", root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    write_data(data, languages, dictionary, args.lines)
    teachers = write_teachers(root / "teachers", languages, teacher_ckpt)
    row = {"L": count, "teacher_bytes_each": teacher_ckpt.stat().st_size}
    base = train_command(args, data, ["--teachers", str(teachers)])
    probe_file = root / "probe_args.json"
    probe_file.write_text(json.dumps(base))
    # the checks run twice on the same copies: a first start hashes and unpickles every file, a later
    # start reads the facts remembered beside them (hash_memo.py); the target is about the later one
    for name, probe in (("setup", "setup"), ("checks_first", "checks"), ("checks", "checks")):
        wall, rss, text = run_measured([sys.executable, __file__, "--probe", probe, "--probe-args", str(probe_file)],
                                       logs / f"{name}.log")
        result = json.loads(text.strip().splitlines()[-1])
        row[f"{name}_s"], row[f"{name}_rss_mb"], row[f"{name}_process_s"] = result["seconds"], rss, wall
    cache = root / "cache"
    cache_cmd = [sys.executable, "-m", "balkd_fairseq.cli.cache_teachers", *task_flags(args, data), "--user-dir", PLUGIN,
                 "--teachers", str(teachers), "--cache-dir", str(cache), "--cache-topk", str(args.cache_topk)]
    row["cache_build_s"], row["cache_build_rss_mb"], _ = run_measured(cache_cmd, logs / "cache_build.log")
    row["cache_bytes"] = directory_bytes(cache)
    flags = {"resident": ["--teachers", str(teachers)],
             "capped": ["--teachers", str(teachers), "--max-resident-teachers", str(args.resident)],
             "cached": ["--teacher-cache", str(cache)]}
    runs = [(mode, mode, args.run_batches) for mode in MODES]
    runs += [(f"capped_r{r}", "capped", r) for r in args.run_batch_counts[1:]]  # longer runs: fewer loads per step
    for name, mode, run_batches in runs:
        cmd = [sys.executable, "-m", "fairseq_cli.train", *train_command(args, data, flags[mode], run_batches)]
        wall, rss, text = run_measured(cmd, logs / f"{name}.log")
        mean, median, loads, timed = step_seconds(text, args.warmup)
        row.update({f"{name}_wall_s": wall, f"{name}_rss_mb": rss, f"{name}_step_s": mean,
                    f"{name}_step_median_s": median, f"{name}_teacher_loads": loads, f"{name}_timed_updates": timed})
    shutil.rmtree(root / "teachers")  # the copies are the bulk of the disk use at large L
    shutil.rmtree(cache)
    return row


# ------------------------------------------------------------------------------ in-process probes
def probe(args) -> None:
    """Runs in its own process: time task set-up + datasets, or the teachers' start-up checks."""
    sys.path.insert(0, str(REPO))
    import logging

    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    logging.disable(logging.WARNING)
    argv = json.loads(Path(args.probe_args).read_text())
    parser = options.get_training_parser()
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, argv))
    from fairseq.utils import import_user_module

    import_user_module(cfg.common)
    if args.probe == "setup":
        start = time.perf_counter()
        task = tasks.setup_task(cfg.task)
        task.load_dataset("train", epoch=1)
        task.load_dataset("valid", epoch=1)
        seconds = time.perf_counter() - start
    else:
        from balkd_fairseq.soft_labels.online import TeacherSet

        cfg.task.max_resident_teachers = 1  # check every teacher, keep none (what a capped run does at start-up)
        task = tasks.setup_task(cfg.task)
        start = time.perf_counter()
        teachers = TeacherSet.from_task(task)
        seconds = time.perf_counter() - start
        assert len(teachers.records) == len(task.languages)
    print(json.dumps({"seconds": seconds}))


# ------------------------------------------------------------------------------ report
TARGETS = [  # (name, description, limit)
    ("capped_rss", "peak RSS, --max-resident-teachers K, at L_max vs L_min", 1.20),
    ("cached_step", "cache-mode step at L_max vs L_min", 1.10),
    ("cache_build_rss", "cache build peak RSS at L_max vs L_min", 1.20),
    ("setup_seconds", "set-up seconds at L_max", 30.0),
    ("capped_vs_resident_step", "capped step / all-resident step, worst L", 1.25),
    ("checks_seconds", "teacher checks seconds at L_max (later starts: facts remembered)", 60.0),
]


def extra_run_batches(rows):
    """The further R of --run-batches that rows hold a capped run for (none in a scale.json of one R)."""
    found = {int(key[len("capped_r"):-len("_step_s")]) for row in rows for key in row
             if key.startswith("capped_r") and key.endswith("_step_s") and key[len("capped_r"):-len("_step_s")].isdigit()}
    return sorted(found)


def evaluate_targets(rows):
    first, last = rows[0], rows[-1]
    worst = max(rows, key=lambda r: r["capped_step_s"] / r["resident_step_s"])
    values = {
        "capped_rss": last["capped_rss_mb"] / first["capped_rss_mb"],
        "cached_step": last["cached_step_s"] / first["cached_step_s"],
        "cache_build_rss": last["cache_build_rss_mb"] / first["cache_build_rss_mb"],
        "setup_seconds": last["setup_s"],
        "capped_vs_resident_step": worst["capped_step_s"] / worst["resident_step_s"],
        "checks_seconds": last["checks_s"],
    }
    notes = {"capped_vs_resident_step": f"at L={worst['L']}"}
    targets = [{"target": name, "what": what.replace("L_max", f"L={last['L']}").replace("L_min", f"L={first['L']}"),
                "value": values[name], "limit": limit, "met": values[name] <= limit, "note": notes.get(name, "")}
               for name, what, limit in TARGETS]
    for r in extra_run_batches(rows):
        measured = [row for row in rows if f"capped_r{r}_step_s" in row]
        worst = max(measured, key=lambda row: row[f"capped_r{r}_step_s"] / row["resident_step_s"])
        value = worst[f"capped_r{r}_step_s"] / worst["resident_step_s"]
        targets.append({"target": f"capped_vs_resident_step_r{r}", "value": value, "limit": 1.25, "met": value <= 1.25,
                        "what": f"capped step with runs of R={r} / all-resident step, worst L", "note": f"at L={worst['L']}"})
    return targets


COLUMNS = [  # (key, header, format)
    ("L", "L", "{}"), ("setup_s", "set-up s", "{:.2f}"), ("checks_first_s", "teacher checks, first start s", "{:.2f}"),
    ("checks_s", "teacher checks, later starts s", "{:.2f}"),
    ("setup_process_s", "set-up process s", "{:.1f}"),
    ("resident_rss_mb", "RSS all resident MB", "{:.0f}"), ("capped_rss_mb", "RSS capped MB", "{:.0f}"),
    ("cached_rss_mb", "RSS cache MB", "{:.0f}"),
    ("resident_step_s", "step all resident ms", "ms"), ("capped_step_s", "step capped ms", "ms"),
    ("cached_step_s", "step cache ms", "ms"), ("capped_teacher_loads", "capped loads (timed)", "{:.0f}"),
    ("cache_build_s", "cache build s", "{:.1f}"), ("cache_build_rss_mb", "cache build RSS MB", "{:.0f}"),
    ("cache_bytes", "cache MB", "bytes"),
]


def fmt(value, spec):
    if spec == "ms":
        return f"{1000 * value:.1f}"
    if spec == "bytes":
        return f"{value / 2**20:.1f}"
    return spec.format(value)


def machine() -> str:
    info = describe()
    return (f"{info['cpu']}, {info['cores']} cores, torch {info['torch']} (OMP_NUM_THREADS=1 per process), "
            f"python {info['python']}; 1-minute load average {os.getloadavg()[0]:.2f} at the end")


def columns(rows):
    """COLUMNS, with the capped step and loads of every further R the rows hold after the capped ones."""
    extra = [col for r in extra_run_batches(rows) for col in (
        (f"capped_r{r}_step_s", f"step capped R={r} ms", "ms"), (f"capped_r{r}_teacher_loads", f"capped R={r} loads (timed)", "{:.0f}"))]
    at = next(i for i, (key, _, _) in enumerate(COLUMNS) if key == "capped_teacher_loads") + 1
    return COLUMNS[:at] + extra + COLUMNS[at:]


def markdown(rows, targets, args, command: str) -> str:
    table = columns(rows)
    extra = extra_run_batches(rows)
    also = f" (capped also with runs of R = {', '.join(map(str, extra))})" if extra else ""
    lines = [f"`{command}`", "", f"machine: {machine()}", "",
             f"models: {args.layers} layers, {args.dim} dims, {args.vocab}-symbol vocabulary; {args.lines} training lines per "
             f"language, --tokens-per-sample {args.tokens_per_sample}, --batch-size {args.batch_size}, --batch-by-language "
             f"--language-run-batches {args.run_batches}{also}, capped = --max-resident-teachers {args.resident}; step = mean of "
             f"1/ups over updates {args.warmup + 1}..{args.updates}", "",
             "| " + " | ".join(h for _, h, _ in table) + " |", "|" + "---:|" * len(table)]
    lines += ["| " + " | ".join(fmt(r[k], spec) if k in r else "" for k, _, spec in table) + " |" for r in rows]
    lines += ["", "| target | value | limit | met |", "|---|---:|---:|---|"]
    lines += [f"| {t['what']}{' (' + t['note'] + ')' if t['note'] else ''} | {t['value']:.2f} | {t['limit']:.2f} | "
              f"{'yes' if t['met'] else '**no**'} |" for t in targets]
    return "\n".join(lines) + "\n"


PLOTTED = [("setup_s", "set-up"), ("checks_first_s", "teacher checks, first start"),
           ("checks_s", "teacher checks, later starts"), ("resident_rss_mb", "RSS all resident"),
           ("capped_rss_mb", "RSS capped"), ("cached_rss_mb", "RSS cache"), ("resident_step_s", "step all resident"),
           ("capped_step_s", "step capped"), ("cached_step_s", "step cache"), ("cache_build_s", "cache build time"),
           ("cache_build_rss_mb", "cache build RSS"), ("cache_bytes", "cache bytes")]


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [r["L"] for r in rows]
    plotted = PLOTTED + [(f"capped_r{r}_step_s", f"step capped R={r}") for r in extra_run_batches(rows)
                         if all(f"capped_r{r}_step_s" in row for row in rows)]
    fig, (mem, time_ax) = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    for key, label in plotted:
        ax = mem if ("rss" in key or "bytes" in key) else time_ax
        ax.plot(counts, [r[key] / rows[0][key] for r in rows], marker="o", label=label)
    for ax, title in ((mem, "memory and disk"), (time_ax, "time")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.set_xlabel("languages L (log)")
        ax.set_ylabel(f"ratio to L = {counts[0]} (log)")
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.probe:
        probe(args)
        return 0
    sys.path.insert(0, str(REPO))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        return report(json.loads(Path(args.from_json).read_text()), args, out)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/bench_scale.py " + " ".join(argv if argv is not None else sys.argv[1:])
    dictionary = make_dictionary(args.vocab)
    teacher = make_teacher(work, args, dictionary)
    rows = []
    try:
        for count in args.language_counts:
            start = time.perf_counter()
            rows.append(measure_one(args, work, count, teacher, dictionary))
            print(f"L={count}: {json.dumps(rows[-1])} ({time.perf_counter() - start:.0f} s)", flush=True)
            (out / "scale.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return report({"command": command, "rows": rows}, args, out)


def report(results: dict, args, out: Path) -> int:
    rows = sorted(results["rows"], key=lambda r: r["L"])
    command = results["command"]
    targets = evaluate_targets(rows)
    (out / "scale.json").write_text(json.dumps({"command": command, "machine": machine(), "rows": rows, "targets": targets}, indent=1))
    table = markdown(rows, targets, args, command)
    (out / "scale.md").write_text(table)
    plot(rows, out / "scale.png")
    print(table)
    for t in targets:
        print(f"target {t['target']}: {t['value']:.2f} <= {t['limit']:.2f}? {'met' if t['met'] else 'MISSED'} {t['note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
