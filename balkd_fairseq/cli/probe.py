"""balkd-probe: POS / NER probing of one checkpoint, in-language and zero-shot.

For every task and language a probe is trained on the frozen encoder's features of that language's
train split (model selection on dev when present) and tested on every language's test split. The
train x test matrices, I-L (diagonal) and Z-S (mean over probes of the other languages) go to
``OUT/<name>/probe.json``.
"""
import argparse
import logging
import os
import sys

import torch

from ..errors import BalkdError
from .common import run_cli
from ..eval.probe_training import ProbeTrainingConfig
from ..eval.results_io import PROBING_RESULTS, parse_languages, parse_named_path, write_json

logger = logging.getLogger("balkd_fairseq.probe")

TASKS = ("pos", "ner")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="balkd-probe",
        description="Train POS and NER probes on a frozen masked LM for each language and test each probe on "
        "every language: in-language (I-L) and zero-shot (Z-S) scores. POS: accuracy; NER: entity-level "
        "micro-F1 (seqeval, strict IOB2). Scores are fractions in [0, 1].",
    )
    parser.add_argument("--checkpoint", required=True, metavar="[NAME=]PATH",
                        help="checkpoint to probe; NAME (default: its directory name) names OUT/NAME/probe.json")
    parser.add_argument("--data", required=True, metavar="DATA",
                        help="the LM's data directory: DATA/dict.txt and DATA/spm.model")
    parser.add_argument("--languages", required=True, metavar="L1,L2", help="comma-separated languages to probe")
    parser.add_argument("--probe-dir", metavar="PROBE_DIR",
                        help="probing data as balkd-synth writes it: PROBE_DIR/pos/<lang>/{train,dev,test}.conllu "
                        "and PROBE_DIR/ner/<lang>/{train,dev,test}.iob2 (dev optional)")
    parser.add_argument("--pos-dir", help="POS data root holding <lang>/{train,dev,test}.conllu (default: PROBE_DIR/pos)")
    parser.add_argument("--ner-dir", help="NER data root holding <lang>/{train,dev,test}.iob2 (default: PROBE_DIR/ner)")
    parser.add_argument("--tasks", default="pos,ner", help="comma-separated subset of pos,ner (default: pos,ner)")
    parser.add_argument("--output-dir", required=True, metavar="OUT", help="writes OUT/<name>/probe.json")
    parser.add_argument("--spm-model", help="SentencePiece model of the LM (default: DATA/spm.model)")
    parser.add_argument("--layer", type=int, default=-1,
                        help="encoder layer to probe: 0 = embeddings, N = last; negative counts from the end (default: -1)")
    parser.add_argument("--probe", choices=["linear", "mlp"], default="linear", help="probe type (default: linear)")
    parser.add_argument("--hidden-dim", type=int, default=256, help="hidden units of the mlp probe (default: 256)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs per probe (default: 20)")
    parser.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate (default: 5e-3)")
    parser.add_argument("--batch-size", type=int, default=64, help="words per update (default: 64)")
    parser.add_argument("--seed", type=int, default=1, help="seed of probe initialisation and shuffling (default: 1)")
    parser.add_argument("--cpu", action="store_true", help="run the encoder on CPU even when a GPU is available")
    return parser


def _task_data(args):
    from ..eval.probing_run import ProbingTaskData

    names = parse_languages(args.tasks, "--tasks")
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise BalkdError(f"--tasks: unknown task(s) {', '.join(unknown)}; choose from pos,ner")
    tasks = []
    for name in names:
        root = getattr(args, f"{name}_dir") or (os.path.join(args.probe_dir, name) if args.probe_dir else None)
        if root is None:
            raise BalkdError(f"no {name} data: pass --probe-dir PROBE_DIR or --{name}-dir")
        tasks.append(ProbingTaskData(name, root))
    return tasks


def _validate(args):
    name, checkpoint = parse_named_path(args.checkpoint, "--checkpoint")
    if not os.path.isfile(checkpoint):
        raise BalkdError(f"--checkpoint: file not found: {checkpoint}")
    if not os.path.isfile(os.path.join(args.data, "dict.txt")):
        raise BalkdError(f"--data: dictionary not found: {os.path.join(args.data, 'dict.txt')}")
    spm_model = args.spm_model or os.path.join(args.data, "spm.model")
    if not os.path.isfile(spm_model):
        raise BalkdError(f"SentencePiece model not found: {spm_model} (pass --spm-model)")
    for flag in ("epochs", "batch_size", "hidden_dim"):
        if getattr(args, flag) < 1:
            raise BalkdError(f"--{flag.replace('_', '-')} must be at least 1")
    languages = parse_languages(args.languages, "--languages")
    tasks = _task_data(args)
    for task in tasks:
        task.check(languages)
    return name, checkpoint, spm_model, languages, tasks


def _main(argv=None) -> int:
    from tqdm import tqdm

    from ..eval.features import FrozenEncoder
    from ..eval.probing_data import load_sentencepiece
    from ..eval.probing_run import encode_task, read_task, run_task

    args = build_parser().parse_args(argv)
    name, checkpoint, spm_model, languages, tasks = _validate(args)
    data = {task.name: read_task(task, languages) for task in tasks}
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    encoder = FrozenEncoder.from_checkpoint(checkpoint, args.data, args.layer, device)
    sp = load_sentencepiece(spm_model)
    cfg = ProbeTrainingConfig(
        hidden_dim=args.hidden_dim if args.probe == "mlp" else 0, epochs=args.epochs, lr=args.lr,
        batch_size=args.batch_size, seed=args.seed,
    )
    n_splits = sum(len(d.splits) for task_data in data.values() for d in task_data.values())
    with tqdm(total=n_splits, desc="features", unit="split", file=sys.stderr) as progress:
        encoded = {task: encode_task(task_data, encoder, sp, progress) for task, task_data in data.items()}
    results = {}
    with tqdm(total=len(tasks) * len(languages), desc="probes", unit="probe", file=sys.stderr) as progress:
        for task in tasks:
            results[task.name] = run_task(task.name, encoded[task.name], cfg, progress)
    payload = {
        "kind": "probing",
        "name": name,
        "checkpoint": os.path.abspath(checkpoint),
        "layer": encoder.layer,
        "num_layers": encoder.num_layers,
        "probe": args.probe,
        "training": vars(cfg),
        "languages": languages,
        "tasks": results,
    }
    out = os.path.join(args.output_dir, name, PROBING_RESULTS)
    write_json(out, payload)
    logger.info(f"wrote {out}")
    print(format_summary(payload))
    return 0


def format_summary(payload) -> str:
    lines = ["| task | lang | I-L | Z-S |", "|---|---|---|---|"]
    for task, block in payload["tasks"].items():
        for lang in block["languages"]:
            zs = block["zero_shot"][lang]
            zs_text = "–" if zs is None else f"{100 * zs:.1f}"
            lines.append(f"| {task} | {lang} | {100 * block['in_language'][lang]:.1f} | {zs_text} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
