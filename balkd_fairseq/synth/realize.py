"""Realisation: a latent sentence -> the tokens of one language (word order, endings, function words).

POS is not solvable from word identity alone: some verbs and adjectives are homographs of nouns, the
demonstrative doubles as determiner, pronoun (and in some languages subordinator), bare verbs in
analytic tenses look like nouns, and surnames and city names double as parts of organisation names
(and some first names are city names). Context (neighbours, order, suffixes) disambiguates them.
"""
from typing import List, Sequence, Tuple

from .grammar import Clause, LatentSentence, NounPhrase
from .lexicon import Lexicon
from .scripts import CASED_SCRIPTS, PUNCTUATION, capitalize


class Token:
    """A word as the probing files need it: its form, UPOS tag, IOB2 entity tag and spacing."""

    __slots__ = ("form", "upos", "ner", "space_after")

    def __init__(self, form: str, upos: str, ner: str = "O"):
        self.form, self.upos, self.ner, self.space_after = form, upos, ner, True


def detokenize(tokens: Sequence[Token]) -> str:
    return "".join(t.form + (" " if t.space_after else "") for t in tokens).rstrip()


class Realizer:
    """Word order, morphology and script of one language applied to latent sentences."""

    def __init__(self, lexicon: Lexicon):
        self.lex = lexicon
        self.p = lexicon.profile
        self.punct = PUNCTUATION[self.p.script]

    def sentence(self, latent: LatentSentence) -> List[Token]:
        tokens = self.clause(latent.clauses[0])
        if latent.link is not None:
            second = self.clause(latent.clauses[1])
            upos, concept = latent.link
            link = Token(self.lex.word(upos, concept), upos)
            comma = [] if concept == "and" else [Token(self.punct[1], "PUNCT")]
            if upos == "SCONJ" and self.p.word_order == "SOV":
                tokens = second + [link] + comma + tokens  # subordinate clause first, subordinator last
            else:
                tokens = tokens + comma + [link] + second
        tokens.append(Token(self.punct[2] if latent.question else self.punct[0], "PUNCT"))
        if self.p.script in CASED_SCRIPTS:
            tokens[0].form = capitalize(tokens[0].form)
        for before, token in zip(tokens, tokens[1:]):
            if token.upos == "PUNCT":
                before.space_after = False
        return tokens

    def clause(self, c: Clause) -> List[Token]:
        p = self.p
        subject_case = ("Erg" if c.obj is not None else "Abs") if p.ergative else "Nom"
        slots = {"S": self.noun_phrase(c.subject, subject_case), "V": self.verb_group(c), "O": [], "X": []}
        if c.obj is not None:
            obj = self.noun_phrase(c.obj, "Abs" if p.ergative else "Acc")
            if p.object_marker:
                obj.append(Token(self.lex.word("ADP", "obj"), "ADP"))
            slots["O"] = obj
        for adp, np in c.obliques:
            phrase = self.noun_phrase(np, "Abs" if p.ergative else "Nom")
            marker = Token(self.lex.word("ADP", adp), "ADP")
            slots["X"] += phrase + [marker] if p.postpositions else [marker] + phrase
        if c.adverb is not None:
            slots["X"].append(Token(self.lex.word("ADV", c.adverb), "ADV"))
        order = "SVOX" if p.word_order == "SVO" else "SXOV"
        return [t for slot in order for t in slots[slot]]

    def verb_group(self, c: Clause) -> List[Token]:
        """The verb with its endings, plus an auxiliary (analytic tenses) and a negation particle."""
        p, number = self.p, c.subject.number
        analytic = c.tense in p.aux_tenses
        if p.fused:
            keys = () if analytic else (("verb", c.tense, number),)
        else:
            keys = ((("tense", c.tense),) if c.tense in p.tense_suffixes else ())
            keys += (("neg",),) if c.negated and p.neg_suffix else ()
            keys += (("agree", number),) if p.verb_agreement and not analytic else ()
        group = [Token(self.lex.word("VERB", c.verb, keys), "VERB")]
        if analytic:
            if p.verb_agreement:
                aux_keys = (("verb", "Pres", number),) if p.fused else (("agree", number),)
            else:
                aux_keys = ()
            aux = Token(self.lex.word("AUX", c.tense, aux_keys), "AUX")
            group = [aux] + group if p.word_order == "SVO" else group + [aux]
        if c.negated and not p.neg_suffix:
            group.insert(0, Token(self.lex.word("PART", "neg"), "PART"))
        return group

    def _endings(self, kind: str, number: str, case: str) -> Tuple[tuple, ...]:
        p = self.p
        if p.fused:
            return ((kind, number, case if case in p.case_suffixes else "Nom"),)
        if kind != "noun":
            return ()
        keys = (("number", "Plur"),) if number == "Plur" and p.plural_suffix else ()
        return keys + ((("case", case),) if case in p.case_suffixes else ())

    def noun_phrase(self, np: NounPhrase, case: str) -> List[Token]:
        if np.kind == "pron":
            return [Token(self.lex.word("PRON", np.head, self._endings("noun", "Sing", case)), "PRON")]
        if np.kind != "noun":
            return self._entity(np, case)
        p = self.p
        head = Token(self.lex.word("NOUN", np.head, self._endings("noun", np.number, case)), "NOUN")
        before, after = [], []
        adjective_endings = self._endings("adj", np.number, case) if p.adj_agreement else ()
        for adjective in np.adjectives:
            (before if p.adj_before_noun else after).append(
                Token(self.lex.word("ADJ", adjective, adjective_endings), "ADJ"))
        if np.num is not None:
            before.insert(0, Token(self.lex.word("NUM", np.num), "NUM"))
        if np.det is not None and (p.articles or np.det in ("this", "that")):
            det_endings = self._endings("det", np.number, case) if p.det_agreement else ()
            before.insert(0, Token(self.lex.word("DET", np.det, det_endings), "DET"))
        return before + [head] + after

    def _entity(self, np: NounPhrase, case: str) -> List[Token]:
        endings = self._endings("noun", "Sing", case)
        parts = list(np.head)
        if np.kind == "ORG" and not self.p.adj_before_noun:
            parts.reverse()  # "Banco Santander": the organisation word first in noun-adjective languages
        words: List[str] = []
        for i, (pool, index) in enumerate(parts):
            keys = endings if i == len(parts) - 1 else ()
            if pool == "org":
                form = self.lex.word("ORG", index, keys)
                words.append(capitalize(form) if self.p.script in CASED_SCRIPTS else form)
            else:
                words.extend(self.lex.name(pool, index, keys))
        return [Token(form, "PROPN", ("B-" if i == 0 else "I-") + np.kind) for i, form in enumerate(words)]
