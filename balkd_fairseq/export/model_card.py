"""``OUT/README.md``: a Hugging Face model card built from the checkpoint, the data manifest and results."""
import math
import os
from typing import List, Optional

from omegaconf import OmegaConf

from ..data.balancing import target_sizes
from ..eval.report import mask_rate, probe_training_note
from ..eval.report_runs import METRICS, load_run
from ..files import read_json
from ..soft_labels.manifest import MANIFEST_KEY
from .fairseq_dir import plain
from .source import ExportSource

TAGS = ["fairseq", "xlm-roberta", "fill-mask", "multilingual", "knowledge-distillation", "balkd-fairseq"]


def _task(source: ExportSource) -> dict:
    return plain(OmegaConf.to_container(source.cfg.task, resolve=True, enum_to_str=True))


def _model_arg(source: ExportSource, name, default=None):
    return getattr(source.cfg.model, name, default)


def estimated_samples(split: dict, task: dict) -> int:
    """Training samples (token blocks) of a language, as the task cuts them, from balkd-prepare's counts."""
    if task.get("sample_break_mode") == "eos":
        return split["lines"]
    return math.ceil((split["tokens"] + split["lines"]) / max(1, int(task.get("tokens_per_sample", 512)) - 1))


def model_languages(source: ExportSource, stats: Optional[dict], task: dict) -> Optional[List[str]]:
    """The recorded languages; for a stock masked_lm checkpoint (a teacher), the language it was trained on;
    None if unknown."""
    if source.languages:
        return source.languages
    if task.get("_name") != "masked_lm":
        return None
    known = (stats or {}).get("languages", {})
    # balkd-train-teachers trains on DATA with --train-subset <lang>/train (its shared dict.txt in place)
    train_subset = str(getattr(getattr(source.cfg, "dataset", None), "train_subset", None) or "")
    subset_language = train_subset.split("/")[0] if "/" in train_subset else ""
    if subset_language and (not known or subset_language in known):
        return [subset_language]
    # a teacher trained on DATA/<lang> itself
    trained_on = os.path.basename(os.path.normpath(str(task.get("data", "")).split(os.pathsep)[0]))
    return [trained_on] if trained_on in known else None


def languages_section(source: ExportSource, stats: Optional[dict], task: dict) -> List[str]:
    recorded = model_languages(source, stats, task)
    per_lang = (stats or {}).get("languages", {})
    languages = recorded or sorted(per_lang)
    lines = ["## Languages and data", ""]
    if recorded is None:
        lines += ["The checkpoint does not record its language list (an older checkpoint); the languages below "
                  "are those of the data directory.", ""]
    mode = task.get("balance", "none (stock masked_lm task)")
    lines += [f"Balancing: `{mode}`" + (f", draw `{task['balance_draw']}`" if "balance_draw" in task else "")
              + (f", sampling alpha {task['sampling_alpha']}" if mode == "temperature" else "")
              + (f", {task['samples_per_language']} samples per language" if task.get("samples_per_language") else "")
              + ".", ""]
    if not all(lang in per_lang for lang in languages):
        return lines + [f"Languages: {', '.join(languages)} (no per-language counts: DATA/stats.json not found).", ""]
    samples = [estimated_samples(per_lang[lang]["train"], task) for lang in languages]
    balanced = target_sizes(samples, mode, float(task.get("sampling_alpha", 0.3)),
                            int(task.get("samples_per_language", 0)) or None) if mode in (
                                "none", "subsample", "upsample", "temperature") else samples
    lines += ["| language | training lines | training tokens | samples (est.) | balanced samples per epoch (est.) |",
              "|---|---|---|---|---|"]
    for lang, n, m in zip(languages, samples, balanced):
        train = per_lang[lang]["train"]
        lines.append(f"| {lang} | {train['lines']:,} | {train['tokens']:,} | {n:,} | {m:,} |")
    lines += ["", f"Samples are blocks of at most {task.get('tokens_per_sample')} tokens "
              f"(`sample_break_mode={task.get('sample_break_mode')}`), estimated from balkd-prepare's DATA/stats.json.", ""]
    return lines


def _short_path(path) -> str:
    """The checkpoint's file name and folder (teachers are all called checkpoint_best.pt)."""
    parts = os.path.normpath(str(path or "")).split(os.sep)
    return "/".join(parts[-2:])


def training_section(source: ExportSource) -> List[str]:
    criterion = plain(OmegaConf.to_container(source.cfg.criterion, resolve=True, enum_to_str=True)) or {}
    name = criterion.pop("_name", "?")
    settings = ", ".join(f"`{k}={v}`" for k, v in sorted(criterion.items()) if k != "tpu") or "defaults"
    lines = ["## Training", "", f"Criterion: `{name}` ({settings}).", ""]
    manifest = (source.state.get("task_state") or {}).get(MANIFEST_KEY)
    if manifest:
        lines += ["Teachers (the teacher manifest recorded in the checkpoint):", "",
                  "| language | teacher checkpoint | sha256 | dictionary sha256 |", "|---|---|---|---|"]
        lines += [f"| {r.get('language')} | {_short_path(r.get('path'))} | `{r.get('sha256')}` | "
                  f"`{r.get('dictionary_sha256')}` |" for r in manifest]
        lines.append("")
    return lines


def _output_projection(tied: bool) -> str:
    return ("the output projection is tied to the embedding" if tied
            else "the output projection is untied from the embedding and counted separately")


def architecture_section(source: ExportSource, extra_pieces: Optional[List[str]]) -> List[str]:
    weights = source.weights
    tied = not _model_arg(source, "untie_weights_roberta", False)
    n_params = sum(v.numel() for k, v in weights.items()
                   if not k.endswith(".version") and not (tied and k == "encoder.lm_head.weight"))
    arch = getattr(source.cfg.model, "arch", None) or getattr(source.cfg.model, "_name", "?")
    hidden = weights["encoder.sentence_encoder.embed_tokens.weight"].shape[1]
    lines = ["## Architecture", "",
             f"fairseq `{arch}`: {source.layers} layers, hidden size {hidden}, "
             f"FFN {_model_arg(source, 'encoder_ffn_embed_dim')}, {_model_arg(source, 'encoder_attention_heads')} heads, "
             f"{_model_arg(source, 'max_positions')} positions, vocabulary {len(source.dictionary):,} "
             f"(`dict.txt` with `<mask>`); {n_params:,} parameters ({_output_projection(tied)}).", ""]
    lines += ema_lines(source)
    if source.recorded_sha256:
        lines += [f"Dictionary sha256 (recorded in the checkpoint and checked): `{source.recorded_sha256}`.", ""]
    elif source.dictionary_checked == "beside":
        lines += ["The checkpoint does not record its dictionary's hash; the export checked `dict.txt` symbol by "
                  "symbol against the `dict.txt` beside the checkpoint.", ""]
    else:
        lines += ["The checkpoint does not record its dictionary's hash (an older checkpoint); the export checked "
                  "only that `dict.txt` has as many symbols as the model has embedding rows.", ""]
    if extra_pieces is not None:
        lines += hf_vocabulary_lines(len(source.dictionary), len(extra_pieces))
    return lines


def ema_lines(source: ExportSource) -> List[str]:
    if source.ema == "exported":
        return ["Weights: the exponential moving average (EMA) fairseq kept during training (`--store-ema`), "
                "exported with `balkd-export --ema`.", ""]
    if source.ema == "left out":
        return ["Weights: the trained model's; the checkpoint also holds EMA weights (`--store-ema`), which are "
                "not exported here (`balkd-export --ema` exports them instead).", ""]
    return []


def hf_vocabulary_lines(dictionary_size: int, extra: int) -> List[str]:
    ids = f"Hugging Face vocabulary: ids 0–{dictionary_size - 1} are fairseq's `dict.txt` ids"
    if not extra:
        return [ids + ".", ""]
    pieces = (f"id {dictionary_size} is a SentencePiece piece" if extra == 1 else
              f"the {extra} ids after them are SentencePiece pieces")
    return [f"{ids}; {pieces} `dict.txt` lacks, which fairseq encodes as `<unk>`: each has `<unk>`'s input "
            "embedding and is never predicted (output bias -1e4), so the model computes what fairseq computes "
            "(ids >= `config.fairseq_dictionary_size` are fairseq's `<unk>`).", ""]


def results_section(results_dir: str) -> List[str]:
    model = load_run("export", results_dir, "--results")  # one run: the exported checkpoint's
    metrics = [metric for metric in METRICS if model.values[metric.key]]
    languages = model.languages()
    lines = ["## Results", "", f"From `{os.path.basename(os.path.normpath(results_dir))}` (balkd-eval-lm / balkd-probe).", "",
             "| language | " + " | ".join(metric.title for metric in metrics) + " |", "|---|" + "---|" * len(metrics)]
    for lang in languages:
        cells = [(model.values[m.key].get(lang), m.scale, ".3f" if m.key == "mrr" else ".1f") for m in metrics]
        lines.append(f"| {lang} | " + " | ".join("–" if v is None else format(v * scale, fmt) for v, scale, fmt in cells)
                     + " |")
    return lines + ["", f"MRR as a fraction; MLM-PPL = perplexity with {mask_rate([model])} of the tokens masked at "
                    "once, PPPL = pseudo-perplexity (every token masked in turn); POS accuracy and NER F1 in %."
                    + probe_training_note([model]), ""]


def front_matter(languages: List[str], formats: List[str]) -> List[str]:
    library = "transformers" if "hf" in formats else "fairseq"
    return (["---", "language:"] + [f"- {lang}" for lang in languages]
            + ["license: other  # placeholder: choose the license of your training data and code",
               f"library_name: {library}", "pipeline_tag: fill-mask", "tags:"] + [f"- {tag}" for tag in TAGS] + ["---", ""])


def usage_section(formats: List[str]) -> List[str]:
    lines = ["## Usage", ""]
    if "hf" in formats:
        lines += ["```python", "from transformers import pipeline", 'fill = pipeline("fill-mask", model="hf")',
                  'fill("... <mask> ...")', "```", ""]
    if "fairseq" in formats:
        lines += ["```python", "from fairseq.models.roberta import RobertaModel",
                  "model = RobertaModel.from_pretrained('fairseq', 'model.pt', bpe='sentencepiece', "
                  "sentencepiece_model='fairseq/spm.model')", "model.fill_mask('... <mask> ...')", "```", ""]
    return lines


def model_card(source: ExportSource, formats: List[str], extra_pieces: Optional[List[str]],
               results_dir: Optional[str]) -> str:
    stats = read_json(source.stats_file, "--data") if source.stats_file else None
    task = _task(source)
    languages = model_languages(source, stats, task) or sorted((stats or {}).get("languages", {}))
    lines = front_matter(languages, formats)
    lines += [f"# {os.path.basename(source.checkpoint)}", "",
              "A multilingual masked language model (RoBERTa / XLM-R architecture) trained with balkd-fairseq "
              "(balanced multilingual masked LMs by multi-teacher knowledge distillation, Limisiewicz et al., "
              "SIGTYP 2023), exported by `balkd-export`.", ""]
    lines += usage_section(formats)
    lines += languages_section(source, stats, task)
    lines += training_section(source)
    lines += architecture_section(source, extra_pieces)
    if results_dir:
        lines += results_section(results_dir)
    return "\n".join(lines)
