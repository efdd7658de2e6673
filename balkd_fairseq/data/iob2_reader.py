"""NER files as WikiANN ships them: ``token<TAB>tag`` per line, a blank line between sentences.

Tags must be IOB2 names (``O``, ``B-TYPE``, ``I-TYPE``). WikiANN prefixes every token with its
language (``en:London``); when the file's first token carries such a prefix, that prefix is
stripped from every token that starts with it. Malformed lines raise :class:`BalkdError` naming the
file and line number.
"""
import re
from typing import Iterator, List, Optional, Tuple

from ..errors import BalkdError
from ..files import numbered_lines
from .subword_alignment import TaggedSentence

LANGUAGE_PREFIX = re.compile(r"^([a-z]{2,3}(?:[-_][A-Za-z]+)?:)(?=.)")
IOB2_TAG = re.compile(r"^(O|[BI]-\S+)$")


def read_iob2(path: str) -> List[TaggedSentence]:
    """Every sentence of ``path`` as its tokens (language prefix stripped) and IOB2 tags."""
    sentences, words, tags = [], [], []
    prefix: Optional[str] = None
    for line_no, line in _lines(path):
        if not line.strip():
            if words:
                sentences.append(TaggedSentence(words, tags))
            words, tags = [], []
            continue
        token, tag = _split(path, line_no, line)
        if prefix is None:
            match = LANGUAGE_PREFIX.match(token)
            prefix = match.group(1) if match else ""
        if prefix and token.startswith(prefix) and len(token) > len(prefix):
            token = token[len(prefix):]
        words.append(token)
        tags.append(tag)
    if words:
        sentences.append(TaggedSentence(words, tags))
    if not sentences:
        raise BalkdError(f"{path}: no sentences found (expected 'token<TAB>tag' lines)")
    return sentences


def _split(path: str, line_no: int, line: str) -> Tuple[str, str]:
    columns = line.split("\t") if "\t" in line else line.split()
    if len(columns) != 2 or not columns[0].strip():
        raise BalkdError(f"{path}:{line_no}: malformed line {line!r}: expected 'token<TAB>tag'")
    token, tag = columns[0].strip(), columns[1].strip()
    if not IOB2_TAG.match(tag):
        raise BalkdError(f"{path}:{line_no}: {tag!r} is not an IOB2 tag (expected O, B-TYPE or I-TYPE)")
    return token, tag


def _lines(path: str) -> Iterator[Tuple[int, str]]:
    return numbered_lines(path, "IOB2")
