"""balkd-export: a trained masked LM as a self-contained fairseq folder and a Hugging Face transformers folder.

    balkd-export CHECKPOINT --data DATA --out DIR [--format fairseq,hf] [--results DIR] [--ema] [--force]

writes DIR/fairseq (model.pt, dict.txt, spm.model), DIR/hf (config.json, model.safetensors, tokenizer)
and DIR/README.md (a model card). See README "Using the student elsewhere".
"""
import argparse
import logging
import os
import sys
from pathlib import Path

from ..errors import BalkdError
from .common import ArgumentParser, run_cli

logger = logging.getLogger("balkd_fairseq.export")
FORMATS = ("fairseq", "hf")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="balkd-export",
        description="Export a RoBERTa masked-LM checkpoint (student, teacher or baseline) into folders that stock "
        "tools open without this plugin or the training data: DIR/fairseq for fairseq's RobertaModel.from_pretrained, "
        "DIR/hf for transformers' AutoModelForMaskedLM / pipeline('fill-mask'), and a model card DIR/README.md.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="fairseq checkpoint of a roberta_* masked LM")
    parser.add_argument("--data", required=True, metavar="DATA",
                        help="balkd-prepare output the model was trained on: DATA/dict.txt (checked against the "
                        "dictionary hash the checkpoint records, or its embedding size for older checkpoints), "
                        "DATA/spm.model, and DATA/stats.json for the model card; language subdirectories are not needed")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder; built beside it and moved into place only when complete")
    parser.add_argument("--format", default="fairseq,hf", metavar="F1,F2",
                        help="comma-separated formats to write: fairseq, hf (default: fairseq,hf)")
    parser.add_argument("--results", metavar="DIR",
                        help="a balkd-eval-lm / balkd-probe output folder of this model (its *.json files); "
                        "adds the per-language results table to the model card. Results of another checkpoint "
                        "(by the sha256 they record) are refused")
    parser.add_argument("--ema", action="store_true",
                        help="export the exponential moving average of the weights that fairseq-train --store-ema "
                        "keeps in the checkpoint, instead of the model's weights")
    parser.add_argument("--force", action="store_true",
                        help="replace DIR if an earlier balkd-export wrote it (the files removed are logged, files "
                        "added to it since included); never deletes a folder that balkd-export did not write or "
                        "that is or holds an input")
    return parser


def parse_formats(value: str):
    formats = [f.strip() for f in value.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise BalkdError(f"--format: expected a comma-separated subset of {','.join(FORMATS)}, got {value!r}")
    return list(dict.fromkeys(formats))


def _validate(args):
    formats = parse_formats(args.format)
    if args.results is not None and not os.path.isdir(args.results):
        raise BalkdError(f"--results: not a directory: {args.results}")
    if "hf" in formats:
        try:
            import safetensors  # noqa: F401
            import tokenizers  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as err:
            raise BalkdError(f"--format hf needs the hf extra (pip install '.[hf]'): {err}") from None
    return formats


def check_results_of_checkpoint(results_dir: str, checkpoint: str) -> None:
    """A model card must not show another checkpoint's numbers: --results is easily the wrong run's folder.
    Every file the card reads is checked, whatever its name."""
    from ..eval.report_runs import result_files
    from ..eval.results_io import check_results_checkpoint
    from ..files import file_sha256

    files = result_files(results_dir, "--results")  # a folder without results, before the slow work
    ours = {"checkpoint": os.path.abspath(checkpoint), "checkpoint_sha256": file_sha256(checkpoint)}
    for path in files:
        check_results_checkpoint(path, ours, "--results", "give the results folder of this checkpoint")


def export(args, formats) -> Path:
    from ..export.fairseq_dir import write_fairseq_dir
    from ..export.model_card import model_card
    from ..export.source import load_source
    from ..outputs import check_output_dir, staged_output_dir

    inputs = [args.checkpoint, args.data] + ([args.results] if args.results else [])
    check_output_dir(Path(args.out), args.force, "--out", inputs, "balkd-export")  # before the (slow) checkpoint load
    if args.results:
        check_results_of_checkpoint(args.results, args.checkpoint)
    source = load_source(args.checkpoint, args.data, use_ema=args.ema)
    if source.ema == "left out":
        logger.warning(f"CHECKPOINT: {args.checkpoint} also holds EMA weights (--store-ema); exporting the model's "
                       "weights, not the EMA's (balkd-export --ema exports the EMA's instead)")
    extra = None
    with staged_output_dir(Path(args.out), args.force, "--out", inputs, command="balkd-export") as staging:
        if "fairseq" in formats:
            write_fairseq_dir(source, staging / "fairseq")
            logger.info("wrote the fairseq folder")
        if "hf" in formats:
            extra = _write_hf(source, staging / "hf")
            logger.info("wrote the Hugging Face folder")
        (staging / "README.md").write_text(model_card(source, formats, extra, args.results), encoding="utf-8")
        log_replaced(Path(os.path.realpath(args.out)), staging)
    return Path(args.out)


def _files_under(directory: Path) -> set:
    """The files under ``directory``, relative to it; a link to a directory counts as one file (it is not entered)."""
    found = set()
    for root, dirs, files in os.walk(directory):
        found.update(os.path.relpath(os.path.join(root, name), directory)
                     for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))])
    return found


def log_replaced(out: Path, staging: Path) -> None:
    """--force: say what goes with the earlier export, by name the files this export does not write again
    (a user's own files put into the folder are removed with it)."""
    from ..outputs import MARKER

    if not out.is_dir() or not any(out.iterdir()):
        return
    entries = ", ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir() if p.name != MARKER))
    not_rewritten = sorted(_files_under(out) - _files_under(staging) - {MARKER})
    line = f"--force: removing the earlier export in {out} ({entries})"
    if not_rewritten:
        more = f" and {len(not_rewritten) - 10} more" if len(not_rewritten) > 10 else ""
        line += f", including {len(not_rewritten)} file(s) this export does not write again: " \
                f"{', '.join(not_rewritten[:10])}{more}"
    (logger.warning if not_rewritten else logger.info)(line)


def _write_hf(source, out: Path):
    from ..export.hf import build_hf_model, write_hf_model
    from ..export.hf_tokenizer import build_tokenizer, write_tokenizer

    max_positions = int(getattr(source.cfg.model, "max_positions", 512))
    tokenizer, extra = build_tokenizer(source.dictionary, source.spm_file, max_positions)
    model = build_hf_model(source, extra)
    out.mkdir()
    write_hf_model(model, out)
    write_tokenizer(tokenizer, out)
    return extra


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    formats = _validate(args)
    out = export(args, formats)
    print(f"exported {args.checkpoint} -> {out} ({', '.join(formats)})")
    return 0


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", force=True)
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
