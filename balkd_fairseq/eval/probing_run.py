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
# other names a dev split often has; a file of one of them is what a user likely meant as dev
OTHER_DEV_NAMES = ("valid", "validation", "val")
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

    def dev_lookalikes(self, lang: str) -> List[str]:
        """Files of ``lang`` named like a dev split under another common name (``valid.*``, ``val.*``, ...)."""
        directory = os.path.join(self.root, lang)
        return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                      if name.split(".", 1)[0].lower() in OTHER_DEV_NAMES and os.path.isfile(os.path.join(directory, name)))

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
    for lang, lang_data in data.items():
        if "dev" not in lang_data.splits:
            _warn_no_dev(task, lang)
    for lang_data in data.values():
        lang_data.whole_train_words = sum(len(sentence.words) for sentence in lang_data.splits["train"])
    if train_sentences is not None:
        for lang, lang_data in data.items():
            lang_data.splits["train"] = _first_sentences(lang_data.splits["train"], train_sentences, task.path(lang, "train"))
    return data


def _warn_no_dev(task: ProbingTaskData, lang: str) -> None:
    lookalikes = task.dev_lookalikes(lang)
    hint = f"; is {' or '.join(lookalikes)} the dev split? Name it {os.path.basename(task.path(lang, 'dev'))}" \
        if lookalikes else ""
    logger.warning(f"{task.name} {lang}: no dev file {task.path(lang, 'dev')}, so the probe keeps its last epoch "
                   f"instead of the one with the best dev score{hint}")


def _first_sentences(sentences: list, count: int, path: str) -> list:
    if len(sentences) < count:
        logger.warning(f"{path}: {len(sentences)} sentences, fewer than --train-sentences {count}; the probe uses them all")
    return sentences[:count]


def encode_task(data: Dict[str, LanguageData], encoder, sp, progress=None,
                pooling: str = "first", task_name: str = "") -> Dict[str, Dict[str, EncodedSplit]]:
    """Align and compute the word features of every split once (``pooling``: see :mod:`.word_pooling`).

    ``task_name`` starts the warnings about a split, as POS and NER read different files of a language."""
    encoded = {}
    for lang, lang_data in data.items():
        encoded[lang] = {}
        for split, sentences in lang_data.splits.items():
            enc = encode_split(sentences, sp, encoder.dictionary, encoder.max_positions)
            enc.features = encoder.word_features(enc.aligned, pooling=pooling)
            _warn_about_split(f"{task_name} {lang}".strip(), split, enc, encoder.dictionary)
            if pooling == "first" and split == "test":
                _warn_bare_boundaries(lang, bare_boundary_rate(enc, encoder.dictionary))
            encoded[lang][split] = enc
            if progress is not None:
                progress.update(1)
    return encoded


# what becomes of the words cut off by the encoder's length limit, by split (see EncodedSplit)
CUT_WORDS_FATE = {
    "train": "are left out of the probe's training",
    "dev": "count as errors in the dev score that picks the probe's epoch",
    "test": "count as errors",
}


def _warn_about_split(label: str, split: str, enc: EncodedSplit, dictionary) -> None:
    rate = unknown_rate(enc, dictionary)
    if rate > UNKNOWN_WARNING_RATE:
        logger.warning(
            f"{label} {split}: {100 * rate:.0f}% of subwords are <unk>: characters the vocabulary lacks, or an "
            "--spm-model other than the SentencePiece model DATA/dict.txt was built from?"
        )
    cut = count_cut_words(enc)
    if cut:
        logger.warning(f"{label} {split}: {cut} words beyond the encoder's length limit {CUT_WORDS_FATE[split]}")


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


def _warn_unseen_labels(task_name: str, train_lang: str, label_set: LabelSet, encoded) -> None:
    """Test words whose gold label the probe never saw in training cannot be tagged right: say so, once per probe."""
    unseen = {test_lang: [tag for tags in splits["test"].gold for tag in tags if tag not in label_set.index]
              for test_lang, splits in encoded.items()}
    labels = sorted({tag for tags in unseen.values() for tag in tags})
    if not labels:
        return
    words = ", ".join(f"{test_lang}: {len(tags)}" for test_lang, tags in unseen.items() if tags)
    logger.warning(
        f"{task_name} {train_lang}: label(s) {', '.join(labels)} never occur in the probe's training sentences, so "
        f"the test words carrying them count as errors ({words})"
    )


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
        if metric == "f1" and not has_entities(splits["train"]):
            logger.warning(
                f"{task_name} {train_lang}: the probe's training sentences from {task.path(train_lang, 'train')} have "
                "no entities (every tag is O), so it can only predict O: F1 0 on every test file with entities"
            )
        _warn_unseen_labels(task_name, train_lang, label_set, encoded)
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
