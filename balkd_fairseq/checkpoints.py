"""The one way the plugin reads a fairseq checkpoint: one-line errors naming the file, and the masked-LM check.

Teachers, evaluation, probing and export all load checkpoints through :func:`load_checkpoint_state`
(fairseq's ``load_checkpoint_to_cpu`` under the plugin's ``weights_only`` allowlist), so a corrupt,
truncated or refused file gets the same one-line error everywhere.

A checkpoint in torch's zip format (every ``torch.save`` since torch 1.6) is memory-mapped, not
read: its tensors are views of the file's pages, so processes on one node share the page cache,
checks that read only the config, dictionary size and shapes touch no weights, and building a
model copies each tensor once into its own parameters. Legacy (non-zip) files are read as before.
"""
import os
import zipfile
from typing import Optional

import torch
from fairseq import checkpoint_utils
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
from fairseq.models.roberta import RobertaModel
from omegaconf import DictConfig, OmegaConf

from .checkpoint_compat import UNREADABLE_CHECKPOINT_ERRORS, allow_fairseq_checkpoints, describe_load_error
from .errors import BalkdError

EMBED_KEY = "encoder.sentence_encoder.embed_tokens.weight"  # rows = the model's vocabulary


def load_checkpoint_state(path: str, what: str, arg_overrides: Optional[dict] = None) -> dict:
    """``checkpoint_utils.load_checkpoint_to_cpu`` (memory-mapped) with one-line errors naming ``what`` and ``path``."""
    if not os.path.isfile(path):
        raise BalkdError(f"{what}: checkpoint not found: {path}")
    allow_fairseq_checkpoints()
    try:
        return _load_checkpoint_to_cpu(path, arg_overrides)
    except UNREADABLE_CHECKPOINT_ERRORS as err:  # what corrupt, truncated or refused pickles raise
        raise BalkdError(f"{what}: cannot load checkpoint {path}: {describe_load_error(err)}") from None


def _load_checkpoint_to_cpu(path: str, arg_overrides: Optional[dict]) -> dict:
    """fairseq's ``load_checkpoint_to_cpu`` for a local file, with ``torch.load(mmap=True)`` where torch allows it.

    fairseq passes torch.load an open file, which torch cannot map; the steps after the load are fairseq's.
    """
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    if state.get("args") is not None and arg_overrides is not None:
        for name, value in arg_overrides.items():
            setattr(state["args"], name, value)
    if state.get("cfg") is not None:
        state["cfg"] = OmegaConf.create(state["cfg"], flags={"allow_objects": True})
        if arg_overrides is not None:
            checkpoint_utils.overwrite_args_by_name(state["cfg"], arg_overrides)
    return checkpoint_utils._upgrade_state_dict(state)


def model_config(state: dict, what: str, path: str) -> DictConfig:
    cfg = state.get("cfg") if isinstance(state, dict) else None
    if cfg is None or getattr(cfg, "model", None) is None:
        raise BalkdError(f"{what}: {path} has no model configuration (not a fairseq checkpoint?)")
    arch = getattr(cfg.model, "_name", None) or getattr(cfg.model, "arch", None)
    model_cls = ARCH_MODEL_REGISTRY.get(arch) or MODEL_REGISTRY.get(arch)
    if model_cls is None or not issubclass(model_cls, RobertaModel) or "model" not in state:
        raise BalkdError(f"{what}: {path} is not a masked LM checkpoint (architecture {arch!r}; expected a roberta_* arch)")
    return cfg
