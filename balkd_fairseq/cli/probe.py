"""balkd-probe: POS / NER probing of checkpoints, in-language and zero-shot.

For every task and language a probe is trained on the frozen encoder's features of that language's
train split (model selection on dev when present) and tested on every language's test split. The
train x test matrices, I-L (diagonal) and Z-S (mean over probes of the other languages) go to
``OUT/<name>/probe.json``; the per-test-sentence counts behind every score go to
``OUT/<name>/probe_items.npz`` (see :mod:`balkd_fairseq.eval.item_scores`). A run of some tasks
into a directory holding results of other tasks adds to them, if the checkpoint and the settings
are the same.
"""
import argparse
import logging
import math
import os
import sys
from dataclasses import dataclass

import torch

from ..data.dictionary_hash import load_model_dictionary
from ..data.sentencepiece_check import check_sentencepiece_matches
from ..errors import BalkdError
from ..eval import probe_results
from ..eval.item_scores import PROBE_ITEMS
from ..eval.probe_training import ProbeTrainingConfig
from ..eval.results_io import (
    PROBING_RESULTS,
    check_can_write,
    parse_languages,
    parse_named_checkpoints,
    refuse_other_results,
)
from ..eval.word_pooling import WORD_POOLINGS
from ..files import file_sha256
from .common import ArgumentParser, run_cli

logger = logging.getLogger("balkd_fairseq.probe")

TASKS = ("pos", "ner")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="balkd-probe",
        description="Train POS and NER probes on a frozen masked LM for each language and test each probe on "
        "every language: in-language (I-L) and zero-shot (Z-S) scores. POS: accuracy; NER: entity-level "
        "micro-F1 (strict IOB2, as seqeval's strict mode). Scores are fractions in [0, 1]; NER F1 on a test file "
        "without gold entities is undefined (null). Running other tasks into the same OUT/NAME adds them to the "
        "results there (same checkpoint and settings required).",
    )
    parser.add_argument("--checkpoint", action="append", required=True, metavar="[NAME=]PATH",
                        help="checkpoint to probe; repeat for several models (each probed on the same data). NAME "
                        "(default: its directory name) names OUT/NAME/probe.json; two models of one NAME are refused")
    parser.add_argument("--data", required=True, metavar="DATA",
                        help="the LM's data directory: DATA/dict.txt (must be the checkpoint's dictionary) and DATA/spm.model")
    parser.add_argument("--languages", required=True, metavar="L1,L2", help="comma-separated languages to probe")
    parser.add_argument("--probe-dir", metavar="PROBE_DIR",
                        help="probing data as balkd-synth writes it: PROBE_DIR/pos/<lang>/{train,dev,test}.conllu "
                        "and PROBE_DIR/ner/<lang>/{train,dev,test}.iob2 (dev optional: without it a probe keeps its last "
                        "epoch, with a warning)")
    parser.add_argument("--pos-dir", help="POS data root holding <lang>/{train,dev,test}.conllu (default: PROBE_DIR/pos)")
    parser.add_argument("--ner-dir", help="NER data root holding <lang>/{train,dev,test}.iob2 (default: PROBE_DIR/ner)")
    parser.add_argument("--tasks", default="pos,ner", help="comma-separated subset of pos,ner (default: pos,ner)")
    parser.add_argument("--output-dir", required=True, metavar="OUT",
                        help="writes OUT/<name>/probe.json and OUT/<name>/probe_items.npz, keeping other tasks' results there")
    parser.add_argument("--spm-model", help="SentencePiece model of the LM (default: DATA/spm.model)")
    parser.add_argument("--layer", type=int, default=-1,
                        help="encoder layer to probe: 0 = embeddings, N = last; negative counts from the end (default: -1)")
    parser.add_argument("--word-pooling", choices=list(WORD_POOLINGS), default="first",
                        help="which subwords' states make a word's vector: its first subword's, its last's, or their "
                             "mean. 'first' is the usual choice for fine-tuned taggers; 'mean' reads the whole word, "
                             "which matters where many words start with a bare word-boundary piece (common for scripts "
                             "that hold a small share of a shared vocabulary). Recorded in probe.json; results of "
                             "different poolings never merge, and balkd-report refuses to compare them (default: first)")
    parser.add_argument("--probe", choices=["linear", "mlp"], default="linear", help="probe type (default: linear)")
    parser.add_argument("--hidden-dim", type=int, default=256, help="hidden units of the mlp probe, >= 1 (default: 256)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs per probe, >= 1 (default: 20)")
    parser.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate, finite and > 0 (default: 5e-3)")
    parser.add_argument("--batch-size", type=int, default=64, help="words per update, >= 1 (default: 64)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of probe initialisation and shuffling, >= 0 (default: 1)")
    parser.add_argument("--random-init", type=int, default=None, metavar="SEED",
                        help="probe each checkpoint's architecture with fresh weights (fairseq's initialisation, seeded "
                             "by SEED) instead of its trained ones: the control that says how much of a score the "
                             "pretraining explains rather than the probe and the word identities (give it its own "
                             "NAME, e.g. --checkpoint random-init=CKPT). Recorded in probe.json (default: off)")
    parser.add_argument("--train-sentences", type=int, default=None, metavar="N",
                        help="train each probe on the first N sentences of its language's train split only (dev and "
                             "test stay whole): few-shot probing, where a score depends more on what the encoder "
                             "learnt and less on memorising word forms seen in probe training. A language with fewer "
                             "sentences uses them all, with a warning. Each epoch then draws as many words (reshuffled "
                             "passes over the N sentences) as the whole split holds, so the probe gets a whole-split "
                             "probe's updates and development checks instead of a handful. Recorded in probe.json; "
                             "results of different N never merge, and balkd-report refuses to compare them (default: the whole split)")
    parser.add_argument("--cpu", action="store_true", help="run the encoder on CPU even when a GPU is available")
    return parser


def _check_numbers(args) -> None:
    for flag in ("epochs", "batch_size", "hidden_dim"):
        if getattr(args, flag) < 1:
            raise BalkdError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if not math.isfinite(args.lr) or args.lr <= 0:
        raise BalkdError(f"--lr must be a finite number > 0, got {args.lr}")
    if not 0 <= args.seed < 2**63:
        raise BalkdError(f"--seed must be in [0, 2^63), got {args.seed}")
    if args.train_sentences is not None and args.train_sentences < 1:
        raise BalkdError(f"--train-sentences must be at least 1, got {args.train_sentences}")
    if args.random_init is not None and not 0 <= args.random_init < 2**63:
        raise BalkdError(f"--random-init must be a seed in [0, 2^63), got {args.random_init}")


def parse_tasks(value: str):
    names = [t.strip() for t in value.split(",") if t.strip()]
    if not names:
        raise BalkdError("--tasks is empty: choose pos, ner or pos,ner")
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise BalkdError(f"--tasks: unknown task(s) {', '.join(unknown)}; choose from pos,ner")
    if len(set(names)) != len(names):
        raise BalkdError(f"--tasks lists a task twice: {value}")
    return names


def _task_data(args, names):
    from ..eval.probing_run import ProbingTaskData

    tasks = []
    for name in names:
        root = getattr(args, f"{name}_dir") or (os.path.join(args.probe_dir, name) if args.probe_dir else None)
        if root is None:
            raise BalkdError(f"no {name} data: pass --probe-dir PROBE_DIR or --{name}-dir")
        tasks.append(ProbingTaskData(name, root))
    return tasks


def _validate(args):
    _check_numbers(args)
    task_names = parse_tasks(args.tasks)
    models = parse_named_checkpoints(args.checkpoint)
    if not os.path.isfile(os.path.join(args.data, "dict.txt")):
        raise BalkdError(f"--data: dictionary not found: {os.path.join(args.data, 'dict.txt')}")
    spm_model = args.spm_model or os.path.join(args.data, "spm.model")
    if not os.path.isfile(spm_model):
        raise BalkdError(f"SentencePiece model not found: {spm_model} (pass --spm-model)")
    languages = parse_languages(args.languages, "--languages")
    tasks = _task_data(args, task_names)
    for task in tasks:
        task.check(languages)
    return [_model(name, path, args) for name, path in models], spm_model, languages, tasks


def _model(name: str, checkpoint: str, args) -> dict:
    """What names one model's weights in its results; refuses its OUT/NAME before any model is probed."""
    identity = {
        "name": name,
        "checkpoint": os.path.abspath(checkpoint),
        "checkpoint_sha256": file_sha256(checkpoint),
        "random_init": args.random_init,  # None: the checkpoint's trained weights
    }
    out_dir = os.path.join(args.output_dir, name)
    check_can_write(out_dir)
    refuse_other_results(out_dir, identity)
    return identity


def _main(argv=None) -> int:
    from ..eval.probing_run import read_task

    args = build_parser().parse_args(argv)
    models, spm_model, languages, tasks = _validate(args)
    data = {task.name: read_task(task, languages, args.train_sentences) for task in tasks}
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    # Every model's refusals (dictionary, layer, earlier results) come before any probe is trained, and results
    # are written only once every model has been probed: a bad checkpoint wastes no work and overwrites nothing.
    checked = [_check_model(identity, args, tasks, device, keep=i == len(models) - 1)
               for i, identity in enumerate(models)]
    sp = check_sentencepiece_matches(spm_model, load_model_dictionary(os.path.join(args.data, "dict.txt"), "--data"),
                                     os.path.join(args.data, "dict.txt"), args.data,
                                     "--spm-model" if args.spm_model else "--data")
    probed = [_probe_model(model, args, languages, tasks, data, sp, device) for model in checked]
    payloads = []
    for model, (blocks, items) in zip(checked, probed):
        payloads.append(probe_results.write(model.out_dir, model.header, blocks, items, model.earlier))
        logger.info(f"wrote {os.path.join(model.out_dir, PROBING_RESULTS)} and "
                    f"{os.path.join(model.out_dir, PROBE_ITEMS)}")
    print(format_summary(payloads))
    return 0


@dataclass
class CheckedModel:
    """A checkpoint whose results may be written: what they record, and what they add to (``earlier``)."""

    identity: dict
    out_dir: str
    header: dict
    earlier: object
    cfg: ProbeTrainingConfig
    dictionary_hash: str
    encoder: object = None  # kept for the last model only: probing loads the others again, one at a time


def _check_model(identity: dict, args, tasks, device: str, keep: bool) -> CheckedModel:
    from ..data.dictionary_hash import dictionary_sha256

    encoder = _load_encoder(identity, args, device)
    dictionary_hash = dictionary_sha256(encoder.dictionary)
    cfg = ProbeTrainingConfig(
        hidden_dim=args.hidden_dim if args.probe == "mlp" else 0, epochs=args.epochs, lr=args.lr,
        batch_size=args.batch_size, seed=args.seed,
    )
    header = _header(identity, dictionary_hash, encoder, cfg, args)
    out_dir = os.path.join(args.output_dir, identity["name"])
    earlier = probe_results.load_mergeable(out_dir, header, [task.name for task in tasks])
    return CheckedModel(identity, out_dir, header, earlier, cfg, dictionary_hash, encoder if keep else None)


def _load_encoder(identity: dict, args, device: str):
    from ..eval.features import FrozenEncoder

    return FrozenEncoder.from_checkpoint(identity["checkpoint"], args.data, args.layer, device,
                                         random_init=args.random_init)


def _probe_model(model: CheckedModel, args, languages, tasks, data, sp, device: str):
    """(task blocks, per-item counts) of one checked checkpoint, not yet written."""
    encoder = model.encoder or _load_encoder(model.identity, args, device)
    model.encoder = None  # one encoder in memory at a time
    return _run_tasks(model.identity["name"], encoder, sp, model.cfg, model.dictionary_hash, data, tasks, languages,
                      args)


def _run_tasks(name: str, encoder, sp, cfg: ProbeTrainingConfig, dictionary_hash: str, data, tasks, languages, args):
    """(JSON block per task, per-item counts) of one model: features of every split, then the probes."""
    from tqdm import tqdm

    from ..eval.probing_run import data_sha256, encode_task, run_task

    n_splits = sum(len(d.splits) for task_data in data.values() for d in task_data.values())
    with tqdm(total=n_splits, desc=f"{name} features", unit="split", file=sys.stderr) as progress:
        encoded = {task: encode_task(task_data, encoder, sp, progress, args.word_pooling, task)
                   for task, task_data in data.items()}
    blocks, items = {}, {}
    with tqdm(total=len(tasks) * len(languages), desc=f"{name} probes", unit="probe",
              file=sys.stderr) as progress:
        for task in tasks:
            words_per_epoch = ({lang: d.whole_train_words for lang, d in data[task.name].items()}
                               if args.train_sentences else None)
            blocks[task.name], task_items = run_task(task, encoded[task.name], cfg, progress, words_per_epoch)
            blocks[task.name]["data_sha256"] = data_sha256(task, languages, dictionary_hash)
            items.update(task_items)
    return blocks, items


def _header(identity: dict, dictionary_hash: str, encoder, cfg: ProbeTrainingConfig, args) -> dict:
    """What probe.json records of how its scores were computed (its settings must agree to merge tasks)."""
    return {
        "kind": "probing",
        **identity,
        "dictionary_sha256": dictionary_hash,
        "layer": encoder.layer,
        "num_layers": encoder.num_layers,
        "word_pooling": args.word_pooling,
        "probe": args.probe,
        "training": {k: v for k, v in vars(cfg).items() if k != "words_per_epoch"},  # (per language: epoch_size)
        "train_sentences": args.train_sentences,  # None: every sentence of the train splits
        "epoch_size": probe_results.WHOLE_SPLIT_EPOCHS if args.train_sentences else probe_results.OWN_WORDS_EPOCHS,
    }


def _percent(value) -> str:
    return "undefined" if value is None else f"{100 * value:.1f}"


def format_summary(payloads) -> str:
    lines = ["| model | task | lang | I-L | Z-S |", "|---|---|---|---|---|"]
    for payload in payloads:
        for task, block in payload["tasks"].items():
            for lang in block["languages"]:
                zs = block["zero_shot"][lang]
                zs_text = "–" if zs is None and len(block["languages"]) == 1 else _percent(zs)
                lines.append(f"| {payload['name']} | {task} | {lang} | {_percent(block['in_language'][lang])} | {zs_text} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
