"""The README's commands: the quick start and the export's Python blocks run, every other command is parsed.

Run (slow, ``test_readme_quick_start_and_export_run_as_written``): the README's quick start (the
first bash block of ``## Usage``: balkd-prepare -> balkd-train-teachers -> the student's
fairseq-train -> balkd-eval-lm -> balkd-probe -> balkd-report -> balkd-export) is taken from
README.md, run with bash (``set -euo pipefail``) in a temporary directory on text and probing files
from the project's generator, with the documented sizes replaced by tiny ones through
``QUICK_START_TINY`` (each documented value must still be in the README, so README and test cannot
drift apart silently); its products are checked (teachers.json naming every language, checkpoints,
finite results, the report table, the exported folders). The two Python blocks of ``## Using the
student elsewhere`` (stock fairseq and transformers loading the export) then run as written on that
export, in interpreters without the plugin, with ``PYTHON_TINY``'s substitutions. Step 1 of the quick
start alone also runs in a quick test.

Parsed (every documented command, also those that only this covers: the offline cache, SLURM,
several seeds, the levers, balkd-train, examples/*/README.md): a documented flag that a command no longer accepts (renamed, moved from the criterion to the task,
dropped) would make the command fail or, worse, do something else: each shell line of a fenced
``bash`` block that runs ``fairseq-train``, ``fairseq-hydra-train``-free ``balkd-*`` commands or
``balkd-train`` is parsed here exactly as the command parses it (fairseq's own parser with the
plugin's task, criterion and architecture options for fairseq's flags). Python blocks are compiled.
The pipelines the README points to (``make demo`` = examples/toy/pipeline.py) run end to end in
test_demo_pipeline.py.
"""
import ast
import csv
import importlib
import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

from balkd_fairseq.errors import BalkdError

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "examples").glob("*/README.md"))]
FAIRSEQ_PASSTHROUGH = {"fairseq-train", "balkd-train"}  # the whole line is fairseq-train's command line


def fenced_blocks(path: Path) -> List[Tuple[str, int, str]]:
    """(language, first line number, text) of every fenced block."""
    blocks, lang, start, lines = [], None, 0, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fence = re.match(r"^\s*```(\w*)", line)
        if fence and lang is None:
            lang, start, lines = fence.group(1) or "text", number + 1, []
        elif fence:
            blocks.append((lang, start, "\n".join(lines)))
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
PYTHON_TINY = [('"ours/', '"exported/ours/'),  # the quick start's balkd-export --out
               ('"... <mask> ..."', "QUERY")]  # six words of the generated de text, then <mask>


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
    proc = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=dict(env, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, f"{script}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    shown = [line for line in proc.stdout.splitlines() if line.startswith("SHOWN ")]
    return json.loads(shown[-1][len("SHOWN "):])


@pytest.mark.slow
def test_readme_quick_start_and_export_run_as_written(tmp_path):
    """prepare -> teachers -> student -> eval-lm -> probe -> report -> export, then the stock loaders."""
    quick_start = readme_section_blocks("## Usage", "bash")[0]
    script = substituted(quick_start, QUICK_START_TINY, "README.md's quick start")
    assert command_module("balkd-synth").main([
        "--out", str(tmp_path / "synth"), "--languages", ",".join(SYNTH_LANGUAGES), "--high-size", "300",
        "--low-size", "120", "--probe-train", "60", "--probe-dev", "20", "--probe-test", "30", "--quiet"]) == 0
    (tmp_path / "quick_start.sh").write_text("set -euo pipefail\n" + script + "\n", encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(["bash", "quick_start.sh"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"{script}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"

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

    words = (tmp_path / "synth" / "raw" / "de.txt").read_text(encoding="utf-8").splitlines()[0].split()
    query = " ".join(words[:6] + ["<mask>"])
    fairseq_block, hf_block = readme_section_blocks("## Using the student elsewhere", "python")[:2]
    filled = run_python_block(fairseq_block, tmp_path, query)  # fairseq: [(sentence, score, token)] * topk
    assert len(filled) == 3 and all(" ".join(words[:6]) in sentence for sentence, _, _ in filled), filled
    predictions = run_python_block(hf_block, tmp_path, query)  # transformers: [{"score", "token", ...}] * 5
    assert predictions and all(0 <= p["score"] <= 1 and " ".join(words[:6]) in p["sequence"] for p in predictions), predictions


def test_the_substitution_tables_match_the_readme():
    """The quick suite already fails when the README drops a value the slow test replaces."""
    substituted(readme_section_blocks("## Usage", "bash")[0], QUICK_START_TINY, "README.md's quick start")
    for block in readme_section_blocks("## Using the student elsewhere", "python")[:2]:
        substituted(block, PYTHON_TINY, "the Python block")
    with pytest.raises(AssertionError, match="--fp16"):
        substituted("fairseq-train DATA --bf16", [("--fp16", "--cpu")], "a block")
