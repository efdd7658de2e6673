"""Tiny multilingual data and models that tests build for themselves (no downloads)."""
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
from fairseq.data import Dictionary
from fairseq.data.indexed_dataset import make_builder
from warm import python_command, warm_env

REPO = Path(__file__).resolve().parents[1]
USER_DIR = str(REPO / "balkd_fairseq")


def load_example(path: str, name: str):
    """A script of the repository (e.g. ``examples/toy/pipeline.py``) loaded as module ``name``: the examples are
    scripts, not a package; a distinct name per caller keeps their monkeypatches apart."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def toy_module(name: str):
    """A module beside examples/toy/pipeline.py (``stages``, ``runner``, ...) as pipeline.py imports it: by name, with
    examples/toy on sys.path. It is the one module its callers look its functions up in, so a monkeypatch of it
    reaches them all (a copy loaded by path would not)."""
    import importlib

    toy = str(REPO / "examples" / "toy")
    if toy not in sys.path:
        sys.path.insert(0, toy)
    return importlib.import_module(name)


TINY_ARCH = [
    "--arch", "roberta_base", "--encoder-layers", "2", "--encoder-embed-dim", "32",
    "--encoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2", "--max-positions", "64",
]


def language_sentences(lang: str, count: int, seed: int) -> List[List[str]]:
    """Sentences of a toy language: its own words plus a few shared ones, Zipf-like frequencies."""
    rng = np.random.default_rng([seed, sum(map(ord, lang))])
    own = [f"{lang}{i}" for i in range(30)]
    vocab = own + [f"x{i}" for i in range(8)]
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    return [list(rng.choice(vocab, size=rng.integers(5, 13), p=weights)) for _ in range(count)]


def write_split(dictionary: Dictionary, sentences: List[List[str]], prefix: str) -> None:
    builder = make_builder(prefix + ".bin", impl="mmap", vocab_size=len(dictionary))
    for words in sentences:
        builder.add_item(dictionary.encode_line(" ".join(words), add_if_not_exist=False, append_eos=True))
    builder.finalize(prefix + ".idx")


def make_tiny_data(root, sizes: Dict[str, int], seed: int = 0, eval_size: int = 12,
                   dictionary: Optional[Dictionary] = None) -> Path:
    """DATA/dict.txt + DATA/<lang>/{train,valid,test}.{bin,idx} (+ per-language dict copies)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    corpora = {
        lang: {split: language_sentences(lang, n if split == "train" else eval_size, seed + k)
               for k, split in enumerate(["train", "valid", "test"])}
        for lang, n in sizes.items()
    }
    if dictionary is None:
        dictionary = Dictionary()
        for lang in sorted(sizes):
            for words in corpora[lang]["train"]:
                for w in words:
                    dictionary.add_symbol(w)
        for i in range(8):
            dictionary.add_symbol(f"x{i}")
        dictionary.finalize()
    dictionary.save(str(root / "dict.txt"))
    for lang, splits in corpora.items():
        (root / lang).mkdir(exist_ok=True)
        dictionary.save(str(root / lang / "dict.txt"))
        for split, sentences in splits.items():
            write_split(dictionary, sentences, str(root / lang / split))
    return root


def run_fairseq_train(args: List[str], cwd=None, env=None, check=True, timeout=600, warm=False) -> subprocess.CompletedProcess:
    """``fairseq-train --user-dir balkd_fairseq ARGS``; ``warm``: forked from a pre-imported interpreter (tests/warm.py)."""
    full_env = dict(os.environ, **(env or {}))
    full_env.setdefault("OMP_NUM_THREADS", "1")
    python = [sys.executable]
    if warm:
        full_env, python = warm_env(full_env), python_command()
    cmd = [*python, "-m", "fairseq_cli.train", "--user-dir", USER_DIR] + args
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"fairseq-train failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def train_tiny_teacher(data_dir: Path, lang: str, save_dir: Path, updates: int = 4, seed: int = 1) -> Path:
    """A monolingual teacher: stock masked_lm on DATA/<lang> (shared dictionary), a few updates."""
    run_fairseq_train([
        str(data_dir / lang), "--task", "masked_lm", "--criterion", "masked_lm", *TINY_ARCH,
        "--tokens-per-sample", "32", "--batch-size", "8", "--optimizer", "adam", "--lr", "0.001",
        "--max-update", str(updates), "--save-dir", str(save_dir), "--no-epoch-checkpoints",
        "--cpu", "--seed", str(seed), "--log-format", "simple", "--log-interval", "1",
        "--disable-validation", "--num-workers", "0",
        # a fixture, not a test of stock fairseq's exit: no prefetch thread, which can abort a stock run's
        # exit at --max-update ("terminate called without an active exception"; balkd-train stops it)
        "--data-buffer-size", "0",
    ])
    # as balkd-train-teachers does: the dictionary the teacher was trained with, beside its checkpoint
    Dictionary.load(str(data_dir / "dict.txt")).save(str(save_dir / "dict.txt"))
    return save_dir / "checkpoint_last.pt"


def distill_args(data_dir: Path, save_dir: Path, teachers: str, updates: int = 4, extra: Optional[List[str]] = None) -> List[str]:
    return [
        str(data_dir), "--task", "balanced_distill", "--criterion", "multi_teacher_distill",
        "--teachers", teachers, *TINY_ARCH, "--tokens-per-sample", "32", "--batch-size", "8",
        "--optimizer", "adam", "--lr", "0.001", "--max-update", str(updates), "--save-dir", str(save_dir),
        "--cpu", "--seed", "1", "--log-format", "json", "--log-interval", "1", "--num-workers", "0",
        "--no-epoch-checkpoints", "--required-batch-size-multiple", "1", *(extra or []),
    ]


def free_port() -> int:
    """A TCP port nobody listens on now (parallel test workers must not share a fixed rendezvous port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_balkd_train(args: List[str], nproc: int = 1, timeout=600,
                    port: Optional[int] = None) -> subprocess.CompletedProcess:
    """balkd-train, under torchrun when ``nproc > 1`` (on a free port unless ``port`` is given)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(port or free_port()), "-m", "balkd_fairseq.cli.train", *args]
    else:
        cmd = [sys.executable, "-m", "balkd_fairseq.cli.train", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def json_log_records(stdout: str, tag: str) -> List[dict]:
    """fairseq --log-format json records of one kind ('train_inner', 'valid', ...)."""
    import json

    out = []
    for line in stdout.splitlines():
        if f"| {tag} | " in line:
            out.append(json.loads(line.split(f"| {tag} | ", 1)[1]))
    return out
