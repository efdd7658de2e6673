"""Distillation benchmark: ms per training step of masked_lm vs multi-teacher distillation.

    python benchmarks/bench_distill.py                    (make bench: 6 layers, 256 dims, 32k vocabulary)
    python benchmarks/bench_distill.py --layers 2 --dim 32 --vocab 500 --steps 2 --json

It writes a small synthetic data directory (one shared dictionary, --languages languages),
builds the real ``balanced_distill`` task, a RoBERTa student and one randomly initialised teacher
per language, collates ONE batch that mixes all languages, and times full training steps on it
(the task's train_step: criterion forward, backward; gradient scaling and norm; fairseq's Adam
step) through the real criterion classes, for each phase:

    masked_lm         fairseq's MaskedLmLoss (the hard-label baseline)
    distill_1         MultiTeacherDistillCriterion, one teacher loaded, every sample of its language
    distill_7_as_1    all teachers loaded, the same batch relabelled to one language (one teacher forward)
    distill_7         all teachers loaded, the mixed batch (one teacher forward per language)
    distill_cache     --teacher-cache: soft labels read from a cache built for this batch (top --cache-topk)
    distill_offload   as distill_7 with --teacher-offload (without a GPU the swapping still runs: host-to-host copies)

``--last-layer-rounds`` also times one teacher's forward on the mixed batch with the masked-positions-only
last layer (``masked_lm_logits``) and with fairseq's own forward, interleaved, to decide whether that
hand-written layer pays.

Phases are interleaved round by round (so load from other processes hits all of them alike) and
the median step time is reported. Ratios, all measured in this one run on the same batch:

    distill_1 / masked_lm        target <= 1.40   (online distillation)
    distill_7 / distill_7_as_1   target <= 1.10   (7 teachers on a mixed batch vs one teacher)
    distill_cache / masked_lm    target <= 1.10   (distillation from the cache)

Peak memory per phase is measured in a fresh subprocess per phase (only that phase's models):
``torch.cuda.max_memory_allocated`` on GPU, and the process's peak RSS (VmHWM on Linux, else
``resource.getrusage``) with its growth from just before the models are built (models, optimizer
state, activations).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import torch
from machine_info import describe

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from balkd_fairseq.criterions.multi_teacher_distill import MultiTeacherDistillConfig, MultiTeacherDistillCriterion  # noqa: E402
from balkd_fairseq.soft_labels.cache import TeacherCache  # noqa: E402
from balkd_fairseq.soft_labels.cache_build import build_cache  # noqa: E402
from balkd_fairseq.soft_labels.manifest import TeacherRecord  # noqa: E402
from balkd_fairseq.soft_labels.online import TeacherSet, masked_lm_logits  # noqa: E402
from balkd_fairseq.tasks.balanced_distill import BalancedDistillConfig, BalancedDistillTask  # noqa: E402

PHASES = ["masked_lm", "distill_1", "distill_7_as_1", "distill_7", "distill_cache", "distill_offload"]
TARGETS = {  # name: (numerator, denominator, target)
    "online_vs_masked_lm": ("distill_1", "masked_lm", 1.40),
    "mixed_7_vs_1_teacher": ("distill_7", "distill_7_as_1", 1.10),
    "cache_vs_masked_lm": ("distill_cache", "masked_lm", 1.10),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--layers", type=int, default=6, help="encoder layers of the student and of every teacher")
    p.add_argument("--dim", type=int, default=256, help="embedding dimension (FFN is 4x, one attention head per 64 dims)")
    p.add_argument("--vocab", type=int, default=32000, help="dictionary size, special symbols and <mask> included")
    p.add_argument("--languages", type=int, default=7, help="languages, hence teachers, in the mixed batch")
    p.add_argument("--batch", type=int, default=16, help="sequences per batch")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per sequence (--tokens-per-sample)")
    p.add_argument("--steps", type=int, default=10, help="timed training steps per phase")
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps per phase before timing")
    p.add_argument("--topk", type=int, default=0, help="--topk of the online distillation phases (0 = full vocabulary)")
    p.add_argument("--cache-topk", type=int, default=32, help="tokens per position stored in the teacher cache")
    p.add_argument("--teacher-dtype", choices=["fp32", "fp16", "bf16"], default="fp32", help="--teacher-dtype of the teachers")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to train (auto = cuda if available)")
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}")
    p.add_argument("--no-memory", action="store_true", help="skip the per-phase peak-memory subprocesses")
    p.add_argument("--last-layer-rounds", type=int, default=0, metavar="N",
                   help="also time N interleaved rounds of one teacher forward with the masked-only last layer "
                        "vs fairseq's forward (0 = skip)")
    p.add_argument("--memory-jobs", type=int, default=2, help="peak-memory subprocesses run at once (default: 2)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--markdown", metavar="FILE", help="also write the result table (Markdown, with the machine) to FILE")
    p.add_argument("--memory-phase", help=argparse.SUPPRESS)  # internal: measure one phase's peak memory
    p.add_argument("--workdir", help=argparse.SUPPRESS)  # internal: the parent's data and cache
    args = p.parse_args(argv)
    args.phases = [ph for ph in args.phases.split(",") if ph]
    unknown = sorted(set(args.phases) - set(PHASES))
    if unknown:
        p.error(f"--phases: unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    if args.dim % 64 and args.dim >= 64:
        p.error("--dim must be a multiple of 64 (or below 64: one attention head)")
    return args


# ------------------------------------------------------------------------------ machine
def machine(device: torch.device) -> dict:
    info = dict(describe(), torch_threads=torch.get_num_threads(), device="cpu")
    if device.type == "cuda":
        info["device"] = torch.cuda.get_device_name(device)
    return info


# ------------------------------------------------------------------------------ data and models
def write_data(root: Path, args) -> None:
    """DATA/dict.txt with --vocab symbols (with <mask>), DATA/l<i>/{train,valid}: enough full blocks per language."""
    from fairseq.data import Dictionary
    from fairseq.data.indexed_dataset import make_builder

    dictionary = Dictionary()
    for i in range(args.vocab - len(dictionary) - 1):  # the task adds <mask>
        dictionary.add_symbol(f"w{i}", n=args.vocab - i)
    root.mkdir(parents=True, exist_ok=True)
    dictionary.save(str(root / "dict.txt"))
    blocks = -(-args.batch // args.languages)
    rng = np.random.default_rng(0)
    words = np.arange(dictionary.nspecial, len(dictionary))
    zipf = 1.0 / np.arange(1, len(words) + 1)
    for lang in range(args.languages):
        (root / f"l{lang}").mkdir(exist_ok=True)
        probs = np.roll(zipf, lang * 97) / zipf.sum()  # each language its own frequent words
        for split in ("train", "valid"):
            builder = make_builder(str(root / f"l{lang}" / f"{split}.bin"), impl="mmap", vocab_size=len(dictionary))
            for _ in range(blocks):
                tokens = rng.choice(words, size=args.seq_len - 2, p=probs)
                builder.add_item(torch.from_numpy(np.append(tokens, dictionary.eos()).astype(np.int32)))
            builder.finalize(str(root / f"l{lang}" / f"{split}.idx"))


def make_task(data: Path, args) -> BalancedDistillTask:
    cfg = BalancedDistillConfig(data=str(data), tokens_per_sample=args.seq_len, balance="none", seed=1,
                                sample_break_mode="eos", teacher_dtype=args.teacher_dtype)
    task = BalancedDistillTask.setup_task(cfg)
    task.load_dataset("train", epoch=1)
    task.dataset("train").set_epoch(1)
    return task


def model_args(args) -> Namespace:
    return Namespace(arch="roberta_base", encoder_layers=args.layers, encoder_embed_dim=args.dim,
                     encoder_ffn_embed_dim=4 * args.dim, encoder_attention_heads=max(1, args.dim // 64),
                     max_positions=args.seq_len, tokens_per_sample=args.seq_len)


def build_model(task, args, seed: int):
    from fairseq.models.roberta import RobertaModel

    torch.manual_seed(seed)
    return RobertaModel.build_model(model_args(args), task)


def build_teachers(task, args, languages, offload: bool = False) -> TeacherSet:
    """Randomly initialised teachers; ``offload`` runs --teacher-offload's swapping even on CPU (host-to-host)."""
    models, records = {}, []
    for lang_id in range(len(task.languages)):
        if lang_id in languages:
            model = build_model(task, args, seed=100 + lang_id).eval().requires_grad_(False)
            models[lang_id] = model.to({"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.teacher_dtype])
        records.append(TeacherRecord(task.languages[lang_id], f"<random teacher {lang_id}>", f"{lang_id:064d}", "-"))
    return TeacherSet(models, records, vocab_size=len(task.source_dictionary), sample_address=task.sample_address,
                      dtype=args.teacher_dtype, offload=offload, offload_on_cpu=offload)


def mixed_batch(task, args):
    """One batch of --batch sequences, languages round-robin; the same tokens relabelled to language 0."""
    dataset = task.dataset("train").dataset  # the ConcatDataset under the sort order
    offsets = [0] + list(dataset.cumulative_sizes[:-1])
    indices = [offsets[i % args.languages] + i // args.languages for i in range(args.batch)]
    mixed = dataset.collater([dataset[i] for i in indices])
    as_one = dict(mixed, lang_id=torch.zeros_like(mixed["lang_id"]))
    return mixed, as_one


def optimizer_for(model):
    from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig

    return FairseqAdam(FairseqAdamConfig(lr=[1e-4], adam_betas="(0.9, 0.98)", tpu=False), list(model.parameters()))


def criterion_for(phase: str, task, args, teachers_all=None, cache_dir=None):
    if phase == "masked_lm":
        from fairseq.criterions.masked_lm import MaskedLmConfig, MaskedLmLoss

        return MaskedLmLoss(MaskedLmConfig(tpu=False), task)
    if phase == "distill_cache":
        return MultiTeacherDistillCriterion(MultiTeacherDistillConfig(), task, soft_labels=TeacherCache.open(str(cache_dir), task))
    if phase == "distill_1":
        teachers = build_teachers(task, args, languages={0})
    elif phase == "distill_offload":
        # the same teachers (same seeds), offloaded; without an accelerator the swapping still runs (host-to-host)
        teachers = build_teachers(task, args, range(args.languages), offload=True)
    else:
        teachers = teachers_all
    return MultiTeacherDistillCriterion(MultiTeacherDistillConfig(topk=args.topk), task, soft_labels=teachers)


class Bench:
    """The task, one student and its optimizer, and the criterion and batch of every phase."""

    def __init__(self, args, workdir: Path, phases):
        self.args = args
        self.device = bench_device(args)
        self.task = make_task(workdir / "data", args)
        self.mixed, self.as_one = (self._on_device(b) for b in mixed_batch(self.task, args))
        self.rss_before_models = peak_rss_mb()
        self.student = build_model(self.task, args, seed=1).to(self.device)
        self.optimizer = optimizer_for(self.student)
        needs_all = {"distill_7", "distill_7_as_1"} & set(phases)
        self.teachers = build_teachers(self.task, args, range(args.languages)) if needs_all else None
        cache_dir = workdir / "cache"
        if "distill_cache" in phases and not (cache_dir / "manifest.json").exists():
            build_cache(self.task, self.teachers or build_teachers(self.task, args, range(args.languages)), str(cache_dir),
                        {"train": [1]}, k=args.cache_topk, batch_size=args.batch, max_tokens=None,
                        device=self.device, progress=False)
        self.phases = {}
        for phase in phases:
            criterion = criterion_for(phase, self.task, args, self.teachers, cache_dir)
            batch = self.as_one if phase in ("distill_1", "distill_7_as_1") else self.mixed
            self.phases[phase] = (criterion, batch)
        self.updates = 0

    def _on_device(self, sample):
        from fairseq.utils import move_to_cuda

        return move_to_cuda(sample, device=self.device) if self.device.type == "cuda" else sample

    def step(self, phase: str) -> float:
        criterion, sample = self.phases[phase]
        start = time.perf_counter()
        self.optimizer.zero_grad()
        loss, sample_size, _ = self.task.train_step(sample, self.student, criterion, self.optimizer, self.updates)
        self.optimizer.multiply_grads(1.0 / float(sample_size))
        self.optimizer.clip_grad_norm(0.0)
        self.task.optimizer_step(self.optimizer, self.student, self.updates)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.updates += 1
        if not torch.isfinite(loss):
            raise RuntimeError(f"{phase}: non-finite loss")
        return (time.perf_counter() - start) * 1000.0


def bench_device(args) -> torch.device:
    if args.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(args.device)


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MiB.

    On Linux this is VmHWM of /proc/self/status: getrusage's ru_maxrss also counts the parent's
    memory image at fork time (it survives exec), which would hide a child's own peak.
    """
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024.0
    except (OSError, StopIteration):
        scale = 1024.0 if sys.platform != "darwin" else 1024.0 * 1024.0  # KiB on Linux, bytes on macOS
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


# ------------------------------------------------------------------------------ timing and memory
def time_phases(bench: Bench, phases, warmup: int, steps: int) -> dict:
    times = {phase: [] for phase in phases}
    for round_no in range(warmup + steps):
        order = phases[round_no % len(phases):] + phases[:round_no % len(phases)]  # rotate: no phase always first
        for phase in order:
            ms = bench.step(phase)
            if round_no >= warmup:
                times[phase].append(ms)
    return {phase: {"ms_per_step": statistics.median(t), "ms_mean": statistics.fmean(t), "ms_min": min(t),
                    "steps": len(t), "ms_each": [round(ms, 1) for ms in t]} for phase, t in times.items()}


def measure_memory(args, workdir: Path, phases) -> dict:
    """Each phase alone in a fresh process: its peak memory on top of the data (models, optimizer, activations).

    Peak memory does not depend on timing, so --memory-jobs processes run at once.
    """
    common = ["--workdir", str(workdir), "--layers", str(args.layers), "--dim", str(args.dim), "--vocab", str(args.vocab),
              "--languages", str(args.languages), "--batch", str(args.batch), "--seq-len", str(args.seq_len),
              "--topk", str(args.topk), "--cache-topk", str(args.cache_topk), "--teacher-dtype", args.teacher_dtype,
              "--threads", str(args.threads or 1), "--device", args.device]
    results, pending = {}, list(phases)
    running = {}
    while pending or running:
        while pending and len(running) < max(1, args.memory_jobs):
            phase = pending.pop(0)
            cmd = [sys.executable, __file__, "--memory-phase", phase, *common]
            running[phase] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        phase = next(iter(running))
        out, err = running.pop(phase).communicate()
        if not out.strip():
            raise RuntimeError(f"memory measurement of {phase} failed:\n{err[-3000:]}")
        results[phase] = json.loads(out.strip().splitlines()[-1])
    return results


def memory_child(args) -> None:
    workdir = Path(args.workdir)
    phase = args.memory_phase
    bench = Bench(args, workdir, [phase])
    cuda = bench.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(bench.device)
    for _ in range(2):
        bench.step(phase)
    out = {"peak_rss_mb": peak_rss_mb(), "model_and_step_mb": peak_rss_mb() - bench.rss_before_models}
    if cuda:
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated(bench.device) / 2**20
    print(json.dumps(out))


def offload_transfer(bench: Bench) -> dict:
    """What --teacher-offload moves per step (mixed batch: every teacher once) and the time of one teacher's copy."""
    teachers = bench.phases["distill_offload"][0].soft_labels
    lang_id = next((i for i in teachers.models if i != teachers._resident), 0)  # a teacher now in host memory
    host = teachers._host[lang_id]
    copies = []
    for _ in range(5):
        start = time.perf_counter()
        moved = [t.to(bench.device, non_blocking=True, copy=True) for t in host]
        if bench.device.type == "cuda":
            torch.cuda.synchronize(bench.device)
        copies.append((time.perf_counter() - start) * 1000.0)
        del moved
    return {"bytes_per_teacher": teachers.parameter_bytes(lang_id), "teachers_per_mixed_step": bench.args.languages,
            "copy_ms_per_teacher": statistics.median(copies), "copy_device": str(bench.device)}


def last_layer_ab(bench: Bench, rounds: int) -> dict:
    """One teacher's forward on the mixed batch: masked-positions-only last layer vs fairseq's forward."""
    model = build_teachers(bench.task, bench.args, {0}).models[0].to(bench.device)
    tokens = bench.mixed["net_input"]["src_tokens"]
    masked = bench.mixed["target"].ne(bench.task.source_dictionary.pad())
    times = {"masked_last_layer": [], "fairseq_forward": []}
    with torch.inference_mode():
        for round_no in range(rounds + 1):  # round 0 warms up
            order = list(times) if round_no % 2 else list(times)[::-1]
            for name in order:
                start = time.perf_counter()
                masked_lm_logits(model, tokens, masked, masked_last_layer=name == "masked_last_layer")
                if bench.device.type == "cuda":
                    torch.cuda.synchronize(bench.device)
                if round_no:
                    times[name].append((time.perf_counter() - start) * 1000.0)
    per_round = [a / b for a, b in zip(times["masked_last_layer"], times["fairseq_forward"])]
    return {"rounds": rounds, **{f"{name}_ms": statistics.median(t) for name, t in times.items()},
            "ratio": round(statistics.median(per_round), 3), "ms_each": {k: [round(x, 1) for x in v] for k, v in times.items()}}


def ratios(timings: dict) -> dict:
    """Each ratio as the median over rounds of (numerator / denominator) within the round: the two steps
    ran back to back, so load that drifts between rounds cancels. The ratio of the medians is shown too."""
    out = {}
    for name, (num, den, target) in TARGETS.items():
        if num in timings and den in timings:
            per_round = [a / b for a, b in zip(timings[num]["ms_each"], timings[den]["ms_each"])]
            value = statistics.median(per_round)
            of_medians = timings[num]["ms_per_step"] / timings[den]["ms_per_step"]
            out[name] = {"value": round(value, 3), "of_medians": round(of_medians, 3), "target": target,
                         "met": value <= target, "of": f"{num} / {den}"}
    return out


# ------------------------------------------------------------------------------ output
def table(result: dict) -> str:
    m, c = result["machine"], result["config"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), device {m['device']}, "
        f"torch {m['torch']}, python {m['python']}; 1-minute load average {m['load_average'][0]} before timing, "
        f"{m['load_average'][1]} after",
        f"config: {c['layers']} layers, {c['dim']} dims, vocab {c['vocab']}, batch {c['batch']} x {c['seq_len']} tokens, "
        f"{c['languages']} languages, {c['masked_positions']} masked positions, online topk {c['topk'] or 'full'}, "
        f"cache top-{c['cache_topk']}, teachers {c['teacher_dtype']}, {c['steps']} timed steps after {c['warmup']} warm-up",
        "",
    ]
    cuda = any("cuda_peak_mb" in r.get("memory", {}) for r in result["phases"].values())
    lines += ["| phase | ms/step (median) | mean | min | vs masked_lm | peak RSS MB | models+step MB |"
              + (" CUDA peak MB |" if cuda else ""), "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if cuda else "")]
    base = result["phases"].get("masked_lm", {}).get("ms_per_step")
    for phase, r in result["phases"].items():
        mem = r.get("memory", {})
        rel = f"{r['ms_per_step'] / base:.3f}" if base else "-"
        peak = f"{mem['peak_rss_mb']:.0f}" if mem else "-"
        grown = f"{mem['model_and_step_mb']:.0f}" if mem else "-"
        row = f"| {phase} | {r['ms_per_step']:.1f} | {r['ms_mean']:.1f} | {r['ms_min']:.1f} | {rel} | {peak} | {grown} |"
        lines.append(row + (f" {mem.get('cuda_peak_mb', float('nan')):.0f} |" if cuda else ""))
    lines += ["", "| ratio | median per round | of the medians | target | met |", "|---|---:|---:|---:|---|"]
    for name, r in result["ratios"].items():
        lines.append(f"| {name} ({r['of']}) | {r['value']:.3f} | {r['of_medians']:.3f} | <= {r['target']:.2f} | "
                     f"{'yes' if r['met'] else 'NO'} |")
    ab = result.get("masked_last_layer")
    if ab:
        lines += ["", f"one teacher forward on the mixed batch ({ab['rounds']} interleaved rounds, median): masked-only last "
                      f"layer {ab['masked_last_layer_ms']:.1f} ms, fairseq's forward {ab['fairseq_forward_ms']:.1f} ms, "
                      f"ratio per round {ab['ratio']:.3f}"]
    off = result.get("offload")
    if off:
        lines += ["", f"offload: {off['bytes_per_teacher'] / 2**20:.1f} MiB per teacher, {off['teachers_per_mixed_step']} "
                      f"teacher moves per mixed step; one teacher copy to {off['copy_device']}: {off['copy_ms_per_teacher']:.1f} ms"]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_phase:
        memory_child(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="balkd-bench-") as tmp:
        workdir = Path(tmp)
        write_data(workdir / "data", args)
        bench = Bench(args, workdir, args.phases)
        load_before = os.getloadavg()[0]
        timings = time_phases(bench, args.phases, args.warmup, args.steps)
        load_after = os.getloadavg()[0]
        if not args.no_memory:
            for phase, memory in measure_memory(args, workdir, args.phases).items():
                timings[phase]["memory"] = memory
        config = {k: getattr(args, k) for k in ("layers", "dim", "vocab", "languages", "batch", "seq_len", "steps",
                                                "warmup", "topk", "cache_topk", "teacher_dtype")}
        config["masked_positions"] = int(bench.mixed["target"].ne(bench.task.source_dictionary.pad()).sum())
        result = {"machine": dict(machine(bench.device), load_average=[round(load_before, 2), round(load_after, 2)]),
                  "config": config, "phases": timings, "ratios": ratios(timings),
                  "offload": offload_transfer(bench) if "distill_offload" in args.phases else {}}
        if args.last_layer_rounds:
            result["masked_last_layer"] = last_layer_ab(bench, args.last_layer_rounds)
    print(json.dumps(result, indent=1) if args.json else table(result))
    if args.markdown:
        Path(args.markdown).write_text(table(result) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
