"""balkd-train-teachers: one monolingual teacher per language, from one command.

    balkd-train-teachers DATA --save-dir TEACHERS [--languages de,en] -- <fairseq-train model/optim flags>

For every language it runs stock ``fairseq-train DATA --task masked_lm --criterion masked_lm
--train-subset <lang>/train --valid-subset <lang>/valid`` (so the shared DATA/dict.txt is read in
place; a ``--train-subset``/``--valid-subset`` given after ``--`` names splits inside DATA/<lang>/)
with the flags after ``--``, saving to TEACHERS/<lang>/. Nothing is written into DATA. The dictionary
a teacher is trained with is copied beside its checkpoints (TEACHERS/<lang>/dict.txt), so the student
can check it without the data, and its hash goes into TEACHERS/<lang>/teacher_done.json.
It is resumable: an interrupted language resumes from its checkpoint_last.pt, and a language whose
teacher is already complete (same flags and dictionary) is skipped. A teacher finished with other
flags is resumed as fairseq resumes (e.g. a larger --max-update trains it further); if that trains it
no further, it is refused rather than recorded under flags it was not trained with. One trained with
another dictionary is refused (``--force`` retrains either from scratch). At the end it writes TEACHERS/teachers.json,
the ``--teachers`` mapping the student needs.

``--init-from CHECKPOINT`` starts every teacher from one checkpoint (typically the HL-balanced
multilingual student) instead of random weights, so small languages' teachers inherit cross-lingual
knowledge; see :mod:`balkd_fairseq.teacher_init`. The init (path and sha256) is part of the teachers'
completion records and of teachers.json.
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from typing import Dict, List, Optional

from tqdm import tqdm

from ..data.dictionary_hash import dict_file_sha256, record_dictionary
from ..data.languages import resolve_languages
from ..errors import BalkdError
from ..files import read_json
from ..locks import LOCK_NAME, hold_directory_lock
from ..outputs import lies_within, write_json
from ..processes import run_child
from ..sharding import languages_of_shard, resolve_shard
from ..teacher_init import check_init_checkpoint, init_flags, record_init
from .common import ArgumentParser, run_cli
from .train import check_arch

# a teacher is one process: the rank of a torchrun/SLURM worker chose its shard of languages (--shard),
# it must not make the teacher's fairseq-train join a distributed job
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                      "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")
DONE_FILE = "teacher_done.json"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="balkd-train-teachers", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", help="data directory in the balanced_distill layout (DATA/dict.txt, DATA/<lang>/train.bin ...)")
    parser.add_argument("--save-dir", required=True, help="where teachers go: SAVE_DIR/<lang>/checkpoint_*.pt and SAVE_DIR/teachers.json")
    parser.add_argument("--languages", default="",
                        help="comma-separated languages (default: every subdirectory of DATA not starting with '.', sorted)")
    parser.add_argument("--use-checkpoint", choices=["last", "best"], default="last",
                        help="which checkpoint teachers.json points to: the final one (last) or the best validation one (best)")
    parser.add_argument("--force", action="store_true", help="retrain every language from scratch, also those whose teacher is already complete (the "
                             "old teacher is kept in LANG/.previous until the new one has finished)")
    parser.add_argument("--init-from", metavar="CHECKPOINT",
                        help="start every teacher from this checkpoint's weights (e.g. the HL-balanced multilingual "
                        "student; fairseq's --finetune-from-model: optimizer, scheduler and meters start fresh) and "
                        "continue on its own language. It must embed DATA/dict.txt and have the architecture given "
                        "after '--'. Recorded (path, sha256) in every teacher's teacher_done.json and in teachers.json; "
                        "a save dir holding teachers trained from another init is refused")
    parser.add_argument("--shard", metavar="I/N",
                        help="train only worker I's share of the languages, of N workers (I counts from 0; languages are "
                        "split by training size so workers finish together). Default: the torchrun rank or SLURM array "
                        "task when run under one, else every language. TEACHERS/teachers.json is written by whichever "
                        "worker finds every language complete")
    parser.epilog = "Everything after '--' is passed to every fairseq-train run (arch, optimizer, lr, max-update, ...)."
    return parser


def split_passthrough(argv: List[str]):
    """(own arguments, fairseq-train arguments after the first '--')."""
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1:]
    return argv, []


def languages_of(data: str, spec: str, train_subset: str = "train") -> List[str]:
    if not os.path.isfile(os.path.join(data, "dict.txt")):
        raise BalkdError(f"shared dictionary not found: {os.path.join(data, 'dict.txt')}")
    langs = resolve_languages(data, spec)
    for lang in langs:
        if not os.path.isfile(os.path.join(data, lang, f"{train_subset}.idx")):
            raise BalkdError(f"language {lang!r} has no {train_subset} split: "
                             f"{os.path.join(data, lang, train_subset + '.idx')} not found")
    return langs


def subset_flags(fairseq_args: List[str]) -> dict:
    """--train-subset / --valid-subset given after '--' (fairseq's defaults otherwise), and the other arguments."""
    values = {"--train-subset": "train", "--valid-subset": "valid"}
    rest, i = [], 0
    while i < len(fairseq_args):
        arg = fairseq_args[i]
        flag, eq, value = arg.partition("=")
        if flag in values and eq:
            values[flag] = value
        elif arg in values and i + 1 < len(fairseq_args):
            values[arg] = fairseq_args[i + 1]
            i += 1
        else:
            rest.append(arg)
        i += 1
    return {"train": values["--train-subset"], "valid": values["--valid-subset"], "rest": rest}


def language_subset_args(fairseq_args: List[str], lang: str) -> List[str]:
    """The flags for one teacher: its subsets as paths inside DATA (``<lang>/train``), the rest unchanged."""
    subsets = subset_flags(fairseq_args)
    valid = ",".join(f"{lang}/{name.strip()}" for name in subsets["valid"].split(",") if name.strip())
    return ["--train-subset", f"{lang}/{subsets['train']}", "--valid-subset", valid, *subsets["rest"]]


def run_signature(fairseq_args: List[str], init: Optional[dict] = None) -> str:
    """What makes a teacher complete: its flags and, with --init-from, the content of its init checkpoint."""
    return hashlib.sha256("\0".join(fairseq_args + ([f"init:{init['sha256']}"] if init else [])).encode("utf-8")).hexdigest()


def is_complete(lang_dir: str, signature: str) -> bool:
    path = os.path.join(lang_dir, DONE_FILE)
    if not os.path.isfile(path):
        return False
    record = read_json(path, "balkd-train-teachers")
    return isinstance(record, dict) and record.get("signature") == signature


COMPLETE, ABSENT = "complete", "absent"  # what a language's directory holds (else: how its settings differ)


def finished_teacher(lang: str, lang_dir: str, signature: str, fairseq_args: List[str], dictionary: str) -> str:
    """COMPLETE (a finished teacher of these settings: skipped), ABSENT (none finished: train or resume), or how
    the finished teacher's settings differ from these (fairseq then resumes it, which trains it further or not
    at all). A finished teacher trained with another dictionary (DATA prepared again) is refused."""
    path = os.path.join(lang_dir, DONE_FILE)
    record = read_json(path, "balkd-train-teachers") if os.path.isfile(path) else None
    if not isinstance(record, dict):
        return ABSENT
    if record.get("dictionary_sha256") not in (None, dict_file_sha256(dictionary)):
        raise BalkdError(f"teacher for {lang!r} in {lang_dir} was trained with another dictionary than {dictionary} "
                         "(was DATA prepared again?): pass --force to retrain it, or use another --save-dir")
    if record.get("signature") == signature:
        return COMPLETE
    return _flag_difference(record.get("fairseq_args") or [], fairseq_args)


def checkpoint_stamp(lang_dir: str):
    """(size, mtime) of checkpoint_last.pt: fairseq rewrites it whenever it trains."""
    path = os.path.join(lang_dir, "checkpoint_last.pt")
    return (os.path.getsize(path), os.stat(path).st_mtime_ns) if os.path.isfile(path) else None


def _flag_difference(before: List[str], now: List[str]) -> str:
    if before == now:
        return "the same flags, another --init-from checkpoint"
    i = next((k for k, (a, b) in enumerate(zip(before, now)) if a != b), min(len(before), len(now)))
    if 0 < i and not (before[i:i + 1] or now[i:i + 1] or ["--"])[0].startswith("--"):
        i -= 1  # a value differs: show its flag too
    return f"flags from {' '.join(before[i:i + 2]) or 'their end'!r} there, {' '.join(now[i:i + 2]) or 'their end'!r} now"


def check_save_dir_outside_data(save_dir: str, data: str, langs: List[str]) -> None:
    """Teachers are written into SAVE/<lang>/: never into DATA (its <lang>/ holds the user's binarized text)."""
    inside_data = lies_within(save_dir, data)
    holding_data = [lang for lang in langs if lies_within(data, os.path.join(save_dir, lang))]
    if inside_data or holding_data:
        where = save_dir if inside_data else os.path.join(save_dir, holding_data[0])
        raise BalkdError(f"--save-dir: {where} is or lies inside the data directory {data} (or holds it); "
                         "teachers are never written into DATA: choose another directory")


def single_process_env() -> Dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in LAUNCHER_VARIABLES}


PREVIOUS_RUN = ".previous"  # --force: the teacher being replaced, until its retraining has finished


def _own_entries(lang_dir: str) -> List[str]:
    return [name for name in os.listdir(lang_dir) if name not in (LOCK_NAME, PREVIOUS_RUN)]


def _remove_own_entries(lang_dir: str) -> None:
    for name in _own_entries(lang_dir):
        path = os.path.join(lang_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def set_aside_previous_run(lang_dir: str) -> Optional[str]:
    """--force: move the teacher's files into ``lang_dir/.previous`` so it retrains from scratch.

    Kept until the new teacher is complete (a failed retraining puts them back). A ``.previous`` left by an
    interrupted retraining already holds the last complete teacher: the partial files beside it go.
    """
    previous = os.path.join(lang_dir, PREVIOUS_RUN)
    if os.path.isdir(previous):
        _remove_own_entries(lang_dir)
        return previous
    entries = _own_entries(lang_dir)
    if not entries:
        return None
    os.makedirs(previous)
    for name in entries:
        os.replace(os.path.join(lang_dir, name), os.path.join(previous, name))
    return previous


def restore_previous_run(lang_dir: str, previous: str) -> None:
    _remove_own_entries(lang_dir)
    for name in os.listdir(previous):
        os.replace(os.path.join(previous, name), os.path.join(lang_dir, name))
    os.rmdir(previous)


def train_one(data: str, lang: str, lang_dir: str, fairseq_args: List[str], init: Optional[dict] = None,
              fresh: bool = False) -> str:
    """Train (or resume) one teacher; returns the hash of the dictionary it was trained with.

    ``fresh`` (--force) trains from scratch even over a complete teacher, which is replaced only once the
    new one has finished."""
    os.makedirs(lang_dir, exist_ok=True)
    hold_directory_lock(lang_dir, f"teacher directory of {lang!r}")  # another worker training it is refused
    previous = set_aside_previous_run(lang_dir) if fresh else None
    try:
        digest = _train(data, lang, lang_dir, fairseq_args, init)
    except BaseException:  # also Ctrl-C: the half-trained teacher must not take the finished one's place
        if previous is not None:
            restore_previous_run(lang_dir, previous)
        raise
    if previous is not None:
        shutil.rmtree(previous)
    return digest


def _train(data: str, lang: str, lang_dir: str, fairseq_args: List[str], init: Optional[dict]) -> str:
    digest = record_dictionary(os.path.join(data, "dict.txt"), lang_dir)
    record_init(lang_dir, lang, init)
    # balkd-train: fairseq-train with the plugin, and an exit that never aborts in the prefetch thread
    cmd = [sys.executable, "-m", "balkd_fairseq.cli.train", data,
           "--task", "masked_lm", "--criterion", "masked_lm", "--save-dir", lang_dir,
           *init_flags(init), *language_subset_args(fairseq_args, lang)]
    log_path = os.path.join(lang_dir, "train.log")
    with open(log_path, "a", encoding="utf-8") as log:
        returncode = run_child(cmd, stdout=log, stderr=subprocess.STDOUT, env=single_process_env())
    if returncode != 0:
        raise BalkdError(f"teacher for language {lang!r} failed (exit {returncode}); see {log_path}")
    return digest


def teacher_checkpoint(lang_dir: str, which: str) -> str:
    path = os.path.join(lang_dir, f"checkpoint_{which}.pt")
    if not os.path.isfile(path):
        raise BalkdError(f"no {os.path.basename(path)} in {lang_dir} (use --use-checkpoint last, or enable validation)")
    return os.path.abspath(path)


def teacher_entry(checkpoint: str, init: Optional[dict]):
    """A teachers.json value: the checkpoint path, or with --init-from ``{"checkpoint": PATH, "init_from": {...}}``."""
    return {"checkpoint": checkpoint, "init_from": init} if init else checkpoint


def _main(argv: Optional[List[str]]) -> int:
    own, fairseq_args = split_passthrough(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(own)
    if any(a in ("--save-dir", "--task", "--criterion") for a in fairseq_args):
        raise BalkdError("do not pass --save-dir, --task or --criterion after '--': balkd-train-teachers sets them")
    langs = languages_of(args.data, args.languages, subset_flags(fairseq_args)["train"])
    check_save_dir_outside_data(args.save_dir, args.data, langs)
    check_arch(fairseq_args, " after '--'")
    if args.use_checkpoint == "best" and "--disable-validation" in fairseq_args:
        raise BalkdError("--use-checkpoint best needs validation, but '--disable-validation' is given after '--' "
                         "(no checkpoint_best.pt is written): use --use-checkpoint last or validate")
    init = check_init_checkpoint(args.init_from, os.path.join(args.data, "dict.txt"), fairseq_args) if args.init_from else None
    signature = run_signature(fairseq_args, init)
    shard = resolve_shard(args.shard)
    train_subset = subset_flags(fairseq_args)["train"]
    sizes = shard_weights({lang: _size(os.path.join(args.data, lang, f"{train_subset}.bin")) for lang in langs},
                          fairseq_args)
    for lang in tqdm(languages_of_shard(langs, sizes, shard), desc=f"teachers{f' (shard {shard})' if shard else ''}",
                     unit="lang"):
        lang_dir = os.path.join(args.save_dir, lang)
        finished = ABSENT if args.force else finished_teacher(lang, lang_dir, signature, fairseq_args,
                                                               os.path.join(args.data, "dict.txt"))
        if finished != COMPLETE:
            tqdm.write(f"training teacher for {lang} (log: {os.path.join(lang_dir, 'train.log')})")
            stamp = checkpoint_stamp(lang_dir) if finished != ABSENT else None
            digest = train_one(args.data, lang, lang_dir, fairseq_args, init, fresh=args.force)
            if stamp is not None and checkpoint_stamp(lang_dir) == stamp:
                raise BalkdError(f"teacher for {lang!r} in {lang_dir} had finished with other settings ({finished}) "
                                 "and these train it no further (its schedule is done), so it keeps its record: pass "
                                 "--force to retrain it from scratch with these, or use another --save-dir")
            write_json(os.path.join(lang_dir, DONE_FILE), {"signature": signature, "fairseq_args": fairseq_args,
                                                           "dictionary_sha256": digest, "init_from": init})
        else:
            tqdm.write(f"teacher for {lang} is complete; skipped")
    waiting = [lang for lang in langs if not is_complete(os.path.join(args.save_dir, lang), signature)]
    if waiting:  # other workers' languages: the last worker to finish writes teachers.json
        print(f"shard {shard}: done; teachers.json waits for {len(waiting)} language(s) of other workers: "
              f"{','.join(waiting[:10])}{' ...' if len(waiting) > 10 else ''}")
        return 0
    mapping: Dict[str, object] = {lang: teacher_entry(teacher_checkpoint(os.path.join(args.save_dir, lang), args.use_checkpoint), init)
                                  for lang in langs}
    out = os.path.join(args.save_dir, "teachers.json")
    write_json(out, mapping, indent=1)
    print(f"teachers: {out}")
    return 0


def shard_weights(sizes: Dict[str, int], fairseq_args: List[str]) -> Dict[str, int]:
    """What each teacher costs, for splitting languages across workers: its training data's size, except
    under --max-update without --max-epoch, where every teacher trains exactly that many updates whatever
    its size (by size, one worker would get the largest language and another all the small ones)."""
    lengths = argparse.ArgumentParser(add_help=False)
    lengths.add_argument("--max-update", type=int, default=0)
    lengths.add_argument("--max-epoch", type=int, default=0)
    parsed, _ = lengths.parse_known_args(fairseq_args)
    if parsed.max_update > 0 and parsed.max_epoch <= 0:
        return dict.fromkeys(sizes, 1)
    return sizes


def _size(path: str) -> int:
    return os.path.getsize(path) if os.path.isfile(path) else 1


def main(argv: Optional[List[str]] = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
