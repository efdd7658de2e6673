"""balkd-prepare: raw text per language -> the balanced_distill data directory.

One SentencePiece unigram model and one fairseq dictionary are shared by every language::

    balkd-prepare --raw-dir data/synth/raw --out data/bin --vocab-size 4000 --valid-lines 100 --test-lines 100
    balkd-prepare --raw de=cc100.de.txt,eu=cc100.eu.txt --out data/bin --normalize-punct
    balkd-prepare --raw de=de.train:de.valid:de.test,eu=eu.train:eu.valid:eu.test --out data/bin

Writes DATA/dict.txt, DATA/spm.model (+ .vocab), DATA/stats.json and DATA/<lang>/{train,valid,test}.{bin,idx}
with a copy of dict.txt in every DATA/<lang>/, and DATA/.balkd-output.json, the marker that lets a later
``--force`` replace DATA (never a directory without it, nor one that is or holds an input). The output appears
only when everything succeeded: a killed run leaves a hidden ``.DATA.*.partial`` beside it, which the next run
removes; a second balkd-prepare writing the same DATA at the same time is refused.
"""
import argparse
import os
import sys
import time
from pathlib import Path

from ..data.prepare import PrepareConfig, format_stats, prepare
from ..data.raw_text import DEFAULT_MAX_LINE_CHARS, LONG_LINE_MODES, parse_raw_spec, sources_from_dir
from ..errors import BalkdError
from ..locks import output_lock
from ..outputs import staged_output_dir
from .common import ArgumentParser, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="balkd-prepare",
        description="Prepare multilingual masked-LM data: check the UTF-8 text of every language, split it into "
        "train/valid/test, train ONE SentencePiece unigram model on an alpha-smoothed sample of all languages, "
        "encode every language with it and binarize with fairseq into one directory with ONE shared dictionary. "
        "Streams over the files: memory does not grow with the corpus.",
    )
    inputs = parser.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--raw", metavar="L=FILE,...",
                        help="raw UTF-8 text per language, one sentence or paragraph per line (blank lines are "
                        "skipped): 'de=de.txt,en=en.txt' (split here, see --valid-lines), or pre-split "
                        "'de=train.txt:valid.txt:test.txt'")
    inputs.add_argument("--raw-dir", metavar="DIR", help="a directory of <lang>.txt files (e.g. balkd-synth's OUT/raw)")
    parser.add_argument("--languages", metavar="L1,L2",
                        help="use only these languages of --raw/--raw-dir (default: all of them)")
    parser.add_argument("--out", required=True, metavar="DATA",
                        help="output data directory (must be empty or absent unless --force)")
    parser.add_argument("--force", action="store_true",
                        help="replace a non-empty --out (only once everything succeeded); only a directory an "
                        "earlier balkd command created, never one that is or holds an input")
    parser.add_argument("--vocab-size", type=int, default=8000,
                        help="SentencePiece vocabulary size; a soft limit when the text is too small for it "
                        "(default: 8000)")
    parser.add_argument("--sp-alpha", type=float, default=0.3,
                        help="smoothing exponent of the SentencePiece sample: language share ∝ lines**alpha; "
                        "1 = proportional to size, 0 = uniform (default: 0.3)")
    parser.add_argument("--sp-sample-sentences", type=int, default=1_000_000,
                        help="lines in the SentencePiece training sample, at most (default: 1000000); bounds "
                        "the memory of SentencePiece training")
    parser.add_argument("--character-coverage", type=float, default=0.9995,
                        help="SentencePiece character coverage (default: 0.9995)")
    parser.add_argument("--valid-lines", type=int, default=1000,
                        help="lines of each language drawn at random for the valid split when it is not "
                        "pre-split (default: 1000)")
    parser.add_argument("--test-lines", type=int, default=1000,
                        help="lines of each language drawn at random for the test split when it is not "
                        "pre-split (default: 1000)")
    parser.add_argument("--normalize-punct", nargs="?", const="all", metavar="L1,L2",
                        help="Moses punctuation normalisation (sacremoses) before everything else: for every "
                        "language (flag alone) or for the listed ones (default: off)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the valid/test split and the sample (default: 1)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                        help="SentencePiece training threads (default: min(2, CPUs))")
    parser.add_argument("--max-line-chars", type=int, default=DEFAULT_MAX_LINE_CHARS, metavar="N",
                        help="a line longer than N characters is split (at spaces where possible) or truncated, "
                        "see --long-lines; the summary counts them; 0 keeps every line whole (default: "
                        f"{DEFAULT_MAX_LINE_CHARS})")
    parser.add_argument("--long-lines", choices=LONG_LINE_MODES, default="split",
                        help="what happens to a line longer than --max-line-chars: split into several lines "
                        "or truncate to its first piece (default: split)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no table")
    return parser


def _language_list(value: str, flag: str):
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise BalkdError(f"{flag}: no language in {value!r}")
    return names


def config_from_args(args) -> PrepareConfig:
    wanted = _language_list(args.languages, "--languages") if args.languages else None
    sources = parse_raw_spec(args.raw) if args.raw is not None else sources_from_dir(Path(args.raw_dir), wanted)
    if wanted:
        available = [s.lang for s in sources]
        missing = [lang for lang in wanted if lang not in available]
        if missing:
            raise BalkdError(f"--languages: no input for {', '.join(missing)} (inputs: {', '.join(available)})")
        sources = [s for s in sources if s.lang in wanted]
    if args.normalize_punct is None:
        normalize = frozenset()
    elif args.normalize_punct == "all":
        normalize = frozenset(s.lang for s in sources)
    else:
        normalize = frozenset(_language_list(args.normalize_punct, "--normalize-punct"))
    return PrepareConfig(
        sources=sources, vocab_size=args.vocab_size, sp_alpha=args.sp_alpha,
        sp_sample_sentences=args.sp_sample_sentences, character_coverage=args.character_coverage,
        valid_lines=args.valid_lines, test_lines=args.test_lines, normalize_punct=normalize, seed=args.seed,
        threads=args.threads, progress=not args.quiet, max_line_chars=args.max_line_chars,
        long_lines=args.long_lines,
    )


def check_out_path(out: str) -> None:
    """fairseq reads ':' in a data path as a separator of data shards: such a path would be cut there."""
    if ":" in out:
        raise BalkdError(f"--out: {out} contains ':', which fairseq reads as a separator between data "
                         "directories; choose a path without ':'")


def _main(argv):
    args = build_parser().parse_args(argv)
    check_out_path(args.out)
    cfg = config_from_args(args)
    cfg.validate()
    start = time.time()
    inputs = [path for source in cfg.sources for path in source.files.values()]
    with output_lock(args.out, "--out"), \
            staged_output_dir(Path(args.out), args.force, inputs=inputs, command="balkd-prepare") as staging:
        stats = prepare(cfg, staging)
    if not args.quiet:
        print(format_stats(stats))
        print(f"wrote {args.out} (dict.txt, spm.model, stats.json, <lang>/{{train,valid,test}}) "
              f"in {time.time() - start:.1f}s")
    return 0


def main(argv=None):
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
