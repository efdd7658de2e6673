"""Lexicon and morphology of one language: stems, cognates, homographs, endings, shared names.

A language's words depend only on (seed, lexicon key): adding a language or changing sizes leaves
the other languages' words unchanged. Named entities come from one shared list of names, spelled
per script, so cross-lingual transfer is possible and measurable.
"""
import functools
import random
from typing import Dict, List, Sequence, Tuple

from ..errors import BalkdError
from .grammar import (
    ADP_CONCEPTS,
    CCONJ_CONCEPTS,
    DET_CONCEPTS,
    FIRST_NAMES_FROM_CITIES,
    N_CITIES,
    N_FIRST_NAMES,
    N_LAST_NAMES,
    NUMBER_WORDS,
    ORG_WORDS,
    PRON_CONCEPTS,
    SCONJ_CONCEPTS,
    TENSES,
    Inventory,
)
from .presets import LanguageProfile
from .sampling import derive_rng
from .scripts import ALL_ONSETS, CASED_SCRIPTS, SCRIPT_RENDERERS, Syllable, capitalize, render_latin

NEUTRAL = LanguageProfile("neutral", "latin", coda_rate=0.35)  # proto-forms and names


def random_stem(rng: random.Random, profile: LanguageProfile, n_syllables: int) -> Tuple[Syllable, ...]:
    """Syllables (onset, vowel, coda); only the first may lack an onset."""
    stem = []
    for i in range(n_syllables):
        onset = rng.choice(profile.onsets) if i > 0 or rng.random() < 0.8 else ""
        vowel = rng.choice(profile.vowels)
        coda = rng.choice(profile.codas) if rng.random() < profile.coda_rate else ""
        stem.append((onset, vowel, coda))
    return tuple(stem)


def stem_length(rng: random.Random, profile: LanguageProfile, rank: int, function_word: bool) -> int:
    """Frequent words are short (Zipf's law of abbreviation)."""
    if function_word:
        return 1 if rng.random() < 0.75 else 2
    if profile.monosyllabic:
        return 1 if rank < 300 else 2
    return 1 + (rank >= 15 or rng.random() < 0.5) + (rank >= 120 and rng.random() < 0.6)


FRONT_VOWELS = frozenset("eiöüéíőűä")
ROUNDED_VOWELS = frozenset("ouöüóúőű")


def harmonize(vowel: str, previous: str) -> str:
    """Resolve a harmonic archiphoneme after the stem's last vowel: A -> a/e, I -> ı/i/u/ü."""
    front = previous[-1] in FRONT_VOWELS
    if vowel == "A":
        return "e" if front else "a"
    if vowel == "I":
        rounded = previous[-1] in ROUNDED_VOWELS
        return ("ü" if rounded else "i") if front else ("u" if rounded else "ı")
    return vowel


def attach(stem: Sequence[Syllable], suffix: Sequence[Syllable]) -> Tuple[Syllable, ...]:
    word = list(stem)
    for onset, vowel, coda in suffix:
        word.append((onset, harmonize(vowel, word[-1][1]), coda))
    return tuple(word)


@functools.lru_cache(maxsize=8)
def shared_names(seed: int) -> Dict[str, Tuple[Tuple[Tuple[Syllable, ...], ...], ...]]:
    """First names, surnames and cities (romanised, each a tuple of words), the same for every language."""
    rng = derive_rng(seed, "names")
    seen = set()

    def fresh(n_words: int):
        while True:
            name = tuple(random_stem(rng, NEUTRAL, rng.choice((2, 2, 3))) for _ in range(n_words))
            if name not in seen:
                seen.add(name)
                return name

    city = tuple(fresh(2 if rng.random() < 0.15 else 1) for _ in range(N_CITIES))
    first = tuple(c for c in city[:FIRST_NAMES_FROM_CITIES] if len(c) == 1)
    first += tuple(fresh(1) for _ in range(N_FIRST_NAMES - len(first)))
    last = tuple(fresh(1) for _ in range(N_LAST_NAMES))
    return {"first": first, "last": last, "city": city}


def content_concepts(inventory: Inventory) -> List[Tuple[str, int]]:
    return [(pos, rank) for pos, count in (("NOUN", inventory.nouns), ("VERB", inventory.verbs),
                                           ("ADJ", inventory.adjectives), ("ADV", inventory.adverbs),
                                           ("ORG", ORG_WORDS))
            for rank in range(count)]


@functools.lru_cache(maxsize=8)
def proto_forms(seed: int, inventory: Inventory) -> Dict[Tuple[str, int], Tuple[Syllable, ...]]:
    """The shared proto-form of every content concept (cognates adapt it); the same for every language."""
    rng = derive_rng(seed, "proto")
    return {(pos, rank): random_stem(rng, NEUTRAL, stem_length(rng, NEUTRAL, rank, False))
            for pos, rank in content_concepts(inventory)}


class Endings(dict):
    """Suffixes by feature bundle: ("noun"|"adj"|"det", number, case) and ("verb", tense, number) when fused;
    ("number", "Plur"), ("case", c), ("tense", t), ("agree", "Plur"), ("neg",) as a suffix chain otherwise."""

    @classmethod
    def build(cls, profile: LanguageProfile, rng: random.Random) -> "Endings":
        endings = cls()
        vowels = ("A", "I") if profile.harmony else profile.vowels

        def suffix():
            return ((rng.choice(profile.onsets), rng.choice(vowels), ""),)

        if profile.fused:
            for number in ("Sing", "Plur"):
                for case in ("Nom",) + profile.case_suffixes:
                    marked = (number == "Plur" and profile.plural_suffix) or case != "Nom"
                    for kind in ("noun", "adj", "det"):
                        endings[(kind, number, case)] = suffix() if marked else ()
            for tense in TENSES:
                for number in ("Sing", "Plur"):
                    marked = tense in profile.tense_suffixes or (profile.verb_agreement and number == "Plur")
                    endings[("verb", tense, number)] = suffix() if marked else ()
            return endings
        if profile.plural_suffix:
            endings[("number", "Plur")] = suffix()
        for case in profile.case_suffixes:
            endings[("case", case)] = suffix()
        for tense in profile.tense_suffixes:
            endings[("tense", tense)] = suffix()
        if profile.verb_agreement:
            endings[("agree", "Plur")] = suffix()
        if profile.neg_suffix:
            endings[("neg",)] = suffix()
        return endings


class Lexicon:
    """The words and endings of one language, and a cache of their rendered forms."""

    def __init__(self, profile: LanguageProfile, inventory: Inventory, seed: int, cognate_rate: float,
                 homograph_rate: float, names_script: str = "own"):
        self.profile = profile
        self._latin_names = names_script == "latin"
        self.inventory = inventory
        key = profile.lexicon_key or profile.code
        self._onset_spelling = dict(profile.onset_spelling)
        self._coda_spelling = dict(profile.coda_spelling)
        self._script_render = SCRIPT_RENDERERS.get(profile.script)
        self._names = shared_names(seed)
        # Uniqueness is checked on romanised forms so Hindi and Urdu (one lexicon key) stay identical.
        self._taken = {word for pool in self._names.values() for name in pool for word in name}
        self.stems: Dict[Tuple[str, object], Tuple[Syllable, ...]] = {}
        rng = derive_rng(seed, "lexicon", key)
        self._build_function_words(rng)
        self._build_content_words(rng, proto_forms(seed, inventory), cognate_rate)
        self._add_homographs(derive_rng(seed, "homographs", key), homograph_rate)
        self.endings = Endings.build(profile, derive_rng(seed, "endings", key))
        self._cache: Dict[tuple, object] = {}

    def render(self, sylls: Sequence[Syllable]) -> str:
        if self._script_render is not None:
            return self._script_render(sylls)
        return render_latin(sylls, self._onset_spelling, self._coda_spelling)

    def _render_name(self, name: Sequence[Syllable], suffix: Sequence[Syllable]) -> str:
        """Latin-script languages (and, with names_script "latin", every language) spell shared names alike (no
        language orthography); endings attach in the language's own script."""
        if self._script_render is None or self._latin_names:
            word = capitalize(render_latin(name, {}, {}))
            if suffix:
                word += self.profile.proper_suffix_separator + self.render(attach(name, suffix)[len(name):])
            return word
        word = self._script_render(attach(name, suffix))
        return capitalize(word) if self.profile.script in CASED_SCRIPTS else word

    # -- building
    def _unique_stem(self, rng: random.Random, rank: int, function_word: bool) -> Tuple[Syllable, ...]:
        length = stem_length(rng, self.profile, rank, function_word)
        for attempt in range(400):
            stem = random_stem(rng, self.profile, length + attempt // 100)
            if stem not in self._taken:
                self._taken.add(stem)
                return stem
        raise BalkdError(f"language {self.profile.code}: cannot make enough distinct words; lower --lexicon-size")

    def _build_function_words(self, rng: random.Random) -> None:
        keys = [("DET", c) for c in DET_CONCEPTS] + [("PRON", c) for c in PRON_CONCEPTS]
        keys += [("ADP", c) for c in ADP_CONCEPTS + ("obj",)] + [("CCONJ", c) for c in CCONJ_CONCEPTS]
        keys += [("SCONJ", c) for c in SCONJ_CONCEPTS] + [("AUX", t) for t in TENSES] + [("PART", "neg")]
        keys += [("NUM", i) for i in range(NUMBER_WORDS)]
        for rank, key in enumerate(keys):
            self.stems[key] = self._unique_stem(rng, rank, function_word=True)
        # Function-word homography, as in many real languages: demonstrative = pronoun (English "that"),
        # "after" = "when" (English "after"), and the indefinite article = "one" (German "ein").
        self.stems[("PRON", "dem")] = self.stems[("DET", "that")]
        self.stems[("SCONJ", "when")] = self.stems[("ADP", "after")]
        if self.profile.sconj_is_demonstrative:
            self.stems[("SCONJ", "that")] = self.stems[("DET", "that")]
        if self.profile.articles:
            self.stems[("NUM", 0)] = self.stems[("DET", "indef")]

    def _build_content_words(self, rng: random.Random, protos: Dict[Tuple[str, int], Tuple[Syllable, ...]],
                             cognate_rate: float) -> None:
        for (pos, rank), proto in protos.items():
            cognate = self._adapt(proto)
            if rng.random() < cognate_rate and cognate not in self._taken:
                self._taken.add(cognate)
                self.stems[(pos, rank)] = cognate
            else:
                self.stems[(pos, rank)] = self._unique_stem(rng, rank, function_word=False)

    def _adapt(self, proto: Sequence[Syllable]) -> Tuple[Syllable, ...]:
        """A cognate: the shared proto-form with the sounds the language lacks replaced."""
        p = self.profile
        return tuple(
            (o if not o or o in p.onsets else p.onsets[ALL_ONSETS.index(o) % len(p.onsets)],
             v if v in p.vowels else "a",
             c if c in p.codas else "")
            for o, v, c in proto
        )

    def _add_homographs(self, rng: random.Random, rate: float) -> None:
        """Some verbs, adjectives and adverbs are spelled like a noun of similar frequency ('run', 'light')."""
        inv = self.inventory
        for pos, count, share in (("VERB", inv.verbs, rate), ("ADJ", inv.adjectives, rate), ("ADV", inv.adverbs, rate)):
            for rank in range(count):
                if rng.random() < share:
                    noun = min(inv.nouns - 1, rank * inv.nouns // count + rng.randrange(3))
                    self.stems[(pos, rank)] = self.stems[("NOUN", noun)]

    # -- inflection
    def word(self, pos: str, concept, ending_keys: Tuple[tuple, ...] = ()) -> str:
        """The form of a concept carrying the endings named by ending_keys."""
        key = (pos, concept, ending_keys)
        cached = self._cache.get(key)
        if cached is None:
            stem = self.stems[(pos, concept)]
            suffix = tuple(s for k in ending_keys for s in self.endings.get(k, ()))
            cached = self._cache[key] = self.render(attach(stem, suffix))
        return cached

    def name(self, pool: str, index: int, ending_keys: Tuple[tuple, ...] = ()) -> List[str]:
        """The form of each word of a shared name; the endings go on its last word."""
        key = ("NAME", pool, index, ending_keys)
        cached = self._cache.get(key)
        if cached is None:
            words = self._names[pool][index]
            suffix = tuple(s for k in ending_keys for s in self.endings.get(k, ()))
            cached = [self._render_name(w, suffix if i == len(words) - 1 else ()) for i, w in enumerate(words)]
            self._cache[key] = cached
        return cached
