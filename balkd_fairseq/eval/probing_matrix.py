"""The probing matrix (train language x test language) and its in-language / zero-shot summaries.

``matrix[train][test]`` is the score of the probe trained on ``train`` when tested on ``test``.
In-language (I-L) of a language is the diagonal entry; zero-shot (Z-S) of a test language is the
mean over the probes trained on every *other* language. A score can be undefined (``None``: NER F1
on a test file without gold entities); Z-S averages the defined transfers and is ``None`` when there
are none (always so with one language).
"""
from statistics import mean
from typing import Dict, List, Optional

Matrix = Dict[str, Dict[str, Optional[float]]]


def check_square(matrix: Matrix, languages: List[str]) -> None:
    for train in languages:
        row = matrix.get(train)
        if row is None or any(test not in row for test in languages):
            raise ValueError(f"probing matrix has no complete row for train language {train!r}")


def in_language(matrix: Matrix, languages: List[str]) -> Dict[str, Optional[float]]:
    check_square(matrix, languages)
    return {lang: matrix[lang][lang] for lang in languages}


def zero_shot(matrix: Matrix, languages: List[str]) -> Dict[str, Optional[float]]:
    check_square(matrix, languages)
    scores = {}
    for test in languages:
        transfers = [matrix[train][test] for train in languages if train != test and matrix[train][test] is not None]
        scores[test] = mean(transfers) if transfers else None
    return scores


def summarize(matrix: Matrix, languages: List[str]) -> dict:
    """JSON-ready block: the matrix in ``languages`` order plus I-L and Z-S per language."""
    return {
        "languages": list(languages),
        "matrix": {train: {test: matrix[train][test] for test in languages} for train in languages},
        "in_language": in_language(matrix, languages),
        "zero_shot": zero_shot(matrix, languages),
    }
