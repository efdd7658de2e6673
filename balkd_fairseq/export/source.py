"""What is exported: a RoBERTa masked-LM checkpoint and the data directory whose vocabulary it uses.

The weights exported are the checkpoint's model weights, or with ``--ema`` the exponential moving
average fairseq keeps beside them (``--store-ema``). Either set is checked before anything is written:
every value finite (a diverged run exports nothing), and the encoder layers numbered 0..N-1 (fairseq
renumbers the layers ``--encoder-layers-to-keep`` keeps, and the exports' configs say N layers).
"""
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from fairseq.data import Dictionary

from ..checkpoints import load_checkpoint_state, model_config
from ..data.dictionary_check import check_checkpoint_dictionary
from ..data.dictionary_hash import load_model_dictionary, recorded_dictionary_sha256, recorded_languages
from ..data.sentencepiece_check import check_sentencepiece_matches
from ..errors import BalkdError

DICT_FILE = "dict.txt"
SPM_FILE = "spm.model"  # balkd-prepare's SentencePiece model (prepare.train_sentencepiece: prefix DATA/spm)
STATS_FILE = "stats.json"  # balkd-prepare's manifest
EMA_KEY, EMA_FP32_KEY = "ema", "ema_fp32_params"  # fairseq's trainer: extra_state of --store-ema (and --ema-fp32)
LAYER_KEY = re.compile(r"^encoder\.sentence_encoder\.layers\.(\d+)\.")


@dataclass
class ExportSource:
    checkpoint: str
    data: str
    state: dict  # the checkpoint as fairseq loads it (cfg is an OmegaConf config)
    dictionary: Dictionary  # DATA/dict.txt with <mask>, as the masked LM sees it
    recorded_sha256: Optional[str]  # None: an older checkpoint that did not record its dictionary
    dictionary_checked: str = "hash"  # what dict.txt was checked against: hash, beside (a dict.txt there) or size
    weights: Dict[str, torch.Tensor] = None  # what is exported: the model's weights, or the EMA's (--ema)
    ema: str = "none"  # the checkpoint's EMA weights: none (it has none), exported, or left out

    @property
    def cfg(self):
        return self.state["cfg"]

    @property
    def dict_file(self) -> str:
        return os.path.join(self.data, DICT_FILE)

    @property
    def spm_file(self) -> str:
        return os.path.join(self.data, SPM_FILE)

    @property
    def stats_file(self) -> Optional[str]:
        path = os.path.join(self.data, STATS_FILE)
        return path if os.path.isfile(path) else None

    @property
    def languages(self):
        return recorded_languages(self.state)

    @property
    def layers(self) -> int:
        return len(layer_numbers(self.weights))


def layer_numbers(weights: Dict[str, torch.Tensor]) -> List[int]:
    """The encoder layers the weights hold, by number."""
    return sorted({int(match.group(1)) for match in map(LAYER_KEY.match, weights) if match})


def exported_weights(state: dict, checkpoint: str, use_ema: bool) -> Dict[str, torch.Tensor]:
    """The model's weights, or (``use_ema``) the EMA model's, fp32 copies preferred (``--ema-fp32``)."""
    if not use_ema:
        return state["model"]
    extra_state = state.get("extra_state") or {}
    if not isinstance(extra_state.get(EMA_KEY), dict):
        raise BalkdError(f"--ema: {checkpoint} holds no EMA weights (it was trained without --store-ema)")
    return {**extra_state[EMA_KEY], **(extra_state.get(EMA_FP32_KEY) or {})}


def check_finite(weights: Dict[str, torch.Tensor], checkpoint: str, which: str = "weights") -> None:
    """A diverged run (NaN or inf weights) would export a model that predicts nothing."""
    for key, value in weights.items():
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
            raise BalkdError(f"CHECKPOINT: {checkpoint} has non-finite {which} (NaN or inf), first in {key} "
                             "(a diverged run?); refusing to export it")


def check_layer_numbers(weights: Dict[str, torch.Tensor], model_cfg, checkpoint: str) -> None:
    """The exports say N layers, numbered 0..N-1: fairseq saves the layers --encoder-layers-to-keep keeps so."""
    numbers = layer_numbers(weights)
    kept = str(getattr(model_cfg, "encoder_layers_to_keep", None) or "")
    expected = len(kept.split(",")) if kept else len(numbers)
    if numbers != list(range(expected)):
        reason = f" (encoder_layers_to_keep={kept})" if kept else ""
        raise BalkdError(f"CHECKPOINT: {checkpoint} holds encoder layers {numbers}, not 0..{expected - 1}{reason}; "
                         "cannot tell which layer is which")


def load_source(checkpoint: str, data: str, use_ema: bool = False) -> ExportSource:
    """Load ``checkpoint`` and check it is a RoBERTa masked LM whose vocabulary is ``DATA/dict.txt`` and whose
    exported weights (the model's, or the EMA's with ``use_ema``) are usable."""
    if not os.path.isdir(data):
        raise BalkdError(f"--data: not a directory: {data}")
    for name in (DICT_FILE, SPM_FILE):
        if not os.path.isfile(os.path.join(data, name)):
            raise BalkdError(f"--data: {os.path.join(data, name)} not found (balkd-prepare writes it)")
    dict_file = os.path.join(data, DICT_FILE)
    dictionary = load_model_dictionary(dict_file, "--data")
    # DATA's own consistency first: it needs no checkpoint, which may take long to load
    check_sentencepiece_matches(os.path.join(data, SPM_FILE), dictionary, dict_file, data, "--data")
    state = load_checkpoint_state(checkpoint, "CHECKPOINT")
    model_config(state, "CHECKPOINT", checkpoint)
    checked = check_checkpoint_dictionary(state, checkpoint, dict_file)
    weights = exported_weights(state, checkpoint, use_ema)
    check_finite(weights, checkpoint, "EMA weights" if use_ema else "weights")
    check_layer_numbers(weights, state["cfg"].model, checkpoint)
    has_ema = isinstance((state.get("extra_state") or {}).get(EMA_KEY), dict)
    return ExportSource(os.path.abspath(checkpoint), os.path.abspath(data), state, dictionary,
                        recorded_dictionary_sha256(state), checked, weights,
                        ema="exported" if use_ema else "left out" if has_ema else "none")
