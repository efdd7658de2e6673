"""Words -> SentencePiece subwords, and where each word's subwords are.

A sentence becomes ``<s> pieces... </s>`` in the LM's dictionary; a word is represented by the
encoder's states at its subwords (``eval/word_pooling.py``: the first, the last or their mean).
Sentences longer than ``max_tokens`` are cut; a word whose first subword was cut gets position -1
(scored as an error in dev and test; a probe's training leaves it out), a word cut after its first subword
keeps the pieces left.
"""
from dataclasses import dataclass
from typing import List

import torch


@dataclass
class TaggedSentence:
    """One sentence of a tagging data set: words and their tags (same length)."""

    words: List[str]
    tags: List[str]


@dataclass
class AlignedSentence:
    tokens: torch.LongTensor  # (T,) dictionary ids, <s> ... </s>
    word_positions: List[int]  # index into tokens of each word's first subword, -1 if cut off
    word_ends: List[int]  # index into tokens just past each word's last subword kept, -1 if cut off


def word_pieces(sp, word: str) -> List[str]:
    """SentencePiece pieces of one word (with its leading word-boundary marker)."""
    return sp.encode(word, out_type=str)


def align_words(sentence: TaggedSentence, sp, dictionary, max_tokens: int) -> AlignedSentence:
    """Encode ``sentence`` with ``sp`` into ``dictionary`` ids and find each word's subwords."""
    if max_tokens < 3:
        raise ValueError("max_tokens must leave room for <s>, one subword and </s>")
    tokens, positions, ends = [dictionary.bos()], [], []
    budget = max_tokens - 1  # keep one slot for </s>
    for word in sentence.words:
        ids = [dictionary.index(piece) for piece in word_pieces(sp, word)] or [dictionary.unk()]
        room = budget - len(tokens)
        if room <= 0:
            positions.append(-1)
            ends.append(-1)
            continue
        positions.append(len(tokens))
        tokens.extend(ids[:room])
        ends.append(len(tokens))
    tokens.append(dictionary.eos())
    return AlignedSentence(torch.LongTensor(tokens), positions, ends)
