"""The stages of one run of the toy pipeline: where it keeps its outputs (``Layout``), the benchmark, the teachers
(sharded, from the HL-balanced student, oracle ones), the teacher cache, the students, and the demo's export.

Each stage skips work whose output is complete (a ``.done`` marker written last) and returns what it cost. Every
command goes through ``runner.run`` (called through its module, so that one stand-in replaces every command).
The scoring of a run is ``evaluation.py``; the job graph of a sweep ``sweep.py``.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import List, Optional

import oracle_teachers as oracle
import runner
from configurations import (
    CACHE_TOPK,
    CONFIGS,
    MODEL,
    NO_VALIDATION,
    PRESET_GROUPS,
    TEACHER_SETS,
    Settings,
    common_flags,
    schedule,
)
from cost import model_cost, total_cost
from runner import done, finished, mark_done, read_done, step, tokens_trained

from balkd_fairseq.errors import BalkdError
from balkd_fairseq.locks import LOCK_NAME, held_lock


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
    runner.run(synth_command(layout.synth, layout, s))
    mark_done(layout.synth)
    step(f"one SentencePiece vocabulary + binarized data -> {layout.data}")
    runner.run(["balkd-prepare", "--raw-dir", os.path.join(layout.synth, "raw"), "--out", layout.data,
                "--vocab-size", str(s.vocab), "--valid-lines", str(s.eval_lines), "--test-lines", str(s.eval_lines),
                "--seed", str(layout.data_seed), "--quiet", "--force"])
    mark_done(layout.data)


def synth_command(out: str, layout: Layout, s: Settings, sizes: str = "") -> List[str]:
    return ["balkd-synth", "--out", out, "--preset", layout.preset, "--seed", str(layout.data_seed), "--high-size",
            str(s.high_size),
            "--low-size", str(s.low_size), *(["--sizes", sizes] if sizes else []), "--probe-train", str(s.probe_train),
            "--probe-test", str(s.probe_test), *(["--names-script", s.names_script] if s.names_script != "own" else []),
            "--quiet", "--force"]


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
        seconds = runner.run(command, log=os.path.join(save_dir, f"shard-{index}.log"))
        with open(os.path.join(save_dir, f"shard-{index}.json"), "w", encoding="utf-8") as f:
            json.dump({"wall_seconds": round(seconds, 1)}, f)
        return {"wall_seconds": round(seconds, 1)}
    step(f"monolingual teachers on all of each language's data{' from ' + init_from if init_from else ''} -> {save_dir}")
    seconds = runner.run(command)
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
    runner.run(synth_command(synth, layout, s,
                             ",".join(f"{lang}={oracle.ORACLE_FACTOR * s.low_size}" for lang in low_resource)))
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
    seconds = runner.run(["balkd-cache-teachers", layout.data, "--task", "balanced_distill", *flags, *MODEL,
                          *common_flags(layout.seed), *schedule(s.student_updates), "--cache-dir",
                          os.path.join(layout.cache, "cache"), "--cache-topk", CACHE_TOPK],
                         log=os.path.join(layout.cache, "cache.log"))
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
    seconds = runner.run(["balkd-train", layout.data, "--task", "balanced_distill", *flags, *MODEL,
                          *common_flags(layout.seed), *schedule(s.student_updates), *validation, "--save-dir", save_dir,
                          "--tensorboard-logdir", tensorboard],
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


def trained(layout: Layout, s: Settings, name: str) -> dict:
    """A configuration's student, after its teachers (which its jobs before have made): its cost, theirs included."""
    teacher_cost = teachers_of(layout, s, name)
    return model_cost(train_student(layout, s, name), teacher_cost)


def export_and_query(layout: Layout, name: str) -> None:
    """balkd-export of one student, then one fill-mask query per format, each in a process without the plugin."""
    out = os.path.join(layout.run, "export")
    step(f"export {name} -> {out} (fairseq and Hugging Face folders, model card) and one fill-mask query each")
    runner.run(["balkd-export", os.path.join(layout.checkpoints, name, "checkpoint_last.pt"), "--data", layout.data,
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
