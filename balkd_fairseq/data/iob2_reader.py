"""NER files as WikiANN ships them: ``token<TAB>tag`` per line, a blank line between sentences.

Tags must be IOB2 names (``O``, ``B-TYPE``, ``I-TYPE``). An ``I-TYPE`` that does not continue an
entity of its type (after ``O``, at a sentence start, or after another type) is read as
``B-TYPE``, the way conlleval reads it and IOB1 files mean it; the reader warns once per file with
the number of such tags and the first line. WikiANN prefixes every token with its language
(``en:London``, ``zh-min-nan:...``); when every token of the file's first three sentences (at least
two tokens) carries the same such prefix, it is stripped from every token that starts with it (one
token alone, e.g. ``ftp:files``, is not a prefix). CoNLL's document markers (a ``-DOCSTART-`` token) end a sentence and are not
words. A UTF-8 byte-order mark at the start of the file is ignored. Malformed lines raise
:class:`BalkdError` naming the file and line number.
"""
import logging
import re
from typing import Iterator, List, Optional, Tuple

from ..errors import BalkdError
from ..files import numbered_lines
from .subword_alignment import TaggedSentence

logger = logging.getLogger(__name__)

# a language code (en, be-x-old, zh-min-nan, en_US) and a colon, before at least one character
LANGUAGE_PREFIX = re.compile(r"^([a-z]{2,3}(?:[-_][A-Za-z0-9]+)*:)(?=.)")
DOCUMENT_MARKER = "-DOCSTART-"
IOB2_TAG = re.compile(r"^(O|[BI]-\S+)$")
BOM = "\ufeff"


def read_iob2(path: str) -> List[TaggedSentence]:
    """Every sentence of ``path`` as its tokens (language prefix stripped) and IOB2 tags."""
    sentences, words, tags = [], [], []
    repaired_lines: List[int] = []
    for line_no, line in _lines(path):
        if not line.strip() or line.split()[0] == DOCUMENT_MARKER:
            if words:
                sentences.append(TaggedSentence(words, tags))
            words, tags = [], []
            continue
        token, tag = _split(path, line_no, line)
        if _opens_without_begin(tags[-1] if tags else "O", tag):
            tag = "B-" + tag[2:]
            repaired_lines.append(line_no)
        words.append(token)
        tags.append(tag)
    if words:
        sentences.append(TaggedSentence(words, tags))
    _strip_language_prefix(sentences)
    if not sentences:
        raise BalkdError(f"{path}: no sentences found (expected 'token<TAB>tag' lines)")
    if repaired_lines:
        logger.warning(
            f"{path}: {len(repaired_lines)} I- tag(s) did not continue an entity of their type (first at line "
            f"{repaired_lines[0]}); each was read as the B- tag that starts an entity"
        )
    return sentences


def _strip_language_prefix(sentences: List[TaggedSentence]) -> None:
    first_words = [w for sentence in sentences[:PREFIX_EVIDENCE_SENTENCES] for w in sentence.words]
    prefix = _language_prefix(first_words) if len(first_words) >= 2 else None
    if prefix:
        for sentence in sentences:
            sentence.words[:] = [w[len(prefix):] if w.startswith(prefix) and len(w) > len(prefix) else w
                                 for w in sentence.words]


PREFIX_EVIDENCE_SENTENCES = 3  # a language prefix is on every token of these (WikiANN prefixes every token)


def _language_prefix(words: List[str]) -> Optional[str]:
    """The prefix every word of ``words`` starts with, when it looks like a language code (else None)."""
    match = LANGUAGE_PREFIX.match(words[0])
    prefix = match.group(1) if match else None
    if prefix and all(w.startswith(prefix) and len(w) > len(prefix) for w in words):
        return prefix
    return None


def _opens_without_begin(previous: str, tag: str) -> bool:
    """``I-X`` after anything but ``B-X`` / ``I-X``: malformed in IOB2."""
    return tag.startswith("I-") and previous[2:] != tag[2:]


def _split(path: str, line_no: int, line: str) -> Tuple[str, str]:
    columns = line.split("\t") if "\t" in line else line.split()
    if len(columns) != 2 or not columns[0].strip():
        raise BalkdError(f"{path}:{line_no}: malformed line {line!r}: expected 'token<TAB>tag'")
    token, tag = columns[0].strip(), columns[1].strip()
    if not IOB2_TAG.match(tag):
        raise BalkdError(f"{path}:{line_no}: {tag!r} is not an IOB2 tag (expected O, B-TYPE or I-TYPE)")
    return token, tag


def _lines(path: str) -> Iterator[Tuple[int, str]]:
    for line_no, line in numbered_lines(path, "IOB2"):
        yield line_no, line.removeprefix(BOM) if line_no == 1 else line
