"""Probing files: POS as CoNLL-U, NER as IOB2, one sentence block at a time.

The CoNLL-U files carry what the POS probes read (ID, FORM, UPOS) and the spacing (MISC
``SpaceAfter=No``, ``# text``); LEMMA, FEATS, HEAD and DEPREL are left unspecified (``_``), which
keeps the files valid CoNLL-U.
"""
from typing import Sequence

from .realize import Token, detokenize


def conllu_block(tokens: Sequence[Token], sent_id: str) -> str:
    """One sentence in 10-column CoNLL-U (ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC)."""
    lines = [f"# sent_id = {sent_id}", f"# text = {detokenize(tokens)}"]
    for i, t in enumerate(tokens, 1):
        misc = "_" if t.space_after else "SpaceAfter=No"
        lines.append(f"{i}\t{t.form}\t_\t{t.upos}\t_\t_\t_\t_\t_\t{misc}")
    return "\n".join(lines) + "\n\n"


def iob2_block(tokens: Sequence[Token]) -> str:
    """One sentence in IOB2: token<TAB>tag per line, a blank line after it."""
    return "".join(f"{t.form}\t{t.ner}\n" for t in tokens) + "\n"
