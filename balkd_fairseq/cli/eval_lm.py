"""balkd-eval-lm: masked-LM quality per language (MRR, accuracy@1, pseudo-perplexity).

Every checkpoint is scored on the same deterministic masks of ``DATA/<lang>/<split>``; one JSON
file per model is written to ``OUT/<name>/lm.json`` and a table is printed.
"""
import argparse
import logging
import os
import sys

import torch

from ..errors import BalkdError
from .common import run_cli
from ..eval.masked_lm_eval import BREAK_MODES, MaskingConfig, check_positions, masked_dataset, score_dataset, split_prefix
from ..eval.results_io import LM_RESULTS, parse_languages, parse_named_path, write_json

logger = logging.getLogger("balkd_fairseq.eval_lm")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="balkd-eval-lm",
        description="Score masked LMs per language: MRR over masked positions (rank = 1 + number of vocabulary "
        "entries with a strictly higher logit than the gold token), accuracy@1 and pseudo-perplexity "
        "(exp of the mean masked cross-entropy). Masks are deterministic, so all models see the same masks.",
    )
    parser.add_argument("--checkpoint", action="append", required=True, metavar="[NAME=]PATH",
                        help="checkpoint to score; repeat for several models. NAME (default: the checkpoint's "
                        "directory name) names the output OUT/NAME/lm.json")
    parser.add_argument("--data", required=True, metavar="DATA",
                        help="data directory: DATA/dict.txt and DATA/<lang>/<split>.{bin,idx}")
    parser.add_argument("--languages", metavar="L1,L2",
                        help="comma-separated languages (default: every DATA/<lang> that has the split)")
    parser.add_argument("--split", default="test", help="split to score, e.g. valid or test (default: test)")
    parser.add_argument("--output-dir", required=True, metavar="OUT", help="writes OUT/<name>/lm.json per model")
    parser.add_argument("--seed", type=int, default=1, help="seed of the masks (default: 1)")
    parser.add_argument("--mask-prob", type=float, default=0.15,
                        help="fraction of tokens masked, all replaced by <mask> (default: 0.15)")
    parser.add_argument("--tokens-per-sample", type=int, default=512,
                        help="block length incl. <s>; must not exceed any model's max positions (default: 512)")
    parser.add_argument("--sample-break-mode", choices=BREAK_MODES, default="none",
                        help="how text is cut into blocks, as fairseq's masked_lm (default: none = fixed-size blocks)")
    parser.add_argument("--max-samples", type=int, default=0,
                        help="score only the first N blocks of each language (default: 0 = all)")
    parser.add_argument("--max-tokens", type=int, default=8192, help="tokens per forward batch (default: 8192)")
    parser.add_argument("--cpu", action="store_true", help="run on CPU even when a GPU is available")
    return parser


def _validate(args):
    if not 0.0 < args.mask_prob < 1.0:
        raise BalkdError(f"--mask-prob must be between 0 and 1, got {args.mask_prob}")
    if args.tokens_per_sample < 2:
        raise BalkdError(f"--tokens-per-sample must be at least 2, got {args.tokens_per_sample}")
    if args.max_tokens < args.tokens_per_sample:
        raise BalkdError(f"--max-tokens ({args.max_tokens}) must be at least --tokens-per-sample ({args.tokens_per_sample})")
    if not os.path.isfile(os.path.join(args.data, "dict.txt")):
        raise BalkdError(f"--data: dictionary not found: {os.path.join(args.data, 'dict.txt')}")
    models = [parse_named_path(value, "--checkpoint") for value in args.checkpoint]
    names = [name for name, _ in models]
    if len(set(names)) != len(names):
        raise BalkdError(f"--checkpoint: two models share a name ({', '.join(names)}); use NAME=PATH")
    for name, path in models:
        if not os.path.isfile(path):
            raise BalkdError(f"--checkpoint {name}: file not found: {path}")
    languages = parse_languages(args.languages, "--languages") if args.languages else _languages_with_split(args)
    for lang in languages:
        split_prefix(args.data, lang, args.split)
    return models, languages


def _languages_with_split(args):
    found = sorted(
        d for d in os.listdir(args.data)
        if os.path.isfile(os.path.join(args.data, d, args.split + ".idx"))
    )
    if not found:
        raise BalkdError(f"--data {args.data}: no language directory has a {args.split} split; pass --languages")
    return found


def score_checkpoint(name, path, languages, args, cfg: MaskingConfig, device: str) -> dict:
    from tqdm import tqdm

    from ..eval.features import load_checkpoint

    model, task = load_checkpoint(path, args.data)
    check_positions(model, cfg, f"--checkpoint {name}")
    model.to(device)
    dictionary = task.source_dictionary
    results = {}
    for lang in languages:
        dataset = masked_dataset(split_prefix(args.data, lang, args.split), dictionary, cfg)
        total = len(dataset) if cfg.max_samples <= 0 else min(cfg.max_samples, len(dataset))
        with tqdm(total=total, desc=f"{name} {lang}", unit="block", file=sys.stderr) as progress:
            results[lang] = score_dataset(model, dataset, dictionary, args.max_tokens, device, progress, cfg.max_samples)
    return {
        "kind": "lm",
        "name": name,
        "checkpoint": os.path.abspath(path),
        "data": os.path.abspath(args.data),
        "split": args.split,
        "masking": vars(cfg),
        "languages": results,
    }


def format_table(all_results) -> str:
    lines = ["| model | lang | MRR | acc@1 | pseudo-ppl | masked |", "|---|---|---|---|---|---|"]
    for result in all_results:
        for lang, s in result["languages"].items():
            if s["n_masked"] == 0:
                lines.append(f"| {result['name']} | {lang} | – | – | – | 0 |")
                continue
            lines.append(
                f"| {result['name']} | {lang} | {s['mrr']:.4f} | {s['acc1']:.4f} | {s['pseudo_perplexity']:.2f} | {s['n_masked']} |"
            )
    return "\n".join(lines)


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    models, languages = _validate(args)
    cfg = MaskingConfig(args.seed, args.mask_prob, args.tokens_per_sample, args.sample_break_mode, args.max_samples)
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    # Results are written only once every model has been scored: a bad checkpoint overwrites nothing.
    all_results = [score_checkpoint(name, path, languages, args, cfg, device) for name, path in models]
    for result in all_results:
        out = os.path.join(args.output_dir, result["name"], LM_RESULTS)
        write_json(out, result)
        logger.info(f"wrote {out}")
    print(format_table(all_results))
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
