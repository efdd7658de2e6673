"""Would mixing a language's own teacher with the fallback model give better soft labels than either?

    python examples/toy/teacher_mixture.py --out outputs/sweep --preset diverse --seed 1

An offline check before building a mixing option: for each low-resource language of a sweep run, the
masked-LM perplexity on the validation split's evaluation masks (every chosen position ``<mask>``, as
the fallback rule scores) of the teacher, of the HL-balanced student (the fallback), of their
mixtures ``w * p_teacher + (1 - w) * p_fallback`` and of their product of experts (geometric mean,
renormalised). Reads ``OUT/<preset>/seed<S>/{teachers/teachers.json,checkpoints/HL-balanced}``.

With ``--ensemble-seeds S1,S2,...`` it also scores the ensemble of those seeds' HL-balanced students and
the ``--seed`` run's own (the mean of their probabilities): would several balanced students make a
better fallback than one? Without the run's teachers (``teachers.json`` missing) only the fallback
columns are printed.

With ``--candidates NAME,...`` it also scores other students of the run (``checkpoints/<NAME>``, e.g.
``HL,HL-temperature``) beside the fallback: would one of them be a better fallback than HL-balanced?
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


def ensemble_perplexities(fallback, members, targets) -> dict:
    """The fallback alone, and the mean of the probabilities of ``members`` (the fallback among them)."""
    ensemble = torch.logsumexp(torch.stack(members), dim=0) - math.log(len(members))
    return {"fallback only": perplexity(fallback, targets), f"ensemble of {len(members)}": perplexity(ensemble, targets)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/sweep", help="the sweep's output root (pipeline.py sweep --out)")
    parser.add_argument("--preset", default="diverse", help="the preset to read (default: diverse)")
    parser.add_argument("--seed", type=int, default=1, help="the training seed to read (default: 1)")
    parser.add_argument("--split", default="valid", help="the split scored (default: valid, as the fallback rule)")
    parser.add_argument("--ensemble-seeds", default="", help="comma-separated training seeds whose HL-balanced "
                        "students, with the --seed run's own, form an ensemble fallback (the mean of their "
                        "probabilities), scored beside it")
    parser.add_argument("--candidates", default="", help="comma-separated students of the run (checkpoints/<NAME>) "
                        "scored beside the fallback as other fallback candidates, e.g. HL,HL-temperature")
    args = parser.parse_args(argv)
    run, bench = (os.path.join(args.out, args.preset, part) for part in (f"seed{args.seed}", "benchmark"))
    data = os.path.join(bench, "data")
    fallback_path = os.path.join(run, "checkpoints", "HL-balanced", "checkpoint_last.pt")
    member_paths = [os.path.join(args.out, args.preset, f"seed{seed}", "checkpoints", "HL-balanced", "checkpoint_last.pt")
                    for seed in args.ensemble_seeds.split(",") if seed]
    candidates = [name for name in args.candidates.split(",") if name]
    candidate_paths = [os.path.join(run, "checkpoints", name, "checkpoint_last.pt") for name in candidates]
    teachers_path = os.path.join(run, "teachers", "teachers.json")
    required = [os.path.join(bench, "synth", "languages.json"), fallback_path, *member_paths, *candidate_paths]
    for path in required + ([] if member_paths or candidates else [teachers_path]):
        if not os.path.isfile(path):
            raise SystemExit(f"teacher_mixture.py: error: {path} not found (run pipeline.py sweep first)")
    with open(os.path.join(bench, "synth", "languages.json"), encoding="utf-8") as f:
        low_resource = json.load(f)["low_resource"]
    teachers = {}
    if os.path.isfile(teachers_path):
        with open(teachers_path, encoding="utf-8") as f:
            teachers = json.load(f)
    torch.set_grad_enabled(False)
    fallback, task = load_checkpoint(fallback_path, data)
    members = [load_checkpoint(path, data)[0].eval() for path in member_paths if path != fallback_path]
    others = [load_checkpoint(path, data)[0].eval() for path in candidate_paths]
    rows = []
    for lang in low_resource:
        masking = MaskingConfig(seed=1, mask_prob=0.15, tokens_per_sample=64)
        dataset = masked_dataset(split_prefix(data, lang, args.split), task.source_dictionary, masking)
        teacher = [load_checkpoint(teachers[lang], data)[0].eval()] if teachers else []
        log_probs, targets = masked_log_probs([fallback.eval(), *teacher, *members, *others], dataset,
                                              task.source_dictionary)
        scores = mixture_perplexities(log_probs[1], log_probs[0], targets) if teachers else {}
        first_member = 1 + len(teacher)
        if member_paths:
            member_log_probs = log_probs[first_member:first_member + len(members)]
            scores.update(ensemble_perplexities(log_probs[0], [log_probs[0], *member_log_probs], targets))
        scores.update({"fallback only": perplexity(log_probs[0], targets)} if candidates else {})
        for name, candidate in zip(candidates, log_probs[first_member + len(members):]):
            scores[name] = perplexity(candidate, targets)
        rows.append((lang, scores))
    columns = list(rows[0][1])
    print("| preset | language | " + " | ".join(columns) + " |\n|---|---|" + "---|" * len(columns))
    for lang, scores in rows:
        print(f"| {args.preset} | {lang} | " + " | ".join(f"{scores[c]:.1f}" for c in columns) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
