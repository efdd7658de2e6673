"""The method at a hundred languages: the whole pipeline for N generated languages on one machine.

    python examples/scale/run.py                          # 100 languages into outputs/scale
    python examples/scale/run.py --num-languages 12 --out /tmp/scale12 --teacher-epochs 4 ...

Stages (each skipped when its output is complete, as in examples/toy/pipeline.py, whose runner,
configurations and cost helpers this reuses): balkd-synth --num-languages N -> balkd-prepare ->
balkd-train-teachers --shard I/2 (two concurrent workers) -> balkd-cache-teachers, next to the HL
student -> HL-balanced next to Ours (which reads the cache) -> balkd-eval-lm -> balkd-report
--groups-by-size -> a plot of each model's per-language MLM-PPL against the language's training size.

Teacher budgets grow with the language's size: every teacher gets the same flags, --max-epoch E
and --max-update CAP, so a language with b batches per epoch trains for min(CAP, E * b) updates;
each validates every --teacher-valid-every updates, stops after --teacher-patience validations
without improvement, and teachers.json points to its best checkpoint. The planned budgets and the
updates each teacher actually ran are written to OUT/teachers/budgets.json (and .md).

Two processes run at a time (--jobs), each single-threaded; on a 2-core machine that is every core.
"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "examples", "toy"))
import configurations as toy_configs  # noqa: E402  (the toy pipeline's model and configurations)
import cost as toy_cost  # noqa: E402  (what each model cost)
import runner  # noqa: E402  (commands, completion markers)

STUDENTS = toy_configs.PAPER_CONFIGS  # HL, HL-balanced, Ours


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(REPO, "outputs", "scale"), help="output root (default: outputs/scale)")
    p.add_argument("--fresh", action="store_true", help="delete --out first instead of resuming (finished stages are skipped otherwise)")
    p.add_argument("--num-languages", type=int, default=100, help="generated languages (default: 100)")
    p.add_argument("--high-size", type=int, default=50000, help="raw sentences of the largest language (default: 50000)")
    p.add_argument("--low-size", type=int, default=50,
                   help="raw sentences of the smallest language (default: 50, a 1000x gap); must exceed --valid-lines + --test-lines")
    p.add_argument("--valid-lines", type=int, default=10, help="validation lines per language (default: 10)")
    p.add_argument("--test-lines", type=int, default=20, help="test lines per language, scored by balkd-eval-lm (default: 20)")
    p.add_argument("--vocab", type=int, default=4000, help="shared SentencePiece vocabulary size (default: 4000)")
    p.add_argument("--embed-dim", type=int, default=64, help="model width of teachers and students (default: 64)")
    p.add_argument("--layers", type=int, default=2, help="encoder layers of teachers and students (default: 2)")
    p.add_argument("--tokens-per-sample", type=int, default=64, help="block length incl. <s> (default: 64)")
    p.add_argument("--batch-size", type=int, default=32, help="sentences (blocks) per batch (default: 32)")
    p.add_argument("--teacher-epochs", type=int, default=10,
                   help="E: a teacher trains at most E epochs of its language (default: 10)")
    p.add_argument("--teacher-max-updates", type=int, default=150,
                   help="CAP: and at most this many updates; budget = min(CAP, E x batches per epoch) (default: 150)")
    p.add_argument("--teacher-valid-every", type=int, default=25, help="teacher validation interval in updates (default: 25)")
    p.add_argument("--teacher-patience", type=int, default=2,
                   help="stop a teacher after this many validations without improvement (default: 2)")
    p.add_argument("--teacher-shards", type=int, default=8,
                   help="balkd-train-teachers --shard I/N workers, --jobs of them at a time (default: 8). --shard splits "
                        "languages by training size, which balances N workers only when a teacher's cost grows with its "
                        "size; with capped budgets more shards than cores, queued, finish together (0 = --jobs)")
    p.add_argument("--student-updates", type=int, default=600, help="updates of every student (default: 600)")
    p.add_argument("--cache-topk", type=int, default=16, help="teacher tokens cached per masked position (default: 16)")
    p.add_argument("--jobs", type=int, default=2, help="processes at a time (teacher workers, students) (default: 2)")
    p.add_argument("--seed", type=int, default=1, help="seed of data, training and evaluation masks (default: 1)")
    return p


# ------------------------------------------------------------------------------------------- running
def run_parallel(jobs: Sequence[Tuple[str, List[str], str]], at_once: int) -> Dict[str, float]:
    """Run (name, command, log) jobs, ``at_once`` at a time, single-threaded each; wall seconds per job."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    pending, running, seconds = list(jobs), {}, {}
    while pending or running:
        while pending and len(running) < at_once:
            name, cmd, log = pending.pop(0)
            os.makedirs(os.path.dirname(log), exist_ok=True)
            out = open(log, "w", encoding="utf-8")
            print(f"  started {name} (log: {log})", flush=True)
            running[name] = (subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env), out, log, time.monotonic())
        time.sleep(0.5)
        for name, (proc, out, log, start) in list(running.items()):
            if proc.poll() is None:
                continue
            out.close()
            del running[name]
            seconds[name] = time.monotonic() - start
            if proc.returncode != 0:
                for other, *_ in running.values():
                    other.terminate()
                with open(log, encoding="utf-8") as f:
                    sys.stdout.write("".join(f.readlines()[-20:]))
                raise SystemExit(f"{name} failed (exit {proc.returncode}); log: {log}")
            print(f"  finished {name} in {seconds[name]:.0f}s", flush=True)
    return seconds


def model_flags(a) -> List[str]:
    dim = a.embed_dim
    return ["--arch", "roberta_base", "--encoder-layers", str(a.layers), "--encoder-embed-dim", str(dim),
            "--encoder-ffn-embed-dim", str(2 * dim), "--encoder-attention-heads", str(max(1, dim // 32)),
            "--max-positions", str(a.tokens_per_sample), "--dropout", "0.1"]


def train_flags(a) -> List[str]:
    """The toy pipeline's optimisation flags with this run's block length and batch size."""
    flags = toy_configs.common_flags(a.seed)
    flags[flags.index("--tokens-per-sample") + 1] = str(a.tokens_per_sample)
    flags[flags.index("--batch-size") + 1] = str(a.batch_size)
    # no prefetch thread: a run stopping mid-epoch otherwise waits up to 30 s at exit for it to stop, 100 times
    return flags + ["--data-buffer-size", "0"]


# ------------------------------------------------------------------------------------------- paths
class Paths:
    def __init__(self, root: str):
        self.root = root
        self.synth, self.data = os.path.join(root, "synth"), os.path.join(root, "data")
        self.teachers, self.cache = os.path.join(root, "teachers"), os.path.join(root, "cache")
        self.checkpoints, self.results = os.path.join(root, "checkpoints"), os.path.join(root, "results")
        self.report, self.logs = os.path.join(root, "report"), os.path.join(root, "logs")

    def languages(self) -> List[str]:
        with open(os.path.join(self.synth, "languages.json"), encoding="utf-8") as f:
            return json.load(f)["languages"]

    def train_lines(self) -> Dict[str, int]:
        with open(os.path.join(self.data, "stats.json"), encoding="utf-8") as f:
            return {lang: s["train"]["lines"] for lang, s in json.load(f)["languages"].items()}


# ------------------------------------------------------------------------------------------- stages
def make_data(p: Paths, a) -> None:
    if runner.done(p.synth) and runner.done(p.data):
        print(f"data in {p.data} is complete; reused")
        return
    runner.step(f"{a.num_languages} generated languages -> {p.synth}")
    runner.run(["balkd-synth", "--out", p.synth, "--num-languages", str(a.num_languages), "--high-size", str(a.high_size),
             "--low-size", str(a.low_size), "--seed", str(a.seed), "--workers", str(a.jobs), "--quiet", "--force"])
    runner.mark_done(p.synth)
    runner.step(f"one SentencePiece vocabulary + binarized data -> {p.data}")
    runner.run(["balkd-prepare", "--raw-dir", os.path.join(p.synth, "raw"), "--out", p.data, "--vocab-size", str(a.vocab),
             "--valid-lines", str(a.valid_lines), "--test-lines", str(a.test_lines), "--seed", str(a.seed),
             "--threads", str(a.jobs), "--quiet", "--force"])
    runner.mark_done(p.data)


def train_blocks(p: Paths, tokens_per_sample: int) -> Dict[str, int]:
    """Samples per language's train split as fairseq's masked_lm cuts it: blocks of tokens_per_sample - 1 tokens
    (balkd-prepare's stats count tokens without the </s> each line ends with)."""
    with open(os.path.join(p.data, "stats.json"), encoding="utf-8") as f:
        stats = json.load(f)["languages"]
    return {lang: math.ceil((s["train"]["tokens"] + s["train"]["lines"]) / (tokens_per_sample - 1))
            for lang, s in stats.items()}


def teacher_budgets(p: Paths, a) -> Dict[str, int]:
    """Planned updates per teacher: min(CAP, E x batches per epoch)."""
    return {lang: min(a.teacher_max_updates, a.teacher_epochs * math.ceil(blocks / a.batch_size))
            for lang, blocks in train_blocks(p, a.tokens_per_sample).items()}


def train_teachers(p: Paths, a) -> dict:
    if runner.done(p.teachers):
        return runner.read_done(p.teachers)
    workers = a.jobs
    runner.step(f"{a.num_languages} teachers, budgets growing with size, {a.teacher_shards or workers} shards on "
             f"{workers} concurrent workers -> {p.teachers}")
    # validate every few updates and at the end of the last epoch (a small language stops at --max-epoch)
    validation = ["--validate-interval-updates", str(a.teacher_valid_every), "--save-interval-updates",
                  str(a.teacher_valid_every), "--keep-interval-updates", "1", "--validate-interval",
                  str(a.teacher_epochs), "--save-interval", str(a.teacher_epochs), "--patience", str(a.teacher_patience)]
    budget = ["--max-epoch", str(a.teacher_epochs), "--max-update", str(a.teacher_max_updates),
              "--total-num-update", str(a.teacher_max_updates), "--warmup-updates", str(min(10, a.teacher_max_updates // 10))]
    fairseq = [*model_flags(a), *train_flags(a), *budget, *validation]
    shards = a.teacher_shards or workers
    jobs = [(f"teachers {i}/{shards}", ["balkd-train-teachers", p.data, "--save-dir", p.teachers, "--use-checkpoint",
                                         "best", "--shard", f"{i}/{shards}", "--", *fairseq],
             os.path.join(p.logs, f"teachers_{i}.log")) for i in range(shards)]
    start = time.monotonic()
    run_parallel(jobs, workers)
    wall = time.monotonic() - start
    if not os.path.isfile(os.path.join(p.teachers, "teachers.json")):
        raise SystemExit(f"the teacher workers finished but {p.teachers}/teachers.json is missing")
    budgets = write_budgets(p, a, teacher_budgets(p, a))
    cost = {"updates": sum(b["ran"] for b in budgets.values()), "wall_seconds": round(wall, 1),
            "tokens": sum(runner.tokens_trained(os.path.join(p.teachers, lang, "train.log")) for lang in budgets)}
    runner.mark_done(p.teachers, cost)
    return cost


def teacher_run(log_path: str) -> Tuple[int, Optional[int]]:
    """(updates run, update of the best validation loss) of one teacher's fairseq-train log."""
    ran, best, best_loss = 0, None, math.inf
    with open(log_path, encoding="utf-8") as f:
        for line in f:
            updates = re.search(r"\| num_updates (\d+)", line)
            if not updates:
                continue
            ran = max(ran, int(updates.group(1)))
            loss = re.search(r"\| loss ([0-9.]+)", line)
            if " valid on " in line and loss and float(loss.group(1)) < best_loss:
                best, best_loss = int(updates.group(1)), float(loss.group(1))
    return ran, best


def write_budgets(p: Paths, a, planned: Dict[str, int]) -> Dict[str, dict]:
    lines = p.train_lines()
    budgets = {}
    for lang, plan in planned.items():
        ran, best = teacher_run(os.path.join(p.teachers, lang, "train.log"))
        budgets[lang] = {"train_lines": lines[lang], "budget": plan, "ran": ran, "best_update": best}
    with open(os.path.join(p.teachers, "budgets.json"), "w", encoding="utf-8") as f:
        json.dump(budgets, f, indent=1)
    rows = ["| language | train lines | budget (updates) | ran (early stop) | best at |", "|---|---|---|---|---|"]
    rows += [f"| {lang} | {b['train_lines']} | {b['budget']} | {b['ran']} | {b['best_update']} |"
             for lang, b in sorted(budgets.items(), key=lambda kv: -kv[1]["train_lines"])]
    with open(os.path.join(p.teachers, "budgets.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")
    return budgets


def balanced_epochs(p: Paths, a) -> int:
    """Epochs of the subsampled train split (every language the smallest one's samples) in the student's updates."""
    blocks = list(train_blocks(p, a.tokens_per_sample).values())
    batches = math.ceil(min(blocks) * len(blocks) / a.batch_size)
    return math.ceil(a.student_updates / batches)


def student_flags(p: Paths, a, name: str) -> List[str]:
    """Task, model and optimisation flags of a student; the cache is built from Ours' (same masks and draw)."""
    flags = [f.replace("{teachers}", os.path.join(p.teachers, "teachers.json")) for f in toy_configs.CONFIGS[name]]
    epochs = ["--max-epoch", str(balanced_epochs(p, a))] if "subsample" in flags else []
    return [p.data, "--task", "balanced_distill", *flags, *model_flags(a), *train_flags(a),
            *toy_configs.schedule(a.student_updates), *epochs, "--disable-validation"]


def student_job(p: Paths, a, name: str) -> Tuple[str, List[str], str]:
    # Ours reads its teachers' soft labels from the cache (the teachers' files are still checked against it)
    cached = ["--teacher-cache", p.cache] if "{teachers}" in toy_configs.CONFIGS[name] else []
    cmd = ["balkd-train", *student_flags(p, a, name), *cached, "--save-interval", "1000000",
           "--save-dir", os.path.join(p.checkpoints, name)]
    return name, cmd, os.path.join(p.checkpoints, f"{name}.log")


def cache_job(p: Paths, a) -> Tuple[str, List[str], str]:
    cmd = ["balkd-cache-teachers", *student_flags(p, a, "Ours"), "--cache-dir", p.cache, "--cache-topk",
           str(a.cache_topk), "--overwrite"]
    return "cache", cmd, os.path.join(p.logs, "cache.log")


def train_students(p: Paths, a) -> Dict[str, dict]:
    """Cache next to HL, then HL-balanced next to Ours: two processes at a time."""
    costs = {}
    rounds = [[("cache", cache_job(p, a), os.path.join(p.logs, "cache.stage")), ("HL", student_job(p, a, "HL"), os.path.join(p.checkpoints, "HL"))],
              [(name, student_job(p, a, name), os.path.join(p.checkpoints, name)) for name in ("HL-balanced", "Ours")]]
    for jobs in rounds:
        todo = [(job, marker) for name, job, marker in jobs if not runner.done(marker)]
        for _, marker in todo:
            shutil.rmtree(marker, ignore_errors=True)  # an unfinished run of this script's own: start it again
        if todo:
            runner.step(f"{' and '.join(job[0] for job, _ in todo)}, {a.jobs} at a time")
            seconds = run_parallel([job for job, _ in todo], a.jobs)
            for job, marker in todo:
                info = {"wall_seconds": round(seconds[job[0]], 1)}
                if job[0] != "cache":
                    info.update(updates=a.student_updates, tokens=runner.tokens_trained(job[2]))
                runner.mark_done(marker, info)
        costs.update({name: runner.read_done(marker) for name, _, marker in jobs})
    return costs


def evaluate(p: Paths, a) -> None:
    """balkd-eval-lm on the test split, the models split over --jobs processes (a process start costs seconds)."""
    todo = [name for name in STUDENTS if not runner.done(os.path.join(p.results, name))]
    groups = [todo[i::a.jobs] for i in range(a.jobs) if todo[i::a.jobs]]
    jobs = [(f"eval {','.join(group)}",
             ["balkd-eval-lm", *[f"--checkpoint={name}={os.path.join(p.checkpoints, name, 'checkpoint_last.pt')}"
                                 for name in group],
              "--data", p.data, "--split", "test", "--tokens-per-sample", str(a.tokens_per_sample), "--seed",
              str(a.seed), "--output-dir", p.results, "--cpu"], os.path.join(p.logs, f"eval_{'_'.join(group)}.log"))
            for group in groups]
    if jobs:
        runner.step(f"masked-LM scores per language of {', '.join(todo)} -> {p.results}")
        run_parallel(jobs, a.jobs)
        for name in todo:
            runner.mark_done(os.path.join(p.results, name))


def report(p: Paths) -> None:
    runner.step(f"report, languages grouped by training size -> {p.report}")
    models = [f"--model={name}={os.path.join(p.results, name)}" for name in STUDENTS]
    runner.run(["balkd-report", *models, "--compare=Ours:HL,HL-balanced", "--groups-by-size", "--sizes",
             os.path.join(p.data, "stats.json"), "--output-dir", p.report])


def plot_per_language(p: Paths, out_png: str) -> None:
    """Each model's MLM-PPL per language against the language's training lines (log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lines = p.train_lines()
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, marker in zip(STUDENTS, "o^s"):
        with open(os.path.join(p.results, name, "lm.json"), encoding="utf-8") as f:
            scores = json.load(f)["languages"]
        langs = sorted(scores, key=lambda lang: lines[lang])
        sizes, ppl = np.array([lines[lang] for lang in langs]), np.array([scores[lang]["mlm_ppl"] for lang in langs])
        dots = ax.scatter(sizes, ppl, marker=marker, s=16, alpha=0.5, label=name)
        # the trend: geometric mean over a sliding window of neighbours in size
        half = max(1, len(langs) // 20)
        trend = [math.exp(np.log(ppl[max(0, i - half):i + half + 1]).mean()) for i in range(len(langs))]
        ax.plot(sizes, trend, color=dots.get_facecolor()[0][:3], linewidth=2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training lines of the language (log)")
    ax.set_ylabel("masked-LM perplexity on its test split (mlm_ppl, log; lower is better)")
    ax.set_title(f"{len(lines)} generated languages: MLM-PPL per language (line: running geometric mean)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    partial = out_png + ".tmp.png"
    fig.savefig(partial, dpi=110)
    plt.close(fig)
    os.replace(partial, out_png)


NOT_SETTINGS = ("out", "fresh", "jobs", "teacher_shards")  # where and how fast: the results do not depend on them


def check_same_settings(root: str, a: argparse.Namespace, anything_finished: bool) -> None:
    """Finished stages are reused, so a rerun into the same --out must have the settings they were made with
    (a first run that failed before finishing a stage may be rerun with others)."""
    path = os.path.join(root, "settings.json")
    settings = {name: value for name, value in sorted(vars(a).items()) if name not in NOT_SETTINGS}
    if not os.path.isfile(path) or not anything_finished:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(settings, f, indent=1)
        return
    with open(path, encoding="utf-8") as f:
        recorded = json.load(f)
    changed = [f"--{name.replace('_', '-')} {recorded.get(name)} -> {value}" for name, value in settings.items()
               if recorded.get(name) != value]
    if changed:
        raise SystemExit(f"examples/scale/run.py: {root} was made with other settings ({'; '.join(changed)}) and its "
                         "finished stages would be reused: use another --out, or --fresh to start over")


def main(argv: Optional[List[str]] = None) -> int:
    a = build_parser().parse_args(argv)
    if a.low_size <= a.valid_lines + a.test_lines:
        raise SystemExit("--low-size must exceed --valid-lines + --test-lines: the smallest language needs train lines")
    if a.fresh:
        shutil.rmtree(a.out, ignore_errors=True)
    p = Paths(os.path.abspath(a.out))
    os.makedirs(p.root, exist_ok=True)
    check_same_settings(p.root, a, anything_finished=runner.done(p.synth))
    start = time.monotonic()
    make_data(p, a)
    teachers = train_teachers(p, a)
    students = train_students(p, a)
    evaluate(p, a)
    report(p)
    plot_per_language(p, os.path.join(p.report, "per_language_mlm_ppl.png"))
    costs = {name: toy_cost.model_cost(students[name], teachers if name == "Ours" else None) for name in STUDENTS}
    toy_cost.write_cost({name: [each] for name, each in costs.items()}, os.path.join(p.report, "cost.md"))
    with open(os.path.join(p.report, "stages.json"), "w", encoding="utf-8") as f:
        json.dump({"teachers": teachers, **students, "total_wall_seconds": round(time.monotonic() - start, 1)}, f, indent=1)
    print(f"\nDone in {(time.monotonic() - start) / 60:.1f} min.\n  table:  {p.report}/report.md\n"
          f"  plot:   {p.report}/per_language_mlm_ppl.png\n  budgets: {p.teachers}/budgets.md\n  cost:   {p.report}/cost.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
