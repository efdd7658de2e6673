"""The embedded benchmark's pipeline: one run (`make demo`) or a sweep over seeds x presets x configurations.

    python examples/toy/pipeline.py demo                       # what `make demo` runs (OUT is rebuilt)
    python examples/toy/pipeline.py sweep --seeds 1,2,3 --presets shared,diverse --configs HL,HL-balanced,Ours

Stages: balkd-synth -> balkd-prepare -> balkd-train-teachers -> students -> balkd-eval-lm -> balkd-probe
-> balkd-report. A seed varies the training only (initialisation, training masks, the balanced draw,
teachers); the benchmark (synthetic data, vocabulary, evaluation masks) of a preset comes from the
data seed (``DATA_SEED``, or each of the sweep's ``--data-seeds``) and is the same for every seed, so
every run on it is scored on the same test items.

The sweep reuses what configurations share (a preset's data; a seed's teachers), skips every stage
whose output is complete (a ``.done`` marker written last), and writes one report per preset with
all configurations side by side, plus ``cost.md``: what each model cost (teacher and student
updates, tokens, wall time). A step that fails costs only the steps that need it: the others go on, the
reports show what finished, and the sweep exits non-zero naming the failed steps. A report directory keeps
what it covers (``runs.json``); a sweep of other configurations or seeds into it is refused (another
``--report-name``, or ``--replace-report``). The settings, model and named configurations are in
``configurations.py`` (environment variables named like the settings, upper case, e.g.
``STUDENT_UPDATES=250``, override them); running commands and jobs is ``runner.py``.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple

from balkd_fairseq.eval.word_pooling import WORD_POOLINGS

# the sibling modules, however this file is loaded (a script, or by path in the tests)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle_teachers as oracle  # noqa: E402
from configurations import (  # noqa: E402
    CACHE_TOPK,
    CONFIGS,
    CONTROL,
    MODEL,
    NO_VALIDATION,
    PAPER_CONFIGS,
    PRESET_GROUPS,
    REPO,
    TEACHER_SETS,
    Settings,
    check_settings,
    common_flags,
    schedule,
    settings_from_env,
)
from cost import model_cost, total_cost, write_cost  # noqa: E402
from report_record import REPORT_RECORD, check_report_dir, report_covers, write_record  # noqa: E402,F401
from runner import (  # noqa: E402
    Job,
    Outcome,
    StepFailed,
    done,
    failure_summary,
    finished,
    mark_done,
    read_done,
    run,
    run_jobs,
    step,
    tokens_trained,
)

from balkd_fairseq.errors import BalkdError  # noqa: E402
from balkd_fairseq.locks import LOCK_NAME, held_lock  # noqa: E402

DEFAULT_DEMO_OUT = os.path.join(REPO, "outputs", "toy")
DEMO_MARKER = ".made-by-toy-demo"  # the demo replaces only a directory it made

# ------------------------------------------------------------------------------------------- stages
@dataclass
class Layout:
    """Where a (preset, data seed, seed) run keeps its outputs; the benchmark is shared by all seeds of a preset
    and data seed. Data seed 1's are OUT/<preset>/{benchmark,seed<S>}; another's OUT/<preset>/{benchmark-data<D>,
    data<D>-seed<S>}."""

    root: str
    preset: str
    seed: int
    single_run: bool = False  # the demo: everything directly under root
    data_seed: int = 1
    bench: str = field(init=False)
    run: str = field(init=False)

    def __post_init__(self):
        data = "" if self.data_seed == 1 else f"data{self.data_seed}"
        self.bench = self.root if self.single_run else os.path.join(self.root, self.preset, "-".join(
            ["benchmark"] + ([data] if data else [])))
        self.run = self.root if self.single_run else os.path.join(self.root, self.preset, "-".join(
            ([data] if data else []) + [f"seed{self.seed}"]))

    synth = property(lambda self: os.path.join(self.bench, "synth"))
    data = property(lambda self: os.path.join(self.bench, "data"))
    teachers = property(lambda self: os.path.join(self.run, "teachers"))
    teachers_init = property(lambda self: os.path.join(self.run, "teachers_init"))  # --init-from the HL-balanced student
    teachers_oracle = property(lambda self: os.path.join(self.run, "teachers_oracle"))  # oracle_teachers.py
    oracle_bench = property(lambda self: os.path.join(self.root, "benchmark-oracle") if self.single_run
                            else self.bench + "-oracle")
    cache = property(lambda self: os.path.join(self.run, "teacher_cache"))  # balkd-cache-teachers of the teachers
    checkpoints = property(lambda self: os.path.join(self.run, "checkpoints"))
    results = property(lambda self: os.path.join(self.run, "results"))

    def job(self, step: str, of_benchmark: bool = False) -> str:
        """A step's job name: in a sweep, after the run (or benchmark) it belongs to, so that the jobs of every run
        can share one schedule and a failure names where it happened."""
        where = "" if self.single_run else os.path.relpath(self.bench if of_benchmark else self.run, self.root) + ": "
        return where + step

    def results_for(self, s: "Settings") -> str:
        """Where the report reads this run's results: the few-shot or other-pooling probes' directory when the sweep
        makes them."""
        return self.results + "".join(probe_variant_suffix(s))


def probe_variant_suffix(s: Settings) -> List[str]:
    """The parts of a results directory's name that say how its probes differ from the benchmark's (none: the same)."""
    return ([f"-probe{s.probe_train_sentences}"] if s.probe_train_sentences else []) + (
        [f"-{s.probe_pooling}"] if s.probe_pooling != "first" else [])


def make_benchmark(layout: Layout, s: Settings) -> None:
    if done(layout.synth) and done(layout.data):
        print(f"benchmark {layout.bench} is complete; reused")
        return
    step(f"synthetic benchmark ({layout.preset} preset, data seed {layout.data_seed}) -> {layout.synth}")
    run(synth_command(layout.synth, layout, s))
    mark_done(layout.synth)
    step(f"one SentencePiece vocabulary + binarized data -> {layout.data}")
    run(["balkd-prepare", "--raw-dir", os.path.join(layout.synth, "raw"), "--out", layout.data, "--vocab-size",
         str(s.vocab), "--valid-lines", str(s.eval_lines), "--test-lines", str(s.eval_lines), "--seed",
         str(layout.data_seed), "--quiet", "--force"])
    mark_done(layout.data)


def synth_command(out: str, layout: Layout, s: Settings, sizes: str = "") -> List[str]:
    return ["balkd-synth", "--out", out, "--preset", layout.preset, "--seed", str(layout.data_seed), "--high-size",
            str(s.high_size),
            "--low-size", str(s.low_size), *(["--sizes", sizes] if sizes else []), "--probe-train", str(s.probe_train),
            "--probe-test", str(s.probe_test), "--quiet", "--force"]


def train_teachers(layout: Layout, s: Settings, init_from: str = "", shard: str = "", data: str = "",
                   save_dir: str = "") -> dict:
    """balkd-train-teachers (itself resumable and skipping complete teachers); its cost.

    With ``init_from`` the teachers start from that checkpoint and go to ``layout.teachers_init``. With
    ``shard`` (``I/N``) only that worker's languages train (``--shard``, its output in ``shard-I.log``): the
    shards of the demo's lanes run side by side, and a call without ``shard`` then finds every teacher
    complete, writes teachers.json and counts the shards' time. ``data`` and ``save_dir`` replace the benchmark's
    data and the teachers' directory (the oracle teachers)."""
    save_dir = save_dir or (layout.teachers_init if init_from else layout.teachers)
    if done(save_dir):
        return read_done(save_dir)
    validation = ["--validate-interval-updates", str(s.teacher_valid_every), "--save-interval-updates",
                  str(s.teacher_valid_every), "--keep-interval-updates", "1", "--validate-interval", "1000000",
                  "--save-interval", "1000000"]
    init = ["--init-from", init_from] if init_from else []
    command = ["balkd-train-teachers", data or layout.data, "--save-dir", save_dir, "--use-checkpoint", "best", *init,
               *(["--shard", shard] if shard else []), "--",
               *MODEL, *common_flags(layout.seed), *schedule(s.teacher_updates), *validation]
    if shard:
        step(f"teachers of shard {shard} -> {save_dir} (log: {save_dir}/shard-{shard.split('/')[0]}.log)")
        index = shard.split("/")[0]
        seconds = run(command, log=os.path.join(save_dir, f"shard-{index}.log"))
        with open(os.path.join(save_dir, f"shard-{index}.json"), "w", encoding="utf-8") as f:
            json.dump({"wall_seconds": round(seconds, 1)}, f)
        return {"wall_seconds": round(seconds, 1)}
    step(f"monolingual teachers on all of each language's data{' from ' + init_from if init_from else ''} -> {save_dir}")
    seconds = run(command)
    logs = [os.path.join(save_dir, d, "train.log") for d in sorted(os.listdir(save_dir))
            if os.path.isfile(os.path.join(save_dir, d, "train.log"))]
    cost = {"updates": s.teacher_updates * len(logs), "tokens": sum(tokens_trained(log) for log in logs),
            "wall_seconds": round(seconds + shard_seconds(save_dir), 1), "teachers": len(logs)}
    mark_done(save_dir, cost)
    return cost


def oracle_data(layout: Layout, s: Settings) -> str:
    """The low-resource languages' oracle text (ORACLE_FACTOR times theirs), encoded like the benchmark."""
    data = os.path.join(layout.oracle_bench, "data")
    if done(data):
        return data
    with open(os.path.join(layout.synth, "languages.json"), encoding="utf-8") as f:
        low_resource = json.load(f)["low_resource"]
    synth = os.path.join(layout.oracle_bench, "synth")
    step(f"oracle text: {', '.join(low_resource)} at {oracle.ORACLE_FACTOR} x {s.low_size} sentences -> {layout.oracle_bench}")
    run(synth_command(synth, layout, s, ",".join(f"{lang}={oracle.ORACLE_FACTOR * s.low_size}" for lang in low_resource)))
    stats = oracle.build_oracle_data(layout.synth, layout.data, synth, low_resource, data)
    print(f"  {json.dumps(stats)}", flush=True)
    mark_done(data, stats)
    return data


def train_oracle_teachers(layout: Layout, s: Settings) -> dict:
    """Oracle teachers for the low-resource languages; the run's teachers.json with them in place; their cost."""
    cost = train_teachers(layout, s, data=oracle_data(layout, s), save_dir=layout.teachers_oracle)
    merged = os.path.join(layout.teachers_oracle, "teachers-with-oracle.json")
    if not os.path.exists(merged):
        oracle.merged_manifest(os.path.join(layout.teachers, "teachers.json"),
                                        os.path.join(layout.teachers_oracle, "teachers.json"), merged)
    return cost


def shard_seconds(save_dir: str) -> float:
    """Elapsed time of the teacher shards that ran side by side before this call: the longest of them."""
    spans = []
    for name in sorted(os.listdir(save_dir)) if os.path.isdir(save_dir) else []:
        if re.fullmatch(r"shard-\d+\.json", name):
            with open(os.path.join(save_dir, name), encoding="utf-8") as f:
                spans.append(float(json.load(f)["wall_seconds"]))
    return max(spans, default=0.0)


def hl_balanced_checkpoint(layout: Layout) -> str:
    return os.path.join(layout.checkpoints, "HL-balanced", "checkpoint_last.pt")


def student_flags(layout: Layout, name: str) -> List[str]:
    places = {"{teachers}": os.path.join(layout.teachers, "teachers.json"),
              "{teachers_init}": os.path.join(layout.teachers_init, "teachers.json"),
              "{teachers_oracle}": os.path.join(layout.teachers_oracle, "teachers-with-oracle.json"),
              "{hl_balanced}": hl_balanced_checkpoint(layout), "{cache}": os.path.join(layout.cache, "cache"),
              "{ours_fallback}": os.path.join(layout.checkpoints, "Ours+fallback", "checkpoint_last.pt")}
    flags = [places.get(flag, flag) for flag in CONFIGS[name]]
    if "{cache}" in CONFIGS[name]:  # the cache holds a fixed number of epochs: the student's must match
        flags += ["--max-epoch", str(cache_epochs(layout))]
    return flags


def cache_epochs(layout: Layout) -> int:
    """Epochs the student's updates span, from the HL-balanced student's log (same balancing, same batches)."""
    with open(os.path.join(layout.checkpoints, "HL-balanced.log"), encoding="utf-8") as f:
        epochs = [int(m.group(1)) for m in re.finditer(r"begin training epoch (\d+)", f.read())]
    return max(epochs)


def give_dictionary(layout: Layout, student: str) -> None:
    """A student serving as a teacher needs its dict.txt beside it; training writes it there, but a student
    reused from a sweep of before that has none."""
    target = os.path.join(layout.checkpoints, student, "dict.txt")
    if not os.path.exists(target):
        shutil.copyfile(os.path.join(layout.data, "dict.txt"), target)


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


def teachers_of(layout: Layout, s: Settings, name: str) -> Optional[dict]:
    """What a configuration's soft labels cost before its student trains (teachers, and the HL-balanced
    student a lever starts from or falls back to), training what is not there yet; None for hard labels."""
    flags = CONFIGS[name]
    if not any(p in flags for p in TEACHER_SETS):
        return None
    if "{ours_fallback}" in flags:  # the first generation and everything it took
        parts = [teachers_of(layout, s, "Ours+fallback"), train_student(layout, s, "Ours+fallback")]
        give_dictionary(layout, "Ours+fallback")
        return total_cost(parts)
    parts = []
    if {"{hl_balanced}", "{teachers_init}", "{cache}"} & set(flags):
        hl_balanced = train_student(layout, s, "HL-balanced")
        if "{cache}" not in flags:  # the cache only reads how many epochs the balanced student spans: no cost of it
            parts.append(hl_balanced)
    if "{hl_balanced}" in flags:
        give_dictionary(layout, "HL-balanced")
    parts.append(train_teachers(layout, s, init_from=hl_balanced_checkpoint(layout)) if "{teachers_init}" in flags
                 else train_teachers(layout, s))
    if "{teachers_oracle}" in flags:  # the run's own teachers serve the other languages
        parts.append(train_oracle_teachers(layout, s))
    if "{cache}" in flags:
        parts.append(build_cache(layout, s, name))
    return total_cost(parts)


def build_cache(layout: Layout, s: Settings, name: str) -> dict:
    """balkd-cache-teachers with the student's own command line (minus the criterion's options); its cost."""
    if done(layout.cache):
        return read_done(layout.cache)
    flags = student_flags(layout, name)
    flags = [f for i, f in enumerate(flags) if f not in ("--teacher-cache", "--topk")
             and flags[i - 1] not in ("--teacher-cache", "--topk", "--criterion") and f != "--criterion"]
    step(f"teacher cache (top-{CACHE_TOPK}) of {layout.teachers} -> {layout.cache}")
    shutil.rmtree(layout.cache, ignore_errors=True)
    seconds = run(["balkd-cache-teachers", layout.data, "--task", "balanced_distill", *flags, *MODEL, *common_flags(layout.seed),
                   *schedule(s.student_updates), "--cache-dir", os.path.join(layout.cache, "cache"), "--cache-topk",
                   CACHE_TOPK], log=os.path.join(layout.cache, "cache.log"))
    cost = {"updates": 0, "tokens": 0, "wall_seconds": round(seconds, 1)}
    mark_done(layout.cache, cost)
    return cost


def train_student(layout: Layout, s: Settings, name: str) -> dict:
    save_dir = os.path.join(layout.checkpoints, name)
    flags = student_flags(layout, name)
    made_with = {"flags": flags}
    earlier = finished(save_dir, made_with, f"student {name}")
    if earlier is not None:
        return earlier
    log = os.path.join(layout.checkpoints, f"{name}.log")
    step(f"student {name} -> {save_dir} (log: {log})")
    refuse_live_run(save_dir)
    shutil.rmtree(save_dir, ignore_errors=True)  # an unfinished run of the pipeline's own: start it again
    tensorboard = os.path.join(layout.run, "tensorboard", name)
    validation = (["--validate-interval", str(s.student_valid_every), "--save-interval", str(s.student_valid_every)]
                  if s.student_validation else NO_VALIDATION)
    seconds = run(["balkd-train", layout.data, "--task", "balanced_distill", *flags, *MODEL, *common_flags(layout.seed),
                   *schedule(s.student_updates), *validation, "--save-dir", save_dir, "--tensorboard-logdir", tensorboard],
                  log=log, progress_total=s.student_updates, label=f"{name}: " if s.lanes > 1 else "")
    cost = {"updates": s.student_updates, "tokens": tokens_trained(log), "wall_seconds": round(seconds, 1)}
    mark_done(save_dir, {**cost, "made_with": made_with})
    return cost


def refuse_live_run(save_dir: str) -> None:
    """An unfinished run whose balkd-train still runs (its pipeline was killed with kill -9, which its children
    survive) must not lose its directory, lock included, to a new run that would then share it."""
    lock = os.path.join(save_dir, LOCK_NAME)
    if not os.path.isfile(lock):
        return
    try:
        with held_lock(lock, f"--save-dir {save_dir}"):
            pass
    except BalkdError as err:
        raise SystemExit(f"pipeline.py: error: {err} (an earlier pipeline killed while it ran leaves it running: "
                         "stop that process first)") from None


def languages(layout: Layout) -> str:
    with open(os.path.join(layout.synth, "languages.json"), encoding="utf-8") as f:
        return ",".join(json.load(f)["languages"])


def evaluate(layout: Layout, s: Settings, name: str) -> None:
    checkpoint = os.path.join(layout.checkpoints, name, "checkpoint_last.pt")
    evaluate_whole(layout, s, name, checkpoint)
    if probe_variant_suffix(s):
        probe_variant(layout, s, name, checkpoint)


def evaluate_whole(layout: Layout, s: Settings, name: str, checkpoint: str) -> None:
    out = os.path.join(layout.results, name)
    if done(out):
        return
    step(f"evaluate {name}: masked LM per language and POS/NER probes")
    # evaluation masks and probe data come from the data seed: identical for every run of the preset
    run(["balkd-eval-lm", "--checkpoint", f"{name}={checkpoint}", "--data", layout.data, "--languages",
         languages(layout), "--split", "test", "--tokens-per-sample", "64", "--seed", str(layout.data_seed), "--pppl",
         "--output-dir", layout.results, "--cpu"])
    run(["balkd-probe", "--checkpoint", f"{name}={checkpoint}", "--data", layout.data, "--languages", languages(layout),
         "--probe-dir", layout.synth, "--seed", str(layout.data_seed), "--output-dir", layout.results, "--cpu"])
    mark_done(out)


def evaluate_control(layout: Layout, s: Settings) -> None:
    """The POS/NER probes on the HL-balanced student's architecture with fresh weights, seeded by the run's seed."""
    control = ["--random-init", str(layout.seed)]
    out = os.path.join(layout.results, CONTROL)
    if not done(out):
        step(f"evaluate {CONTROL}: POS/NER probes on the untrained architecture (the probes' control)")
        run(["balkd-probe", "--checkpoint", f"{CONTROL}={hl_balanced_checkpoint(layout)}", *control, "--data", layout.data,
             "--languages", languages(layout), "--probe-dir", layout.synth, "--seed", str(layout.data_seed),
             "--output-dir", layout.results, "--cpu"])
        mark_done(out)
    if probe_variant_suffix(s):
        probe_variant(layout, s, CONTROL, hl_balanced_checkpoint(layout), control)


def probe_variant(layout: Layout, s: Settings, name: str, checkpoint: str, extra: Tuple[str, ...] = ()) -> None:
    """balkd-probe with the sweep's few-shot size (--train-sentences N) and word pooling into their own results,
    beside links to the model's LM scores (the report reads a model's LM and probing results from one directory)."""
    root = layout.results_for(s)
    out = os.path.join(root, name)
    if done(out):
        return
    variant = (["--train-sentences", str(s.probe_train_sentences)] if s.probe_train_sentences else []) + (
        ["--word-pooling", s.probe_pooling] if s.probe_pooling != "first" else [])
    step(f"evaluate {name}: POS/NER probes with {' '.join(variant)}")
    run(["balkd-probe", "--checkpoint", f"{name}={checkpoint}", *extra, "--data", layout.data, "--languages",
         languages(layout), "--probe-dir", layout.synth, "--seed", str(layout.data_seed), *variant,
         "--output-dir", root, "--cpu"])
    os.makedirs(out, exist_ok=True)
    for lm_file in ("lm.json", "lm_items.npz"):
        whole = os.path.join(layout.results, name, lm_file)
        if os.path.exists(whole) and not os.path.lexists(os.path.join(out, lm_file)):
            os.symlink(os.path.relpath(whole, out), os.path.join(out, lm_file))
    mark_done(out)


def with_control(configs: List[str]) -> List[str]:
    return [*configs, CONTROL] if "HL-balanced" in configs else list(configs)


def distills(name: str) -> bool:
    return bool(set(TEACHER_SETS) & set(CONFIGS[name]))


def report(s: Settings, preset: str, layouts: List[Layout], configs: List[str], out: str,
           against_control: bool = False, shown: Optional[List[str]] = None) -> None:
    """The preset's report of ``layouts`` (runs every model in it finished); with ``against_control``, also every
    model against the untrained control in OUT/control. ``shown``: the models to report (default: ``configs`` and
    the control)."""
    shown = shown if shown is not None else with_control(configs)
    step(f"report ({preset}: {len(layouts)} seed(s) x {len(configs)} configuration(s)) -> {out}")
    groups = PRESET_GROUPS[preset]
    group_flags = ["--low", *groups["low"].split(), "--high", *groups["high"].split(), "--single", groups["single"]]
    models = [f"--model={name}={os.path.join(layout.results_for(s), name)}" for name in shown for layout in layouts]
    if len({layout.data_seed for layout in layouts}) > 1:  # each data seed is a benchmark: a level of its own
        group_flags.append("--across-benchmarks")
    students = [name for name in shown if name != CONTROL and distills(name)]
    baselines = [name for name in shown if name != CONTROL and not distills(name)]  # the control is never compared
    compare = [f"--compare={name}:{','.join(baselines)}" for name in students] if baselines else []
    run(["balkd-report", *models, *compare, *group_flags, "--output-dir", out])
    if against_control and CONTROL in shown:  # what pretraining adds above an untrained encoder
        against = [name for name in shown if name != CONTROL]
        run(["balkd-report", *models, *[f"--compare={name}:{CONTROL}" for name in against], *group_flags, "--no-plot",
             "--output-dir", os.path.join(out, "control")])


def common_runs(layouts: List[Layout], runs: Dict[str, List[Layout]]) -> Tuple[List[str], List[Layout]]:
    """The models with a finished run, and the runs every one of them finished. A report's table averages each
    model over its runs, so after a failure a model with fewer runs would stand beside means over other seeds
    (or, with several data seeds, other test data): the report keeps to the runs they share."""
    shown = [name for name, finished_runs in runs.items() if finished_runs]
    return shown, [layout for layout in layouts if all(layout in runs[name] for name in shown)]


def export_and_query(layout: Layout, name: str) -> None:
    """balkd-export of one student, then one fill-mask query per format, each in a process without the plugin."""
    out = os.path.join(layout.run, "export")
    step(f"export {name} -> {out} (fairseq and Hugging Face folders, model card) and one fill-mask query each")
    run(["balkd-export", os.path.join(layout.checkpoints, name, "checkpoint_last.pt"), "--data", layout.data,
         "--results", os.path.join(layout.results, name), "--out", out, "--force"])
    with open(os.path.join(layout.synth, "raw", f"{PRESET_GROUPS[layout.preset]['single']}.txt"), encoding="utf-8") as f:
        words = f.readline().split()
    query = " ".join(words[:5] + ["<mask>"])  # short enough for the toy model's 64 positions
    print(f"  query:        {query}", flush=True)
    fairseq_query = ("import logging, sys; logging.disable(logging.INFO); "
                     "from fairseq.models.roberta import RobertaModel; d, q = sys.argv[1:]; "
                     "m = RobertaModel.from_pretrained(d, 'model.pt', bpe='sentencepiece', sentencepiece_model=d + '/spm.model'); "
                     "print('  fairseq:      ' + m.eval().fill_mask(q, topk=1)[0][0])")
    hf_query = ("import sys; from transformers import pipeline; d, q = sys.argv[1:]; "
                "print('  transformers: ' + pipeline('fill-mask', model=d)(q, top_k=1)[0]['sequence'])")
    subprocess.run([sys.executable, "-c", fairseq_query, os.path.join(out, "fairseq"), query], check=True)
    subprocess.run([sys.executable, "-c", hf_query, os.path.join(out, "hf"), query], check=True,
                   env=dict(os.environ, HF_HUB_OFFLINE="1"))


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


def trained(layout: Layout, s: Settings, name: str) -> dict:
    """A configuration's student, after its teachers (which its jobs before have made): its cost, theirs included."""
    teacher_cost = teachers_of(layout, s, name)
    return model_cost(train_student(layout, s, name), teacher_cost)


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
    report_dir = report_dir_of(s, preset, report_name, single_run)
    shown, common = common_runs(layouts, runs)
    if not common:
        print(f"  {preset}: no run that every model finished; no report", flush=True)
        return outcome
    left_out = [layout.job(name) for name in shown for layout in runs[name] if layout not in common]
    if left_out:
        print(f"  {preset}: the report keeps to the runs every model finished; left out: {', '.join(left_out)}",
              flush=True)
    os.makedirs(report_dir, exist_ok=True)
    write_record(report_dir, report_covers(s, configs, seeds, data_seeds),  # first: the directory is ours now
                 missing=[layout.job(name) for name in with_control(configs) for layout in layouts
                          if layout not in runs[name]], left_out=left_out)
    try:
        report(s, preset, common, [name for name in configs if name in shown], report_dir,
               against_control=not single_run, shown=shown)
    except StepFailed as failure:
        outcome.failed[f"{preset}: report"] = str(failure)
    write_cost({name: [outcome.results[layout.job(name)] for layout in common] for name in configs if name in shown},
               os.path.join(report_dir, "cost.md"))
    return outcome


# ------------------------------------------------------------------------------------------- commands
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="one run of the three paper models (what `make demo` runs); OUT is rebuilt")
    demo.add_argument("--preset", default=os.environ.get("PRESET", "shared"), choices=sorted(PRESET_GROUPS))
    demo.add_argument("--seed", type=int, default=int(os.environ.get("SEED", "1")),
                      help="training seed; the benchmark uses the same seed in the demo (default: 1)")
    sweep = sub.add_parser("sweep", help="seeds x presets x configurations; reuses and skips finished work")
    sweep.add_argument("--seeds", default="1,2,3", help="comma-separated training seeds (default: 1,2,3)")
    sweep.add_argument("--presets", default="shared,diverse", help="comma-separated presets (default: shared,diverse)")
    sweep.add_argument("--data-seeds", default=None, metavar="D1,D2",
                       help="comma-separated data seeds: each is another benchmark of the preset (synthetic data, "
                       "vocabulary, evaluation masks and probe data), in OUT/<preset>/benchmark-data<D>/ with its runs in "
                       "OUT/<preset>/data<D>-seed<S>/ (data seed 1: benchmark/ and seed<S>/). With several, the report "
                       "treats each as a level of its own (balkd-report --across-benchmarks): intervals resample data "
                       "seeds, then training seeds, then test items (default: $DATA_SEED or 1)")
    sweep.add_argument("--configs", default=",".join(PAPER_CONFIGS),
                       help=f"comma-separated configurations out of {', '.join(CONFIGS)} (default: the paper's three)")
    sweep.add_argument("--report-name", default=None,
                       help="the report's directory under OUT/<preset>/ (default: report, or report-probeN with "
                            "--probe-train-sentences N); e.g. 'screen' for a one-seed screening of every configuration "
                            "beside the 3-seed report of the finalists")
    sweep.add_argument("--replace-report", action="store_true",
                       help="replace the report under --report-name even when it was made from other configurations, "
                            "seeds or probes (otherwise refused, so that an earlier comparison is not lost)")
    sweep.add_argument("--probe-train-sentences", type=int, default=None, metavar="N", help="also probe every run with probes trained on the first N sentences of each "
                       "language (balkd-probe --train-sentences), into OUT/<preset>/seed<S>/results-probeN/, and report "
                       "those (the LM scores stay the whole evaluation's); 0: whole splits only (default: $PROBE_TRAIN_SENTENCES or 0)")
    sweep.add_argument("--probe-pooling", choices=list(WORD_POOLINGS), default=None,
                       help="the probes' word features (balkd-probe --word-pooling); other than 'first', every run is "
                            "probed again into OUT/<preset>/seed<S>/results[-probeN]-<pooling>/ and those are reported "
                            "(default: $PROBE_POOLING or first)")
    for p in (demo, sweep):
        p.add_argument("--out", default=None, help="output root (default: outputs/toy for demo, outputs/sweep for sweep)")
    return parser


def seed_list(value: str, flag: str) -> List[int]:
    """``'1,2,3'`` -> [1, 2, 3]: distinct non-negative integers, at least one."""
    try:
        seeds = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"pipeline.py: error: {flag} takes comma-separated integers, got {value!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise SystemExit(f"pipeline.py: error: {flag} takes distinct non-negative integers, got {value!r}")
    return seeds


def name_list(value: str, flag: str, known) -> List[str]:
    """``'HL,Ours'`` -> ['HL', 'Ours']: distinct known names, at least one (checked before any work)."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"pipeline.py: error: {flag}: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    if not names or len(set(names)) != len(names):
        raise SystemExit(f"pipeline.py: error: {flag} takes distinct names, at least one, got {value!r}")
    reserved = [name for name in names if set(name) & set("|:,")]
    if reserved:  # balkd-report refuses them after every run was trained
        raise SystemExit(f"pipeline.py: error: {flag}: the name(s) {', '.join(reserved)} hold | or :, which balkd-report "
                         "refuses as model names; rename them in configurations.py")
    return names


def prepare_demo_out(out: str) -> None:
    """The demo rebuilds OUT each run: remove only a directory an earlier demo made (or the default one)."""
    if os.path.isdir(out) and os.listdir(out) and not os.path.isfile(os.path.join(out, DEMO_MARKER)) \
            and os.path.realpath(out) != os.path.realpath(DEFAULT_DEMO_OUT):
        raise SystemExit(f"pipeline.py: error: --out {out} is not empty and no earlier demo made it; the demo "
                         "replaces its output directory, so give a new or empty one")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    with open(os.path.join(out, DEMO_MARKER), "w", encoding="utf-8") as f:
        f.write("made by examples/toy/pipeline.py demo, which replaces this directory each run\n")


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("THREADS", "2"))
    start = time.monotonic()
    if args.command == "demo":
        s = settings_from_env(Settings(out=args.out or os.environ.get("OUT", DEFAULT_DEMO_OUT), data_seed=args.seed,
                                       lanes=2))
        s.probe_train_sentences, s.probe_pooling = 0, "first"  # the demo reports the benchmark's probes; the others are sweep options
        prepare_demo_out(s.out)
        failures = failure_summary([run_preset(s, args.preset, [args.seed], PAPER_CONFIGS, single_run=True)])
        if failures:
            raise SystemExit(failures)
        export_and_query(Layout(s.out, args.preset, args.seed, single_run=True, data_seed=args.seed), "Ours")
        print(f"\nDone in {time.monotonic() - start:.0f}s.\n  table: {s.out}/report/report.md (and report.csv, report_compare.csv)\n"
              f"  plot:  {s.out}/report/report.png\n  cost:  {s.out}/report/cost.md\n"
              f"  checkpoints: {s.out}/checkpoints/{{HL,HL-balanced,Ours}}/checkpoint_last.pt, teachers in {s.out}/teachers\n"
              f"  TensorBoard: tensorboard --logdir {s.out}/tensorboard\n"
              f"  exported:    {s.out}/export/{{fairseq,hf,README.md}} (balkd-export)")
        return 0
    s = settings_from_env(Settings(out=args.out or os.path.join(REPO, "outputs", "sweep")))
    if args.probe_train_sentences is not None:
        s.probe_train_sentences = args.probe_train_sentences
    if s.probe_train_sentences < 0:
        raise SystemExit(f"--probe-train-sentences must be 0 (whole splits) or more, got {s.probe_train_sentences}")
    if args.probe_pooling is not None:
        s.probe_pooling = args.probe_pooling
    if s.probe_pooling not in WORD_POOLINGS:
        raise SystemExit(f"pipeline.py: error: PROBE_POOLING={s.probe_pooling!r} is not one of {', '.join(WORD_POOLINGS)}")
    report_name = args.report_name or "report" + "".join(probe_variant_suffix(s))
    configs = name_list(args.configs, "--configs", CONFIGS)
    presets = name_list(args.presets, "--presets", PRESET_GROUPS)
    data_seeds = seed_list(args.data_seeds, "--data-seeds") if args.data_seeds is not None else [s.data_seed]
    seeds = seed_list(args.seeds, "--seeds")
    if not args.replace_report:
        for preset in presets:
            check_report_dir(report_dir_of(s, preset, report_name), report_covers(s, configs, seeds, data_seeds))
    check_settings(s)
    outcomes = [run_preset(s, preset, seeds, configs, report_name=report_name, data_seeds=data_seeds)
                for preset in presets]
    failures = failure_summary(outcomes)
    if failures:
        raise SystemExit(failures)
    print(f"\nSweep done in {(time.monotonic() - start) / 60:.1f} min: reports in {s.out}/<preset>/{report_name}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
