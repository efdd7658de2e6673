"""Word-level probing metrics: POS accuracy and NER entity-level micro-F1 (seqeval, strict IOB2).

Predictions are label names per word. ``None`` marks a word the probe could not tag (cut off by
the encoder's length limit): it counts as wrong for POS and as ``O`` for NER. Gold labels the probe
never saw in training simply can never be predicted, so they count as errors.
"""
from typing import List, Optional, Sequence

from seqeval.metrics import f1_score
from seqeval.scheme import IOB2


def _check_shapes(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[Optional[str]]]) -> None:
    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred)):
        raise ValueError("gold and predicted tag sequences differ in shape")


def pos_accuracy(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[Optional[str]]]) -> float:
    """Fraction of words whose predicted tag equals the gold tag."""
    _check_shapes(gold, pred)
    total = sum(len(g) for g in gold)
    correct = sum(p == g for gs, ps in zip(gold, pred) for g, p in zip(gs, ps))
    return correct / total if total else 0.0


def ner_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[Optional[str]]]) -> float:
    """Entity-level micro-F1; an entity counts only with exact span and type (seqeval strict IOB2)."""
    _check_shapes(gold, pred)
    filled: List[List[str]] = [[p if p is not None else "O" for p in ps] for ps in pred]
    return float(f1_score([list(g) for g in gold], filled, mode="strict", scheme=IOB2, zero_division=0))


METRICS = {"accuracy": pos_accuracy, "f1": ner_f1}
