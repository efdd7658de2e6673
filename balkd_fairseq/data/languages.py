"""Which languages a data directory holds: the one place that parses ``--languages`` and discovers them.

Layout: ``DATA/dict.txt`` and one subdirectory per language, ``DATA/<lang>/<split>.{bin,idx}``.
Language codes name per-language subsets (``valid_<lang>``), so they cannot contain the separator
``_``; directories whose names start with a dot (``.git``, ``.ipynb_checkpoints``) are never languages.
"""
import os
from typing import List

from ..errors import BalkdError

SUBSET_LANGUAGE_SEPARATOR = "_"  # valid_<lang>, test_<lang>


def check_language_code(lang: str, source: str) -> None:
    """Refuse a code that cannot name a language directory and a ``<split>_<lang>`` subset."""
    if not lang:
        raise BalkdError(f"{source}: empty language name")
    if lang.startswith("."):
        raise BalkdError(f"{source}: {lang!r} is not a language (names starting with '.' are hidden directories)")
    if SUBSET_LANGUAGE_SEPARATOR in lang:
        raise BalkdError(
            f"{source}: language code {lang!r} contains {SUBSET_LANGUAGE_SEPARATOR!r}, which separates split and "
            f"language in subset names (valid_<lang>); rename it (e.g. {lang.replace(SUBSET_LANGUAGE_SEPARATOR, '-')!r})"
        )
    if os.sep in lang or (os.altsep and os.altsep in lang) or lang in (".", ".."):
        raise BalkdError(f"{source}: {lang!r} is not a language code (it is a path)")


def _checked_unique(languages: List[str], source: str) -> List[str]:
    seen = set()
    for lang in languages:
        check_language_code(lang, source)
        if lang in seen:
            raise BalkdError(f"{source} lists language {lang!r} twice: {','.join(languages)}")
        seen.add(lang)
    return languages


def parse_languages(spec: str, source: str = "--languages") -> List[str]:
    """``" de , eu "`` -> ``['de', 'eu']``: spaces stripped, empty items dropped, codes checked, no duplicates."""
    return _checked_unique([lang.strip() for lang in str(spec or "").split(",") if lang.strip()], source)


def discover_languages(root: str) -> List[str]:
    """Every non-hidden subdirectory of ``root``, sorted."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        raise BalkdError(f"data directory not found: {root}") from None
    except NotADirectoryError:
        raise BalkdError(f"data directory is not a directory: {root}") from None
    found = sorted(d for d in names if not d.startswith(".") and os.path.isdir(os.path.join(root, d)))
    return _checked_unique(found, f"language directory in {root}")


def resolve_languages(root: str, spec: str = "", source: str = "--languages") -> List[str]:
    """The languages to use: ``spec`` (each checked to have a directory) or every language directory of ``root``."""
    if spec and spec.strip(", "):
        languages = parse_languages(spec, source)
        for lang in languages:
            if not os.path.isdir(os.path.join(root, lang)):
                raise BalkdError(f"language {lang!r} from {source} has no directory {os.path.join(root, lang)}")
        return languages
    languages = discover_languages(root)
    if not languages:
        raise BalkdError(f"no languages: {root} has no language subdirectories and {source} is empty")
    return languages


def split_and_language(subset: str, languages: List[str]):
    """``'valid_de'`` -> ``('valid', 'de')`` when ``de`` is one of ``languages``; else ``(subset, None)``."""
    base, sep, lang = subset.rpartition(SUBSET_LANGUAGE_SEPARATOR)
    if sep and base and lang in languages:
        return base, lang
    return subset, None
