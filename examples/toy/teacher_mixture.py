"""Would mixing a language's own teacher with the fallback model give better soft labels than either?

    python examples/toy/teacher_mixture.py --out outputs/sweep --preset diverse --seed 1

An offline check before building a mixing option: for each low-resource language of a sweep run, the
masked-LM perplexity on the validation split's evaluation masks (every chosen position ``<mask>``, as
the fallback rule scores) of the teacher, of the HL-balanced student (the fallback), of their
mixtures ``w * p_teacher + (1 - w) * p_fallback`` and of their product of experts (geometric mean,
renormalised). Reads ``OUT/<preset>/seed<S>/{teachers/teachers.json,checkpoints/HL-balanced}``.
"""
import argparse
import json
import math
import os
import sys

import torch

from balkd_fairseq.eval.features import load_checkpoint
from balkd_fairseq.eval.masked_lm_eval import (
    MaskingConfig,
    evaluation_indices,
    masked_dataset,
    scored_positions,
    split_prefix,
)

TEACHER_WEIGHTS = (0.25, 0.5, 0.75)


def masked_log_probs(models, dataset, dictionary):
    """Per model, the log-probabilities at every scored position (N, V); and the targets (N,)."""
    per_model, targets = [[] for _ in models], []
    for batch in dataset.batch_by_size(evaluation_indices(dataset, 0), max_tokens=1024):
        sample = dataset.collater([dataset[i] for i in batch])
        positions = scored_positions(sample["target"], dictionary)
        if not positions.any():
            continue
        for out, model in zip(per_model, models):
            logits = model(sample["net_input"]["src_tokens"], masked_tokens=positions)[0]
            out.append(torch.log_softmax(logits.float(), dim=-1))
        targets.append(sample["target"][positions])
    return [torch.cat(out) for out in per_model], torch.cat(targets)


def perplexity(log_probs, targets) -> float:
    return math.exp(-float(log_probs.gather(1, targets[:, None]).mean()))


def mixture_perplexities(teacher, fallback, targets) -> dict:
    scores = {"fallback only": perplexity(fallback, targets)}
    for w in TEACHER_WEIGHTS:
        mixed = torch.logsumexp(torch.stack([teacher + math.log(w), fallback + math.log(1 - w)]), dim=0)
        scores[f"w = {w}"] = perplexity(mixed, targets)
    scores["teacher only"] = perplexity(teacher, targets)
    scores["geometric"] = perplexity(torch.log_softmax((teacher + fallback) / 2, dim=-1), targets)
    return scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/sweep", help="the sweep's output root (pipeline.py sweep --out)")
    parser.add_argument("--preset", default="diverse", help="the preset to read (default: diverse)")
    parser.add_argument("--seed", type=int, default=1, help="the training seed to read (default: 1)")
    parser.add_argument("--split", default="valid", help="the split scored (default: valid, as the fallback rule)")
    args = parser.parse_args(argv)
    run, bench = (os.path.join(args.out, args.preset, part) for part in (f"seed{args.seed}", "benchmark"))
    data = os.path.join(bench, "data")
    fallback_path = os.path.join(run, "checkpoints", "HL-balanced", "checkpoint_last.pt")
    for path in (os.path.join(bench, "synth", "languages.json"), os.path.join(run, "teachers", "teachers.json"), fallback_path):
        if not os.path.isfile(path):
            raise SystemExit(f"teacher_mixture.py: error: {path} not found (run pipeline.py sweep first)")
    with open(os.path.join(bench, "synth", "languages.json"), encoding="utf-8") as f:
        low_resource = json.load(f)["low_resource"]
    with open(os.path.join(run, "teachers", "teachers.json"), encoding="utf-8") as f:
        teachers = json.load(f)
    torch.set_grad_enabled(False)
    fallback, task = load_checkpoint(fallback_path, data)
    rows = []
    for lang in low_resource:
        teacher, _ = load_checkpoint(teachers[lang], data)
        masking = MaskingConfig(seed=1, mask_prob=0.15, tokens_per_sample=64)
        dataset = masked_dataset(split_prefix(data, lang, args.split), task.source_dictionary, masking)
        (teacher_lp, fallback_lp), targets = masked_log_probs([teacher.eval(), fallback.eval()], dataset,
                                                              task.source_dictionary)
        rows.append((lang, mixture_perplexities(teacher_lp, fallback_lp, targets)))
    columns = list(rows[0][1])
    print("| preset | language | " + " | ".join(columns) + " |\n|---|---|" + "---|" * len(columns))
    for lang, scores in rows:
        print(f"| {args.preset} | {lang} | " + " | ".join(f"{scores[c]:.1f}" for c in columns) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
