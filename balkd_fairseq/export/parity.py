"""Run an exported folder on text, stock libraries only: ``python parity.py {fairseq,hf} DIR TEXT OUT [QUERY]``.

Deliberately a stand-alone script (run by path, no package imports): it shows what a user without
balkd-fairseq gets. ``fairseq`` loads ``DIR`` (an export's ``fairseq`` folder) with
``RobertaModel.from_pretrained`` without importing the plugin; ``hf`` loads ``DIR`` (an export's
``hf`` folder) with ``AutoTokenizer`` / ``AutoModelForMaskedLM`` without importing fairseq. For every
line of TEXT it records the token ids, the masked-LM logits and the hidden states after the embeddings
and after every layer (fp32, eval mode), plus the top fill-mask answers to QUERY (default: the first
line with its last word masked), and saves them with ``torch.save``
to OUT for :func:`compare`.
"""
import os
import sys

import torch


def _lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def fairseq_outputs(folder, lines, query):
    from fairseq.models.roberta import RobertaModel

    hub = RobertaModel.from_pretrained(folder, "model.pt", bpe="sentencepiece",
                                       sentencepiece_model=os.path.join(folder, "spm.model"))
    hub.eval()
    result = {"ids": [], "logits": [], "hidden": []}
    with torch.no_grad():
        for line in lines:
            ids = hub.encode(line)
            logits, extra = hub.model(ids.unsqueeze(0), return_all_hiddens=True)
            result["ids"].append(ids.tolist())
            result["logits"].append(logits[0].float())
            result["hidden"].append([state[:, 0].float() for state in extra["inner_states"]])
    result["fill_mask"] = [(text, score) for text, score, _ in hub.fill_mask(query, topk=3)]
    return result


def hf_outputs(folder, lines, query):
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForMaskedLM.from_pretrained(folder, dtype=torch.float32).eval()
    result = {"ids": [], "logits": [], "hidden": []}
    with torch.no_grad():
        for line in lines:
            ids = tokenizer(line)["input_ids"]
            out = model(torch.tensor([ids]), output_hidden_states=True)
            result["ids"].append(list(ids))
            result["logits"].append(out.logits[0].float())
            result["hidden"].append([state[0].float() for state in out.hidden_states])
    fill = pipeline("fill-mask", model=folder, tokenizer=folder, top_k=3)
    result["fill_mask"] = [(answer["sequence"], answer["score"]) for answer in fill(query)]
    result["fairseq_dictionary_size"] = model.config.fairseq_dictionary_size
    result["unk_id"] = tokenizer.unk_token_id
    return result


def compare(fairseq_result, hf_result):
    """Token ids (HF ids past fairseq's dictionary are fairseq's <unk>) and the largest differences."""
    size, unk = hf_result["fairseq_dictionary_size"], hf_result["unk_id"]
    as_fairseq = [[i if i < size else unk for i in ids] for ids in hf_result["ids"]]
    n_tokens = sum(len(ids) for ids in hf_result["ids"])
    n_extra = sum(i >= size for ids in hf_result["ids"] for i in ids)
    logits = max((f - h[:, :size]).abs().max().item() for f, h in zip(fairseq_result["logits"], hf_result["logits"]))
    extra_logits = max((h[:, size:].max().item() if h.shape[1] > size else float("-inf")) for h in hf_result["logits"])
    hidden = max((f - h).abs().max().item() for fl, hl in zip(fairseq_result["hidden"], hf_result["hidden"])
                 for f, h in zip(fl, hl))
    layers = {len(fl) == len(hl) for fl, hl in zip(fairseq_result["hidden"], hf_result["hidden"])}
    return {
        "ids_equal": as_fairseq == fairseq_result["ids"],
        "lines_differing": [n for n, (a, b) in enumerate(zip(as_fairseq, fairseq_result["ids"])) if a != b],
        "tokens": n_tokens,
        "extra_id_tokens": n_extra,
        "max_logit_diff": logits,
        "max_extra_logit": extra_logits,  # columns fairseq does not have: must never win
        "max_hidden_diff": hidden,
        "same_layer_count": layers == {True},
    }


def main(argv):
    kind, folder, text, out = argv[:4]
    lines = _lines(text)
    query = argv[4] if len(argv) > 4 else lines[0].strip().rsplit(" ", 1)[0] + " <mask>"
    outputs = (fairseq_outputs if kind == "fairseq" else hf_outputs)(folder, lines, query)
    outputs["imported"] = sorted(m for m in ("balkd_fairseq", "fairseq") if m in sys.modules)
    torch.save(outputs, out)


if __name__ == "__main__":
    main(sys.argv[1:])
