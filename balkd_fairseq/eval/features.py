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

from ..checkpoints import load_checkpoint_state, model_config
from ..data.dictionary_check import check_checkpoint_dictionary
from ..data.subword_alignment import AlignedSentence
from ..errors import BalkdError
from .batching import padded_batches
from .word_pooling import pool_words

logger = logging.getLogger(__name__)

def load_checkpoint(path: str, data: Optional[str] = None, random_init: Optional[int] = None):
    """(model, task) of a fairseq checkpoint; ``data`` overrides the data directory it was trained on.

    With ``random_init`` (a seed) the model is the checkpoint's architecture with fresh weights instead of
    the trained ones: see :func:`freshly_initialised`."""
    if not os.path.isfile(path):
        raise BalkdError(f"checkpoint not found: {path}")
    if data is not None and not os.path.isfile(os.path.join(data, "dict.txt")):
        raise BalkdError(f"dictionary not found: {os.path.join(data, 'dict.txt')} (is {data} the DATA directory?)")
    overrides = {"data": data} if data is not None else None
    state = load_checkpoint_state(path, "--checkpoint", arg_overrides=overrides)
    model_config(state, "--checkpoint", path)  # a masked LM (roberta_*), not e.g. a translation model
    if data is not None:
        check_checkpoint_dictionary(state, path, os.path.join(data, "dict.txt"))
    try:
        models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides=overrides, state=state)
    except (KeyError, RuntimeError, FileNotFoundError) as err:
        reason = " ".join(line.strip() for line in str(err).strip().splitlines()[:2]) or type(err).__name__
        raise BalkdError(f"cannot build the model stored in {path}: {reason}") from None
    if random_init is not None:
        return freshly_initialised(task, cfg, random_init), task
    return models[0], task


def freshly_initialised(task, cfg, seed: int):
    """The architecture of ``cfg`` as fairseq builds it before training (RoBERTa: ``init_bert_params``), from
    ``seed``: the random-init control of probing. Embeddings, attention and layer norms all start fresh,
    so whatever a probe reads from it comes from the architecture and the probe, not from pretraining."""
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        torch.manual_seed(seed)
        return task.build_model(cfg.model, from_checkpoint=True)


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
    def from_checkpoint(cls, path: str, data: Optional[str] = None, layer: int = -1, device: str = "cpu",
                        random_init: Optional[int] = None):
        model, task = load_checkpoint(path, data, random_init)
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

    def word_features(self, sentences: List[AlignedSentence], max_tokens: int = 4096,
                      pooling: str = "first") -> List[torch.Tensor]:
        """Per sentence, the (words kept, dim) word vectors pooled from its subwords' states (see
        :mod:`.word_pooling`), on CPU."""
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i].tokens))
        out: List[Optional[torch.Tensor]] = [None] * len(sentences)
        for batch in padded_batches(order, lambda i: len(sentences[i].tokens), max_tokens):
            tokens = data_utils.collate_tokens([sentences[i].tokens for i in batch], self.dictionary.pad())
            states = self.hidden_states(tokens).cpu()
            for row, i in enumerate(batch):
                out[i] = pool_words(states[row], sentences[i], pooling).clone()
        return out
