"""Token-classification probes on top of a frozen pretrained encoder: ``--arch linear_probe`` / ``mlp_probe``.

The probe owns only its classifier head. The pretrained encoder lives in the task
(``task.frozen_encoder``, see :mod:`balkd_fairseq.eval.features`): it is held as a plain attribute,
never a registered submodule, so it is not in ``model.parameters()`` or the probe's checkpoint,
it runs in eval mode under ``torch.no_grad()``, and its weights stay bit-identical.
With cached features (the task's default) the probe reads precomputed hidden states directly.
"""
from dataclasses import dataclass, field

import torch.nn as nn
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import BaseFairseqModel, register_model, register_model_architecture
from fairseq.utils import safe_getattr

from ..errors import BalkdError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


@dataclass
class TokenProbeConfig(FairseqDataclass):
    probe_hidden_dim: int = field(
        default=0, metadata={"help": "hidden units of the MLP probe (0 = a linear probe); mlp_probe defaults to 256"}
    )
    probe_activation: ChoiceEnum(list(ACTIVATIONS)) = field(
        default="relu", metadata={"help": "nonlinearity between the MLP probe's two layers"}
    )
    probe_dropout: float = field(default=0.0, metadata={"help": "dropout on the encoder features fed to the probe"})


def build_probe_head(input_dim: int, num_labels: int, hidden_dim: int = 0, activation: str = "relu", dropout: float = 0.0):
    """``Linear(input_dim, num_labels)``, or a one-hidden-layer MLP when ``hidden_dim > 0``."""
    if hidden_dim <= 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(input_dim, num_labels))
    return nn.Sequential(
        nn.Dropout(dropout), nn.Linear(input_dim, hidden_dim), ACTIVATIONS[activation](), nn.Linear(hidden_dim, num_labels)
    )


@register_model("token_probe", dataclass=TokenProbeConfig)
class TokenProbeModel(BaseFairseqModel):
    """Per-token label logits from frozen-encoder features: (batch, length, num_labels)."""

    def __init__(self, head: nn.Module, frozen_encoder=None):
        super().__init__()
        self.head = head
        # A plain object (not an nn.Module): PyTorch does not register it, so it is never trained or saved.
        self.frozen_encoder = frozen_encoder

    @classmethod
    def build_model(cls, cfg, task):
        encoder = getattr(task, "frozen_encoder", None)
        if encoder is None or not hasattr(task, "labels"):
            raise BalkdError("--arch linear_probe/mlp_probe need --task token_probing (a frozen encoder and a label set)")
        head = build_probe_head(
            encoder.dim, len(task.labels), safe_getattr(cfg, "probe_hidden_dim", 0),
            str(safe_getattr(cfg, "probe_activation", "relu")), safe_getattr(cfg, "probe_dropout", 0.0),
        )
        return cls(head, encoder)

    def forward(self, features=None, src_tokens=None, **unused):
        """``features`` (B, L, dim) from the feature cache, or ``src_tokens`` (B, T) run through the frozen encoder."""
        if features is None:
            features = self.frozen_encoder.hidden_states(src_tokens)
        return self.head(features.to(next(self.head.parameters()).dtype))

    def get_targets(self, sample, net_output):
        return sample["target"]


@register_model_architecture("token_probe", "linear_probe")
def linear_probe(cfg):
    cfg.probe_hidden_dim = 0  # a linear probe has no hidden layer, whatever else was asked
    cfg.probe_activation = safe_getattr(cfg, "probe_activation", "relu")
    cfg.probe_dropout = safe_getattr(cfg, "probe_dropout", 0.0)


@register_model_architecture("token_probe", "mlp_probe")
def mlp_probe(cfg):
    cfg.probe_hidden_dim = safe_getattr(cfg, "probe_hidden_dim", 256) or 256
    cfg.probe_activation = safe_getattr(cfg, "probe_activation", "relu")
    cfg.probe_dropout = safe_getattr(cfg, "probe_dropout", 0.0)
