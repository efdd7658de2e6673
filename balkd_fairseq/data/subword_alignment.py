"""Words -> SentencePiece subwords, with each word's label on its first subword.

A sentence becomes ``<s> pieces... </s>`` in the LM's dictionary. The label of a word goes to the
position of its first subword; every other position (``<s>``, ``</s>``, continuation subwords)
holds ``ignore_index`` so losses and metrics skip it. Sentences longer than ``max_tokens`` are
cut; a word whose first subword was cut gets position -1 (it is scored as an error, never dropped).
"""
from dataclasses import dataclass
from typing import List, Sequence

import torch

IGNORE_INDEX = -100  # torch's cross_entropy default


@dataclass
class TaggedSentence:
    """One sentence of a tagging data set: words and their tags (same length)."""

    words: List[str]
    tags: List[str]


@dataclass
class AlignedSentence:
    tokens: torch.LongTensor  # (T,) dictionary ids, <s> ... </s>
    labels: torch.LongTensor  # (T,) label id on first subwords, IGNORE_INDEX elsewhere
    word_positions: List[int]  # index into tokens of each word's first subword, -1 if cut off


def word_pieces(sp, word: str) -> List[str]:
    """SentencePiece pieces of one word (with its leading word-boundary marker)."""
    return sp.encode(word, out_type=str)


def align_first_subword(
    sentence: TaggedSentence, label_ids: Sequence[int], sp, dictionary, max_tokens: int
) -> AlignedSentence:
    """Encode ``sentence`` with ``sp`` into ``dictionary`` ids and put ``label_ids`` on first subwords."""
    if len(label_ids) != len(sentence.words):
        raise ValueError("one label id per word is needed")
    if max_tokens < 3:
        raise ValueError("max_tokens must leave room for <s>, one subword and </s>")
    tokens, labels, positions = [dictionary.bos()], [IGNORE_INDEX], []
    budget = max_tokens - 1  # keep one slot for </s>
    for word, label in zip(sentence.words, label_ids):
        ids = [dictionary.index(piece) for piece in word_pieces(sp, word)] or [dictionary.unk()]
        room = budget - len(tokens)
        if room <= 0:
            positions.append(-1)
            continue
        positions.append(len(tokens))
        kept = ids[:room]
        tokens.extend(kept)
        labels.extend([label] + [IGNORE_INDEX] * (len(kept) - 1))
    tokens.append(dictionary.eos())
    labels.append(IGNORE_INDEX)
    return AlignedSentence(torch.LongTensor(tokens), torch.LongTensor(labels), positions)
