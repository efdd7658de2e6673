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
import argparse
import functools
import hashlib
import os
import zipfile
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from typing import Callable, Dict, Optional, Tuple

import torch
from fairseq import checkpoint_utils
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
from fairseq.models.roberta import RobertaModel
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .checkpoint_compat import UNREADABLE_CHECKPOINT_ERRORS, allow_fairseq_checkpoints, describe_load_error
from .errors import BalkdError
from .hash_memo import remembered

EMBED_KEY = "encoder.sentence_encoder.embed_tokens.weight"  # rows = the model's vocabulary


def load_checkpoint_state(path: str, what: str, arg_overrides: Optional[dict] = None) -> dict:
    """``checkpoint_utils.load_checkpoint_to_cpu`` (memory-mapped) with one-line errors naming ``what`` and ``path``."""
    return _readable(path, what, lambda: _upgraded(_read(path), arg_overrides))


def _readable(path: str, what: str, read: Callable[[], dict]) -> dict:
    if not os.path.isfile(path):
        raise BalkdError(f"{what}: checkpoint not found: {path}")
    allow_fairseq_checkpoints()
    try:
        return read()
    except UNREADABLE_CHECKPOINT_ERRORS as err:  # what corrupt, truncated or refused pickles raise
        raise BalkdError(f"{what}: cannot load checkpoint {path}: {describe_load_error(err)}") from None


def _read(path: str) -> dict:
    """The unpickled checkpoint, ``torch.load(mmap=True)`` where torch allows it (fairseq passes torch.load an
    open file, which torch cannot map)."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))


def _upgraded(state: dict, arg_overrides: Optional[dict]) -> dict:
    """The steps of fairseq's ``load_checkpoint_to_cpu`` after its torch.load."""
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


class ModelConfigs:
    """Checkpoints read again and again (teachers loaded lazily), each configuration parsed once.

    Parsing a fairseq configuration (``OmegaConf.create`` of a few hundred entries and fairseq's
    upgrades) costs about as much as unpickling the checkpoint. :meth:`load` parses only a raw
    configuration it has not seen (compared by a digest of the pickled ``cfg`` and ``args``, so a
    file replaced by another configuration is parsed anew). Parsed configurations are kept per
    distinct model configuration, at most ``capacity`` of them, so memory does not grow with the
    number of checkpoints sharing an architecture; per checkpoint two digests are remembered.
    """

    def __init__(self, capacity: int = 8):
        self.capacity = capacity
        self._model_key_of: Dict[str, str] = {}  # digest of a raw (args, cfg) -> model key
        self._parsed: OrderedDict[str, DictConfig] = OrderedDict()  # model key -> parsed cfg, least recent first

    def load(self, path: str, what: str) -> Tuple[dict, Optional[str]]:
        """(state, model key) of a masked-LM checkpoint: what building its model needs, ``state["cfg"]``
        parsed and ``state["model"]`` memory-mapped, with :func:`load_checkpoint_state`'s errors and
        :func:`model_config`'s checks. Equal model keys: equal resolved model configurations (None:
        a configuration that does not resolve). fairseq's upgrades of the optimizer history and
        training state are skipped for a configuration seen before: a model does not read them.
        """
        state = _readable(path, what, lambda: _read(path))
        raw_key = _digest((state.get("args"), state.get("cfg")))
        model_key = self._model_key_of.get(raw_key)
        cfg = self._parsed.get(model_key) if model_key is not None else None
        if cfg is not None:
            self._parsed.move_to_end(model_key)
            state["cfg"] = cfg
            model_config(state, what, path)
            return state, model_key
        state = _readable(path, what, lambda: _upgraded(state, None))
        cfg = model_config(state, what, path)
        model_key = _model_key(cfg.model)
        if model_key is None:
            return state, None
        self._model_key_of[raw_key] = model_key
        self._parsed[model_key] = cfg
        self._parsed.move_to_end(model_key)
        while len(self._parsed) > self.capacity:
            self._parsed.popitem(last=False)
        return state, model_key


def _model_key(model_cfg) -> Optional[str]:
    """Digest of a model configuration with its values resolved (None if they do not resolve: building the model
    will say why). fairseq keeps the configuration of a model registered by its arguments (RoBERTa) as a Namespace."""
    if isinstance(model_cfg, argparse.Namespace):
        values = vars(model_cfg)
        return None if any(OmegaConf.is_config(v) for v in values.values()) else _digest(sorted(values.items()))
    try:
        return _digest(OmegaConf.to_container(model_cfg, resolve=True))
    except (OmegaConfBaseException, ValueError):  # an interpolation that does not resolve; not a config at all
        return None


def _digest(value) -> str:
    """sha256 of ``repr(value)``: plain containers of config values, repr'd the same whenever they are equal."""
    return hashlib.sha256(repr(value).encode("utf-8", "backslashreplace")).hexdigest()


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
