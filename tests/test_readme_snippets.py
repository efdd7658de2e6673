"""The documented commands of README.md and examples/*/README.md: every block runs, or calls a tested script.

Classified (quick): every fenced block names its language; a ``bash``/``python`` block is in RUNS (run
here), SCRIPTS (a call to a script of the repository that a named test runs: ``make demo``,
examples/toy/pipeline.py, examples/scale/run.py, ``make bench``) or SETUPS (installing the environment); a
block in none of them fails. Every substitution of RUNS must still match its block.

Run (slow): the README's quick start (balkd-prepare -> balkd-train-teachers -> the student's fairseq-train
-> balkd-eval-lm -> balkd-probe -> balkd-report -> balkd-export) runs with bash (``set -euo pipefail``) in a
temporary directory on text and probing files from the project's generator, with the documented sizes
replaced by tiny ones (``QUICK_START_TINY``); its products are checked. Every other block of RUNS then runs
in that directory on its products (the levers, the offline cache, the SLURM arrays through stand-in
``sbatch``/``srun``, each ``balkd-train`` launch, several seeds, the export and its Python loaders without
the plugin, many languages, and examples/paper/README.md's steps in one shell), each with its own table of
tiny values, and must exit 0 and write the files it is documented to write, not empty.

Parsed (quick): each shell line of a fenced ``bash`` block that runs ``fairseq-train``, ``balkd-*`` or
``balkd-train`` is parsed exactly as the command parses it (fairseq's own parser with the plugin's task,
criterion and architecture options for fairseq's flags); Python blocks are compiled.
"""
import ast
import csv
import importlib
import importlib.util
import json
import math
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Tuple

import pytest
from warm import python_command, warm_env

from balkd_fairseq.errors import BalkdError

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "examples").glob("*/README.md"))]
FAIRSEQ_PASSTHROUGH = {"fairseq-train", "balkd-train"}  # the whole line is fairseq-train's command line


def fenced_blocks(path: Path) -> List[Tuple[str, int, str]]:
    """(language, first line number, text) of every fenced block ("" for a fence that names none), dedented."""
    blocks, lang, start, lines = [], None, 0, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fence = re.match(r"^\s*```(\w*)", line)
        if fence and lang is None:
            lang, start, lines = fence.group(1), number + 1, []
        elif fence:
            blocks.append((lang, start, textwrap.dedent("\n".join(lines))))
            lang = None
        elif lang is not None:
            lines.append(line)
    return blocks


def shell_commands(text: str) -> List[List[str]]:
    """Commands of a shell block: continuation lines joined, comments dropped, split at ``|``/``&&``/``;``."""
    joined = re.sub(r"\\\n", " ", text)
    commands = []
    for line in joined.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        for part in re.split(r"\s(?:\|\||&&|\||;)\s", line):
            try:
                words = shlex.split(part)
            except ValueError:
                continue
            words = [w for w in words if w not in ("...", "…")]  # an elided rest of the command
            if words:
                commands.append(words)
    return commands


def documented_commands():
    for doc in DOCS:
        for lang, line, text in fenced_blocks(doc):
            if lang not in ("bash", "sh", "shell"):
                continue
            for words in shell_commands(text):
                name = Path(words[0]).name
                if name.startswith("balkd-") or name == "fairseq-train":
                    yield pytest.param(name, words[1:], id=f"{doc.relative_to(REPO)}:{line}:{name}")


def python_blocks():
    for doc in DOCS:
        for lang, line, text in fenced_blocks(doc):
            if lang == "python":
                yield pytest.param(text, id=f"{doc.relative_to(REPO)}:{line}")


def parse_fairseq_train(args: List[str]) -> None:
    """fairseq-train's own parsing, with the plugin's options (as ``--user-dir balkd_fairseq`` gives them)."""
    from fairseq import options

    import balkd_fairseq  # noqa: F401  (registers the task, criteria and models)

    args = [a for a in args if a not in ("--user-dir",)]
    if "--arch" not in args and "-a" not in args:  # a snippet that elides the model flags ("...")
        args = [*args, "--arch", "roberta_base"]
    parser = options.get_training_parser()
    options.parse_args_and_arch(parser, [a for a in args if a != "balkd_fairseq"])


def command_module(name: str):
    setup = (REPO / "setup.py").read_text(encoding="utf-8")
    found = re.search(rf'"{re.escape(name)}":\s*"([\w.]+):main"', setup)
    assert found, f"{name} is documented but is not a console command in setup.py"
    return importlib.import_module(found.group(1))


@pytest.mark.parametrize("name,args", list(documented_commands()))
def test_documented_command_parses(name, args):
    if any(a in ("-h", "--help") for a in args):
        return
    if name in FAIRSEQ_PASSTHROUGH:
        parse_fairseq_train(args)
        return
    module = command_module(name)
    own, passthrough = (args[: args.index("--")], args[args.index("--") + 1:]) if "--" in args else (args, [])
    try:
        if name == "balkd-cache-teachers":  # its own flags on top of fairseq-train's command line
            from fairseq import options

            options.parse_args_and_arch(module.build_parser(own), input_args=own)
            return
        parsed, unknown = module.build_parser().parse_known_args(own)
    except (SystemExit, BalkdError) as err:
        pytest.fail(f"{name} {' '.join(own)}: the documented command is refused by its parser ({err})")
    assert not unknown, f"{name}: documented flags it does not accept: {unknown}"
    if passthrough:  # balkd-train-teachers runs stock masked_lm with the flags after '--'
        parse_fairseq_train(["DATA", "--task", "masked_lm", "--criterion", "masked_lm", *passthrough])


@pytest.mark.parametrize("text", list(python_blocks()))
def test_documented_python_compiles(text):
    ast.parse(text)


def test_the_docs_document_commands():
    assert len(list(documented_commands())) >= 8, "the README's commands were not found: is the fence syntax changed?"


# ----------------------------------------------------------------------------- running the quick start
# The README's sizes are for real corpora; a test runs its commands as written except for this table of
# tiny values (a documented flag's value replaced, or a flag added for what the README leaves at the default).
TINY_VALUES = {"balkd-prepare": {"--vocab-size": "100", "--valid-lines": "10", "--test-lines": "10",
                                 "--character-coverage": "1.0"}}


def with_tiny_values(name: str, args: List[str]) -> List[str]:
    table, out, i = TINY_VALUES[name], [], 0
    while i < len(args):
        if args[i] in table:
            out += [args[i], table[args[i]]]
            i += 2
        else:
            out.append(args[i])
            i += 1
    return out + [word for flag, value in table.items() if flag not in args for word in (flag, value)]


def readme_command(name: str) -> List[str]:
    """The arguments of the README's first ``name`` command (its quick start)."""
    for param in documented_commands():
        command, args = param.values
        if param.id.startswith("README.md:") and command == name:
            return args
    raise AssertionError(f"the README shows no {name} command")


def test_readme_quick_start_prepare_runs_as_written(tmp_path, monkeypatch):
    """Step 1 of the README, run in a directory holding the raw files it names (tiny synthetic text)."""
    from helpers import language_sentences

    prepare = command_module("balkd-prepare")
    args = readme_command("balkd-prepare")
    raw = dict(pair.split("=", 1) for pair in args[args.index("--raw") + 1].split(","))
    monkeypatch.chdir(tmp_path)
    for seed, (lang, path) in enumerate(sorted(raw.items())):
        Path(path).write_text("\n".join(" ".join(words) for words in language_sentences(lang, 200, seed)) + "\n")
    assert prepare.main(with_tiny_values("balkd-prepare", args)) == 0
    data = tmp_path / args[args.index("--out") + 1]
    assert (data / "dict.txt").stat().st_size > 0 and (data / "spm.model").is_file()
    for lang in raw:
        for split in ("train", "valid", "test"):
            assert (data / lang / f"{split}.bin").stat().st_size > 0, (lang, split)


# ----------------------------------------------------------------------------- the whole quick start, run
# The README's quick start (its ``## Usage`` bash block) and the Python blocks of ``## Using the student
# elsewhere`` run as written, in a temporary directory, except for the substitutions below: a documented
# value (left) that only a real corpus or a GPU makes sense of becomes a tiny one (right). Every left side
# must still be in the block, so a README edit that the table does not follow fails here instead of
# leaving the test running something the README no longer says.
SYNTH_LANGUAGES = ("de", "eu")  # two generated languages stand for the README's de, eu, tr
TINY_MODEL = ("--arch roberta_base --encoder-layers 2 --encoder-embed-dim 32 --encoder-ffn-embed-dim 64 "
              "--encoder-attention-heads 2 --max-positions 64 --num-workers 0 --log-format simple")
QUICK_START_TINY = [
    # raw text: the project's generator instead of CC-100 (written by the test before the block runs)
    ("de=cc100.de.txt,eu=cc100.eu.txt,tr=cc100.tr.txt", "de=synth/raw/de.txt,eu=synth/raw/eu.txt"),
    ("--vocab-size 32000", "--vocab-size 300 --valid-lines 20 --test-lines 20"),
    ("--arch roberta_base", TINY_MODEL),  # the suite's tiny RoBERTa (tests/helpers.py)
    ("--tokens-per-sample 512", "--tokens-per-sample 64"),
    ("--warmup-updates 10000", "--warmup-updates 1"),
    ("--total-num-update 125000 --max-update 125000", "--total-num-update 3 --max-update 3"),
    ("--fp16", "--cpu"),
    ("--user-dir balkd_fairseq", f"--user-dir {REPO / 'balkd_fairseq'}"),  # the README runs in the checkout
    ("--valid-subset valid,valid_de,valid_eu,valid_tr", "--valid-subset valid,valid_de,valid_eu"),
    # balkd-eval-lm: its default --tokens-per-sample 512 is roberta_base's, beyond the tiny model's 64 positions
    ("--languages de,eu,tr --output-dir results", "--languages de,eu --output-dir results --tokens-per-sample 64"),
    ("--languages de,eu,tr", "--languages de,eu"),
    ("--pos-dir UD --ner-dir WIKIANN", "--pos-dir synth/pos --ner-dir synth/ner --epochs 2"),
    # the baselines are comment lines of the block (make demo trains them): the report has Ours alone
    ("--model HL=results/HL --model HL-balanced=results/HL-balanced ", ""),
    ("--low eu tr --high es en --single de", "--low eu --high de --single de"),
]
PYTHON_TINY = [('"... <mask> ..."', "QUERY")]  # six words of the generated de text, then <mask>


def substituted(text: str, table: List[Tuple[str, str]], where: str) -> str:
    for documented, tiny in table:
        assert documented in text, (f"{where} no longer shows {documented!r}: update the substitution table of "
                                    "tests/test_readme_snippets.py to what the README says now")
        text = text.replace(documented, tiny)
    return text


def readme_section_blocks(heading: str, lang: str) -> List[str]:
    """The fenced ``lang`` blocks between the README's ``heading`` line and the next ``## `` heading."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert heading in lines, f"README.md has no {heading!r} section"
    start = lines.index(heading) + 1
    end = next((n for n in range(start, len(lines)) if lines[n].startswith("## ")), len(lines))
    return [text for block_lang, first, text in fenced_blocks(REPO / "README.md")
            if block_lang == lang and start < first <= end]


def finite_numbers(value) -> List[float]:
    """Every number of a JSON value; all must be finite (a NaN or inf means a broken evaluation)."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in finite_numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in finite_numbers(v)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        assert math.isfinite(value), value
        return [float(value)]
    return []


def run_python_block(text: str, cwd: Path, query: str):
    """A README Python block in a fresh interpreter without the plugin; the value of its last expression."""
    tree = ast.parse(substituted(text, PYTHON_TINY, "the Python block").replace("QUERY", repr(query)))
    last = tree.body[-1]
    assert isinstance(last, ast.Expr), "the block should end with the call whose result it shows"
    tree.body[-1] = ast.Assign(targets=[ast.Name("_shown", ast.Store())], value=last.value)
    script = ast.unparse(ast.fix_missing_locations(tree)) + (
        "\nimport json, sys\nassert 'balkd_fairseq' not in sys.modules, 'the block needed the plugin'\n"
        "print('SHOWN ' + json.dumps(_shown, default=str))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # warm (tests/warm.py): the server has torch and fairseq imported, never the plugin, which the block must not need
    proc = subprocess.run([*python_command(), "-c", script], cwd=cwd, capture_output=True, text=True, timeout=1200,
                          env=warm_env(dict(env, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")))
    assert proc.returncode == 0, f"{script}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    shown = [line for line in proc.stdout.splitlines() if line.startswith("SHOWN ")]
    return json.loads(shown[-1][len("SHOWN "):])


# ----------------------------------------------------------------------------- every block, classified
# Every fenced block of README.md and examples/*/README.md names its language. A block that is not a
# command (a layout, a table, expected output) is ``text`` (or yaml, ...); every ``bash``/``python`` block
# is one of: RUN here (below, at the tiny size, by a slow test: the command exits 0 and what it is
# documented to write exists and is not empty), SCRIPT (a call to a script of the repository that a named
# test runs), or SETUP (installing the environment itself, which a test cannot redo under the running suite).
# A block in none of these fails test_every_command_block_is_run_or_points_to_a_tested_script.
COMMAND_LANGUAGES = ("bash", "sh", "shell", "python", "console")


@dataclass
class Run:
    """A block run by ``test_documented_block_runs``: ``subs`` turn documented sizes into tiny ones."""
    name: str
    doc: str  # relative to the checkout
    key: str  # a string only this block holds
    subs: List[Tuple[str, str]] = field(default_factory=list)
    products: List[str] = field(default_factory=list)  # files it is documented to write (globs), non-empty
    how: str = "bash"  # bash | sbatch (with stub sbatch/srun) | nodes (one copy per node) | python | elsewhere
    group: str = ""  # blocks of one group run in one shell, in order (the examples share shell variables)


@dataclass
class Script:
    """A block whose commands call scripts of the repository that a named test runs end to end."""
    doc: str
    key: str
    calls: List[Tuple[str, str, str]]  # (text in the block, the script it runs, the test file that runs it)


@dataclass
class Setup:
    doc: str
    key: str
    why: str


# What a block's "..." elides, at the tiny size (the steps of a student or teacher run).
TINY_STEPS = ("--tokens-per-sample 64 --optimizer adam --lr 0.001 --batch-size 8 --max-update 2 "
              "--no-epoch-checkpoints")
TINY_STUDENT = f"--criterion multi_teacher_distill --teachers TEACHERS/teachers.json {TINY_MODEL} {TINY_STEPS}"
TINY_CACHE = ("--task balanced_distill --teachers TEACHERS/teachers.json --balance subsample --tokens-per-sample 64 "
              "--seed 1 --max-epoch 2 --valid-subset valid,valid_de,valid_eu --batch-size 64 --cache-topk 8")
# the configs leave the model's size at roberta's defaults: "+" adds the keys they do not name
HYDRA_TINY = ("common.fp16=false common.cpu=true common.log_format=simple +model.encoder_layers=2 "
              "+model.encoder_embed_dim=32 +model.encoder_ffn_embed_dim=64 +model.encoder_attention_heads=2 "
              "model.max_positions=64 task.tokens_per_sample=64 dataset.batch_size=8 dataset.num_workers=0 "
              "optimization.max_update=2 optimization.update_freq=[1] lr_scheduler.warmup_updates=1")
PAPER = "examples/paper/README.md"

RUNS = [
    Run("quick start", "README.md", "# 1. one SentencePiece vocabulary for all languages", QUICK_START_TINY,
        how="elsewhere"),  # test_readme_quick_start_runs_as_written, which every other run builds on
    Run("torch allowlist", "README.md", "import balkd_fairseq  # allowlist", how="python"),
    Run("levers: teachers from a checkpoint", "README.md", "--save-dir TEACHERS_INIT --init-from", [
        # the HL-balanced student of the documented command: the quick start's student (same size, same DATA)
        ("--init-from checkpoints/hl-balanced/checkpoint_best.pt", "--init-from checkpoints/ours/checkpoint_best.pt"),
        ("--arch roberta_base", TINY_MODEL), ("--tokens-per-sample 512", "--tokens-per-sample 64"),
        ("--max-update 20000", "--max-update 2")],
        ["TEACHERS_INIT/teachers.json", "TEACHERS_INIT/de/checkpoint_best.pt", "TEACHERS_INIT/eu/checkpoint_best.pt"]),
    Run("teachers as a SLURM array", "README.md", "#SBATCH --array=0-7", [
        ("--array=0-7", "--array=0-1"), ("--save-dir TEACHERS", "--save-dir TEACHERS_ARRAY"),
        ("--arch roberta_base ...", f"{TINY_MODEL} {TINY_STEPS}")],
        ["TEACHERS_ARRAY/teachers.json", "TEACHERS_ARRAY/de/checkpoint_best.pt", "TEACHERS_ARRAY/eu/checkpoint_best.pt"],
        how="sbatch"),
    Run("offline teacher cache", "README.md", "# 1. once: the teachers' top-32 soft labels", [
        ("--teachers teachers.json", "--teachers TEACHERS/teachers.json"),
        ("--tokens-per-sample 512", "--tokens-per-sample 64"),
        ("--valid-subset valid,valid_de,valid_en", "--valid-subset valid,valid_de,valid_eu"),
        ("--seed 1 --max-epoch 10 ...", f"--seed 1 --max-epoch 10 --save-dir ckpt/cached {TINY_MODEL} {TINY_STEPS}")],
        ["cache/manifest.json", "ckpt/cached/checkpoint_last.pt"]),
    Run("offline cache as a SLURM array", "README.md", 'sbatch --array=0-3 --wrap "balkd-cache-teachers', [
        ("--array=0-3", "--array=0-1"), ("--cache-dir cache/", "--cache-dir cache_array/"),
        ("DATA ...", f"DATA {TINY_CACHE}")],
        ["cache_array/manifest.json"], how="sbatch"),
    Run("balkd-train, one process", "README.md", "--arch roberta_base --save-dir ckpt/student ...", [
        ("--teachers teachers.json", "--teachers TEACHERS/teachers.json"), ("--arch roberta_base", TINY_MODEL),
        ("--save-dir ckpt/student ...", f"--save-dir ckpt/student {TINY_STEPS}")],
        ["ckpt/student/checkpoint_last.pt"]),
    # the GPU command and the CPU one are the same command line at the tiny size: it runs once
    Run("balkd-train, torchrun on one node", "README.md", "torchrun --nproc_per_node 8 $(which balkd-train)", [
        ("--nproc_per_node 8", "--nproc_per_node 2"),
        ("DATA --task balanced_distill ...", f"DATA --task balanced_distill {TINY_STUDENT} --save-dir ckpt/torchrun")],
        ["ckpt/torchrun/checkpoint_last.pt"]),
    Run("balkd-train, torchrun on CPU", "README.md", "torchrun --nproc_per_node 2 $(which balkd-train)", [
        ("DATA --task balanced_distill ...", f"DATA --task balanced_distill {TINY_STUDENT} --save-dir ckpt/torchrun")],
        ["ckpt/torchrun/checkpoint_last.pt"]),
    Run("balkd-train, torchrun on several nodes", "README.md", "torchrun --nnodes 2 --node_rank 0", [
        ("--node_rank 0", "--node_rank $NODE_RANK"), ("--nproc_per_node 8", "--nproc_per_node 1"),
        ("--master_addr node0 --master_port 29500", "--master_addr 127.0.0.1 --master_port $NODES_PORT"),
        ("DATA --task balanced_distill ...", f"DATA --task balanced_distill {TINY_STUDENT} --save-dir ckpt/nodes")],
        ["ckpt/nodes/checkpoint_last.pt"], how="nodes"),
    Run("balkd-train under SLURM", "README.md", "srun balkd-train DATA", [
        ("--nodes 2 --ntasks-per-node 8 --gpus-per-node 8", "--nodes 1 --ntasks-per-node 2"),
        ("DATA --task balanced_distill ...", f"DATA --task balanced_distill {TINY_STUDENT} --save-dir ckpt/srun")],
        ["ckpt/srun/checkpoint_last.pt"], how="sbatch"),
    Run("several seeds", "README.md", "for seed in 1 2 3; do", [
        ("--data DATA --pppl", "--data DATA --pppl --tokens-per-sample 64"),
        ("--low eu tr --high es en --output-dir report", "--low eu --high de --output-dir report_seeds")],
        [f"results/s{seed}/{model}/lm.json" for seed in (1, 2, 3) for model in ("HL", "Ours")]
        + ["report_seeds/report.md", "report_seeds/report.csv", "report_seeds/report_compare.csv"]),
    Run("export", "README.md", "balkd-export outputs/toy/checkpoints/Ours/checkpoint_last.pt", [
        # the checkpoint results/Ours were computed from (the quickstart's): export refuses another's results
        ("outputs/toy/checkpoints/Ours/checkpoint_last.pt", "checkpoints/ours/checkpoint_best.pt"),
        ("--data outputs/toy/data", "--data DATA"), ("outputs/toy/results/Ours", "results/Ours")],
        ["ours/fairseq/model.pt", "ours/fairseq/dict.txt", "ours/hf/model.safetensors", "ours/hf/tokenizer.json",
         "ours/README.md"], how="elsewhere"),  # test_exported_student_loads_without_the_plugin, before the Python blocks
    Run("export: stock fairseq", "README.md", "# 2. stock fairseq, no plugin import needed", PYTHON_TINY,
        how="elsewhere"),  # test_exported_student_loads_without_the_plugin (checks the predictions)
    Run("export: transformers", "README.md", "# 3. Hugging Face transformers", PYTHON_TINY, how="elsewhere"),
    Run("many languages", "README.md", "balkd-synth --out synth512 --num-languages 512", [
        ("--num-languages 512 --high-size 20000 --low-size 20", "--num-languages 4 --high-size 200 --low-size 20"),
        ("--vocab-size 8000", "--vocab-size 400 --character-coverage 1.0")],
        ["synth512/languages.json", "data512/dict.txt", "data512/stats.json", "data512/spm.model"]),
    # examples/paper/README.md: its steps share shell variables ($SET), so they run in one shell, in order
    Run("paper: data", PAPER, "RAW=$(for l in $SET", [
        ('export SET="eu tr vi hu es de en"', 'export SET="de eu"'),
        ("--vocab-size 120000", "--vocab-size 300 --character-coverage 1.0"),
        # the paper's sample_break_mode complete needs every line within a block: 64 tokens at the tiny size
        ("--valid-lines 5000 --test-lines 5000", "--valid-lines 20 --test-lines 20 --max-line-chars 100")],
        ["paper/DATA/dict.txt", "paper/DATA/de/train.bin", "paper/DATA/eu/train.bin"], group="paper"),
    Run("paper: teachers with hydra", PAPER, "--config-name teacher", [
        ("--config-dir examples/paper/config", f"--config-dir {REPO / 'examples/paper/config'}"),  # run in the checkout
        ("common.user_dir=$PWD/balkd_fairseq", f"common.user_dir={REPO / 'balkd_fairseq'}"),
        ("checkpoint.save_dir=$PWD/teachers/$l", f"checkpoint.save_dir=$PWD/teachers/$l {HYDRA_TINY}")],
        ["paper/teachers/teachers.json", "paper/teachers/de/checkpoint_best.pt", "paper/teachers/eu/checkpoint_best.pt"],
        group="paper"),
    Run("paper: teachers with balkd-train-teachers", PAPER, "balkd-train-teachers DATA --save-dir teachers", [
        ("--save-dir teachers", "--save-dir teachers_cli"),  # the alternative to the block before: its own folder
        ("--arch roberta_base", TINY_MODEL), ("--tokens-per-sample 512", "--tokens-per-sample 64"),
        ("--warmup-updates 10000 --total-num-update 125000 --max-update 125000 --batch-size 16 --update-freq 16 --fp16",
         "--warmup-updates 1 --total-num-update 2 --max-update 2 --batch-size 8 --update-freq 1 --cpu")],
        ["paper/teachers_cli/teachers.json", "paper/teachers_cli/de/checkpoint_best.pt"], group="paper"),
    Run("paper: students", PAPER, "--config-name student_ours", [
        ("--config-dir examples/paper/config", f"--config-dir {REPO / 'examples/paper/config'}"),
        ("U=$PWD/balkd_fairseq", f"U={REPO / 'balkd_fairseq'}"),
        ("checkpoint.save_dir=$PWD/students/ours", f"checkpoint.save_dir=$PWD/students/ours {HYDRA_TINY} "
         "task.teacher_dtype=fp32"),  # fp16 teachers are the GPU config's
        ("checkpoint.save_dir=$PWD/students/hl\n", f"checkpoint.save_dir=$PWD/students/hl {HYDRA_TINY}\n"),
        ("checkpoint.save_dir=$PWD/students/hl_balanced", f"checkpoint.save_dir=$PWD/students/hl_balanced {HYDRA_TINY}")],
        [f"paper/students/{m}/checkpoint_best.pt" for m in ("ours", "hl", "hl_balanced")], group="paper"),
    Run("paper: evaluation", PAPER, "for m in hl hl_balanced ours; do", [
        ("--languages $LANGS --output-dir results", "--languages $LANGS --output-dir results --tokens-per-sample 64"),
        ("--probe-dir PROBE", "--probe-dir PROBE --epochs 2"),
        ("--low eu tr vi hu --high es en --single de", "--low eu --high de --single de")],
        [f"paper/results/{m}/{f}" for m in ("hl", "hl_balanced", "ours") for f in ("lm.json", "probe.json")]
        + ["paper/report/report.md", "paper/report/report.csv"], group="paper"),
]

SCRIPTS = [
    Script("README.md", "make demo   # sets up .venv", [
        ("make demo", "examples/toy/run.sh", "tests/test_demo_pipeline.py"),
        ("make test", "tests", "tests")]),  # the suite itself
    Script("README.md", "python examples/toy/pipeline.py sweep --seeds 1,2,3", [
        # run.sh is `pipeline.py demo`: run_preset for one seed and the paper's configurations; the sweep is the
        # same run_preset over seeds, presets and configurations (its named configurations: tests/test_levers.py)
        ("examples/toy/pipeline.py sweep", "examples/toy/run.sh", "tests/test_demo_pipeline.py")]),
    Script("README.md", "python examples/scale/run.py --out outputs/scale", [
        ("examples/scale/run.py", "examples/scale/run.py", "tests/test_scale_example.py")]),
    Script("README.md", "make test                       # everything", [
        ("make test", "tests", "tests"), ("-m pytest", "tests", "tests"),
        ("make bench", "benchmarks/bench_distill.py", "tests/test_bench.py")]),
]

SETUPS = [Setup("README.md", ".venv/bin/pip install torch==<your version>",
                "installs torch and rebuilds the venv (scripts/install.sh): not redone under the running suite")]


def command_blocks() -> List[Tuple[str, int, str, str]]:
    """(doc, line, language, text) of every bash/python block of the README and examples/*/README.md."""
    return [(str(doc.relative_to(REPO)), line, lang, text) for doc in DOCS for lang, line, text in fenced_blocks(doc)
            if lang in COMMAND_LANGUAGES]


def block_of(doc: str, key: str) -> str:
    found = [text for d, _, _, text in command_blocks() if d == doc and key in text]
    assert len(found) == 1, f"{doc}: {len(found)} command blocks hold {key!r} (expected exactly one)"
    return found[0]


def test_every_fence_names_its_language():
    unnamed = [f"{doc.relative_to(REPO)}:{line}" for doc in DOCS for lang, line, _ in fenced_blocks(doc) if not lang]
    assert not unnamed, f"fences without a language (``text`` for what is not a command): {unnamed}"


def test_every_command_block_is_run_or_points_to_a_tested_script():
    entries = [(e.doc, e.key) for e in (*RUNS, *SCRIPTS, *SETUPS)]
    for doc, key in entries:
        block_of(doc, key)  # each entry names exactly one block
    for doc, line, lang, text in command_blocks():
        claimed = [key for d, key in entries if d == doc and key in text]
        assert len(claimed) == 1, (f"{doc}:{line}: this {lang} block is {'claimed by ' + str(claimed) if claimed else 'neither run by a test nor a call to a tested script'}: "
                                   "add it to RUNS (with tiny substitutions), SCRIPTS or SETUPS in tests/test_readme_snippets.py")


def test_every_run_substitution_matches_the_docs():
    """A README edit that a substitution does not follow fails in the quick suite, not only in the slow one."""
    for run in RUNS:
        substituted(block_of(run.doc, run.key), run.subs, f"{run.doc} ({run.name})")
    with pytest.raises(AssertionError, match="--fp16"):
        substituted("fairseq-train DATA --bf16", [("--fp16", "--cpu")], "a block")


def test_scripts_the_docs_call_exist_and_are_run_by_their_tests():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    for entry in SCRIPTS:
        text = block_of(entry.doc, entry.key)
        for fragment, script, test in entry.calls:
            assert fragment in text, f"{entry.doc}: the block no longer shows {fragment!r}"
            assert (REPO / script).exists() and (REPO / test).exists(), (script, test)
            target = re.match(r"make (\S+)", fragment)
            if target:  # a make target: its recipe runs the script
                recipe = re.search(rf"^{re.escape(target.group(1))}:.*\n((?:\t.*\n)+)", makefile, re.M)
                assert recipe and (script in recipe.group(1) or "pytest" in recipe.group(1)), (fragment, script)
            if test != script:
                assert Path(script).name in (REPO / test).read_text(encoding="utf-8"), f"{test} does not run {script}"
    for script in ("examples/toy/pipeline.py", "examples/scale/run.py"):  # the documented flags parse
        calls = [words for *_, text in command_blocks() for words in shell_commands(text)
                 if len(words) > 1 and words[0] == "python" and words[1] == script]
        assert calls, f"the docs no longer call {script}"
        for words in calls:
            load_script(script).build_parser().parse_args(words[2:])


def load_script(script: str):
    from helpers import load_example

    return load_example(script, Path(script).stem + "_under_test")


# ----------------------------------------------------------------------------- running the blocks
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                      "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")

# Stand-ins for SLURM's sbatch and srun, enough for the documented jobs: sbatch runs a batch script (or
# --wrap) once per array index, one after the other, with SLURM_ARRAY_TASK_* set, and exports the job's
# task count; srun starts SLURM_NTASKS copies of its command with SLURM_PROCID/SLURM_LOCALID set.
SBATCH_STUB = r'''
import os, re, shlex, socket, subprocess, sys
args, wrap, script, options = sys.argv[1:], None, None, []
while args:
    arg = args.pop(0)
    if arg == "--wrap":
        wrap = args.pop(0)
    elif arg.startswith("--wrap="):
        wrap = arg.split("=", 1)[1]
    elif arg.startswith("-"):
        options.append(arg)
    else:
        script = arg
if script:
    for line in open(script, encoding="utf-8"):
        if line.startswith("#SBATCH"):
            options += shlex.split(line[len("#SBATCH"):])
def option(name):
    for i, opt in enumerate(options):
        if opt.startswith(name + "="):
            return opt.split("=", 1)[1]
        if opt == name:
            return options[i + 1]
array = option("--array")
first, last = (map(int, array.split("-")) if array else (None, None))
env = dict(os.environ, SLURM_JOB_ID="4242", SLURM_NTASKS=str(int(option("--nodes") or 1) * int(option("--ntasks-per-node") or 1)))
command = ["bash", "-c", wrap] if wrap is not None else ["bash", script]
for index in (range(first, last + 1) if array else [None]):
    if index is not None:
        env.update(SLURM_ARRAY_TASK_ID=str(index), SLURM_ARRAY_TASK_MIN=str(first), SLURM_ARRAY_TASK_MAX=str(last))
    print(f"sbatch (stand-in): array task {index}", flush=True)
    code = subprocess.run(command, env=env).returncode
    if code:
        sys.exit(code)
'''
SRUN_STUB = r'''
import os, socket, subprocess, sys
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = str(s.getsockname()[1])
tasks = int(os.environ.get("SLURM_NTASKS", "1"))
procs = [subprocess.Popen(sys.argv[1:], env=dict(os.environ, SLURM_PROCID=str(r), SLURM_LOCALID=str(r),
                                                  MASTER_ADDR="127.0.0.1", MASTER_PORT=port)) for r in range(tasks)]
sys.exit(max(p.wait() for p in procs))
'''


def free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def block_env(session: Path, **extra: str) -> dict:
    """This environment without any launcher's variables, the venv's commands and the stand-ins first."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES and not k.startswith(("SLURM_", "PET_"))}
    stubs = session / "bin"
    if not stubs.is_dir():
        stubs.mkdir()
        for name, body in (("sbatch", SBATCH_STUB), ("srun", SRUN_STUB)):
            (stubs / name).write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
            (stubs / name).chmod(0o755)
    path = os.pathsep.join([str(stubs), str(Path(sys.executable).parent), env["PATH"]])
    # the blocks' balkd-*/fairseq-*/torchrun/python commands fork from a pre-imported interpreter (tests/warm.py)
    return warm_env(dict(env, PATH=path, OMP_NUM_THREADS="1", **extra))


def run_bash(script: str, cwd: Path, env: dict, what: str) -> None:
    path = cwd / f"block_{abs(hash(script))}.sh"
    path.write_text("set -euo pipefail\n" + script + "\n", encoding="utf-8")
    proc = subprocess.run(["bash", str(path)], cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"{what}: exit {proc.returncode}\n{script}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


def check_products(session: Path, run: Run) -> None:
    for pattern in run.products:
        found = sorted(session.glob(pattern))
        assert found, f"{run.doc} ({run.name}): {pattern} was not written"
        for path in found:
            assert path.is_file() and path.stat().st_size > 0, f"{run.doc} ({run.name}): {path} is empty"
            if path.suffix == ".json":
                assert json.loads(path.read_text(encoding="utf-8")), f"{run.doc} ({run.name}): {path} holds nothing"


def run_block(session: Path, run: Run, executed: set) -> None:
    text = substituted(block_of(run.doc, run.key), run.subs, f"{run.doc} ({run.name})")
    if (run.how, text) in executed:  # the same command line as a block already run
        return
    executed.add((run.how, text))
    if run.how == "python":  # with the plugin on the path, as a user of this checkout has it
        proc = subprocess.run([*python_command(), "-c", text], cwd=session, env=block_env(session), capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, f"{run.name}\n{text}\n{proc.stderr[-3000:]}"
    elif run.how == "sbatch":  # submitted as written: a batch script, or sbatch --wrap lines of the block
        if text.lstrip().startswith("#!"):
            (session / "job.sh").write_text(text + "\n", encoding="utf-8")
            run_bash("sbatch job.sh", session, block_env(session), run.name)
        else:
            run_bash(text, session, block_env(session), run.name)
    elif run.how == "nodes":  # the same command on every node at once, here two local "nodes"
        port = free_port()
        path = session / "nodes.sh"
        path.write_text("set -euo pipefail\n" + text + "\n", encoding="utf-8")
        procs = [subprocess.Popen(["bash", str(path)], cwd=session, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, env=block_env(session, NODE_RANK=str(rank), NODES_PORT=port))
                 for rank in (0, 1)]
        outputs = [p.communicate(timeout=900)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs), f"{run.name}\n{text}\n" + "\n".join(o[-3000:] for o in outputs)
    else:
        run_bash(text, session, block_env(session), run.name)


# The runs that need more than the quick start's products get them here (the documented paths).
def prepare_several_seeds(session: Path) -> None:
    """ckpt/s<seed>/{HL,Ours}/checkpoint_last.pt: the quick start's student at its best and last update."""
    for seed in (1, 2, 3):
        for model, source in (("HL", "checkpoint_best.pt"), ("Ours", "checkpoint_last.pt")):
            (session / f"ckpt/s{seed}/{model}").mkdir(parents=True, exist_ok=True)
            shutil.copy(session / "checkpoints" / "ours" / source, session / f"ckpt/s{seed}/{model}/checkpoint_last.pt")


def prepare_paper(session: Path) -> None:
    """paper/cc100/<lang>.txt and paper/PROBE/{pos,ner}/<lang>/: the generated corpus in the paper's layout."""
    paper = session / "paper"
    (paper / "cc100").mkdir(parents=True)
    for lang in SYNTH_LANGUAGES:
        shutil.copy(session / "synth" / "raw" / f"{lang}.txt", paper / "cc100" / f"{lang}.txt")
    for task in ("pos", "ner"):
        shutil.copytree(session / "synth" / task, paper / "PROBE" / task)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """The README's quick start, run as written at the tiny size; every other block runs in this directory."""
    tmp_path = tmp_path_factory.mktemp("readme")
    quick_start = readme_section_blocks("## Usage", "bash")[0]
    assert "# 1. one SentencePiece vocabulary for all languages" in quick_start
    script = substituted(quick_start, QUICK_START_TINY, "README.md's quick start")
    assert command_module("balkd-synth").main([
        "--out", str(tmp_path / "synth"), "--languages", ",".join(SYNTH_LANGUAGES), "--high-size", "300",
        "--low-size", "120", "--probe-train", "60", "--probe-dev", "20", "--probe-test", "30", "--quiet"]) == 0
    run_bash(script, tmp_path, block_env(tmp_path), "README.md's quick start")
    return tmp_path


@pytest.mark.slow
def test_readme_quick_start_runs_as_written(session):
    """prepare -> teachers -> student -> eval-lm -> probe -> report -> export."""
    tmp_path = session
    teachers = json.loads((tmp_path / "TEACHERS" / "teachers.json").read_text())
    assert sorted(teachers) == sorted(SYNTH_LANGUAGES)
    for path in teachers.values():
        path = tmp_path / "TEACHERS" / path if not os.path.isabs(path) else Path(path)
        assert path.name == "checkpoint_best.pt" and path.stat().st_size > 0, path
    assert (tmp_path / "checkpoints" / "ours" / "checkpoint_best.pt").stat().st_size > 0
    lm = json.loads((tmp_path / "results" / "Ours" / "lm.json").read_text())
    assert sorted(lm["languages"]) == sorted(SYNTH_LANGUAGES) and finite_numbers(lm["languages"]), lm
    probe = json.loads((tmp_path / "results" / "Ours" / "probe.json").read_text())
    for task in ("pos", "ner"):
        assert sorted(probe["tasks"][task]["in_language"]) == sorted(SYNTH_LANGUAGES), probe["tasks"][task]
        assert finite_numbers(probe["tasks"][task]["matrix"]), probe["tasks"][task]
    rows = list(csv.DictReader(open(tmp_path / "report" / "report.csv", encoding="utf-8")))
    everything = [r for r in rows if r["model"] == "Ours" and r["group"] == "All"]
    assert everything and 0 < float(everything[0]["MRR"]) <= 1 and float(everything[0]["MLM-PPL"]) > 1, rows
    assert "| All |" in (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert (tmp_path / "report" / "report.png").stat().st_size > 0
    exported = tmp_path / "exported" / "ours"
    assert (exported / "fairseq" / "model.pt").stat().st_size > 0 and (exported / "README.md").stat().st_size > 0


# Groups written but not yet seen passing end to end: they run only with BALKD_README_UNVERIFIED=1 until
# someone has run them once and taken them out of this set (empty: every group has been seen passing).
UNVERIFIED: set = set()
EXECUTED: set = set()  # (how, script) of the blocks run: the same command line runs once
PREPARE = {"several seeds": prepare_several_seeds, "paper: data": prepare_paper}
RUN_GROUPS = list(dict.fromkeys(run.group or run.name for run in RUNS if run.how != "elsewhere"))


@pytest.mark.slow
@pytest.mark.parametrize("group", RUN_GROUPS)
def test_documented_block_runs(session, group):
    """Each block (or group of blocks sharing a shell) of RUNS, in the quick start's directory, at the tiny size."""
    if group in UNVERIFIED and not os.environ.get("BALKD_README_UNVERIFIED"):
        pytest.skip(f"{group}: not yet seen passing; BALKD_README_UNVERIFIED=1 runs it")
    runs = [run for run in RUNS if (run.group or run.name) == group]
    if runs[0].group:  # one shell for the group, as a reader runs the steps one after the other
        for run in runs:
            PREPARE.get(run.name, lambda _: None)(session)
        script = "\n".join(substituted(block_of(r.doc, r.key), r.subs, f"{r.doc} ({r.name})") for r in runs)
        run_bash(f"cd {shlex.quote(str(session / group))}\n{script}", session, block_env(session), group)
    else:
        PREPARE.get(runs[0].name, lambda _: None)(session)
        run_block(session, runs[0], EXECUTED)
    for run in runs:
        check_products(session, run)
    if group == "teachers as a SLURM array":  # the array's tasks each trained their share, the last one listed all
        assert sorted(json.loads((session / "TEACHERS_ARRAY" / "teachers.json").read_text())) == sorted(SYNTH_LANGUAGES)
    if group == "paper":  # the teachers.json the paper's Python step writes names every language of $SET
        assert sorted(json.loads((session / "paper/teachers/teachers.json").read_text())) == sorted(SYNTH_LANGUAGES)


@pytest.mark.slow
def test_exported_student_loads_without_the_plugin(session):
    """The export block of ``## Using the student elsewhere``, then its stock fairseq and transformers blocks."""
    export = next(run for run in RUNS if run.name == "export")
    run_block(session, export, set())
    check_products(session, export)
    words = (session / "synth" / "raw" / "de.txt").read_text(encoding="utf-8").splitlines()[0].split()
    query = " ".join(words[:6] + ["<mask>"])
    fairseq_block, hf_block = readme_section_blocks("## Using the student elsewhere", "python")[:2]
    filled = run_python_block(fairseq_block, session, query)  # fairseq: [(sentence, score, token)] * topk
    assert len(filled) == 3 and all(" ".join(words[:6]) in sentence for sentence, _, _ in filled), filled
    predictions = run_python_block(hf_block, session, query)  # transformers: [{"score", "token", ...}] * 5
    assert predictions and all(0 <= p["score"] <= 1 and " ".join(words[:6]) in p["sequence"] for p in predictions), predictions


def test_the_substitution_tables_match_the_readme():
    """The quick suite already fails when the README drops a value the slow test replaces."""
    substituted(readme_section_blocks("## Usage", "bash")[0], QUICK_START_TINY, "README.md's quick start")
    for block in readme_section_blocks("## Using the student elsewhere", "python")[:2]:
        substituted(block, PYTHON_TINY, "the Python block")
