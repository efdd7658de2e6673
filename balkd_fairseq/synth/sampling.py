"""Reproducible random streams and Zipfian draws."""
import bisect
import hashlib
import itertools
import random


def derive_rng(seed: int, *names: str) -> random.Random:
    """An independent, reproducible random stream for (seed, *names) (stable across runs, unlike hash())."""
    digest = hashlib.sha256("\x1f".join((str(seed),) + names).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class Zipf:
    """Draws ranks 0..n-1 with probability proportional to 1 / (rank + 1) ** exponent."""

    def __init__(self, n: int, exponent: float):
        self.cum = list(itertools.accumulate(1.0 / (rank + 1) ** exponent for rank in range(n)))

    def draw(self, rng: random.Random) -> int:
        return bisect.bisect_right(self.cum, rng.random() * self.cum[-1])
