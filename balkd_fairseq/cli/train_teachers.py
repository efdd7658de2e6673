"""balkd-train-teachers: one monolingual teacher per language, from one command.

    balkd-train-teachers DATA --save-dir TEACHERS [--languages de,en] -- <fairseq-train model/optim flags>

For every language it runs stock ``fairseq-train DATA/<lang> --task masked_lm --criterion masked_lm``
(the shared DATA/dict.txt, copied into DATA/<lang>/ by balkd-prepare) with the flags after ``--``,
saving to TEACHERS/<lang>/. It is resumable: an interrupted language resumes from its
checkpoint_last.pt, and a language whose teacher is already complete (same flags) is skipped.
At the end it writes TEACHERS/teachers.json, the ``--teachers`` mapping the student needs.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from typing import Dict, List, Optional

from tqdm import tqdm

from ..errors import BalkdError
from ..files import read_json
from ..processes import run_child
from .common import run_cli

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DONE_FILE = "teacher_done.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="balkd-train-teachers", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", help="data directory in the balanced_distill layout (DATA/dict.txt, DATA/<lang>/train.bin ...)")
    parser.add_argument("--save-dir", required=True, help="where teachers go: SAVE_DIR/<lang>/checkpoint_*.pt and SAVE_DIR/teachers.json")
    parser.add_argument("--languages", default="", help="comma-separated languages (default: every subdirectory of DATA, sorted)")
    parser.add_argument("--use-checkpoint", choices=["last", "best"], default="last",
                        help="which checkpoint teachers.json points to: the final one (last) or the best validation one (best)")
    parser.add_argument("--force", action="store_true", help="retrain languages whose teacher is already complete")
    parser.epilog = "Everything after '--' is passed to every fairseq-train run (arch, optimizer, lr, max-update, ...)."
    return parser


def split_passthrough(argv: List[str]):
    """(own arguments, fairseq-train arguments after the first '--')."""
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1:]
    return argv, []


def languages_of(data: str, spec: str) -> List[str]:
    if not os.path.isfile(os.path.join(data, "dict.txt")):
        raise BalkdError(f"shared dictionary not found: {os.path.join(data, 'dict.txt')}")
    langs = [l for l in spec.split(",") if l] if spec else sorted(
        d for d in os.listdir(data) if os.path.isdir(os.path.join(data, d)))
    if not langs:
        raise BalkdError(f"no language subdirectories in {data}")
    for lang in langs:
        if not os.path.isfile(os.path.join(data, lang, "train.idx")):
            raise BalkdError(f"language {lang!r} has no train split: {os.path.join(data, lang, 'train.idx')} not found")
    return langs


def run_signature(fairseq_args: List[str]) -> str:
    return hashlib.sha256("\0".join(fairseq_args).encode("utf-8")).hexdigest()


def is_complete(lang_dir: str, signature: str) -> bool:
    path = os.path.join(lang_dir, DONE_FILE)
    if not os.path.isfile(path):
        return False
    record = read_json(path, "balkd-train-teachers")
    return isinstance(record, dict) and record.get("signature") == signature


def train_one(data: str, lang: str, lang_dir: str, fairseq_args: List[str]) -> None:
    os.makedirs(lang_dir, exist_ok=True)
    lang_data = os.path.join(data, lang)
    dict_copy = os.path.join(lang_data, "dict.txt")
    if not os.path.isfile(dict_copy):  # stock masked_lm reads DATA/<lang>/dict.txt
        shutil.copyfile(os.path.join(data, "dict.txt"), dict_copy)
    cmd = [sys.executable, "-m", "fairseq_cli.train", lang_data, "--user-dir", PLUGIN_DIR,
           "--task", "masked_lm", "--criterion", "masked_lm", "--save-dir", lang_dir, *fairseq_args]
    log_path = os.path.join(lang_dir, "train.log")
    with open(log_path, "a", encoding="utf-8") as log:
        returncode = run_child(cmd, stdout=log, stderr=subprocess.STDOUT)  # ends with this command
    if returncode != 0:
        raise BalkdError(f"teacher for language {lang!r} failed (exit {returncode}); see {log_path}")
    # the dictionary next to the checkpoint lets the student check it symbol by symbol
    shutil.copyfile(os.path.join(data, "dict.txt"), os.path.join(lang_dir, "dict.txt"))


def teacher_checkpoint(lang_dir: str, which: str) -> str:
    path = os.path.join(lang_dir, f"checkpoint_{which}.pt")
    if not os.path.isfile(path):
        raise BalkdError(f"no {os.path.basename(path)} in {lang_dir} (use --use-checkpoint last, or enable validation)")
    return os.path.abspath(path)


def _main(argv: Optional[List[str]]) -> int:
    own, fairseq_args = split_passthrough(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(own)
    if any(a in ("--save-dir", "--task", "--criterion") for a in fairseq_args):
        raise BalkdError("do not pass --save-dir, --task or --criterion after '--': balkd-train-teachers sets them")
    langs = languages_of(args.data, args.languages)
    signature = run_signature(fairseq_args)
    mapping: Dict[str, str] = {}
    for lang in tqdm(langs, desc="teachers", unit="lang"):
        lang_dir = os.path.join(args.save_dir, lang)
        if args.force or not is_complete(lang_dir, signature):
            tqdm.write(f"training teacher for {lang} (log: {os.path.join(lang_dir, 'train.log')})")
            train_one(args.data, lang, lang_dir, fairseq_args)
            with open(os.path.join(lang_dir, DONE_FILE), "w", encoding="utf-8") as f:
                json.dump({"signature": signature, "fairseq_args": fairseq_args}, f, indent=1)
        else:
            tqdm.write(f"teacher for {lang} is complete; skipped")
        mapping[lang] = teacher_checkpoint(lang_dir, args.use_checkpoint)
    out = os.path.join(args.save_dir, "teachers.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(mapping, f, indent=1)
    print(f"teachers: {out}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
