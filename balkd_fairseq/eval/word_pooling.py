"""One vector per word from the encoder's states at its subwords: the first, the last, or their mean.

``first`` is the usual choice for fine-tuning taggers (XTREME), and the probes' default. Frozen probes
can be misled by it: a SentencePiece vocabulary shared by many scripts often splits a word of a
less-represented script into a bare word-boundary piece ``▁`` followed by the word's letters, so the
first subword is the same token for nearly half of such a language's words and tells the probe only what
the encoder mixed in from the context (measured on the toy benchmark's diverse preset, README). ``mean``
reads every piece of the word, as span-pooling probes do (Tenney et al. 2019); ``last`` the piece that
carries suffixes.
"""
import torch

from ..data.subword_alignment import AlignedSentence

WORD_POOLINGS = ("first", "last", "mean")


def pool_words(states: torch.Tensor, aligned: AlignedSentence, pooling: str = "first") -> torch.Tensor:
    """(words kept, dim) vectors of the words of ``aligned`` (words cut off by the length limit are left out)
    from ``states`` (T, dim), one row per token of ``aligned.tokens``."""
    kept = [i for i, start in enumerate(aligned.word_positions) if start >= 0]
    starts = torch.tensor([aligned.word_positions[i] for i in kept], dtype=torch.long)
    ends = torch.tensor([aligned.word_ends[i] for i in kept], dtype=torch.long)
    if pooling == "first":
        return states[starts]
    if pooling == "last":
        return states[ends - 1]
    if pooling == "mean":
        return _span_means(states, starts, ends)
    raise ValueError(f"unknown word pooling {pooling!r}; choose from {', '.join(WORD_POOLINGS)}")


def _span_means(states: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    # float64 prefix sums: a span's mean is exact to float32 precision whatever the sentence's length
    prefix = torch.cat([states.new_zeros(1, states.shape[1], dtype=torch.float64), states.double().cumsum(0)])
    lengths = (ends - starts).unsqueeze(1).double()
    return ((prefix[ends] - prefix[starts]) / lengths).to(states.dtype)
