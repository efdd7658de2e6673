"""Checks of a ``balanced_distill`` training run's other settings, made when the task or model is set up.

fairseq reports these mistakes late or not at all: a ``--best-checkpoint-metric`` that is never logged
raises a KeyError after the first epoch's training; a model with fewer positions than
``--tokens-per-sample`` skips (with one warning) every block longer than it, which is nearly all of
them; a ``--bpe`` other than SentencePiece would give ``--mask-whole-words`` other word starts.
"""
import logging
from typing import List

from ..criterions.multi_teacher_distill import LANG_PREFIX as PER_LANGUAGE_METRIC  # distill_<lang>
from ..data.word_starts import check_bpe_for_word_starts
from ..errors import BalkdError

logger = logging.getLogger(__name__)


def check_run_config(task_cfg, root, languages: List[str]) -> None:
    """``root``: the whole run's config (None outside fairseq-train: nothing to check)."""
    if root is None:
        return
    if task_cfg.mask_whole_words:
        check_bpe_for_word_starts(root.get("bpe"))
    warn_runs_across_steps(task_cfg, root)
    checkpoint = root.get("checkpoint")
    metric = str(checkpoint.get("best_checkpoint_metric", "loss")) if checkpoint is not None else "loss"
    language = metric[len(PER_LANGUAGE_METRIC):] if metric.startswith(PER_LANGUAGE_METRIC) else None
    if language not in (None, "loss") and language not in languages:
        raise BalkdError(f"--best-checkpoint-metric {metric}: {language!r} is not one of the languages "
                         f"({','.join(languages)}); per-language metrics are {PER_LANGUAGE_METRIC}<lang>")


def warn_runs_across_steps(task_cfg, root) -> None:
    """--language-run-batches counts batches (per worker); with --update-freq F a step is F of them, so runs
    of a length that F does not divide end inside steps, which then mix languages (and their teachers)."""
    optimization = root.get("optimization")
    update_freq = list(optimization.get("update_freq") or [1]) if optimization is not None else [1]
    runs = int(task_cfg.language_run_batches)
    uneven = sorted({int(f) for f in update_freq if runs > 1 and runs % int(f)})
    if uneven:
        logger.warning(f"--language-run-batches {runs} is not a multiple of --update-freq {uneven[0]}: runs of one "
                       f"language end inside steps, which then mix languages; use a multiple of it")


def check_model_positions(model, tokens_per_sample: int) -> None:
    max_positions = model.max_positions() if hasattr(model, "max_positions") else None
    if isinstance(max_positions, int) and max_positions < tokens_per_sample:
        raise BalkdError(f"the model takes at most {max_positions} positions (--max-positions) but blocks hold "
                         f"--tokens-per-sample {tokens_per_sample}: fairseq would skip every longer block; raise "
                         f"--max-positions to at least {tokens_per_sample} or lower --tokens-per-sample")
