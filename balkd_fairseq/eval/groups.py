"""Rows of the results table: named language groups, groups by training size, single languages, All.

"All" is every evaluated language, whether or not it is in a listed group. With many languages,
``--groups-by-size`` cuts the evaluated languages, sorted by training size, at quantiles of their
rank: the default gives the bottom, middle and top third.

Training sizes come from ``balkd-prepare``'s ``DATA/stats.json`` (training tokens per language) or
from ``balkd-synth``'s ``languages.json`` (raw sentences per language).
"""
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import BalkdError
from ..files import read_json

THIRDS = (1 / 3, 2 / 3)
Rows = List[Tuple[str, List[str]]]


def check_disjoint(named: Dict[str, Sequence[str]]) -> None:
    """Refuse a language listed in two groups (e.g. in --low and --high)."""
    seen: Dict[str, str] = {}
    for flag, languages in named.items():
        for lang in languages:
            if lang in seen:
                raise BalkdError(f"language {lang!r} is in both {seen[lang]} and {flag}; groups must not overlap")
            seen[lang] = flag


def parse_quantiles(value: Optional[str]) -> Tuple[float, ...]:
    """``'0.5,0.9'`` -> (0.5, 0.9); empty/None -> thirds."""
    if not value:
        return THIRDS
    try:
        quantiles = tuple(float(q) for q in value.split(",") if q.strip())
    except ValueError:
        raise BalkdError(f"--groups-by-size: expected comma-separated quantiles such as 0.5,0.9, got {value!r}") from None
    if not quantiles or any(not 0 < q < 1 for q in quantiles) or list(quantiles) != sorted(set(quantiles)):
        raise BalkdError(f"--groups-by-size: quantiles must be increasing and strictly between 0 and 1, got {value!r}")
    return quantiles


def read_sizes(path: str) -> Dict[str, float]:
    """Training size per language from ``stats.json`` (balkd-prepare) or ``languages.json`` (balkd-synth)."""
    payload = read_json(path, "--sizes")
    if isinstance(payload, dict) and isinstance(payload.get("languages"), dict):
        try:
            return {lang: float(stats["train"]["tokens"]) for lang, stats in payload["languages"].items()}
        except (KeyError, TypeError, ValueError):
            pass
    if isinstance(payload, dict) and isinstance(payload.get("raw_sentences"), dict):
        return {lang: float(n) for lang, n in payload["raw_sentences"].items()}
    raise BalkdError(
        f"--sizes: {path} holds no training sizes (expected balkd-prepare's stats.json or balkd-synth's languages.json)"
    )


def default_sizes_file(data_dirs: Sequence[str]) -> str:
    """``DATA/stats.json`` of the data the LM results were computed on."""
    for data in data_dirs:
        candidate = os.path.join(data, "stats.json")
        if os.path.isfile(candidate):
            return candidate
    where = ", ".join(data_dirs) or "the results (no lm.json records its data directory)"
    raise BalkdError(f"--groups-by-size: no stats.json in {where}; pass --sizes stats.json or languages.json")


def _percent(q: float) -> str:
    return f"{100 * q:.0f}%"


def size_groups(languages: Sequence[str], sizes: Dict[str, float], quantiles: Sequence[float]) -> Rows:
    """Languages sorted by size, cut at the given quantiles of their rank (empty groups dropped)."""
    missing = [lang for lang in languages if lang not in sizes]
    if missing:
        raise BalkdError(f"--groups-by-size: no training size for language(s) {', '.join(missing)}")
    ordered = sorted(languages, key=lambda lang: (sizes[lang], lang))
    bounds = [0.0, *quantiles, 1.0]
    cuts = [math.floor(q * len(ordered) + 0.5) for q in bounds]
    rows = []
    for (low, high), (start, stop) in zip(zip(bounds, bounds[1:]), zip(cuts, cuts[1:])):
        if stop > start:
            rows.append((f"Size {_percent(low)}–{_percent(high)}", ordered[start:stop]))
    return rows


def table_rows(low: Sequence[str], high: Sequence[str], single: Sequence[str], by_size: Rows,
               evaluated: Sequence[str]) -> Rows:
    """[(row label, languages)]: Low-Res, High-Res, size groups, one {lang} per single language, All."""
    rows: Rows = []
    if low:
        rows.append(("Low-Res", list(low)))
    if high:
        rows.append(("High-Res", list(high)))
    rows.extend(by_size)
    rows.extend((f"{{{lang}}}", [lang]) for lang in single)
    rows.append(("All", list(evaluated)))
    return rows
