"""``OUT/hf``: the weights as ``XLMRobertaForMaskedLM`` (config.json + model.safetensors).

The mapping follows transformers' ``convert_roberta_original_pytorch_checkpoint_to_pytorch.py``:
fairseq's learned positions already start after the padding index (rows = max_positions +
padding_idx + 1, as transformers' ``max_position_embeddings``), the token-type embedding is a single
zero row, fairseq's LayerNorm epsilon is 1e-5, and the output projection is tied to the input
embedding (unless ``--untie-weights-roberta``) with the LM head's bias.

Vocabulary rows beyond fairseq's dictionary (pieces SentencePiece has but ``dict.txt`` lacks, see
:mod:`.hf_tokenizer`) copy ``<unk>``'s input embedding, so the model computes exactly what fairseq
computes for ``<unk>`` there; their output bias is :data:`NEVER_PREDICTED`, so the softmax over the
vocabulary is fairseq's and fill-mask never proposes them.
"""
from pathlib import Path
from typing import List

import torch

from ..errors import BalkdError
from .source import ExportSource

PREFIX = "encoder.sentence_encoder."
LM_HEAD = "encoder.lm_head."
NEVER_PREDICTED = -1e4  # output bias of the extra rows: exp(-1e4) is 0 in fp32 and fp16 alike
LAYER_NAMES = {
    "self_attn.q_proj": "attention.self.query",
    "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value",
    "self_attn.out_proj": "attention.output.dense",
    "self_attn_layer_norm": "attention.output.LayerNorm",
    "fc1": "intermediate.dense",
    "fc2": "output.dense",
    "final_layer_norm": "output.LayerNorm",
}


def _arg(model_cfg, name, default=None):
    return getattr(model_cfg, name, default) if not isinstance(model_cfg, dict) else model_cfg.get(name, default)


def check_convertible(model_cfg) -> None:
    """Refuse RoBERTa variants that XLMRobertaForMaskedLM does not compute the same way."""
    differences = {
        "encoder_normalize_before": (_arg(model_cfg, "encoder_normalize_before", False), False),
        "layernorm_embedding": (_arg(model_cfg, "layernorm_embedding", True), True),
        "no_scale_embedding": (_arg(model_cfg, "no_scale_embedding", True), True),
        "encoder_learned_pos": (_arg(model_cfg, "encoder_learned_pos", True), True),
        # fairseq's "gelu" is torch's exact gelu, transformers' "gelu"; its LM head uses gelu whatever hidden_act says
        "activation_fn": (_arg(model_cfg, "activation_fn", "gelu"), "gelu"),
    }
    for name, (value, needed) in differences.items():
        same = bool(value) == needed if isinstance(needed, bool) else value == needed
        if not same:
            raise BalkdError(f"--format hf: the checkpoint has {name}={value!r}; XLMRobertaForMaskedLM needs "
                             f"{needed!r} (export --format fairseq only)")


def hf_config(source: ExportSource, vocab_size: int):
    from transformers import XLMRobertaConfig

    model_cfg = source.cfg.model
    weights = source.state["model"]
    dictionary = source.dictionary
    embed = weights[PREFIX + "embed_tokens.weight"]
    return XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=embed.shape[1],
        num_hidden_layers=len({k.split(".")[3] for k in weights if k.startswith(PREFIX + "layers.")}),
        num_attention_heads=int(_arg(model_cfg, "encoder_attention_heads")),
        intermediate_size=weights[PREFIX + "layers.0.fc1.weight"].shape[0],
        hidden_act="gelu",  # check_convertible
        hidden_dropout_prob=float(_arg(model_cfg, "dropout", 0.1)),
        attention_probs_dropout_prob=float(_arg(model_cfg, "attention_dropout", 0.0)),
        max_position_embeddings=weights[PREFIX + "embed_positions.weight"].shape[0],
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=dictionary.pad(),
        bos_token_id=dictionary.bos(),
        eos_token_id=dictionary.eos(),
        tie_word_embeddings=not _arg(model_cfg, "untie_weights_roberta", False),
        architectures=["XLMRobertaForMaskedLM"],
        fairseq_dictionary_size=len(dictionary),  # ids from here on are <unk> in fairseq (see the model card)
    )


def _with_unk_rows(matrix: torch.Tensor, unk: int, extra: int) -> torch.Tensor:
    return torch.cat([matrix, matrix[unk : unk + 1].expand(extra, *matrix.shape[1:])]) if extra else matrix


def hf_state_dict(source: ExportSource, extra: int) -> dict:
    weights = source.state["model"]
    unk = source.dictionary.unk()
    hidden = weights[PREFIX + "embed_tokens.weight"].shape[1]
    state = {
        "roberta.embeddings.word_embeddings.weight": _with_unk_rows(weights[PREFIX + "embed_tokens.weight"], unk, extra),
        "roberta.embeddings.position_embeddings.weight": weights[PREFIX + "embed_positions.weight"],
        "roberta.embeddings.token_type_embeddings.weight": torch.zeros(1, hidden),
        "roberta.embeddings.LayerNorm.weight": weights[PREFIX + "layernorm_embedding.weight"],
        "roberta.embeddings.LayerNorm.bias": weights[PREFIX + "layernorm_embedding.bias"],
        "lm_head.dense.weight": weights[LM_HEAD + "dense.weight"],
        "lm_head.dense.bias": weights[LM_HEAD + "dense.bias"],
        "lm_head.layer_norm.weight": weights[LM_HEAD + "layer_norm.weight"],
        "lm_head.layer_norm.bias": weights[LM_HEAD + "layer_norm.bias"],
        "lm_head.decoder.weight": _with_unk_rows(weights[LM_HEAD + "weight"], unk, extra),
        "lm_head.bias": torch.cat([weights[LM_HEAD + "bias"], torch.full((extra,), NEVER_PREDICTED)]),
    }
    state["lm_head.decoder.bias"] = state["lm_head.bias"]
    for key, value in weights.items():
        if not key.startswith(PREFIX + "layers."):
            continue
        layer, rest = key[len(PREFIX + "layers."):].split(".", 1)
        module, param = rest.rsplit(".", 1)
        if module not in LAYER_NAMES:
            raise BalkdError(f"--format hf: unexpected parameter {key} in the checkpoint (not a plain RoBERTa layer)")
        state[f"roberta.encoder.layer.{layer}.{LAYER_NAMES[module]}.{param}"] = value
    return {k: v.detach().float().contiguous() for k, v in state.items()}


def build_hf_model(source: ExportSource, extra_pieces: List[str]):
    """The ``XLMRobertaForMaskedLM`` holding the checkpoint's weights (fp32, eval mode)."""
    from transformers import XLMRobertaForMaskedLM

    check_convertible(source.cfg.model)
    config = hf_config(source, len(source.dictionary) + len(extra_pieces))
    model = XLMRobertaForMaskedLM(config)
    missing, unexpected = model.load_state_dict(hf_state_dict(source, len(extra_pieces)), strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        raise BalkdError(f"--format hf: weights do not map onto XLMRobertaForMaskedLM (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    return model.eval()


def write_hf_model(model, out: Path) -> None:
    model.save_pretrained(str(out), safe_serialization=True)
