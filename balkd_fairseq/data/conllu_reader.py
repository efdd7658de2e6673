"""Universal Dependencies CoNLL-U files -> (word, UPOS) sentences, parsed with the ``conllu`` package.

Multiword-token ranges (``1-2``) and empty nodes (``8.1``) are skipped: the syntactic words of a
range are listed on their own lines, and empty nodes are not surface words. Word ids must rise within a
sentence: an id that restarts (or goes back) is a missing blank line between sentences, refused. A UTF-8 byte-order mark
at the start of the file is ignored. Malformed lines raise :class:`BalkdError` naming the file and
line number, and so does a file whose every FORM is ``_`` (UD treebanks whose text is distributed
separately), which would probe nothing.
"""
from typing import Iterator, List, Tuple

from conllu.exceptions import ParseException
from conllu.parser import DEFAULT_FIELDS, parse_line

from ..errors import BalkdError
from ..files import numbered_lines
from .subword_alignment import TaggedSentence

N_COLUMNS = len(DEFAULT_FIELDS)
BOM = "\ufeff"
HIDDEN_FORM = "_"


def read_conllu(path: str) -> List[TaggedSentence]:
    """Every sentence of ``path`` as its words (FORM) and UPOS tags."""
    sentences = []
    for block in _sentence_blocks(path):
        words, tags = [], []
        previous_id = 0
        for line_no, line in block:
            token = _parse_token(path, line_no, line)
            if not isinstance(token["id"], int):  # (1, '-', 2) range or (8, '.', 1) empty node
                continue
            _check_id_order(path, line_no, previous_id, token["id"])
            previous_id = token["id"]
            words.append(token["form"])
            tags.append(token["upos"])
        if words:
            sentences.append(TaggedSentence(words, tags))
    if not sentences:
        raise BalkdError(f"{path}: no sentences found (expected CoNLL-U)")
    if all(word == HIDDEN_FORM for sentence in sentences for word in sentence.words):
        raise BalkdError(f"{path}: every FORM is '{HIDDEN_FORM}' (a treebank distributed without its text); "
                         "probing needs the words: restore them with the treebank's own tools")
    return sentences


def _check_id_order(path: str, line_no: int, previous_id: int, token_id: int) -> None:
    """Word ids rise within a sentence; one that does not starts another sentence run into this one, which would
    make one giant sentence, cut at the encoder's length limit."""
    if token_id > previous_id:
        return
    if token_id == 1:
        raise BalkdError(f"{path}:{line_no}: token id 1 after {previous_id} without a blank line between sentences")
    raise BalkdError(f"{path}:{line_no}: token id {token_id} after {previous_id}: ids must rise within a sentence "
                     "(is a blank line between sentences missing?)")


def _sentence_blocks(path: str) -> Iterator[List[Tuple[int, str]]]:
    """Token lines (with 1-based line numbers) of each sentence; comments dropped."""
    block = []
    for line_no, line in _lines(path):
        if not line.strip():
            if block:
                yield block
            block = []
        elif not line.startswith("#"):
            block.append((line_no, line))
    if block:
        yield block


def _lines(path: str) -> Iterator[Tuple[int, str]]:
    for line_no, line in numbered_lines(path, "CoNLL-U"):
        yield line_no, line.removeprefix(BOM) if line_no == 1 else line


def _parse_token(path: str, line_no: int, line: str):
    columns = line.split("\t")
    if len(columns) != N_COLUMNS:
        raise BalkdError(
            f"{path}:{line_no}: malformed CoNLL-U line: {len(columns)} tab-separated columns, expected {N_COLUMNS}"
        )
    try:
        token = parse_line(line, DEFAULT_FIELDS)
    except ParseException as err:
        raise BalkdError(f"{path}:{line_no}: malformed CoNLL-U line: {err}") from None
    if isinstance(token["id"], int) and token["upos"] in (None, "_", ""):
        raise BalkdError(f"{path}:{line_no}: word {token['form']!r} has no UPOS tag (column 4)")
    if isinstance(token["id"], int) and not token["form"]:
        raise BalkdError(f"{path}:{line_no}: word {token['id']} has an empty FORM (column 2)")
    return token
