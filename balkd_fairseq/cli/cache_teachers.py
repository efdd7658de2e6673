"""balkd-cache-teachers: run the teachers once and store their top-k soft labels for training.

    balkd-cache-teachers DATA --task balanced_distill --teachers de:de.pt,en:en.pt \\
        --tokens-per-sample 512 --seed 1 --max-epoch 10 --batch-size 32 --cache-dir CACHE
    fairseq-train DATA --user-dir balkd_fairseq --task balanced_distill --teacher-cache CACHE \\
        --criterion multi_teacher_distill ... (the same task flags, --seed and --max-epoch)

The command line is fairseq-train's: give it the same data, task flags (--languages, --balance,
--samples-per-language, --sampling-alpha, --tokens-per-sample, --mask-prob, ...), --seed,
--max-epoch and --valid-subset as the training run (a training command line works as it is, with
--cache-dir added; model, optimizer and criterion flags are accepted and ignored). Masking and
balancing are pure functions of (seed, epoch, sample index), so the cache holds the teachers'
outputs at exactly the masks the student will see: epochs 1..--max-epoch of the train split and
epoch 1 of the validation splits (fairseq validates at a fixed epoch), per language.

--batch-size / --max-tokens set the teachers' inference batches (default 32 sentences); teachers
run on the GPU unless --cpu, in --teacher-dtype. Training with --teacher-cache refuses a cache
built for other data (dict.txt and the .idx/.bin files), masking or balancing settings, seed,
languages or teachers (if --teachers is given), and stops with a clear error at an epoch the cache
does not hold; it checks the whole cache when it starts (every shard present, shapes, dtypes and
token ids in range) and names the file at fault.

Sharded across workers (a SLURM array job, torchrun ranks, or processes started by hand):

    sbatch --array=0-7 --wrap "balkd-cache-teachers DATA ... --cache-dir CACHE"   (or --shard I/8 on each)

Each worker computes only its share of the languages (split by training size, as balkd-train-teachers
does) and writes them into the shared CACHE.partial, one language at a time (temporary names, then a
record that the language is complete). A rerun skips finished languages and redoes a killed worker's.
Every worker needs the same flags apart from --shard: one whose settings change what the cache holds
(--seed, masking, balancing, --max-epoch, --cache-topk, data, teachers) is refused, naming them.
The last worker to finish verifies every language, split and epoch, writes CACHE/manifest.json and
moves CACHE.partial to CACHE; until then training with --teacher-cache CACHE is refused, naming the
languages still missing. --merge-only does that final step alone (e.g. as a job depending on the
array). Without a shard one process does every language, the same way. Everything else is
fairseq-train's help below.
"""
import argparse
import logging
import sys
from typing import List, Optional

import torch

from ..errors import BalkdError
from ..locks import output_lock
from .common import run_cli

logger = logging.getLogger("balkd_fairseq.cli.cache_teachers")


def build_parser(argv: List[str]) -> argparse.ArgumentParser:
    from fairseq import options

    saved, sys.argv = sys.argv, ["balkd-cache-teachers", *argv]  # fairseq peeks at sys.argv for --user-dir
    try:
        parser = options.get_training_parser(default_task="balanced_distill")
    finally:
        sys.argv = saved
    parser.prog = "balkd-cache-teachers"
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.set_defaults(arch="roberta_base")  # model flags are accepted and ignored; fairseq's parser wants an arch
    group = parser.add_argument_group("balkd-cache-teachers")
    group.add_argument("--cache-dir", required=True, metavar="DIR",
                       help="where to write the cache (pass it to training as --teacher-cache DIR); must not exist "
                            "unless --overwrite")
    group.add_argument("--cache-topk", type=int, default=32, metavar="K",
                       help="tokens stored per masked position: the teacher's K most likely, with their probabilities "
                            "(fp16); training may use --topk <= K (default: 32)")
    group.add_argument("--overwrite", action="store_true",
                       help="replace an existing --cache-dir (only once the new cache is complete)")
    group.add_argument("--shard", metavar="I/N",
                       help="compute only worker I's share of the languages, of N workers (I counts from 0; languages "
                            "are split by training size so workers finish together). Default: the torchrun rank or "
                            "SLURM array task when run under one, else every language. The last worker to finish "
                            "verifies the cache and writes its manifest")
    group.add_argument("--merge-only", action="store_true",
                       help="compute nothing: verify that every language of a sharded build is cached in "
                            "CACHE.partial (naming the missing ones), write the manifest and move it to --cache-dir")
    return parser


def print_help(argv: List[str]) -> None:
    """fairseq's parser adds task flags only after a first parse (which --help would cut short): add them here."""
    from ..tasks.balanced_distill import BalancedDistillTask

    parser = build_parser([a for a in argv if a not in ("-h", "--help")])
    BalancedDistillTask.add_args(parser)
    parser.print_help()


def parse(argv: List[str]):
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    args = options.parse_args_and_arch(build_parser(argv), input_args=argv)
    if args.task != "balanced_distill":
        raise BalkdError(f"--task must be balanced_distill (the teacher cache follows its masks), got {args.task!r}")
    if not args.max_epoch or args.max_epoch < 1:
        raise BalkdError("--max-epoch is required: the cache holds train epochs 1..--max-epoch")
    if not getattr(args, "teachers", ""):
        raise BalkdError("--teachers is required: the teachers whose outputs are cached")
    if getattr(args, "teacher_cache", ""):
        raise BalkdError("--teacher-cache is for training; balkd-cache-teachers writes a cache to --cache-dir")
    return args, convert_namespace_to_omegaconf(args)


def _main(argv: Optional[List[str]]) -> int:
    from fairseq import tasks

    import balkd_fairseq  # noqa: F401  (registers the task; checkpoint allowlist)

    from ..sharding import languages_of_shard, resolve_shard
    from ..soft_labels.cache_build import build_cache, merge_cache
    from ..soft_labels.online import TeacherSet

    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print_help(argv)
        return 0
    args, cfg = parse(argv)
    shard = None if args.merge_only else resolve_shard(args.shard)  # a bad --shard fails before any loading
    device = torch.device("cuda") if torch.cuda.is_available() and not args.cpu else torch.device("cpu")
    if not cfg.task.max_resident_teachers:  # the cache is built language by language: one teacher at a time
        cfg.task.max_resident_teachers = 1
    task = tasks.setup_task(cfg.task)
    teachers = TeacherSet.from_task(task)
    subsets = {args.train_subset: list(range(1, args.max_epoch + 1))}
    if not args.disable_validation:  # fairseq validates at epoch 1
        subsets.update({s: [1] for s in args.valid_subset.split(",") if s and s != args.train_subset})
    if args.merge_only:
        manifest = merge_cache(task, teachers, args.cache_dir, subsets, k=args.cache_topk, overwrite=args.overwrite)
    elif shard is None:
        with output_lock(args.cache_dir, "--cache-dir"):  # a second build into the same directory is refused
            manifest = build_cache(
                task, teachers, args.cache_dir, subsets, k=args.cache_topk, batch_size=args.batch_size,
                max_tokens=args.max_tokens, device=device, overwrite=args.overwrite,
            )
    else:  # workers share the directory: each language is locked while it is computed, and the merge
        # the work of a language is its (balanced) number of training samples: every worker computes the same split
        sizes = {task.languages[i]: len(part) for i, part in task.language_datasets(args.train_subset, 1)}
        mine = languages_of_shard(task.languages, sizes, shard)
        logger.info(f"shard {shard}: {len(mine)} of {len(task.languages)} languages: {','.join(mine)}")
        manifest = build_cache(
            task, teachers, args.cache_dir, subsets, k=args.cache_topk, batch_size=args.batch_size,
            max_tokens=args.max_tokens, device=device, overwrite=args.overwrite, languages=mine,
        )
    if manifest is None:
        print(f"shard {shard}: done; the cache waits for other workers' languages (the last to finish merges it)")
        return 0
    rows = sum(sum(per_lang.values()) for per_lang in manifest["rows"].values())
    logger.info(f"wrote {args.cache_dir}: {', '.join(f'{s} epochs {e[0]}..{e[-1]}' for s, e in manifest['splits'].items())}; "
                f"{rows} masked positions x top-{args.cache_topk}")
    print(args.cache_dir)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
