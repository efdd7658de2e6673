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
start with unchanged teachers unpickles none of them. :class:`ModelConfigs` reads checkpoints that
are loaded again and again (lazily loaded teachers), parsing each one's configuration once.
"""
import argparse
import functools
import hashlib
import os
import zipfile
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from typing import Callable, Optional, Tuple

import torch
from fairseq import checkpoint_utils
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY, MODEL_REGISTRY
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


def check_checkpoint_file(path: str, what: str) -> None:
    if os.path.isdir(path):  # e.g. the --save-dir given for the checkpoint in it
        raise BalkdError(f"{what}: {path} is a directory, not a checkpoint file (give e.g. "
                         f"{os.path.join(path, 'checkpoint_best.pt')})")
    if not os.path.isfile(path):
        raise BalkdError(f"{what}: checkpoint not found: {path}")


def _readable(path: str, what: str, read: Callable[[], dict]) -> dict:
    check_checkpoint_file(path, what)
    allow_fairseq_checkpoints()
    try:
        return read()
    except UNREADABLE_CHECKPOINT_ERRORS as err:  # what corrupt, truncated or refused pickles raise
        raise BalkdError(f"{what}: cannot load checkpoint {path}: {describe_load_error(err)}") from None


def _read(path: str) -> dict:
    """The unpickled checkpoint, ``torch.load(mmap=True)`` where torch allows it (fairseq passes torch.load an
    open file, which torch cannot map)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except (KeyError, AttributeError, UnicodeDecodeError) as err:  # torch's legacy reader on other bytes
        raise NotACheckpoint(f"not a file torch.save wrote ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise NotACheckpoint(f"a torch file holding {_what_it_holds(state)}, not a fairseq checkpoint "
                             "(no 'model' weights)")
    return state


class NotACheckpoint(ValueError):
    """A file torch reads that is not a fairseq checkpoint (its message is the reason)."""


def _what_it_holds(state) -> str:
    if isinstance(state, dict):
        keys = ", ".join(repr(k) for k in list(state)[:5])
        return f"a dict of {keys}" if keys else "an empty dict"
    return f"a {type(state).__name__}"


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
    configuration it has not seen, compared by a digest of the pickled ``cfg`` and ``args`` (a file
    replaced by one of another configuration is parsed anew). Of a parsed configuration it keeps the
    model's part alone (a few kB, not the whole configuration's ~200 kB), for at most ``capacity``
    checkpoints, least recently used dropped first.
    """

    def __init__(self, capacity: int = 1024):
        self.capacity = capacity
        self._seen: OrderedDict[str, Tuple[DictConfig, Optional[str]]] = OrderedDict()  # raw digest -> (cfg, model key)

    def load(self, path: str, what: str) -> Tuple[dict, Optional[str]]:
        """(state, model key) of a masked-LM checkpoint: what building its model needs, ``state["cfg"].model``
        parsed and ``state["model"]`` memory-mapped, with :func:`load_checkpoint_state`'s errors and
        :func:`model_config`'s checks. fairseq's upgrades of the optimizer history and training state
        are skipped for a configuration seen before (``state["cfg"]`` then holds only ``model``).

        Equal model keys: the same architecture with equal values of every hyperparameter the model
        declares (:func:`model_key`).
        """
        state = _readable(path, what, lambda: _read(path))
        raw_key = _digest((state.get("args"), state.get("cfg")))
        if raw_key in self._seen:
            self._seen.move_to_end(raw_key)
            state["cfg"], key = self._seen[raw_key]
            model_config(state, what, path)  # (a file without weights)
            return state, key
        state = _readable(path, what, lambda: _upgraded(state, None))
        cfg = model_config(state, what, path)
        key = model_key(cfg.model)
        model_part = cfg.model if isinstance(cfg.model, argparse.Namespace) else OmegaConf.to_container(cfg.model)
        self._seen[raw_key] = OmegaConf.create({"model": model_part}, flags={"allow_objects": True}), key
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return state, key


def model_key(model_cfg) -> Optional[str]:
    """A digest of a model configuration: its architecture and the values of the hyperparameters the model declares.

    Models that fairseq registers with arguments (RoBERTa) keep every training argument (seed, data,
    save directory, ...) in their configuration; only the ones their ``add_args`` or architecture
    function name describe the model. None for a configuration whose values do not resolve or an
    unknown architecture (building the model will say why).
    """
    if isinstance(model_cfg, argparse.Namespace):
        arch = getattr(model_cfg, "arch", None) or getattr(model_cfg, "_name", None)
        names = _declared_hyperparameters(arch)
        if names is None:
            return None
        values = {name: getattr(model_cfg, name, "<unset>") for name in sorted(names)}
        if any(OmegaConf.is_config(v) for v in values.values()):
            return None
        return _digest((arch, values))
    try:
        return _digest(OmegaConf.to_container(model_cfg, resolve=True))  # a model's own dataclass
    except (OmegaConfBaseException, ValueError):  # an interpolation that does not resolve; not a config at all
        return None


@functools.cache
def _declared_hyperparameters(arch) -> Optional[frozenset]:
    """What ``add_args`` of ``arch``'s model defines and what its architecture function sets."""
    model_cls = ARCH_MODEL_REGISTRY.get(arch) or MODEL_REGISTRY.get(arch)
    if model_cls is None:
        return None
    parser = argparse.ArgumentParser(add_help=False)
    model_cls.add_args(parser)
    defaults = argparse.Namespace()
    if arch in ARCH_CONFIG_REGISTRY:
        ARCH_CONFIG_REGISTRY[arch](defaults)
    return frozenset(action.dest for action in parser._actions) | set(vars(defaults))


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
    train_subset: Optional[str] = None  # cfg.dataset.train_subset: '<lang>/train' for balkd-train-teachers' teachers

    @classmethod
    def of_state(cls, state: dict, what: str, path: str) -> "CheckpointFacts":
        cfg = _model_cfg(state, what, path)
        arch = _architecture(cfg)
        positions = getattr(cfg.model, "max_positions", None) or getattr(getattr(cfg, "task", None), "tokens_per_sample", None)
        rows = state["model"].get(EMBED_KEY) if isinstance(state.get("model"), dict) else None
        subset = getattr(getattr(cfg, "dataset", None), "train_subset", None)
        return cls(None if arch is None else str(arch), _is_roberta(arch) and "model" in state,
                   None if positions is None else int(positions), None if rows is None else int(rows.shape[0]),
                   subset if isinstance(subset, str) else None)

    def trained_language(self) -> Optional[str]:
        """The language directory a teacher trained on (``--train-subset de/train``), if it says."""
        head, sep, _ = (self.train_subset or "").partition("/")
        return head if sep and head else None

    @classmethod
    def parse(cls, value) -> Optional["CheckpointFacts"]:
        """The facts a memo holds, or None if it holds something else (e.g. written by another version)."""
        names = [f.name for f in fields(cls)]
        if not isinstance(value, dict) or sorted(value) != sorted(names):
            return None
        arch, masked_lm, positions, rows, subset = (value[name] for name in names)
        if not all(v is None or isinstance(v, str) for v in (arch, subset)) or not isinstance(masked_lm, bool) \
                or not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (positions, rows)):
            return None
        return cls(arch, masked_lm, positions, rows, subset)

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
    check_checkpoint_file(path, what)
    load_state = load_state or functools.partial(load_checkpoint_state, path, what)
    return remembered(path, CHECKPOINT_FACTS, lambda: CheckpointFacts.of_state(load_state(), what, path),
                      CheckpointFacts.parse, asdict)
