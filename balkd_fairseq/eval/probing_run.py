"""One checkpoint's probing experiment: a probe per (task, train language), tested on every language.

Features of every split are computed once with the frozen encoder; probes are trained in-process
(:mod:`balkd_fairseq.eval.probe_training`) and scored with the task's metric (POS accuracy, NER
strict-IOB2 F1). The result is the train x test matrix with I-L / Z-S summaries per task, plus the
per-sentence counts every score is the sum of (for ``probe_items.npz``).
"""
import hashlib
import logging
import os
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import BalkdError
from . import probing_matrix
from .probe_training import ProbeTrainingConfig, predict, train_probe
from .probing_data import (
    EncodedSplit,
    LabelSet,
    bare_boundary_rate,
    count_cut_words,
    encode_split,
    read_tagged,
    unknown_rate,
)
from .tagging_metrics import COUNTS, FROM_COUNTS

logger = logging.getLogger(__name__)

TASK_METRICS = {"pos": "accuracy", "ner": "f1"}
TASK_EXTENSIONS = {"pos": "conllu", "ner": "iob2"}
PROBING_SPLITS = ("train", "dev", "test")
UNKNOWN_WARNING_RATE = 0.05
# above this share of words starting with a bare "▁" piece, first-subword probes under-read the language
BARE_BOUNDARY_WARNING_RATE = 0.25


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

    def files(self, languages: List[str]) -> List[Tuple[str, str, str]]:
        """(language, split, path) of every file a run reads, in reading order (dev only when present)."""
        return [
            (lang, split, self.path(lang, split))
            for lang in languages
            for split in PROBING_SPLITS
            if split != "dev" or os.path.isfile(self.path(lang, split))
        ]


def data_sha256(task: ProbingTaskData, languages: List[str], dictionary_sha256: str) -> str:
    """Hash of the probing files' contents (by language and split, not by location) and the dictionary."""
    total = hashlib.sha256()
    for lang, split, path in task.files(languages):
        with open(path, "rb") as f:
            total.update(f"{lang}/{split}\t{hashlib.sha256(f.read()).hexdigest()}\n".encode())
    total.update(f"dictionary\t{dictionary_sha256}\n".encode())
    return total.hexdigest()


@dataclass
class LanguageData:
    """Parsed splits of one language for one task (dev may be absent)."""

    splits: Dict[str, list] = field(default_factory=dict)
    whole_train_words: int = 0  # words of the whole train split, also when only its first sentences are kept


def read_task(task: ProbingTaskData, languages: List[str], train_sentences: Optional[int] = None) -> Dict[str, LanguageData]:
    """Parse every file first, so a malformed line fails before any model is loaded.

    ``train_sentences``: keep only the first N sentences of each train split (few-shot probing).
    """
    data = {lang: LanguageData() for lang in languages}
    for lang, split, path in task.files(languages):
        data[lang].splits[split] = read_tagged(path, task.extension)
    for lang_data in data.values():
        lang_data.whole_train_words = sum(len(sentence.words) for sentence in lang_data.splits["train"])
    if train_sentences is not None:
        for lang, lang_data in data.items():
            lang_data.splits["train"] = _first_sentences(lang_data.splits["train"], train_sentences, task.path(lang, "train"))
    return data


def _first_sentences(sentences: list, count: int, path: str) -> list:
    if len(sentences) < count:
        logger.warning(f"{path}: {len(sentences)} sentences, fewer than --train-sentences {count}; the probe uses them all")
    return sentences[:count]


def encode_task(data: Dict[str, LanguageData], encoder, sp, progress=None,
                pooling: str = "first") -> Dict[str, Dict[str, EncodedSplit]]:
    """Align and compute the word features of every split once (``pooling``: see :mod:`.word_pooling`)."""
    encoded = {}
    for lang, lang_data in data.items():
        encoded[lang] = {}
        for split, sentences in lang_data.splits.items():
            enc = encode_split(sentences, sp, encoder.dictionary, encoder.max_positions)
            enc.features = encoder.word_features(enc.aligned, pooling=pooling)
            if unknown_rate(enc, encoder.dictionary) > UNKNOWN_WARNING_RATE:
                logger.warning(
                    f"{lang} {split}: {100 * unknown_rate(enc, encoder.dictionary):.0f}% of subwords are <unk>; "
                    "is --spm-model the SentencePiece model DATA/dict.txt was built from?"
                )
            if pooling == "first" and split == "test":
                _warn_bare_boundaries(lang, bare_boundary_rate(enc, encoder.dictionary))
            if count_cut_words(enc):
                logger.warning(f"{lang} {split}: {count_cut_words(enc)} words beyond the encoder's length limit count as errors")
            encoded[lang][split] = enc
            if progress is not None:
                progress.update(1)
    return encoded


def _warn_bare_boundaries(lang: str, rate: float) -> None:
    if rate > BARE_BOUNDARY_WARNING_RATE:
        logger.warning(
            f"{lang} test: {100 * rate:.0f}% of the words start with a bare word-boundary piece, the same subword for "
            "all of them, so their first-subword features carry little of the word; --word-pooling mean reads every "
            "subword of a word"
        )


def evaluate(head, split: EncodedSplit, label_set: LabelSet, metric: str) -> Dict[str, np.ndarray]:
    """Per-sentence counts of ``head``'s predictions on ``split`` (see :mod:`.tagging_metrics`)."""
    features, _ = split.word_matrix(label_set)
    predicted = split.tags_from_predictions(predict(head, features), label_set)
    return COUNTS[metric](split.gold, predicted)


def has_entities(split: EncodedSplit) -> bool:
    return any(tag != "O" for tags in split.gold for tag in tags)


def _dev_scorer(task: ProbingTaskData, lang: str, dev: Optional[EncodedSplit], label_set: LabelSet, metric: str):
    if dev is None:
        return None
    if metric == "f1" and not has_entities(dev):
        logger.warning(f"{task.name} {lang}: {task.path(lang, 'dev')} has no gold entities; the last epoch's probe is kept")
        return None
    return lambda head: FROM_COUNTS[metric](evaluate(head, dev, label_set, metric))


def run_task(task: ProbingTaskData, encoded, cfg: ProbeTrainingConfig, progress=None,
             words_per_epoch: Optional[Dict[str, int]] = None) -> Tuple[dict, Dict[str, np.ndarray]]:
    """Train one probe per language and fill the train x test matrix.

    ``words_per_epoch``: per training language, the words an epoch draws (few-shot probing: the whole
    split's, see :mod:`.probe_training`); absent, one pass over the probe's training words.

    Returns the JSON block and the per-sentence counts, named ``<task>/<train>/<test>/<field>``.
    """
    task_name = task.name
    metric = TASK_METRICS[task_name]
    languages = list(encoded)
    if metric == "f1":
        for lang in languages:
            if not has_entities(encoded[lang]["test"]):
                logger.warning(
                    f"{task_name} {lang}: the test file {task.path(lang, 'test')} has no gold entities, "
                    "so F1 on it is undefined (null in probe.json), not 0"
                )
    matrix, label_sets, items = {}, {}, {}
    for train_lang in languages:
        splits = encoded[train_lang]
        label_set = LabelSet.from_sentences(splits["train"].sentences)
        label_sets[train_lang] = label_set.labels
        features, labels = splits["train"].word_matrix(label_set)
        dev_score = _dev_scorer(task, train_lang, splits.get("dev"), label_set, metric)
        lang_cfg = replace(cfg, words_per_epoch=(words_per_epoch or {}).get(train_lang, 0))
        head = train_probe(features, labels, len(label_set), lang_cfg, dev_score)
        matrix[train_lang] = {}
        for test_lang in languages:
            counts = evaluate(head, encoded[test_lang]["test"], label_set, metric)
            matrix[train_lang][test_lang] = FROM_COUNTS[metric](counts)
            items.update({f"{task_name}/{train_lang}/{test_lang}/{name}": v for name, v in counts.items()})
        if progress is not None:
            progress.update(1)
    block = {
        "metric": metric,
        **probing_matrix.summarize(matrix, languages),
        "labels": label_sets,
        "sentences": {lang: {split: len(enc.sentences) for split, enc in encoded[lang].items()} for lang in languages},
    }
    return block, items
