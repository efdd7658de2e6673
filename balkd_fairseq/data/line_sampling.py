"""Drawing lines without holding them: exactly k of n, and a quota spread over n by repetition.

``balkd-prepare`` routes each line to train/valid/test and into the SentencePiece sample as it
streams past, so the choices are made one line at a time, with no index lists.
"""
import random
from typing import Dict


class SelectionSampler:
    """Chooses exactly k of the next n items, uniformly, one decision at a time (Knuth's Algorithm S)."""

    def __init__(self, k: int, n: int, rng: random.Random):
        self.needed, self.left, self.rng = k, n, rng

    def take(self) -> bool:
        chosen = self.rng.random() * self.left < self.needed
        self.left -= 1
        self.needed -= chosen
        return chosen


def sp_sample_sizes(train_lines: Dict[str, int], alpha: float, cap: int) -> Dict[str, int]:
    """Lines per language in the SentencePiece sample: min(cap, total) split ∝ n ** alpha (at least 1 each)."""
    total = min(cap, sum(train_lines.values()))
    weights = {lang: n ** alpha for lang, n in train_lines.items()}
    norm = sum(weights.values())
    return {lang: max(1, int(total * w / norm)) for lang, w in weights.items()}


class RepeatingSampler:
    """Repeats each of n lines ``quota // n`` times, plus once more for ``quota % n`` of them."""

    def __init__(self, quota: int, n: int, rng: random.Random):
        self.base = quota // n
        self.extra = SelectionSampler(quota % n, n, rng)

    def copies(self) -> int:
        return self.base + self.extra.take()
