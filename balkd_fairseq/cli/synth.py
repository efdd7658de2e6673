"""balkd-synth: generate the embedded multilingual benchmark (raw text + POS/NER probing data).

Writes, into --out::

    raw/<lang>.txt                          pretraining text, one sentence per line (input of balkd-prepare)
    pos/<lang>/{train,dev,test}.conllu      UPOS in 10-column CoNLL-U (ID, FORM, UPOS, SpaceAfter; the rest '_')
    ner/<lang>/{train,dev,test}.iob2        PER/LOC/ORG in IOB2, token<TAB>tag, blank line between sentences
    languages.json                          languages, low/high resource, anchor, sizes, scripts, typology

Examples: ``balkd-synth --out data/synth --preset shared --languages de,es,tr,eu --seed 1``;
``balkd-synth --out data/synth512 --num-languages 512 --high-size 20000 --low-size 20``
"""
import argparse
import collections
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from ..errors import BalkdError
from ..outputs import staged_output_dir
from ..synth import (
    GENERATED_DEFAULTS,
    GENERATED_SCRIPTS,
    MAX_LANGUAGES,
    NAMES_SCRIPTS,
    PRESET_DEFAULTS,
    PRESETS,
    PROFILES,
    SynthConfig,
    plan_benchmark,
    total_sentences,
    write_benchmark,
)
from .common import ArgumentParser, run_cli


def _preset_help() -> str:
    return "; ".join(
        f"{name}: {', '.join(f'{l} ({PROFILES[l].script})' for l in p.languages)}, default selection "
        f"{','.join(p.toy_languages)}, low-resource by default {','.join(p.low_resource)}, anchor {p.anchor}"
        for name, p in PRESETS.items()
    )


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="balkd-synth",
        description="Generate a synthetic multilingual benchmark: languages that share one latent grammar (POS "
        "sequences, PER/LOC/ORG entities, Zipfian concept frequencies, shared names) but differ in lexicon, word "
        "order, morphology and script, with high- and low-resource languages: a preset's, or --num-languages "
        "generated ones. Deterministic from --seed.",
        epilog="Presets: " + _preset_help() + ". Generated languages (--num-languages): codes of three lowercase "
        f"letters in size order (bab, bad, ...), scripts drawn from {', '.join(GENERATED_SCRIPTS)}.",
    )
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output directory (created; must be empty unless --force)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="language set: shared (all Latin script) or diverse (seven scripts) (default: shared; "
                        "not with --num-languages)")
    parser.add_argument("--num-languages", type=int, metavar="N",
                        help=f"instead of a preset, N generated languages (1 to {MAX_LANGUAGES}), each with its own "
                        "lexicon, word order, morphology and script, sized by a power law over their rank from "
                        "--high-size (the largest) down to --low-size (the smallest)")
    parser.add_argument("--languages", metavar="L1,L2|all",
                        help="comma-separated languages of the preset, or 'all' for the paper's seven "
                        "(default: the preset's 4-language CPU selection, see below; not with --num-languages)")
    parser.add_argument("--low-resource", metavar="L1,L2",
                        help="which languages are low-resource (default: the preset's low-resource languages among "
                        "--languages; with --num-languages, those smaller than sqrt(--high-size * --low-size)); "
                        "pass '' for none")
    parser.add_argument("--anchor", help="the language playing the paper's 'de' (default: de, or the largest "
                        "generated language); must be one of the languages")
    parser.add_argument("--high-size", type=int, default=20000,
                        help="raw sentences per high-resource language; with --num-languages, of the largest "
                        "language (default: 20000)")
    parser.add_argument("--low-size", type=int,
                        help=f"raw sentences per low-resource language (default: {PRESET_DEFAULTS['low_size']}; "
                        "the paper's gap is 30-100x); with --num-languages, of the smallest language, a floor "
                        f"for all (default: {GENERATED_DEFAULTS['low_size']}, at least 3): keep it above "
                        "balkd-prepare's --valid-lines + --test-lines")
    parser.add_argument("--sizes", metavar="L=N,...",
                        help="explicit raw sentence counts for some languages, overriding --high-size/--low-size")
    for split, what in (("train", "training"), ("dev", "dev"), ("test", "test")):
        parser.add_argument(f"--probe-{split}", type=int,
                            help=f"POS and NER {what} sentences per language (default: "
                            f"{PRESET_DEFAULTS['probe_' + split]}; with --num-languages "
                            f"{GENERATED_DEFAULTS['probe_' + split]})")
    parser.add_argument("--lexicon-size", type=int, default=800,
                        help="number of content-word concepts (nouns, verbs, adjectives, adverbs) (default: 800)")
    parser.add_argument("--zipf-exponent", type=float, default=1.0,
                        help="exponent s of the Zipfian word and name frequencies, p(rank) ~ 1/rank^s (default: 1.0)")
    parser.add_argument("--cognate-rate", type=float, default=0.2,
                        help="share of content words derived from a shared proto-form (default: 0.2)")
    parser.add_argument("--homograph-rate", type=float, default=0.3,
                        help="share of verbs, adjectives and adverbs spelled like a noun, so POS needs context "
                        "(default: 0.3)")
    parser.add_argument("--names-script", choices=NAMES_SCRIPTS, default="own",
                        help="how languages in other scripts write the names shared by every language: 'own' "
                        "transliterates them into each language's script; 'latin' keeps them in Latin letters (with "
                        "the language's endings in its script), as text that leaves foreign names untransliterated "
                        "does, so the names link the scripts (default: own)")
    parser.add_argument("--seed", type=int, default=1, help="random seed; the output is a function of it (default: 1)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes generating in parallel; the output does not depend on it "
                        "(default: min(2, CPUs))")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return parser


def _languages(value, flag):
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if value.strip() and not names:
        raise BalkdError(f"{flag}: no language in {value!r}")
    return tuple(names)


def _sizes(value):
    sizes = {}
    for item in (value or "").split(","):
        if not item.strip():
            continue
        lang, sep, count = item.partition("=")
        if not sep or not count.strip().lstrip("-").isdigit():
            raise BalkdError(f"--sizes: expected LANG=NUMBER, got {item!r}")
        sizes[lang.strip()] = int(count)
    return sizes


def config_from_args(args) -> SynthConfig:
    if args.num_languages is not None and args.preset is not None:
        raise BalkdError("--preset: cannot be combined with --num-languages (choose one source of languages)")
    languages = _languages(args.languages, "--languages") or ()
    return SynthConfig(
        preset=args.preset or "shared", num_languages=args.num_languages, languages=languages,
        low_resource=_languages(args.low_resource, "--low-resource"),
        anchor=args.anchor, high_size=args.high_size, low_size=args.low_size, sizes=_sizes(args.sizes),
        probe_train=args.probe_train, probe_dev=args.probe_dev, probe_test=args.probe_test,
        lexicon_size=args.lexicon_size, zipf_exponent=args.zipf_exponent, cognate_rate=args.cognate_rate,
        homograph_rate=args.homograph_rate, names_script=args.names_script, seed=args.seed,
    )


def _main(argv):
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        raise BalkdError(f"--workers: must be at least 1 (got {args.workers})")
    plan = plan_benchmark(config_from_args(args))
    out = Path(args.out)
    start = time.time()
    with staged_output_dir(out, args.force, command="balkd-synth") as staging:
        with tqdm(total=total_sentences(plan), desc="balkd-synth", unit="sent", file=sys.stderr,
                  disable=args.quiet) as bar:
            write_benchmark(plan, staging, progress=bar.update, workers=args.workers)
    if not args.quiet:
        _print_summary(plan)
        print(f"wrote {out} in {time.time() - start:.1f}s")
    return 0


SUMMARY_LANGUAGES = 20  # more languages are summarised by script instead of listed


def _print_summary(plan) -> None:
    if len(plan.languages) <= SUMMARY_LANGUAGES:
        for lang in plan.languages:
            level = "low" if lang in plan.low_resource else "high"
            anchor = "  (anchor)" if lang == plan.anchor else ""
            size = plan.raw_sentences[lang]
            print(f"{lang:>4}  {plan.profiles[lang].script:<10} {level:<4} {size:>8} raw sentences{anchor}")
    else:
        sizes = plan.raw_sentences
        scripts = collections.Counter(plan.profiles[lang].script for lang in plan.languages)
        print(f"{len(plan.languages)} languages, {sum(sizes.values())} raw sentences, {max(sizes.values())} "
              f"({max(sizes, key=sizes.get)}) to {min(sizes.values())} ({min(sizes, key=sizes.get)}) per language; "
              f"{len(plan.low_resource)} low-resource; anchor {plan.anchor}")
        print("scripts: " + ", ".join(f"{script} {n}" for script, n in scripts.most_common()))
    probes = plan.probe_sentences
    print(f"probing: {probes['train']}/{probes['dev']}/{probes['test']} train/dev/test sentences per language "
          "and task")


def main(argv=None):
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
