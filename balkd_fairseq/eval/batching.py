"""Batches under a token budget for evaluation forwards (padded size = longest item x items)."""
from typing import Callable, Iterable, Iterator, List, TypeVar

Item = TypeVar("Item")


def padded_batches(items: Iterable[Item], length: Callable[[Item], int], max_tokens: int) -> Iterator[List[Item]]:
    """Consecutive items whose padded batch stays within ``max_tokens``; an item longer than the budget
    still gets a batch of its own (evaluation never drops an item)."""
    batch, longest = [], 0
    for item in items:
        size = length(item)
        if batch and max(longest, size) * (len(batch) + 1) > max_tokens:
            yield batch
            batch, longest = [], 0
        batch.append(item)
        longest = max(longest, size)
    if batch:
        yield batch
