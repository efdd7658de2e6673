"""Is ``--data``'s dictionary the one a checkpoint was trained with?

Scores computed with another dictionary of the same size are meaningless and look normal, so an
evaluation refuses a mismatch. What is compared, best evidence first:

1. the dictionary hash the checkpoint recorded (``balanced_distill`` checkpoints); when a ``dict.txt``
   beside the checkpoint, or in the data directory it records it was trained on, has that hash, the
   error names the first differing symbol;
2. for checkpoints without the record: the number of embedding rows against the dictionary's size, and
   symbol by symbol against a ``dict.txt`` beside the checkpoint, if there is one.
"""
import logging
import os
from typing import Optional

from ..errors import BalkdError
from .dictionary_hash import (
    dictionary_sha256,
    first_symbol_difference,
    load_model_dictionary,
    recorded_dictionary_sha256,
)

logger = logging.getLogger(__name__)

from ..checkpoints import EMBED_KEY  # noqa: E402


def _beside(checkpoint: str) -> Optional[str]:
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "dict.txt")
    return path if os.path.isfile(path) else None


def _trained_on(state: dict) -> Optional[str]:
    """``dict.txt`` of the data directory the checkpoint records (``cfg.task.data``), if it still exists."""
    cfg = state.get("cfg")
    task = cfg.get("task") if hasattr(cfg, "get") else None
    data = task.get("data") if task is not None and hasattr(task, "get") else None
    if not isinstance(data, str) or not data:
        return None
    path = os.path.join(data, "dict.txt")
    return path if os.path.isfile(path) else None


def _symbol_mismatch(checkpoint: str, checkpoint_dict: str, data_dict: str, checkpoint_symbols,
                     data_symbols, data_flag: str) -> BalkdError:
    index, ours, theirs = first_symbol_difference(checkpoint_symbols, data_symbols)
    return BalkdError(
        f"{data_flag} dictionary {data_dict} is not the dictionary of the checkpoint {checkpoint}: first difference "
        f"at symbol {index}: {ours!r} in {checkpoint_dict}, {theirs!r} in {data_dict}"
    )


def check_checkpoint_dictionary(state: dict, checkpoint: str, data_dict: str, data_flag: str = "--data") -> str:
    """Raise :class:`BalkdError` unless ``data_dict`` (``DATA/dict.txt``) is the checkpoint's dictionary; else
    say what it was checked against: ``"hash"`` (recorded), ``"beside"`` (``dict.txt`` beside it) or ``"size"``.
    ``data_flag`` names where ``data_dict`` came from in the messages."""
    data = load_model_dictionary(data_dict, data_flag)
    recorded = recorded_dictionary_sha256(state)
    beside = _beside(checkpoint)
    own = load_model_dictionary(beside, f"dictionary beside {checkpoint}") if beside else None
    if recorded is not None:
        if recorded == dictionary_sha256(data):
            return "hash"
        if own is not None and dictionary_sha256(own) == recorded:
            raise _symbol_mismatch(checkpoint, beside, data_dict, own.symbols, data.symbols, data_flag)
        trained_on = _trained_on(state)
        if trained_on is not None and os.path.realpath(trained_on) != os.path.realpath(data_dict):
            original = load_model_dictionary(trained_on, f"dictionary {checkpoint} was trained with")
            if dictionary_sha256(original) == recorded:
                raise _symbol_mismatch(checkpoint, trained_on, data_dict, original.symbols, data.symbols, data_flag)
        raise BalkdError(
            f"{data_flag} dictionary {data_dict} is not the dictionary of the checkpoint {checkpoint}: "
            f"the checkpoint recorded dictionary sha256 {recorded[:12]}…, {data_dict} has "
            f"{dictionary_sha256(data)[:12]}…"
        )
    rows = state.get("model", {}).get(EMBED_KEY)
    if rows is not None and rows.shape[0] != len(data):
        raise BalkdError(
            f"{data_flag} dictionary {data_dict} is not the dictionary of the checkpoint {checkpoint}: the checkpoint "
            f"embeds {rows.shape[0]} symbols, {data_dict} gives {len(data)} (with <mask>)"
        )
    if own is not None:
        if first_symbol_difference(own.symbols, data.symbols) is not None:
            raise _symbol_mismatch(checkpoint, beside, data_dict, own.symbols, data.symbols, data_flag)
        return "beside"
    logger.warning(
        f"{checkpoint} records no dictionary and has no dict.txt beside it: only the dictionary size was checked"
    )
    return "size"
