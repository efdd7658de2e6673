"""A diagnostic NER probe with held-out names: can it tell the models apart where the benchmark's cannot?

On the diverse preset an untrained encoder probes the benchmark's NER as well as every trained model
(RESULTS.md, sessions 7-12): the test sentences' names occur in the probe's training sentences, so a
probe scores by recognising a word it was trained on, which needs no pretraining. Here the names of
each pool (first names, surnames, cities) are split in two halves by index: the probe trains (and
its dev split is drawn) on sentences whose names all come from one half, and is tested on sentences
with at least one name, all from the other. Every name still occurs in the LM training text, so what
a model learnt about a name there (its contexts: "in X", "X said") is what the probe can use.

Nothing is retrained: the benchmark's raw text and POS files are untouched (the NER files come from
their own random streams), and the existing checkpoints of a sweep (pipeline.py sweep) are probed
again, NER only, into ``<run>/results-heldout-ner/``, beside links to their LM scores; one report per
preset goes to ``OUT/<preset>/heldout-ner-report/`` (and ``.../control`` against the untrained encoder).

    python examples/toy/heldout_ner.py --out /work/sweep --presets diverse,shared --seeds 1,2,3 \\
        --configs HL,HL-balanced,Ours+fallback+hard0.3
"""
import argparse
import json
import os
import sys
from dataclasses import asdict
from typing import Iterator, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from configurations import CONFIGS, CONTROL, PRESET_GROUPS, TEACHER_SETS  # noqa: E402
from runner import done, mark_done, run, step  # noqa: E402

from balkd_fairseq.synth.corpus import GENERATOR_KNOBS, _realizer  # noqa: E402
from balkd_fairseq.synth.grammar import LatentSentence  # noqa: E402
from balkd_fairseq.synth.plan import SynthConfig  # noqa: E402
from balkd_fairseq.synth.presets import PROFILES  # noqa: E402
from balkd_fairseq.synth.probing import iob2_block  # noqa: E402
from balkd_fairseq.synth.sampling import derive_rng  # noqa: E402

NAME_POOLS = ("first", "last", "city")  # org words ("Bank") are common nouns of the grammar: never held out
RESULTS = "results-heldout-ner"
SPLITS = ("train", "dev", "test")


def names(latent: LatentSentence) -> Iterator[Tuple[str, int]]:
    """(pool, index) of every name in the sentence's entities."""
    for clause in latent.clauses:
        phrases = [clause.subject] + ([clause.obj] if clause.obj is not None else []) + [np for _, np in clause.obliques]
        for np in phrases:
            if np.kind in ("PER", "LOC", "ORG"):
                yield from ((pool, index) for pool, index in np.head if pool in NAME_POOLS)


def held_out(name: Tuple[str, int]) -> bool:
    return name[1] % 2 == 1  # both halves hold frequent and rare names (Zipfian ranks alternate)


def accepted(latent: LatentSentence, split: str) -> bool:
    found = list(names(latent))
    if split == "test":
        return bool(found) and all(held_out(name) for name in found)
    return not any(held_out(name) for name in found)


def write_split(synth: str, lang: str, split: str, count: int, out: str) -> None:
    meta = json.load(open(os.path.join(synth, "languages.json"), encoding="utf-8"))
    defaults = asdict(SynthConfig())  # a knob languages.json lacks was at its default (names_script: recorded when set)
    knobs = tuple([meta["seed"]] + [meta["generator"].get(k, defaults[k]) for k in GENERATOR_KNOBS[1:]])
    grammar, realizer = _realizer(PROFILES[lang], knobs)
    rng = derive_rng(meta["seed"], "heldout-ner", lang, split)
    blocks = []
    while len(blocks) < count:
        latent = grammar.sentence(rng)
        if accepted(latent, split):
            blocks.append(iob2_block(realizer.sentence(latent)))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        f.write("".join(blocks))
    os.replace(out + ".tmp", out)


def make_probe_files(synth: str, out: str) -> List[str]:
    """OUT/ner/<lang>/{train,dev,test}.iob2 with the benchmark's sentence counts; the benchmark's languages."""
    meta = json.load(open(os.path.join(synth, "languages.json"), encoding="utf-8"))
    if not done(out):
        step(f"held-out-name NER files -> {out}")
        for lang in meta["languages"]:
            for split in SPLITS:
                write_split(synth, lang, split, meta["probe_sentences"][split], os.path.join(out, "ner", lang, f"{split}.iob2"))
        mark_done(out)
    return meta["languages"]


def results_dir(pooling: str) -> str:
    """Where a run's held-out-name results go: first-subword pooling keeps session 14's directory."""
    return RESULTS if pooling == "first" else f"{RESULTS}-{pooling}"


def probe(run_dir: str, bench: str, name: str, checkpoint: str, languages: List[str], ner_dir: str, pooling: str,
          extra: Tuple[str, ...] = ()) -> None:
    out = os.path.join(run_dir, results_dir(pooling), name)
    if done(out):
        return
    step(f"{os.path.basename(run_dir)} {name}: NER probe with held-out names")
    run(["balkd-probe", "--checkpoint", f"{name}={checkpoint}", *extra, "--data", os.path.join(bench, "data"),
         "--languages", ",".join(languages), "--tasks", "ner", "--ner-dir", ner_dir, "--seed", "1",
         "--word-pooling", pooling, "--output-dir", os.path.join(run_dir, results_dir(pooling)), "--cpu"])
    for lm_file in ("lm.json", "lm_items.npz"):  # the report reads a model's LM and probing results from one place
        whole = os.path.join(run_dir, "results", name, lm_file)
        if os.path.exists(whole) and not os.path.lexists(os.path.join(out, lm_file)):
            os.symlink(os.path.relpath(whole, out), os.path.join(out, lm_file))
    mark_done(out)


def report(root: str, preset: str, seeds: List[int], configs: List[str], pooling: str) -> None:
    groups = PRESET_GROUPS[preset]
    group_flags = ["--low", *groups["low"].split(), "--high", *groups["high"].split(), "--single", groups["single"]]
    runs = [os.path.join(root, preset, f"seed{seed}", results_dir(pooling)) for seed in seeds]
    models = [f"--model={name}={os.path.join(results, name)}" for name in [*configs, CONTROL] for results in runs]
    students = [name for name in configs if set(TEACHER_SETS) & set(CONFIGS[name])]
    baselines = [name for name in configs if name not in students]
    out = os.path.join(root, preset, "heldout-ner-report" + ("" if pooling == "first" else f"-{pooling}"))
    step(f"report ({preset}) -> {out}")
    run(["balkd-report", *models, *[f"--compare={name}:{','.join(baselines)}" for name in students], *group_flags,
         "--output-dir", out])
    run(["balkd-report", *models, *[f"--compare={name}:{CONTROL}" for name in configs], *group_flags, "--no-plot",
         "--output-dir", os.path.join(out, "control")])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the sweep's output root (pipeline.py sweep --out)")
    parser.add_argument("--presets", default="diverse,shared", help="comma-separated presets (default: diverse,shared)")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated training seeds of data seed 1 (default: 1,2,3)")
    parser.add_argument("--configs", default="HL,HL-balanced,Ours+fallback+hard0.3",
                        help="configurations whose checkpoints are probed (the untrained control is added)")
    parser.add_argument("--word-pooling", choices=("first", "mean", "last"), default="first",
                        help="balkd-probe --word-pooling; other than first, results go to results-heldout-ner-<pooling>/ "
                             "and heldout-ner-report-<pooling>/ (default: first)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    configs = args.configs.split(",")
    for preset in args.presets.split(","):
        bench = os.path.join(args.out, preset, "benchmark")
        ner_root = os.path.join(bench, "heldout-ner")
        languages = make_probe_files(os.path.join(bench, "synth"), ner_root)
        for seed in seeds:
            run_dir = os.path.join(args.out, preset, f"seed{seed}")
            for name in configs:
                probe(run_dir, bench, name, os.path.join(run_dir, "checkpoints", name, "checkpoint_last.pt"), languages,
                      os.path.join(ner_root, "ner"), args.word_pooling)
            hl_balanced = os.path.join(run_dir, "checkpoints", "HL-balanced", "checkpoint_last.pt")
            probe(run_dir, bench, CONTROL, hl_balanced, languages, os.path.join(ner_root, "ner"), args.word_pooling,
                  ("--random-init", str(seed)))
        report(args.out, preset, seeds, configs, args.word_pooling)
    return 0


if __name__ == "__main__":
    sys.exit(main())
