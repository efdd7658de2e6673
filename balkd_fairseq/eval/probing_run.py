"""One checkpoint's probing experiment: a probe per (task, train language), tested on every language.

Features of every split are computed once with the frozen encoder; probes are trained in-process
(:mod:`balkd_fairseq.eval.probe_training`) and scored with the task's metric (POS accuracy, NER
seqeval F1). The result is the train x test matrix with I-L / Z-S summaries per task.
"""
import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ..errors import BalkdError
from . import probing_matrix
from .probe_training import ProbeTrainingConfig, predict, train_probe
from .probing_data import EncodedSplit, LabelSet, count_cut_words, encode_split, read_tagged, unknown_rate
from .tagging_metrics import METRICS

logger = logging.getLogger(__name__)

TASK_METRICS = {"pos": "accuracy", "ner": "f1"}
TASK_EXTENSIONS = {"pos": "conllu", "ner": "iob2"}
SPLITS = ("train", "dev", "test")
UNKNOWN_WARNING_RATE = 0.05


@dataclass
class ProbingTaskData:
    """Where one task's files are: ``<root>/<lang>/{train,dev,test}.<ext>`` (dev optional)."""

    name: str
    root: str
    extension: str = ""

    def __post_init__(self):
        self.extension = self.extension or TASK_EXTENSIONS[self.name]

    def path(self, lang: str, split: str) -> str:
        return os.path.join(self.root, lang, f"{split}.{self.extension}")

    def check(self, languages: List[str]) -> None:
        for lang in languages:
            for split in ("train", "test"):
                if not os.path.isfile(self.path(lang, split)):
                    raise BalkdError(f"{self.name} data for language {lang!r}: {self.path(lang, split)} not found")


@dataclass
class LanguageData:
    """Parsed splits of one language for one task (dev may be absent)."""

    splits: Dict[str, list] = field(default_factory=dict)


def read_task(task: ProbingTaskData, languages: List[str]) -> Dict[str, LanguageData]:
    """Parse every file first, so a malformed line fails before any model is loaded."""
    data = {}
    for lang in languages:
        splits = {}
        for split in SPLITS:
            path = task.path(lang, split)
            if split == "dev" and not os.path.isfile(path):
                continue
            splits[split] = read_tagged(path, task.extension)
        data[lang] = LanguageData(splits)
    return data


def encode_task(data: Dict[str, LanguageData], encoder, sp, progress=None) -> Dict[str, Dict[str, EncodedSplit]]:
    """Align and compute first-subword features of every split once."""
    encoded = {}
    for lang, lang_data in data.items():
        label_set = LabelSet.from_sentences(lang_data.splits["train"])
        encoded[lang] = {}
        for split, sentences in lang_data.splits.items():
            enc = encode_split(sentences, label_set, sp, encoder.dictionary, encoder.max_positions)
            enc.features = encoder.word_features(enc.aligned)
            if unknown_rate(enc, encoder.dictionary) > UNKNOWN_WARNING_RATE:
                logger.warning(
                    f"{lang} {split}: {100 * unknown_rate(enc, encoder.dictionary):.0f}% of subwords are <unk>; "
                    "is --spm-model the SentencePiece model DATA/dict.txt was built from?"
                )
            if count_cut_words(enc):
                logger.warning(f"{lang} {split}: {count_cut_words(enc)} words beyond the encoder's length limit count as errors")
            encoded[lang][split] = enc
            if progress is not None:
                progress.update(1)
    return encoded


def score(head, split: EncodedSplit, label_set: LabelSet, metric: str) -> float:
    features, _ = split.word_matrix(label_set)
    predicted = split.tags_from_predictions(predict(head, features), label_set)
    return METRICS[metric](split.gold, predicted)


def run_task(task_name: str, encoded, cfg: ProbeTrainingConfig, progress=None) -> dict:
    """Train one probe per language and fill the train x test matrix."""
    metric = TASK_METRICS[task_name]
    languages = list(encoded)
    matrix = {}
    label_sets = {}
    for train_lang in languages:
        splits = encoded[train_lang]
        label_set = LabelSet.from_sentences(splits["train"].sentences)
        label_sets[train_lang] = label_set.labels
        features, labels = splits["train"].word_matrix(label_set)
        dev: Optional[EncodedSplit] = splits.get("dev")
        dev_score = (lambda head: score(head, dev, label_set, metric)) if dev is not None else None
        head = train_probe(features, labels, len(label_set), cfg, dev_score)
        matrix[train_lang] = {test: score(head, encoded[test]["test"], label_set, metric) for test in languages}
        if progress is not None:
            progress.update(1)
    return {
        "metric": metric,
        **probing_matrix.summarize(matrix, languages),
        "labels": label_sets,
        "sentences": {lang: {split: len(enc.sentences) for split, enc in encoded[lang].items()} for lang in languages},
    }
