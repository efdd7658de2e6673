"""Probing data sets: reading tagged files, the label set, subword alignment and cached features.

A file's format follows its extension: ``.conllu`` (UD POS, UPOS column) or ``.iob2`` (WikiANN NER).
"""
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

from ..data.conllu_reader import read_conllu
from ..data.iob2_reader import read_iob2
from ..data.subword_alignment import AlignedSentence, TaggedSentence, align_words
from ..errors import BalkdError

READERS = {"conllu": read_conllu, "iob2": read_iob2}


def detect_format(path: str) -> str:
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    if ext not in READERS:
        raise BalkdError(f"{path}: unknown probing file type {ext!r}; expected .conllu (POS) or .iob2 (NER)")
    return ext


def read_tagged(path: str, data_format: str = "auto") -> List[TaggedSentence]:
    if not os.path.isfile(path):
        raise BalkdError(f"probing file not found: {path}")
    return READERS[detect_format(path) if data_format == "auto" else data_format](path)


class LabelSet:
    """The labels a probe can predict; a label outside the set maps to :attr:`unseen_id`."""

    def __init__(self, labels: Sequence[str]):
        if not labels:
            raise BalkdError("empty label set: the training file has no tags")
        if len(set(labels)) != len(labels):
            raise BalkdError(f"label set lists a label twice: {','.join(labels)}")
        self.labels = list(labels)
        self.index: Dict[str, int] = {label: i for i, label in enumerate(self.labels)}

    @classmethod
    def from_sentences(cls, sentences: Sequence[TaggedSentence]) -> "LabelSet":
        return cls(sorted({tag for s in sentences for tag in s.tags}))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def unseen_id(self) -> int:
        return len(self.labels)

    def ids(self, tags: Sequence[str]) -> List[int]:
        return [self.index.get(tag, self.unseen_id) for tag in tags]


@dataclass
class EncodedSplit:
    """One split: gold sentences, their subword alignment, and (optionally) the words' features."""

    sentences: List[TaggedSentence]
    aligned: List[AlignedSentence]
    features: Optional[List[torch.Tensor]] = None  # per sentence: (words kept, dim)

    @property
    def gold(self) -> List[List[str]]:
        return [s.tags for s in self.sentences]

    def word_matrix(self, label_set: LabelSet):
        """Features of every kept word stacked (N, dim) and their label ids (N,)."""
        rows = torch.cat(self.features) if self.features else torch.zeros(0)
        ids = [
            label
            for sentence, aligned in zip(self.sentences, self.aligned)
            for label, pos in zip(label_set.ids(sentence.tags), aligned.word_positions)
            if pos >= 0
        ]
        return rows, torch.LongTensor(ids)

    def tags_from_predictions(self, predicted_ids: torch.Tensor, label_set: LabelSet) -> List[List[Optional[str]]]:
        """Per sentence, the predicted label of each word (``None`` for words cut off by the length limit)."""
        flat = iter(predicted_ids.tolist())
        return [
            [label_set.labels[next(flat)] if pos >= 0 else None for pos in aligned.word_positions]
            for aligned in self.aligned
        ]


def encode_split(sentences, sp, dictionary, max_tokens: int) -> EncodedSplit:
    aligned = [align_words(s, sp, dictionary, max_tokens) for s in sentences]
    return EncodedSplit(sentences, aligned)


def unknown_rate(split: EncodedSplit, dictionary) -> float:
    """Share of subwords (without <s>/</s>) that are not in the LM's dictionary."""
    total = sum(len(a.tokens) - 2 for a in split.aligned)
    unknown = sum(int(a.tokens.eq(dictionary.unk()).sum()) for a in split.aligned)
    return unknown / total if total else 0.0


# SentencePiece's word-boundary marker: a word that starts with it as a piece of its own
WORD_BOUNDARY = "\u2581"


def bare_boundary_rate(split: EncodedSplit, dictionary) -> float:
    """Share of the words (not cut off) whose first subword is the bare word-boundary piece ``▁``: the same token
    for all of them, so its state says nothing of the word itself (see :mod:`.word_pooling`)."""
    boundary = dictionary.index(WORD_BOUNDARY)
    if boundary == dictionary.unk():
        return 0.0
    firsts = [int(a.tokens[pos]) for a in split.aligned for pos in a.word_positions if pos >= 0]
    return sum(token == boundary for token in firsts) / len(firsts) if firsts else 0.0


def count_cut_words(split: EncodedSplit) -> int:
    return sum(pos < 0 for a in split.aligned for pos in a.word_positions)
