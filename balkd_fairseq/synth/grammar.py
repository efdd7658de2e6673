"""The latent grammar every language shares: concepts, their Zipfian frequencies and sentence structures.

Sentences of one or two clauses whose noun phrases, verbs, adpositional phrases and named entities
(PER/LOC/ORG) are drawn from one shared inventory of concepts. ``realize.py`` turns a latent sentence
into the words of one language.
"""
import random
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .sampling import Zipf, derive_rng

TENSES = ("Pres", "Past", "Fut")
DET_CONCEPTS = ("def", "indef", "this", "that")
PRON_CONCEPTS = (("1", "Sing"), ("2", "Sing"), ("3", "Sing"), ("1", "Plur"), ("2", "Plur"), ("3", "Plur"))
LOCATIVE_ADPS = ("in", "to", "from")
ADP_CONCEPTS = LOCATIVE_ADPS + ("with", "for", "about", "under", "after")
CCONJ_CONCEPTS = ("and", "but")
SCONJ_CONCEPTS = ("that", "because", "when")
NUMBER_WORDS = 10
ORG_WORDS = 10  # "Bank", "University", ... (translated per language)
N_FIRST_NAMES, N_LAST_NAMES, N_CITIES = 150, 250, 150
FIRST_NAMES_FROM_CITIES = 30  # first names that are also city names (PER vs LOC needs context)


@dataclass(frozen=True)
class Inventory:
    """How many concepts each open class has, and which verbs take an object."""

    nouns: int
    verbs: int
    adjectives: int
    adverbs: int
    transitive: Tuple[bool, ...]

    @classmethod
    def build(cls, lexicon_size: int, seed: int) -> "Inventory":
        nouns, verbs, adjectives = (round(lexicon_size * share) for share in (0.45, 0.25, 0.2))
        adverbs = max(lexicon_size - nouns - verbs - adjectives, 1)
        rng = derive_rng(seed, "inventory")
        return cls(nouns, verbs, adjectives, adverbs, tuple(rng.random() < 0.6 for _ in range(verbs)))


@dataclass
class NounPhrase:
    kind: str  # "pron", "noun", "PER", "LOC", "ORG"
    head: object  # noun rank, pronoun concept, or a name: tuple of (pool, index)
    number: str = "Sing"
    det: Optional[str] = None
    num: Optional[int] = None
    adjectives: Tuple[int, ...] = ()


@dataclass
class Clause:
    subject: NounPhrase
    verb: int
    tense: str
    negated: bool
    obj: Optional[NounPhrase]
    obliques: List[Tuple[str, NounPhrase]]
    adverb: Optional[int]


@dataclass
class LatentSentence:
    clauses: List[Clause]
    link: Optional[Tuple[str, str]]  # ("CCONJ", concept) or ("SCONJ", concept) joining two clauses
    question: bool


class Grammar:
    """The shared latent grammar: a distribution over sentence structures and concepts."""

    def __init__(self, inventory: Inventory, zipf_exponent: float):
        self.inventory = inventory
        self.nouns = Zipf(inventory.nouns, zipf_exponent)
        self.verbs = Zipf(inventory.verbs, zipf_exponent)
        self.adjectives = Zipf(inventory.adjectives, zipf_exponent)
        self.adverbs = Zipf(inventory.adverbs, zipf_exponent)
        self.first = Zipf(N_FIRST_NAMES, zipf_exponent)
        self.last = Zipf(N_LAST_NAMES, zipf_exponent)
        self.cities = Zipf(N_CITIES, zipf_exponent)
        self.orgs = Zipf(ORG_WORDS, zipf_exponent)
        self.adps = Zipf(len(ADP_CONCEPTS), 1.0)
        self.numbers = Zipf(NUMBER_WORDS, 1.0)

    def sentence(self, rng: random.Random) -> LatentSentence:
        r = rng.random()
        if r < 0.75:
            return LatentSentence([self.clause(rng)], None, rng.random() < 0.1)
        link = ("CCONJ", rng.choice(CCONJ_CONCEPTS)) if r < 0.9 else ("SCONJ", rng.choice(SCONJ_CONCEPTS))
        return LatentSentence([self.clause(rng), self.clause(rng)], link, False)

    def clause(self, rng: random.Random) -> Clause:
        verb = self.verbs.draw(rng)
        r = rng.random()
        subject = self.noun_phrase(rng, "PER" if r < 0.25 else "ORG" if r < 0.35 else "pron" if r < 0.55 else "noun")
        obj = None
        if self.inventory.transitive[verb]:
            r = rng.random()
            obj = self.noun_phrase(rng, "PER" if r < 0.08 else "ORG" if r < 0.15 else "LOC" if r < 0.2 else "noun")
        obliques = []
        for _ in range((rng.random() < 0.5) + (rng.random() < 0.15)):
            if rng.random() < 0.4:
                obliques.append((rng.choice(LOCATIVE_ADPS), self.noun_phrase(rng, "LOC")))
            else:
                adp = ADP_CONCEPTS[self.adps.draw(rng)]
                obliques.append((adp, self.noun_phrase(rng, "PER" if rng.random() < 0.1 else "noun")))
        return Clause(subject, verb, rng.choice(TENSES), rng.random() < 0.1, obj, obliques,
                      self.adverbs.draw(rng) if rng.random() < 0.3 else None)

    def noun_phrase(self, rng: random.Random, kind: str) -> NounPhrase:
        if kind == "pron":
            concept = rng.choice(PRON_CONCEPTS + ("dem",))
            return NounPhrase("pron", concept, "Sing" if concept == "dem" else concept[1])
        if kind == "PER":
            r = rng.random()
            first, last = ("first", self.first.draw(rng)), ("last", self.last.draw(rng))
            return NounPhrase("PER", (first, last) if r < 0.6 else (last,) if r < 0.8 else (first,))
        if kind == "LOC":
            return NounPhrase("LOC", (("city", self.cities.draw(rng)),))
        if kind == "ORG":
            founder = ("last", self.last.draw(rng)) if rng.random() < 0.6 else ("city", self.cities.draw(rng))
            return NounPhrase("ORG", (founder, ("org", self.orgs.draw(rng))))
        number = "Plur" if rng.random() < 0.3 else "Sing"
        num = self.numbers.draw(rng) if rng.random() < 0.1 else None
        if num is not None:
            number = "Sing" if num == 0 else "Plur"
        r = rng.random()
        det = ("def" if r < 0.45 else "indef" if r < 0.6 and number == "Sing" else "this" if r < 0.7
               else "that" if r < 0.78 else None)
        n_adjectives = 0 if rng.random() < 0.6 else 1 if rng.random() < 0.75 else 2
        adjectives = tuple(self.adjectives.draw(rng) for _ in range(n_adjectives))
        return NounPhrase("noun", self.nouns.draw(rng), number, det, num, adjectives)
