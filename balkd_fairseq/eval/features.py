"""A pretrained RoBERTa-style encoder used read-only, and the hidden states probes are trained on.

:class:`FrozenEncoder` keeps the model in eval mode with ``requires_grad`` off and runs it under
``torch.no_grad()``; it is a plain object (not an ``nn.Module``): probes are fitted on the states it
returns, never on its parameters, so the encoder's weights stay bit-identical.
"""
import logging
import os
from typing import List, Optional

import torch
from fairseq import checkpoint_utils
from fairseq.data import data_utils

from ..checkpoint_compat import describe_load_error
from ..data.dictionary_hash import (
    dictionary_sha256,
    first_symbol_difference,
    load_model_dictionary,
    recorded_dictionary_sha256,
)
from ..data.subword_alignment import AlignedSentence
from ..errors import BalkdError
from ..teachers import model_config

logger = logging.getLogger(__name__)

EMBEDDING_KEY = "encoder.sentence_encoder.embed_tokens.weight"


def load_checkpoint(path: str, data: Optional[str] = None, verify_dictionary: bool = False):
    """(model, task) of a fairseq checkpoint; ``data`` overrides the data directory it was trained on.

    With ``verify_dictionary``, ``data``'s dict.txt must be the checkpoint's (:func:`check_dictionary`).
    """
    if not os.path.isfile(path):
        raise BalkdError(f"checkpoint not found: {path}")
    if data is not None and not os.path.isfile(os.path.join(data, "dict.txt")):
        raise BalkdError(f"dictionary not found: {os.path.join(data, 'dict.txt')} (is {data} the DATA directory?)")
    overrides = {"data": data} if data is not None else None
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(path, arg_overrides=overrides)
    except Exception as err:  # torch raises many types for corrupt or refused pickles
        raise BalkdError(f"cannot load checkpoint {path}: {describe_load_error(err)}") from None
    model_config(state, "--checkpoint", path)  # a masked LM (roberta_*), not e.g. a translation model
    if data is not None and verify_dictionary:
        check_dictionary(state, path, os.path.join(data, "dict.txt"))
    try:
        models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides=overrides, state=state)
    except (KeyError, RuntimeError, FileNotFoundError) as err:
        reason = " ".join(line.strip() for line in str(err).strip().splitlines()[:2]) or type(err).__name__
        raise BalkdError(f"cannot build the model stored in {path}: {reason}") from None
    return models[0], task


def check_dictionary(state: dict, checkpoint: str, dict_path: str) -> None:
    """Refuse a ``--data`` dictionary other than the one the checkpoint was trained with.

    The checkpoint's recorded dictionary hash decides when there is one. Older checkpoints record
    none: then the dictionary's size must match the embedding's rows, and a ``dict.txt`` beside the
    checkpoint (as ``balkd-train-teachers`` leaves one) must match symbol by symbol.
    """
    data_dictionary = load_model_dictionary(dict_path, "--data")
    beside_path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "dict.txt")
    beside = None
    if os.path.isfile(beside_path) and not os.path.samefile(beside_path, dict_path):
        beside = load_model_dictionary(beside_path, f"the dictionary beside {checkpoint}")
    mismatch = f"--data: {dict_path} is not the dictionary {checkpoint} was trained with"
    recorded = recorded_dictionary_sha256(state)
    if recorded is not None:
        if recorded == dictionary_sha256(data_dictionary):
            return
        detail = f"the checkpoint records dictionary sha256 {recorded[:12]}, {dict_path} has {dictionary_sha256(data_dictionary)[:12]}"
        if beside is not None and dictionary_sha256(beside) == recorded:
            detail = _first_difference(beside_path, beside, dict_path, data_dictionary)
        raise BalkdError(f"{mismatch}: {detail}")
    weight = state.get("model", {}).get(EMBEDDING_KEY)
    if weight is not None and weight.size(0) != len(data_dictionary):
        raise BalkdError(
            f"{mismatch}: it has {len(data_dictionary)} symbols (with <mask>), the checkpoint's embedding {weight.size(0)} rows"
        )
    if beside is not None and list(beside.symbols) != list(data_dictionary.symbols):
        raise BalkdError(f"{mismatch}: {_first_difference(beside_path, beside, dict_path, data_dictionary)}")


def _first_difference(path_a: str, a, path_b: str, b) -> str:
    index, symbol_a, symbol_b = first_symbol_difference(a.symbols, b.symbols)
    return f"first difference at index {index}: {symbol_a!r} in {path_a}, {symbol_b!r} in {path_b}"


class FrozenEncoder:
    """Hidden states of one layer of a pretrained masked LM (0 = embeddings, N = last layer)."""

    def __init__(self, model, dictionary, layer: int = -1, device: str = "cpu"):
        layers = getattr(getattr(getattr(model, "encoder", None), "sentence_encoder", None), "layers", None)
        if layers is None:
            raise BalkdError(f"{type(model).__name__} is not a RoBERTa-style encoder (no encoder.sentence_encoder.layers)")
        self.num_layers = len(layers)
        if not -self.num_layers - 1 <= layer <= self.num_layers:
            raise BalkdError(
                f"--layer {layer} is out of range: the encoder has layers 0 (embeddings) .. {self.num_layers}; "
                f"negative values count from the end ({-self.num_layers - 1} .. -1)"
            )
        self.layer = layer % (self.num_layers + 1)
        self.model = model.eval().to(device)
        self.model.requires_grad_(False)
        self.device = device
        self.dictionary = dictionary
        self.dim = model.encoder.sentence_encoder.embed_tokens.embedding_dim
        self.max_positions = int(model.max_positions() or 512)

    @classmethod
    def from_checkpoint(cls, path: str, data: Optional[str] = None, layer: int = -1, device: str = "cpu"):
        model, task = load_checkpoint(path, data, verify_dictionary=True)
        return cls(model, task.source_dictionary, layer, device)

    @torch.no_grad()
    def hidden_states(self, src_tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, dim) states of :attr:`layer` for right-padded ``src_tokens`` (B, T), on their device."""
        self.model.eval()
        last = self.layer == self.num_layers
        features, extra = self.model.encoder.extract_features(src_tokens.to(self.device), return_all_hiddens=not last)
        # The last layer is the encoder's output (with its final layer norm, if the model has one).
        states = features if last else extra["inner_states"][self.layer].transpose(0, 1)
        return states.float().to(src_tokens.device)

    def word_features(self, sentences: List[AlignedSentence], max_tokens: int = 4096) -> List[torch.Tensor]:
        """Per sentence, the (words kept, dim) states at each word's first subword, on CPU."""
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i].tokens))
        out: List[Optional[torch.Tensor]] = [None] * len(sentences)
        for batch in _batches(order, sentences, max_tokens):
            tokens = data_utils.collate_tokens([sentences[i].tokens for i in batch], self.dictionary.pad())
            states = self.hidden_states(tokens).cpu()
            for row, i in enumerate(batch):
                kept = [p for p in sentences[i].word_positions if p >= 0]
                out[i] = states[row, kept].clone()
        return out


def _batches(order: List[int], sentences: List[AlignedSentence], max_tokens: int):
    batch, longest = [], 0
    for i in order:
        length = len(sentences[i].tokens)
        if batch and max(longest, length) * (len(batch) + 1) > max_tokens:
            yield batch
            batch, longest = [], 0
        batch.append(i)
        longest = max(longest, length)
    if batch:
        yield batch
