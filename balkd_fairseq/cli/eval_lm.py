"""balkd-eval-lm: masked-LM quality per language (MRR, accuracy@1, MLM-PPL, optionally PPPL).

Every checkpoint is scored on the same deterministic masks of ``DATA/<lang>/<split>``. Per model,
``OUT/<name>/lm.json`` holds the scores with what they were computed on (split, masking, the data
files' and dictionary's hashes) and ``OUT/<name>/lm_items.npz`` the per-item scores that
``balkd-report`` resamples (:mod:`balkd_fairseq.eval.item_scores`). A table is printed.
"""
import argparse
import logging
import os
import sys

import numpy as np
import torch

from ..data.dictionary_hash import dictionary_sha256
from ..data.languages import discover_languages
from ..errors import BalkdError
from ..eval import pppl
from ..eval.item_scores import LM_ITEMS, write_items
from ..eval.masked_lm_eval import (
    BREAK_MODES,
    MaskingConfig,
    check_positions,
    masked_dataset,
    score_dataset,
    split_prefix,
)
from ..eval.mrr import MLM_PPL, MaskedLMScores, NonFiniteLogits
from ..eval.results_io import (
    LM_RESULTS,
    check_can_write,
    parse_languages,
    parse_named_checkpoints,
    refuse_other_results,
    write_json,
)
from ..files import file_sha256
from .common import ArgumentParser, run_cli

logger = logging.getLogger("balkd_fairseq.eval_lm")
UNKNOWN_WARNING_RATE = 0.05  # as balkd-probe's warning about <unk> subwords


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="balkd-eval-lm",
        description="Score masked LMs per language: MRR over masked positions (rank = 1 + number of vocabulary "
        "entries with a strictly higher logit than the gold token), accuracy@1 and MLM-PPL (exp of the mean "
        "cross-entropy of the masked positions, --mask-prob of the tokens masked at once); with --pppl also "
        "pseudo-perplexity (Salazar et al. 2020: every token of each line masked in turn). Masks are "
        "deterministic, so all models see the same masks. --data's dict.txt must be the checkpoint's dictionary.",
    )
    parser.add_argument("--checkpoint", action="append", required=True, metavar="[NAME=]PATH",
                        help="checkpoint to score; repeat for several models. NAME (default: the checkpoint's "
                        "directory name) names the output OUT/NAME/lm.json")
    parser.add_argument("--data", required=True, metavar="DATA",
                        help="data directory: DATA/dict.txt and DATA/<lang>/<split>.{bin,idx}")
    parser.add_argument("--languages", metavar="L1,L2",
                        help="comma-separated languages (default: every DATA/<lang> that has the split)")
    parser.add_argument("--split", default="test", help="split to score, e.g. valid or test (default: test)")
    parser.add_argument("--output-dir", required=True, metavar="OUT",
                        help="writes OUT/<name>/lm.json and OUT/<name>/lm_items.npz (per-item scores) per model")
    parser.add_argument("--seed", type=int, default=1, help="seed of the masks, >= 0 (default: 1)")
    parser.add_argument("--mask-prob", type=float, default=0.15,
                        help="fraction of tokens masked, all replaced by <mask> (default: 0.15)")
    parser.add_argument("--tokens-per-sample", type=int, default=512,
                        help="block length incl. <s>; must not exceed any model's max positions (default: 512)")
    parser.add_argument("--sample-break-mode", choices=BREAK_MODES, default="none",
                        help="how text is cut into blocks, as fairseq's masked_lm (default: none = fixed-size blocks)")
    parser.add_argument("--max-samples", type=int, default=0,
                        help="score only the first N blocks of each language (default: 0 = all)")
    parser.add_argument("--max-tokens", type=int, default=8192, help="tokens per forward batch (default: 8192)")
    parser.add_argument("--pppl", action="store_true",
                        help="also compute pseudo-perplexity (JSON key pppl): each line of the split is a sentence, "
                        "every token of it masked in turn and scored given the rest (<s>, </s> not scored); a line "
                        "longer than the model's positions is scored in consecutive windows of max_positions - 1 tokens. "
                        "Costs one forward row per token of the split")
    parser.add_argument("--pppl-max-sentences", type=int, default=0,
                        help="with --pppl: score only the first N lines of each language (default: 0 = all)")
    parser.add_argument("--cpu", action="store_true", help="run on CPU even when a GPU is available")
    return parser


def _validate(args):
    if not 0.0 < args.mask_prob < 1.0:
        raise BalkdError(f"--mask-prob must be between 0 and 1, got {args.mask_prob}")
    if args.tokens_per_sample < 2:
        raise BalkdError(f"--tokens-per-sample must be at least 2, got {args.tokens_per_sample}")
    if args.max_samples < 0:
        raise BalkdError(f"--max-samples must be 0 (all) or more, got {args.max_samples}")
    if args.seed < 0:  # as balkd-probe: a mask seed is a non-negative integer
        raise BalkdError(f"--seed must be 0 or more, got {args.seed}")
    if args.pppl_max_sentences < 0:
        raise BalkdError(f"--pppl-max-sentences must be 0 (all) or more, got {args.pppl_max_sentences}")
    if args.max_tokens < args.tokens_per_sample:
        raise BalkdError(f"--max-tokens ({args.max_tokens}) must be at least --tokens-per-sample ({args.tokens_per_sample})")
    if not os.path.isfile(os.path.join(args.data, "dict.txt")):
        raise BalkdError(f"--data: dictionary not found: {os.path.join(args.data, 'dict.txt')}")
    models = parse_named_checkpoints(args.checkpoint)
    identities = {name: {"checkpoint": os.path.abspath(path), "checkpoint_sha256": file_sha256(path)}
                  for name, path in models}
    for name, identity in identities.items():
        check_can_write(os.path.join(args.output_dir, name))
        refuse_other_results(os.path.join(args.output_dir, name), identity)
    languages = parse_languages(args.languages, "--languages") if args.languages else _languages_with_split(args)
    for lang in languages:
        split_prefix(args.data, lang, args.split)
    return [(name, path, identities[name]) for name, path in models], languages


def _languages_with_split(args):
    found = [lang for lang in discover_languages(args.data)
             if os.path.isfile(os.path.join(args.data, lang, args.split + ".idx"))]
    if not found:
        raise BalkdError(f"--data {args.data}: no language directory has a {args.split} split; pass --languages")
    return found


def data_fingerprint(data: str, languages, split: str, dictionary) -> dict:
    """sha256 of each language's ``<split>.bin`` / ``.idx`` and of the dictionary: what the scores are of."""
    from ..files import file_sha256

    files = {}
    for lang in languages:
        prefix = split_prefix(data, lang, split)
        files[lang] = {"bin": file_sha256(prefix + ".bin"), "idx": file_sha256(prefix + ".idx")}
    return {"data_sha256": files, "dictionary_sha256": dictionary_sha256(dictionary)}


def score_language(model, dictionary, prefix: str, label: str, args, cfg: MaskingConfig, device: str):
    """(JSON scores, per-item arrays) of one language's split."""
    from tqdm import tqdm

    dataset = masked_dataset(prefix, dictionary, cfg)
    total = len(dataset) if cfg.max_samples <= 0 else min(cfg.max_samples, len(dataset))
    scores = MaskedLMScores()
    with tqdm(total=total, desc=f"{label} masked", unit="block", file=sys.stderr) as progress:
        result = score_dataset(model, dataset, dictionary, args.max_tokens, device, progress, cfg.max_samples, scores)
    _warn_unknown_targets(label, result)
    items = scores.items()
    if args.pppl:
        sentences = pppl.load_sentences(prefix, dictionary, args.pppl_max_sentences)
        with tqdm(total=pppl.count_copies(sentences, dictionary), desc=f"{label} pppl", unit="token",
                  file=sys.stderr) as progress:
            nll, count = pppl.score_sentences(model, sentences, dictionary, args.max_tokens, device, progress)
        result.update(pppl.summary(nll, count))
        items.update({"pppl_nll": nll.astype(np.float32), "pppl_count": count.astype(np.int32)})
    return result, items


def _warn_unknown_targets(label: str, result: dict) -> None:
    if result["n_masked"] and result["n_unknown"] / result["n_masked"] > UNKNOWN_WARNING_RATE:
        logger.warning(
            f"{label}: {100 * result['n_unknown'] / result['n_masked']:.0f}% of the scored tokens are <unk> (text the "
            "vocabulary does not cover); they are easy to predict, so this language's MRR and MLM-PPL look better than "
            "the model reads it"
        )


def score_checkpoint(name, path, identity: dict, languages, args, cfg: MaskingConfig, device: str):
    """(lm.json payload, lm_items.npz arrays) of one checkpoint (``identity``: its path and sha256)."""
    from ..eval.features import load_checkpoint

    model, task = load_checkpoint(path, args.data)  # refuses a --data dictionary that is not the checkpoint's
    check_positions(model, cfg, f"--checkpoint {name}")
    model.to(device)
    dictionary = task.source_dictionary
    results, items = {}, {}
    for lang in languages:
        try:
            results[lang], lang_items = score_language(
                model, dictionary, split_prefix(args.data, lang, args.split), f"{name} {lang}", args, cfg, device)
        except NonFiniteLogits as err:
            raise BalkdError(f"--checkpoint {name} ({path}), {lang} {args.split}: {err}") from None
        items.update({f"{lang}/{field}": array for field, array in lang_items.items()})
    payload = {
        "kind": "lm",
        "name": name,
        **identity,
        "data": os.path.abspath(args.data),
        "split": args.split,
        "masking": vars(cfg),
        "pppl_settings": {"max_sentences": args.pppl_max_sentences} if args.pppl else None,
        **data_fingerprint(args.data, languages, args.split, dictionary),
        "items": LM_ITEMS,
        "languages": results,
    }
    return payload, items


def format_table(all_results) -> str:
    with_pppl = any("pppl" in s for result in all_results for s in result["languages"].values())
    columns = ["MRR", "acc@1", "MLM-PPL"] + (["PPPL"] if with_pppl else []) + ["masked"]
    lines = ["| model | lang | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for result in all_results:
        for lang, s in result["languages"].items():
            cells = [_number(s.get("mrr"), 4), _number(s.get("acc1"), 4), _number(s.get(MLM_PPL), 2)]
            if with_pppl:
                cells.append(_number(s.get("pppl"), 2))
            lines.append(f"| {result['name']} | {lang} | " + " | ".join(cells + [str(s["n_masked"])]) + " |")
    return "\n".join(lines)


def _number(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    models, languages = _validate(args)
    cfg = MaskingConfig(args.seed, args.mask_prob, args.tokens_per_sample, args.sample_break_mode, args.max_samples)
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    # Results are written only once every model has been scored: a bad checkpoint overwrites nothing.
    scored = [score_checkpoint(name, path, identity, languages, args, cfg, device) for name, path, identity in models]
    for result, items in scored:
        directory = os.path.join(args.output_dir, result["name"])
        write_items(os.path.join(directory, LM_ITEMS), items)
        write_json(os.path.join(directory, LM_RESULTS), result)  # last: lm.json means both are complete
        logger.info(f"wrote {os.path.join(directory, LM_RESULTS)} and {LM_ITEMS}")
    print(format_table([result for result, _ in scored]))
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
