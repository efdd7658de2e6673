"""``--mask-whole-words`` for SentencePiece data: which dictionary symbols begin a word.

fairseq's ``get_whole_word_mask`` builds this from a BPE object made from ``--bpe`` flags, and its
``masked_lm`` task calls it with ``self.args``, which tasks configured from a dataclass do not have
(an AttributeError). The ``balanced_distill`` task's data is SentencePiece-encoded (``balkd-prepare``),
so the rule is SentencePiece's (fairseq's ``SentencepieceBPE.is_beginning_of_word``: a piece starting
with ``▁``) with ``get_whole_word_mask``'s exceptions (special symbols and ``madeupword`` padding
count as word starts). It needs no ``--bpe`` flags and no SentencePiece model, so training, the
teacher cache and evaluation build the same masks.
"""
import torch

from ..errors import BalkdError

WORD_START = "\u2581"


def sentencepiece_word_starts(dictionary, data_dict: str) -> torch.Tensor:
    """A ByteTensor over ``dictionary``: 1 for a symbol that begins a word."""
    starts = [i < dictionary.nspecial or symbol.startswith((WORD_START, "madeupword"))
              for i, symbol in enumerate(dictionary.symbols)]
    pieces = [symbol for symbol in dictionary.symbols[dictionary.nspecial:] if not symbol.startswith("madeupword")]
    if pieces and not any(symbol.startswith(WORD_START) for symbol in pieces):
        raise BalkdError(f"--mask-whole-words: no symbol of {data_dict} starts with {WORD_START!r}, so it is not a "
                         "SentencePiece vocabulary (balkd-prepare) and its word starts are unknown")
    return torch.ByteTensor(starts)


def check_bpe_for_word_starts(run_bpe) -> None:
    """A ``--bpe`` other than sentencepiece given with --mask-whole-words would mean other word starts."""
    name = getattr(run_bpe, "_name", None) if run_bpe is not None else None
    if name not in (None, "sentencepiece"):
        raise BalkdError(f"--mask-whole-words with --bpe {name}: balanced_distill data is SentencePiece-encoded "
                         "(balkd-prepare), whose word starts are used; drop --bpe or pass --bpe sentencepiece")
