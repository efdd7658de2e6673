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

Every weight of the checkpoint must have its place in the Hugging Face model, or the conversion is
refused (e.g. ``--quant-noise-pq``'s input projection, which fairseq applies to the embeddings), since the
model would compute something else. Two kinds are left out because masked-LM inference never uses them:
fairseq's ``version`` buffers (state-dict bookkeeping) and sentence-classification heads
(``classification_heads.*``, a fine-tuned RoBERTa's; left out with a warning, the fairseq folder keeps them).
"""
import logging
import re
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ..errors import BalkdError
from .source import LAYER_KEY, ExportSource

logger = logging.getLogger("balkd_fairseq.export")

PREFIX = "encoder.sentence_encoder."
LM_HEAD = "encoder.lm_head."
NEVER_PREDICTED = -1e4  # output bias of the extra rows: exp(-1e4) is 0 in fp32 and fp16 alike
COPIED = {  # fairseq weight -> transformers weight, as they are
    PREFIX + "embed_positions.weight": "roberta.embeddings.position_embeddings.weight",
    PREFIX + "layernorm_embedding.weight": "roberta.embeddings.LayerNorm.weight",
    PREFIX + "layernorm_embedding.bias": "roberta.embeddings.LayerNorm.bias",
    LM_HEAD + "dense.weight": "lm_head.dense.weight",
    LM_HEAD + "dense.bias": "lm_head.dense.bias",
    LM_HEAD + "layer_norm.weight": "lm_head.layer_norm.weight",
    LM_HEAD + "layer_norm.bias": "lm_head.layer_norm.bias",
}
WITH_UNK_ROWS = {  # fairseq weight -> transformers weight, with rows for the extra pieces
    PREFIX + "embed_tokens.weight": "roberta.embeddings.word_embeddings.weight",
    LM_HEAD + "weight": "lm_head.decoder.weight",  # the embedding itself when tied
}
LM_BIAS = LM_HEAD + "bias"  # -> lm_head.bias, with NEVER_PREDICTED for the extra pieces
UNUSED_BUFFER = re.compile(r"(^|\.)version$")  # fairseq's state-dict upgrade bookkeeping, not a weight
CLASSIFICATION_HEAD = "classification_heads."
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
    weights = source.weights
    dictionary = source.dictionary
    embed = weights[PREFIX + "embed_tokens.weight"]
    return XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=embed.shape[1],
        num_hidden_layers=source.layers,
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


def layer_weight_name(key: str) -> Optional[str]:
    """The transformers name of a weight of a plain RoBERTa layer; None for any other key."""
    match = LAYER_KEY.match(key)
    if not match:
        return None
    module, _, param = key[match.end():].rpartition(".")
    if module not in LAYER_NAMES:
        return None
    return f"roberta.encoder.layer.{match.group(1)}.{LAYER_NAMES[module]}.{param}"


def _is_mapped(key: str) -> bool:
    return key in COPIED or key in WITH_UNK_ROWS or key == LM_BIAS or layer_weight_name(key) is not None


def _listed(keys: List[str]) -> str:
    return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def check_mappable(weights: Dict[str, torch.Tensor]) -> None:
    """Refuse a checkpoint the Hugging Face model would compute differently: a weight it has no place for,
    or one it needs that the checkpoint lacks. Classification heads are left out with a warning."""
    heads = [k for k in weights if k.startswith(CLASSIFICATION_HEAD)]
    unmapped = [k for k in weights if not (_is_mapped(k) or k in heads or UNUSED_BUFFER.search(k))]
    if unmapped:
        raise BalkdError(f"--format hf: XLMRobertaForMaskedLM has no place for the checkpoint's weight(s) "
                         f"{_listed(unmapped)}, so it would compute something else; export --format fairseq only "
                         "(the fairseq folder keeps every weight)")
    needed = [*COPIED, *WITH_UNK_ROWS, LM_BIAS, PREFIX + "layers.0.fc1.weight"]
    missing = [k for k in needed if k not in weights]
    if missing:
        raise BalkdError(f"--format hf: the checkpoint lacks {_listed(missing)} (not a plain RoBERTa masked LM); "
                         "export --format fairseq only")
    if heads:
        logger.warning(f"--format hf: the classification heads ({_listed(heads)}) are not part of the masked LM "
                       "and are left out of the Hugging Face folder (the fairseq folder keeps them)")


def hf_state_dict(source: ExportSource, extra: int) -> dict:
    weights = source.weights
    unk = source.dictionary.unk()
    hidden = weights[PREFIX + "embed_tokens.weight"].shape[1]
    state = {name: weights[key] for key, name in COPIED.items()}
    state.update({name: _with_unk_rows(weights[key], unk, extra) for key, name in WITH_UNK_ROWS.items()})
    state["roberta.embeddings.token_type_embeddings.weight"] = torch.zeros(1, hidden)
    state["lm_head.bias"] = torch.cat([weights[LM_BIAS], torch.full((extra,), NEVER_PREDICTED)])
    state["lm_head.decoder.bias"] = state["lm_head.bias"]
    state.update({name: value for key, value in weights.items() if (name := layer_weight_name(key))})
    return {k: v.detach().float().contiguous() for k, v in state.items()}


def build_hf_model(source: ExportSource, extra_pieces: List[str]):
    """The ``XLMRobertaForMaskedLM`` holding the checkpoint's weights (fp32, eval mode)."""
    from transformers import XLMRobertaForMaskedLM

    check_convertible(source.cfg.model)
    check_mappable(source.weights)
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
