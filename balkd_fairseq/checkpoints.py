"""The one way the plugin reads a fairseq checkpoint: one-line errors naming the file, and the masked-LM check.

Teachers, evaluation, probing and export all load checkpoints through :func:`load_checkpoint_state`
(fairseq's ``load_checkpoint_to_cpu`` under the plugin's ``weights_only`` allowlist), so a corrupt,
truncated or refused file gets the same one-line error everywhere.

A checkpoint in torch's zip format (every ``torch.save`` since torch 1.6) is memory-mapped, not
read: its tensors are views of the file's pages, so processes on one node share the page cache,
checks that read only the config, dictionary size and shapes touch no weights, and building a
model copies each tensor once into its own parameters. Legacy (non-zip) files are read as before.

What the start-up checks of a teacher need (architecture, positions, embedding rows) is
:class:`CheckpointFacts`, remembered beside the checkpoint (:mod:`balkd_fairseq.hash_memo`), so a
start with unchanged teachers unpickles none of them.
"""
import functools
import os
import zipfile
from dataclasses import asdict, dataclass, fields
from typing import Callable, Optional

import torch
from fairseq import checkpoint_utils
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
from fairseq.models.roberta import RobertaModel
from omegaconf import DictConfig, OmegaConf

from .checkpoint_compat import UNREADABLE_CHECKPOINT_ERRORS, allow_fairseq_checkpoints, describe_load_error
from .errors import BalkdError
from .hash_memo import remembered

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


def _model_cfg(state: dict, what: str, path: str):
    cfg = state.get("cfg") if isinstance(state, dict) else None
    if cfg is None or getattr(cfg, "model", None) is None:
        raise BalkdError(f"{what}: {path} has no model configuration (not a fairseq checkpoint?)")
    return cfg


def _architecture(cfg) -> Optional[str]:
    return getattr(cfg.model, "_name", None) or getattr(cfg.model, "arch", None)


def _is_roberta(arch) -> bool:
    model_cls = ARCH_MODEL_REGISTRY.get(arch) or MODEL_REGISTRY.get(arch)
    return model_cls is not None and issubclass(model_cls, RobertaModel)


def _not_masked_lm(what: str, path: str, arch) -> BalkdError:
    return BalkdError(f"{what}: {path} is not a masked LM checkpoint (architecture {arch!r}; expected a roberta_* arch)")


def model_config(state: dict, what: str, path: str) -> DictConfig:
    cfg = _model_cfg(state, what, path)
    arch = _architecture(cfg)
    if not _is_roberta(arch) or "model" not in state:
        raise _not_masked_lm(what, path, arch)
    return cfg


@dataclass(frozen=True)
class CheckpointFacts:
    """What the start-up checks read from a checkpoint, small enough to remember beside it."""

    arch: Optional[str]
    masked_lm: bool  # a roberta_* architecture with model weights
    max_positions: Optional[int]  # cfg.model.max_positions, else cfg.task.tokens_per_sample
    embed_rows: Optional[int]  # rows of EMBED_KEY: the vocabulary the model was trained with

    @classmethod
    def of_state(cls, state: dict, what: str, path: str) -> "CheckpointFacts":
        cfg = _model_cfg(state, what, path)
        arch = _architecture(cfg)
        positions = getattr(cfg.model, "max_positions", None) or getattr(getattr(cfg, "task", None), "tokens_per_sample", None)
        rows = state["model"].get(EMBED_KEY) if isinstance(state.get("model"), dict) else None
        return cls(None if arch is None else str(arch), _is_roberta(arch) and "model" in state,
                   None if positions is None else int(positions), None if rows is None else int(rows.shape[0]))

    @classmethod
    def parse(cls, value) -> Optional["CheckpointFacts"]:
        """The facts a memo holds, or None if it holds something else (e.g. written by another version)."""
        names = [f.name for f in fields(cls)]
        if not isinstance(value, dict) or sorted(value) != sorted(names):
            return None
        arch, masked_lm, positions, rows = (value[name] for name in names)
        if not (arch is None or isinstance(arch, str)) or not isinstance(masked_lm, bool) \
                or not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (positions, rows)):
            return None
        return cls(arch, masked_lm, positions, rows)

    def require_masked_lm(self, what: str, path: str) -> None:
        """The check :func:`model_config` makes, with the same error."""
        if not self.masked_lm:
            raise _not_masked_lm(what, path, self.arch)


CHECKPOINT_FACTS = "checkpoint_facts"


def checkpoint_facts(path: str, what: str, load_state: Optional[Callable[[], dict]] = None) -> CheckpointFacts:
    """:class:`CheckpointFacts` of ``path``, from the memo beside it while the file is unchanged.

    Otherwise the state is loaded (``load_state()``, by default :func:`load_checkpoint_state`; pass a
    cached loader to reuse the state for building the model).
    """
    if not os.path.isfile(path):
        raise BalkdError(f"{what}: checkpoint not found: {path}")
    load_state = load_state or functools.partial(load_checkpoint_state, path, what)
    return remembered(path, CHECKPOINT_FACTS, lambda: CheckpointFacts.of_state(load_state(), what, path),
                      CheckpointFacts.parse, asdict)
