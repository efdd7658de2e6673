"""Word-level probing metrics: POS accuracy and NER entity-level micro-F1 (strict IOB2, as seqeval).

Predictions are label names per word. ``None`` marks a word the probe could not tag (cut off by
the encoder's length limit): it counts as wrong for POS and as ``O`` for NER. Gold labels the probe
never saw in training simply can never be predicted, so they count as errors.

Scores are computed from per-sentence counts (:func:`pos_counts`, :func:`ner_counts`), which are
also what balkd-probe stores per test sentence for paired bootstrap comparisons: accuracy is
sum correct / sum total; F1 uses seqeval's strict-mode entities (an entity counts only with exact
span and type, and only a ``B-`` opens one) and seqeval's arithmetic, so it equals
``seqeval.metrics.f1_score(mode="strict", scheme=IOB2)``. F1 is undefined (``None``) when the gold
labels hold no entity at all.
"""
from typing import Dict, List, Optional, Sequence

import numpy as np
from seqeval.scheme import IOB2, Tokens


def _check_shapes(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[Optional[str]]]) -> None:
    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred)):
        raise ValueError("gold and predicted tag sequences differ in shape")


def pos_counts(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[Optional[str]]]) -> Dict[str, np.ndarray]:
    """Per sentence: ``correct`` words and ``total`` words (int32)."""
    _check_shapes(gold, pred)
    correct = [sum(p == g for g, p in zip(gs, ps)) for gs, ps in zip(gold, pred)]
    return {"correct": np.array(correct, dtype=np.int32), "total": np.array([len(g) for g in gold], dtype=np.int32)}


def _entities(tags: Sequence[Optional[str]]) -> set:
    filled = [t if t is not None else "O" for t in tags]
    return {(e.tag, e.start, e.end) for e in Tokens(filled, IOB2).entities}


def ner_counts(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[Optional[str]]]) -> Dict[str, np.ndarray]:
    """Per sentence: ``tp`` (exact span and type), ``pred`` and ``gold`` entity counts (int32)."""
    _check_shapes(gold, pred)
    tp: List[int] = []
    n_pred: List[int] = []
    n_gold: List[int] = []
    for gs, ps in zip(gold, pred):
        gold_entities, pred_entities = _entities(gs), _entities(ps)
        tp.append(len(gold_entities & pred_entities))
        n_pred.append(len(pred_entities))
        n_gold.append(len(gold_entities))
    as_array = lambda values: np.array(values, dtype=np.int32)  # noqa: E731
    return {"tp": as_array(tp), "pred": as_array(n_pred), "gold": as_array(n_gold)}


def accuracy_from_counts(counts: Dict[str, np.ndarray]) -> Optional[float]:
    total = int(counts["total"].sum())
    return int(counts["correct"].sum()) / total if total else None


def f1_from_counts(counts: Dict[str, np.ndarray]) -> Optional[float]:
    """Micro-F1 with seqeval's arithmetic (precision and recall first); None without gold entities."""
    tp, n_pred, n_gold = (int(counts[k].sum()) for k in ("tp", "pred", "gold"))
    if n_gold == 0:
        return None
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold
    denominator = precision + recall
    return 2.0 * precision * recall / denominator if denominator else 0.0


def pos_accuracy(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[Optional[str]]]) -> Optional[float]:
    """Fraction of words whose predicted tag equals the gold tag."""
    return accuracy_from_counts(pos_counts(gold, pred))


def ner_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[Optional[str]]]) -> Optional[float]:
    """Entity-level micro-F1 (strict IOB2); None when ``gold`` has no entity."""
    return f1_from_counts(ner_counts(gold, pred))


COUNTS = {"accuracy": pos_counts, "f1": ner_counts}
FROM_COUNTS = {"accuracy": accuracy_from_counts, "f1": f1_from_counts}
