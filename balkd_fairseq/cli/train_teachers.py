"""balkd-train-teachers: one monolingual teacher per language, from one command.

    balkd-train-teachers DATA --save-dir TEACHERS [--languages de,en] -- <fairseq-train model/optim flags>

For every language it runs stock ``fairseq-train DATA --task masked_lm --criterion masked_lm
--train-subset <lang>/train --valid-subset <lang>/valid`` (so the shared DATA/dict.txt is read in
place; a ``--train-subset``/``--valid-subset`` given after ``--`` names splits inside DATA/<lang>/)
with the flags after ``--``, saving to TEACHERS/<lang>/. Nothing is written into DATA. The dictionary
a teacher is trained with is copied beside its checkpoints (TEACHERS/<lang>/dict.txt), so the student
can check it without the data, and its hash goes into TEACHERS/<lang>/teacher_done.json.
It is resumable: an interrupted language resumes from its checkpoint_last.pt, and a language whose
teacher is already complete (same flags, dictionary and training data) is skipped. A teacher finished with other
flags (or training data) is resumed as fairseq resumes (e.g. a larger --max-update trains it further); if that trains it
no further, it is refused rather than recorded under flags it was not trained with. One trained with
another dictionary is refused (``--force`` retrains either from scratch). At the end it writes TEACHERS/teachers.json,
the ``--teachers`` mapping the student needs; with ``--languages`` the entries of other languages already in it
are kept, so teachers can be trained a few languages (jobs) at a time.

``--init-from CHECKPOINT`` starts every teacher from one checkpoint (typically the HL-balanced
multilingual student) instead of random weights, so small languages' teachers inherit cross-lingual
knowledge; see :mod:`balkd_fairseq.teacher_init`. The init (path and sha256) is part of the teachers'
completion records and of teachers.json.
"""
import argparse
import os
import sys
from typing import Dict, List, Optional

from tqdm import tqdm

from ..data.dictionary_hash import dict_file_sha256
from ..data.languages import resolve_languages
from ..errors import BalkdError
from ..locks import LOCK_NAME, held_lock
from ..outputs import write_json
from ..sharding import languages_of_shard, resolve_shard
from ..teacher_init import check_init_checkpoint
from ..teacher_training.records import (
    ABSENT,
    COMPLETE,
    DATA_CHANGED,
    TrainingData,
    checkpoint_stamp,
    finished_teacher,
    is_complete,
    mark_complete,
    run_signature,
)
from ..teacher_training.runs import (
    check_save_dir_outside_data,
    discard_stale_previous,
    shard_weights,
    subset_flags,
    train_one,
    training_sizes,
)
from ..teacher_training.teachers_json import previous_entries, teacher_checkpoint, teacher_entry
from .common import ArgumentParser, run_cli
from .train import check_arch

NO_SAVE_FLAGS = ("--no-save", "--no-last-checkpoints")  # fairseq flags that leave a teacher without checkpoint_last.pt


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="balkd-train-teachers", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", help="data directory in the balanced_distill layout (DATA/dict.txt, DATA/<lang>/train.bin ...)")
    parser.add_argument("--save-dir", required=True, help="where teachers go: SAVE_DIR/<lang>/checkpoint_*.pt and SAVE_DIR/teachers.json")
    parser.add_argument("--languages", default="",
                        help="comma-separated languages (default: every subdirectory of DATA not starting with '.', sorted). "
                        "With it, teachers.json keeps the entries it already holds for other languages")
    parser.add_argument("--use-checkpoint", choices=["last", "best"], default="last",
                        help="which checkpoint teachers.json points to: the final one (last) or the best validation one (best) "
                        "(default: last)")
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


def _main(argv: Optional[List[str]]) -> int:
    own, fairseq_args = split_passthrough(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(own)
    if any(a in ("--save-dir", "--task", "--criterion") for a in fairseq_args):
        raise BalkdError("do not pass --save-dir, --task or --criterion after '--': balkd-train-teachers sets them")
    check_saves(fairseq_args)
    langs = languages_of(args.data, args.languages, subset_flags(fairseq_args)["train"])
    check_save_dir_outside_data(args.save_dir, args.data, langs)
    check_arch(fairseq_args, " after '--'")
    if args.use_checkpoint == "best" and "--disable-validation" in fairseq_args:
        raise BalkdError("--use-checkpoint best needs validation, but '--disable-validation' is given after '--' "
                         "(no checkpoint_best.pt is written): use --use-checkpoint last or validate")
    init = check_init_checkpoint(args.init_from, os.path.join(args.data, "dict.txt"), fairseq_args) if args.init_from else None
    signature = run_signature(fairseq_args, init)
    shard = resolve_shard(args.shard)
    sizes = shard_weights(training_sizes(args.data, langs, subset_flags(fairseq_args)["train"]), fairseq_args)
    train_subset = subset_flags(fairseq_args)["train"]
    mine = languages_of_shard(langs, sizes, shard)
    trained_on = TrainingData(args.data, args.save_dir, train_subset, own=mine)  # hashed only where compared or recorded
    for lang in tqdm(mine, desc=f"teachers{f' (shard {shard})' if shard else ''}", unit="lang"):
        lang_dir = os.path.join(args.save_dir, lang)
        finished = ABSENT if args.force else finished_teacher(lang, lang_dir, signature, fairseq_args,
                                                               os.path.join(args.data, "dict.txt"),
                                                               lambda: trained_on[lang])
        if finished != COMPLETE:
            _train_teacher(args, lang, lang_dir, fairseq_args, init, signature, finished, trained_on[lang])
        else:
            teacher_checkpoint(lang_dir, args.use_checkpoint, lang)  # one deleted by hand: said now, not at the end
            tqdm.write(f"teacher for {lang} is complete; skipped")
    waiting = [lang for lang in langs
               if not is_complete(os.path.join(args.save_dir, lang), signature, lambda: trained_on[lang])]
    if waiting:  # other workers' languages: the last worker to finish writes teachers.json
        print(f"shard {shard}: done; teachers.json waits for {len(waiting)} language(s) of other workers: "
              f"{','.join(waiting[:10])}{' ...' if len(waiting) > 10 else ''}")
        return 0
    mapping: Dict[str, object] = {lang: teacher_entry(teacher_checkpoint(os.path.join(args.save_dir, lang), args.use_checkpoint, lang), init)
                                  for lang in langs}
    out = os.path.join(args.save_dir, "teachers.json")
    # jobs of one language each may finish together: one at a time reads, merges and writes the file
    with held_lock(os.path.join(args.save_dir, ".teachers.json" + LOCK_NAME), f"{out}", wait=True):
        kept = previous_entries(out, mapping, dict_file_sha256(os.path.join(args.data, "dict.txt"))) if args.languages.strip(", ") else {}
        write_json(out, {**kept, **mapping}, indent=1)
    print(f"teachers: {out}" + (f" (kept from before: {','.join(sorted(kept))})" if kept else ""))
    return 0


def check_saves(fairseq_args: List[str]) -> None:
    """A teacher is its checkpoints: a run that saves none (or no checkpoint_last.pt, which resuming and
    telling a run that trained from one that did not rely on) would be recorded complete with nothing."""
    refused = [flag for flag in NO_SAVE_FLAGS if flag in fairseq_args]
    if refused:
        raise BalkdError(f"'{refused[0]}' after '--': a teacher must save its checkpoints (checkpoint_last.pt "
                         "included); leave it out")


def _train_teacher(args, lang: str, lang_dir: str, fairseq_args: List[str], init: Optional[dict], signature: str,
                   finished: str, trained_on: dict) -> None:
    """Train or resume one teacher, then record it complete (and only then drop what --force set aside)."""
    tqdm.write(f"training teacher for {lang} (log: {os.path.join(lang_dir, 'train.log')})")
    stamp = checkpoint_stamp(lang_dir) if finished != ABSENT else None
    digest = train_one(args.data, lang, lang_dir, fairseq_args, init, fresh=args.force)
    if stamp is not None and checkpoint_stamp(lang_dir) == stamp:
        raise BalkdError(f"teacher for {lang!r} in {lang_dir} had finished with other settings ({finished}) "
                         "and these train it no further (its schedule is done), so it keeps its record: pass "
                         "--force to retrain it from scratch with these, or use another --save-dir")
    if DATA_CHANGED in finished:
        tqdm.write(f"warning: teacher for {lang} was trained further on changed data ({finished}); it was trained "
                   "partly on the earlier data (--force retrains it on this data alone)")
    changed = mark_complete(lang_dir, signature, fairseq_args, digest, init, trained_on)
    if changed:
        tqdm.write(f"warning: teacher for {lang} was trained partly under other settings ({changed}); "
                   f"{os.path.join(lang_dir, 'teacher_done.json')} lists every run's flags (trained_under)")
    discard_stale_previous(lang_dir)


def main(argv: Optional[List[str]] = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
