"""The raw text ``balkd-prepare`` reads: which file holds which language, and its lines.

``--raw de=de.txt,en=en.txt`` (or pre-split ``de=train.txt:valid.txt:test.txt``) and ``--raw-dir``
name the files; :func:`text_lines` streams a file's non-blank lines (ended by ``\n``, ``\r\n`` or a
lone ``\r``, as in text mode; the other characters ``str.splitlines()`` breaks at become spaces inside
the line), refusing invalid UTF-8 with the file and line number, and splits (or truncates) a line too
long for SentencePiece and fairseq.
"""
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

from ..errors import BalkdError
from ..files import numbered_lines

logger = logging.getLogger(__name__)

LM_SPLITS = ("train", "valid", "test")  # fairseq's masked-LM split names (probing data uses train/dev/test)
LANGUAGE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")  # no "_": it separates split and language (valid_de)
LONG_LINE_MODES = ("split", "truncate")
# SentencePiece skips training lines over 4192 bytes, and fairseq's ``sample_break_mode: complete`` aborts
# on a line longer than a block: a 1 MB line without spaces must not reach either of them whole.
DEFAULT_MAX_LINE_CHARS = 2000
# What str.splitlines() also breaks at: VT, FF, the information separators FS/GS/RS, NEL, U+2028, U+2029. fairseq
# (text-mode iteration) and SentencePiece end a line at "\n" alone, so a line holding them stays one sample; inside
# it they become a space. Kept as they are, NEL (often a cp1252 ellipsis decoded as latin-1) survives
# SentencePiece's nmt_nfkc normalisation as a piece of its own, which fairseq's whitespace tokenisation
# (tokenize_line, and our binarizer) then drops: dict.txt got a symbol no sample holds and the words on either
# side were glued together. A space is what that normalisation already makes of FF, U+2028 and U+2029.
LINE_SEPARATORS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
SEPARATORS_TO_SPACES = str.maketrans(dict.fromkeys(LINE_SEPARATORS, " "))


@dataclass
class LanguageSource:
    """The raw text of one language: one file ("all", split here) or three pre-split files."""

    lang: str
    files: Dict[str, Path]

    @property
    def presplit(self) -> bool:
        return "all" not in self.files


def _check_language_name(lang: str, flag: str) -> None:
    if not LANGUAGE_NAME.match(lang):
        hint = f"; e.g. {lang.replace('_', '-')!r}" if "_" in lang else ""
        raise BalkdError(f"{flag}: bad language name {lang!r} (letters, digits and '-', starting with a letter: '_' "
                         f"separates split and language in fairseq's subset names such as valid_de{hint})")
    if lang in LM_SPLITS:
        raise BalkdError(f"{flag}: {lang!r} is a split name, not a language name (fairseq would read "
                         f"--valid-subset {lang} as a split)")


def parse_raw_spec(spec: str) -> List[LanguageSource]:
    """``de=de.txt,en=en.txt`` or pre-split ``de=train.txt:valid.txt:test.txt``."""
    sources = []
    for item in spec.split(","):
        if not item.strip():
            continue
        lang, sep, paths = item.partition("=")
        lang = lang.strip()
        if not sep or not paths.strip():
            raise BalkdError(f"--raw: expected LANG=FILE or LANG=TRAIN:VALID:TEST, got {item!r}")
        _check_language_name(lang, "--raw")
        parts = [Path(p.strip()) for p in paths.split(":")]
        if len(parts) == 1:
            files = {"all": parts[0]}
        elif len(parts) == 3:
            files = dict(zip(LM_SPLITS, parts))
            _check_distinct_splits(lang, files)
        else:
            raise BalkdError(f"--raw: language '{lang}': give one file or three (TRAIN:VALID:TEST), got {len(parts)}")
        sources.append(LanguageSource(lang, files))
    if not sources:
        raise BalkdError("--raw: no language given")
    return sources


def _check_distinct_splits(lang: str, files: Dict[str, Path]) -> None:
    """The same file as two splits scores the model on its training text (or validates on its test text)."""
    seen: Dict[Path, str] = {}
    for split, path in files.items():
        key = Path(os.path.realpath(path))
        if key in seen:
            raise BalkdError(f"--raw: language '{lang}': {path} is both the {seen[key]} and the {split} split; "
                             "give three different files (TRAIN:VALID:TEST)")
        seen[key] = split


def _text_like_files(raw_dir: Path) -> List[str]:
    """Files a user likely meant as a language's text but that --raw-dir does not read: another case or
    extension (``ar.TXT``, ``th.text``) or compressed (``de.txt.xz``, as CC-100 ships)."""
    pattern = re.compile(r"^[^.]+\.(txt|text)(\.(gz|xz|bz2|zst))?$", re.IGNORECASE)
    return [p.name for p in sorted(raw_dir.iterdir())
            if p.is_file() and pattern.match(p.name) and not p.name.endswith(".txt")]


def sources_from_dir(raw_dir: Path, wanted: Optional[List[str]] = None) -> List[LanguageSource]:
    """Every ``<lang>.txt`` in raw_dir (of the ``wanted`` languages, if given), sorted by language."""
    if not raw_dir.is_dir():
        raise BalkdError(f"--raw-dir: not a directory: {raw_dir}")
    sources = [LanguageSource(p.stem, {"all": p}) for p in sorted(raw_dir.glob("*.txt"))]
    skipped = _text_like_files(raw_dir)
    if not sources:
        hint = f" (not read: {', '.join(skipped)}; name them <lang>.txt, decompressed)" if skipped else ""
        raise BalkdError(f"--raw-dir: no <lang>.txt file in {raw_dir}{hint}")
    if skipped:
        logger.warning(f"--raw-dir {raw_dir}: not read: {', '.join(skipped)} (only <lang>.txt files are inputs; "
                       "decompress and rename one to include it)")
    for source in sources:
        if wanted is None or source.lang in wanted:  # another file there (notes.txt, "de copy.txt") is not an input
            _check_language_name(source.lang, f"--raw-dir {raw_dir}")
    return sources


def text_lines(path: Path, on_bytes: Optional[Callable[[int], None]] = None, max_chars: int = 0,
               long_lines: str = "split", on_long: Optional[Callable[[], None]] = None) -> Iterator[str]:
    """The non-blank lines of a UTF-8 file, stripped, with :data:`LINE_SEPARATORS` as spaces; invalid UTF-8
    names the file and line.

    A line longer than ``max_chars`` (0: no limit) is split into pieces of at most ``max_chars``
    characters, at a space where there is one ("split"), or cut to its first piece ("truncate");
    ``on_long`` is called once per such line.
    """
    for _, line in numbered_lines(path, "text", on_bytes):
        # a lone carriage return ends a line for every later reader (Python's and fairseq's text mode): here too,
        # so classic-Mac files and stray \r keep the line counts the splits are cut by
        for text in line.split("\r"):
            text = text.translate(SEPARATORS_TO_SPACES).strip()
            if not text:
                continue
            if max_chars and len(text) > max_chars:
                if on_long is not None:
                    on_long()
                pieces = split_long_line(text, max_chars)
                yield from pieces[:1] if long_lines == "truncate" else pieces
            else:
                yield text


def split_long_line(text: str, max_chars: int) -> List[str]:
    """``text`` in pieces of at most ``max_chars`` characters, cut at the last space before the limit if any."""
    pieces = []
    while len(text) > max_chars:
        cut = text.rfind(" ", max_chars // 2, max_chars + 1)
        cut = cut if cut > 0 else max_chars
        pieces.append(text[:cut].strip())
        text = text[cut:].strip()
    if text:
        pieces.append(text)
    return [piece for piece in pieces if piece]
