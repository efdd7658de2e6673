"""The one way the plugin reads a fairseq checkpoint: one-line errors naming the file, and the masked-LM check.

Teachers, evaluation, probing and export all load checkpoints through :func:`load_checkpoint_state`
(fairseq's ``load_checkpoint_to_cpu`` under the plugin's ``weights_only`` allowlist), so a corrupt,
truncated or refused file gets the same one-line error everywhere.
"""
import os
from typing import Optional

from fairseq import checkpoint_utils
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
from fairseq.models.roberta import RobertaModel
from omegaconf import DictConfig

from .checkpoint_compat import UNREADABLE_CHECKPOINT_ERRORS, allow_fairseq_checkpoints, describe_load_error
from .errors import BalkdError

EMBED_KEY = "encoder.sentence_encoder.embed_tokens.weight"  # rows = the model's vocabulary


def load_checkpoint_state(path: str, what: str, arg_overrides: Optional[dict] = None) -> dict:
    """``checkpoint_utils.load_checkpoint_to_cpu`` with one-line errors naming ``what`` and ``path``."""
    if not os.path.isfile(path):
        raise BalkdError(f"{what}: checkpoint not found: {path}")
    allow_fairseq_checkpoints()
    try:
        return checkpoint_utils.load_checkpoint_to_cpu(path, arg_overrides=arg_overrides)
    except UNREADABLE_CHECKPOINT_ERRORS as err:  # what corrupt, truncated or refused pickles raise
        raise BalkdError(f"{what}: cannot load checkpoint {path}: {describe_load_error(err)}") from None


def model_config(state: dict, what: str, path: str) -> DictConfig:
    cfg = state.get("cfg") if isinstance(state, dict) else None
    if cfg is None or getattr(cfg, "model", None) is None:
        raise BalkdError(f"{what}: {path} has no model configuration (not a fairseq checkpoint?)")
    arch = getattr(cfg.model, "_name", None) or getattr(cfg.model, "arch", None)
    model_cls = ARCH_MODEL_REGISTRY.get(arch) or MODEL_REGISTRY.get(arch)
    if model_cls is None or not issubclass(model_cls, RobertaModel) or "model" not in state:
        raise BalkdError(f"{what}: {path} is not a masked LM checkpoint (architecture {arch!r}; expected a roberta_* arch)")
    return cfg
