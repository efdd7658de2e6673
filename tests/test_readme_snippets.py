"""Every command the README and examples/*/README.md show is checked against the real parsers.

A documented flag that a command no longer accepts (renamed, moved from the criterion to the task,
dropped) would make the command fail or, worse, do something else: each shell line of a fenced
``bash`` block that runs ``fairseq-train``, ``fairseq-hydra-train``-free ``balkd-*`` commands or
``balkd-train`` is parsed here exactly as the command parses it (fairseq's own parser with the
plugin's task, criterion and architecture options for fairseq's flags). Python blocks are compiled.
The pipelines the README points to (``make demo`` = examples/toy/pipeline.py) run end to end in
test_demo_pipeline.py.
"""
import ast
import importlib
import re
import shlex
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
