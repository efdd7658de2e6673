"""The embedded multilingual benchmark behind ``balkd-synth``.

Every language realises the same latent grammar: sentences of one or two clauses whose noun phrases,
verbs, adpositional phrases and named entities (PER/LOC/ORG) are drawn from one shared inventory of
*concepts* with Zipfian frequencies. Languages differ in what a multilingual model has to bridge:
the lexicon (each concept gets its own word per language, a few of them cognates), word order
(SVO/SOV, adjective-noun order, pre- or postpositions, articles or not), morphology (agglutinative
suffix chains with vowel harmony, fused endings, or none) and script (Latin orthographies, Cyrillic,
Greek, Devanagari, Hangul, Arabic/Urdu, Telugu). Named entities come from one shared list of names,
transliterated per script, so cross-lingual transfer is possible and measurable.

POS is not solvable from word identity alone: some verbs and adjectives are homographs of nouns, the
demonstrative doubles as determiner, pronoun (and in some languages subordinator), bare verbs in
analytic tenses look like nouns, and surnames and city names double as parts of organisation names
(and some first names are city names). Context (neighbours, order, suffixes) disambiguates them.

Everything is deterministic from the seed: a language's lexicon depends only on (seed, language),
its sentences only on (seed, language, split), so adding a language or changing sizes leaves the
other languages' data unchanged.
"""
import bisect
import contextlib
import functools
import hashlib
import itertools
import json
import multiprocessing
import random
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import BalkdError

# --------------------------------------------------------------------------------------------------
# Languages
# --------------------------------------------------------------------------------------------------

BASE_VOWELS = ("a", "e", "i", "o", "u")
ALL_ONSETS = ("p", "t", "k", "b", "d", "g", "m", "n", "s", "z", "f", "v", "l", "r", "h", "y", "w", "ch", "sh")
ALL_CODAS = ("n", "m", "l", "r", "s", "k", "t")
CASED_SCRIPTS = ("latin", "cyrillic", "greek")


@dataclass(frozen=True)
class LanguageProfile:
    """Typology of one synthetic language (loosely modelled on the real language it is named after)."""

    code: str
    script: str
    word_order: str = "SVO"  # "SVO" or "SOV"
    adj_before_noun: bool = True
    postpositions: bool = False
    articles: bool = False
    fused: bool = False  # one ending per feature bundle (fusional) instead of a chain of suffixes
    plural_suffix: bool = True
    case_suffixes: Tuple[str, ...] = ()  # cases marked by an ending (Nom = Abs = unmarked unless listed)
    ergative: bool = False  # transitive subjects are Erg, objects and intransitive subjects Abs
    tense_suffixes: Tuple[str, ...] = ()  # tenses marked on the verb
    aux_tenses: Tuple[str, ...] = ()  # tenses marked by an auxiliary, which then carries agreement
    verb_agreement: bool = False
    adj_agreement: bool = False
    det_agreement: bool = False
    neg_suffix: bool = False  # negation is a verb suffix instead of a particle
    object_marker: bool = False  # an adposition marks the object (Hindi/Urdu "ko")
    sconj_is_demonstrative: bool = False  # the subordinator "that" is spelled like the demonstrative
    proper_suffix_separator: str = ""  # Turkish writes Ankara'da
    onsets: Tuple[str, ...] = ALL_ONSETS
    codas: Tuple[str, ...] = ALL_CODAS
    vowels: Tuple[str, ...] = BASE_VOWELS
    coda_rate: float = 0.3
    harmony: bool = False  # suffix vowels A/I follow the stem's last vowel (Turkish, Hungarian)
    onset_spelling: Tuple[Tuple[str, str], ...] = ()  # Latin orthography: romanised onset -> letters
    coda_spelling: Tuple[Tuple[str, str], ...] = ()
    lexicon_key: str = ""  # languages with the same key share their lexicon (Hindi and Urdu)
    monosyllabic: bool = False  # frequent words have one syllable (Vietnamese)


def _vietnamese_vowels() -> Tuple[str, ...]:
    tones = ("", "\u0300", "\u0301", "\u0309", "\u0303", "\u0323")
    bases = ("a", "ă", "â", "e", "ê", "i", "o", "ô", "ơ", "u", "ư")
    return tuple(unicodedata.normalize("NFC", base + tone) for base in bases for tone in tones)


PROFILES: Dict[str, LanguageProfile] = {
    p.code: p
    for p in [
        LanguageProfile(
            "de", "latin", articles=True, fused=True, case_suffixes=("Acc",), tense_suffixes=("Pres", "Past"),
            aux_tenses=("Fut",), verb_agreement=True, adj_agreement=True, det_agreement=True,
            sconj_is_demonstrative=True, vowels=BASE_VOWELS + ("ä", "ö", "ü", "ei", "au", "ie"),
            onset_spelling=(("sh", "sch"), ("ch", "tsch"), ("v", "w"), ("y", "j")),
            coda_spelling=(("k", "ck"), ("s", "ß")),
        ),
        LanguageProfile(
            "en", "latin", articles=True, tense_suffixes=("Past",), aux_tenses=("Fut",),
            sconj_is_demonstrative=True, vowels=BASE_VOWELS + ("ee", "oo", "ea", "ai"),
            onset_spelling=(("k", "c"), ("f", "ph")), coda_spelling=(("k", "ck"), ("s", "ss")), coda_rate=0.45,
        ),
        LanguageProfile(
            "es", "latin", adj_before_noun=False, articles=True, fused=True, tense_suffixes=("Pres", "Past", "Fut"),
            verb_agreement=True, adj_agreement=True, det_agreement=True,
            onsets=ALL_ONSETS + ("ny",), vowels=BASE_VOWELS + ("á", "é", "í", "ó", "ú"),
            onset_spelling=(("k", "c"), ("y", "ll"), ("sh", "ch"), ("w", "hu"), ("h", "j"), ("ny", "ñ")),
            codas=("n", "l", "r", "s"), coda_rate=0.25,
        ),
        LanguageProfile(
            "eu", "latin", "SOV", adj_before_noun=False, postpositions=True, case_suffixes=("Erg",), ergative=True,
            tense_suffixes=("Past", "Fut"), aux_tenses=("Pres", "Past", "Fut"),
            verb_agreement=True,
            onset_spelling=(("sh", "x"), ("ch", "tx"), ("z", "tz"), ("y", "i"), ("w", "b"), ("v", "b")),
            coda_spelling=(("s", "tz"),), codas=("n", "r", "s", "k", "t"),
        ),
        LanguageProfile(
            "tr", "latin", "SOV", postpositions=True, case_suffixes=("Acc",), tense_suffixes=("Pres", "Past", "Fut"),
            verb_agreement=True, neg_suffix=True, proper_suffix_separator="'", harmony=True,
            vowels=BASE_VOWELS + ("ı", "ö", "ü"), onset_spelling=(("sh", "ş"), ("ch", "ç"), ("w", "v")),
        ),
        LanguageProfile(
            "hu", "latin", postpositions=True, articles=True, case_suffixes=("Acc",), tense_suffixes=("Pres", "Past"),
            aux_tenses=("Fut",), verb_agreement=True, harmony=True,
            onsets=ALL_ONSETS + ("ny",), vowels=BASE_VOWELS + ("á", "é", "ö", "ü", "ő", "ű"),
            onset_spelling=(("s", "sz"), ("sh", "s"), ("ch", "cs"), ("y", "j"), ("w", "v")),
            coda_spelling=(("s", "sz"),),
        ),
        LanguageProfile(
            "vi", "latin", adj_before_noun=False, plural_suffix=False, aux_tenses=("Past", "Fut"),
            vowels=_vietnamese_vowels(), monosyllabic=True,
            onset_spelling=(("k", "c"), ("z", "d"), ("sh", "x"), ("f", "ph"), ("ch", "tr"), ("w", "qu")),
            codas=("n", "m", "k", "t"), coda_spelling=(("k", "c"),), coda_rate=0.45,
        ),
        LanguageProfile(
            "ru", "cyrillic", fused=True, case_suffixes=("Acc",), tense_suffixes=("Pres", "Past"),
            aux_tenses=("Fut",), verb_agreement=True, adj_agreement=True, vowels=BASE_VOWELS + ("y",),
        ),
        LanguageProfile(
            "el", "greek", articles=True, fused=True, case_suffixes=("Acc",), tense_suffixes=("Pres", "Past", "Fut"),
            verb_agreement=True, adj_agreement=True, det_agreement=True,
            onsets=tuple(o for o in ALL_ONSETS if o not in ("sh", "w")), vowels=BASE_VOWELS + ("ii", "oo"),
            codas=("n", "s"),
        ),
        LanguageProfile(
            "hi", "devanagari", "SOV", postpositions=True, fused=True, tense_suffixes=("Pres", "Past", "Fut"),
            aux_tenses=("Pres", "Past"), verb_agreement=True, adj_agreement=True, object_marker=True,
            vowels=BASE_VOWELS + ("aa",), lexicon_key="hindustani",
        ),
        LanguageProfile(
            "ur", "arabic", "SOV", postpositions=True, fused=True, tense_suffixes=("Pres", "Past", "Fut"),
            aux_tenses=("Pres", "Past"), verb_agreement=True, adj_agreement=True, object_marker=True,
            vowels=BASE_VOWELS + ("aa",), lexicon_key="hindustani",
        ),
        LanguageProfile(
            "ko", "hangul", "SOV", postpositions=True, case_suffixes=("Nom", "Acc"),
            tense_suffixes=("Pres", "Past", "Fut"), onsets=tuple(o for o in ALL_ONSETS if o not in ("f", "v", "z")),
            vowels=BASE_VOWELS + ("eo", "eu"), codas=("n", "m", "l", "k"),
        ),
        LanguageProfile(
            "te", "telugu", "SOV", postpositions=True, case_suffixes=("Acc",), tense_suffixes=("Pres", "Past", "Fut"),
            verb_agreement=True, vowels=BASE_VOWELS + ("aa",), codas=("n", "m", "l", "r"), coda_rate=0.15,
        ),
    ]
}


@dataclass(frozen=True)
class Preset:
    languages: Tuple[str, ...]  # the paper's set
    toy_languages: Tuple[str, ...]  # the default selection (a CPU demo)
    low_resource: Tuple[str, ...]  # default low-resource languages
    anchor: str = "de"


PRESETS: Dict[str, Preset] = {
    "shared": Preset(("eu", "tr", "vi", "hu", "es", "de", "en"), ("de", "es", "tr", "eu"), ("eu", "tr", "vi", "hu")),
    "diverse": Preset(("te", "ur", "hi", "el", "ko", "ru", "de"), ("de", "ru", "hi", "el"), ("te", "ur", "hi", "el")),
}

# Unicode ranges of the letters (and combining marks) each script may use; tests check against them.
SCRIPT_RANGES: Dict[str, Tuple[Tuple[int, int], ...]] = {
    "latin": ((0x0041, 0x024F), (0x1E00, 0x1EFF)),
    "cyrillic": ((0x0400, 0x04FF),),
    "greek": ((0x0370, 0x03FF),),
    "devanagari": ((0x0900, 0x097F),),
    "hangul": ((0xAC00, 0xD7A3),),
    "arabic": ((0x0600, 0x06FF),),
    "telugu": ((0x0C00, 0x0C7F),),
}

# --------------------------------------------------------------------------------------------------
# Scripts: a word is a list of romanised syllables (onset, vowel, coda), rendered per script
# --------------------------------------------------------------------------------------------------

Syllable = Tuple[str, str, str]

CYRILLIC = {"p": "п", "t": "т", "k": "к", "b": "б", "d": "д", "g": "г", "m": "м", "n": "н", "s": "с", "z": "з",
            "f": "ф", "v": "в", "l": "л", "r": "р", "h": "х", "y": "й", "w": "в", "ch": "ч", "sh": "ш", "ny": "нь"}
CYRILLIC_VOWELS = {"a": "а", "e": "е", "i": "и", "o": "о", "u": "у", "y": "ы"}
CYRILLIC_IOTATED = {"a": "я", "e": "е", "o": "ё", "u": "ю", "i": "и", "y": "и"}

GREEK = {"p": "π", "t": "τ", "k": "κ", "b": "μπ", "d": "δ", "g": "γ", "m": "μ", "n": "ν", "s": "σ", "z": "ζ",
         "f": "φ", "v": "β", "l": "λ", "r": "ρ", "h": "χ", "y": "γι", "w": "ου", "ch": "τσ", "sh": "σ", "ny": "νι"}
GREEK_VOWELS = {"a": "α", "e": "ε", "i": "ι", "o": "ο", "u": "ου", "ii": "η", "oo": "ω"}
GREEK_ACCENTED = {"α": "ά", "ε": "έ", "ι": "ί", "ο": "ό", "ου": "ού", "η": "ή", "ω": "ώ"}

DEVANAGARI = {"p": "प", "t": "त", "k": "क", "b": "ब", "d": "द", "g": "ग", "m": "म", "n": "न", "s": "स",
              "z": "ज\u093c", "f": "फ\u093c", "v": "व", "l": "ल", "r": "र", "h": "ह", "y": "य", "w": "व",
              "ch": "च", "sh": "श", "ny": "ञ"}
DEVANAGARI_VOWELS = {"a": ("अ", ""), "aa": ("आ", "ा"), "e": ("ए", "े"), "i": ("इ", "ि"), "o": ("ओ", "ो"),
                     "u": ("उ", "ु")}
TELUGU = {"p": "ప", "t": "త", "k": "క", "b": "బ", "d": "ద", "g": "గ", "m": "మ", "n": "న", "s": "స", "z": "జ",
          "f": "ఫ", "v": "వ", "l": "ల", "r": "ర", "h": "హ", "y": "య", "w": "వ", "ch": "చ", "sh": "శ", "ny": "ఞ"}
TELUGU_VOWELS = {"a": ("అ", ""), "aa": ("ఆ", "ా"), "e": ("ఎ", "ె"), "i": ("ఇ", "ి"), "o": ("ఒ", "ొ"),
                 "u": ("ఉ", "ు")}
URDU = {"p": "پ", "t": "ت", "k": "ک", "b": "ب", "d": "د", "g": "گ", "m": "م", "n": "ن", "s": "س", "z": "ز",
        "f": "ف", "v": "و", "l": "ل", "r": "ر", "h": "ہ", "y": "ی", "w": "و", "ch": "چ", "sh": "ش", "ny": "نی"}
URDU_VOWELS = {  # (word-initial, medial, word-final)
    "a": ("ا", "", "ا"), "aa": ("آ", "ا", "ا"), "e": ("ای", "ی", "ے"), "i": ("ای", "ی", "ی"),
    "o": ("او", "و", "و"), "u": ("او", "و", "و"),
}
HANGUL_ONSET = {"": 11, "p": 17, "t": 16, "k": 15, "b": 7, "d": 3, "g": 0, "m": 6, "n": 2, "s": 9, "z": 12,
                "f": 17, "v": 7, "l": 5, "r": 5, "h": 18, "y": 11, "w": 11, "ch": 14, "sh": 9, "ny": 2}
HANGUL_VOWEL = {"a": 0, "e": 5, "i": 20, "o": 8, "u": 13, "eo": 4, "eu": 18, "aa": 0}
HANGUL_Y_VOWEL = {"a": 2, "e": 7, "o": 12, "u": 17, "eo": 6, "i": 20, "eu": 18, "aa": 2}
HANGUL_W_VOWEL = {"a": 9, "e": 15, "i": 16, "eo": 14, "o": 8, "u": 13, "eu": 19, "aa": 9}
HANGUL_CODA = {"": 0, "k": 1, "n": 4, "l": 8, "r": 8, "m": 16, "p": 17, "s": 19, "t": 7}

PUNCTUATION = {  # (full stop, comma, question mark)
    "latin": (".", ",", "?"), "cyrillic": (".", ",", "?"), "greek": (".", ",", ";"), "hangul": (".", ",", "?"),
    "devanagari": ("।", ",", "?"), "telugu": (".", ",", "?"), "arabic": ("۔", "،", "؟"),
}


def render_latin(sylls: Sequence[Syllable], onset_spelling: Dict[str, str], coda_spelling: Dict[str, str]) -> str:
    return "".join(onset_spelling.get(o, o) + v + coda_spelling.get(c, c) for o, v, c in sylls)


def render_cyrillic(sylls: Sequence[Syllable]) -> str:
    out = []
    for o, v, c in sylls:
        if o == "y":
            out.append(CYRILLIC_IOTATED[v])
        else:
            out.append(CYRILLIC.get(o, "") + CYRILLIC_VOWELS[v])
        out.append(CYRILLIC.get(c, ""))
    return "".join(out)


def render_greek(sylls: Sequence[Syllable]) -> str:
    accent_at = len(sylls) - 2 if len(sylls) >= 2 else -1
    out = []
    for i, (o, v, c) in enumerate(sylls):
        vowel = GREEK_VOWELS[v]
        if i == accent_at:
            vowel = GREEK_ACCENTED[vowel]
        out.append(GREEK.get(o, "") + vowel + GREEK.get(c, ""))
    word = "".join(out)
    return word[:-1] + "ς" if word.endswith("σ") else word


def _render_abugida(sylls, consonants, vowels, virama, nasal_coda="") -> str:
    out = []
    for i, (o, v, c) in enumerate(sylls):
        independent, sign = vowels[v]
        out.append(consonants[o] + sign if o else independent)
        if c:
            if nasal_coda and c in ("n", "m"):
                out.append(nasal_coda)
            else:
                out.append(consonants[c] + (virama if i < len(sylls) - 1 or nasal_coda else ""))
    return "".join(out)


def render_devanagari(sylls: Sequence[Syllable]) -> str:
    return _render_abugida(sylls, DEVANAGARI, DEVANAGARI_VOWELS, "्")


def render_telugu(sylls: Sequence[Syllable]) -> str:
    return _render_abugida(sylls, TELUGU, TELUGU_VOWELS, "్", nasal_coda="ం")


def render_urdu(sylls: Sequence[Syllable]) -> str:
    out = []
    for i, (o, v, c) in enumerate(sylls):
        initial, medial, final = URDU_VOWELS[v]
        if not o and i == 0:
            out.append(initial)
        else:
            out.append(URDU.get(o, "") + (final if i == len(sylls) - 1 and not c else medial))
        out.append(URDU.get(c, ""))
    return "".join(out)


def render_hangul(sylls: Sequence[Syllable]) -> str:
    out = []
    for o, v, c in sylls:
        vowels = HANGUL_Y_VOWEL if o == "y" else HANGUL_W_VOWEL if o == "w" else HANGUL_VOWEL
        out.append(chr(0xAC00 + (HANGUL_ONSET[o] * 21 + vowels[v]) * 28 + HANGUL_CODA[c]))
    return "".join(out)


SCRIPT_RENDERERS = {
    "cyrillic": render_cyrillic, "greek": render_greek, "devanagari": render_devanagari,
    "telugu": render_telugu, "arabic": render_urdu, "hangul": render_hangul,
}


def capitalize(word: str) -> str:
    return word[:1].upper() + word[1:]



# --------------------------------------------------------------------------------------------------
# Concepts: the latent inventory every language shares
# --------------------------------------------------------------------------------------------------

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
NEUTRAL = LanguageProfile("neutral", "latin", coda_rate=0.35)  # proto-forms and names


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


# --------------------------------------------------------------------------------------------------
# Word forms
# --------------------------------------------------------------------------------------------------


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
                 homograph_rate: float):
        self.profile = profile
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
        self._build_content_words(rng, derive_rng(seed, "proto"), cognate_rate)
        self._add_homographs(derive_rng(seed, "homographs", key), homograph_rate)
        self.endings = Endings.build(profile, derive_rng(seed, "endings", key))
        self._cache: Dict[tuple, Tuple[str, str]] = {}

    def render(self, sylls: Sequence[Syllable]) -> str:
        if self._script_render is not None:
            return self._script_render(sylls)
        return render_latin(sylls, self._onset_spelling, self._coda_spelling)

    def _render_name(self, name: Sequence[Syllable], suffix: Sequence[Syllable]) -> str:
        """Latin-script languages spell shared names alike (no language orthography); endings attach."""
        if self._script_render is None:
            word = render_latin(name, {}, {})
            if suffix:
                word += self.profile.proper_suffix_separator + self.render(attach(name, suffix)[len(name):])
        else:
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

    def _build_content_words(self, rng: random.Random, proto_rng: random.Random, cognate_rate: float) -> None:
        inv = self.inventory
        for pos, count in (("NOUN", inv.nouns), ("VERB", inv.verbs), ("ADJ", inv.adjectives),
                           ("ADV", inv.adverbs), ("ORG", ORG_WORDS)):
            for rank in range(count):
                proto = random_stem(proto_rng, NEUTRAL, stem_length(proto_rng, NEUTRAL, rank, False))
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
    def word(self, pos: str, concept, ending_keys: Tuple[tuple, ...] = ()) -> Tuple[str, str]:
        """(form, lemma) of a concept carrying the endings named by ending_keys."""
        key = (pos, concept, ending_keys)
        cached = self._cache.get(key)
        if cached is None:
            stem = self.stems[(pos, concept)]
            suffix = tuple(s for k in ending_keys for s in self.endings.get(k, ()))
            cached = self._cache[key] = (self.render(attach(stem, suffix)), self.render(stem))
        return cached

    def name(self, pool: str, index: int, ending_keys: Tuple[tuple, ...] = ()) -> List[Tuple[str, str]]:
        """(form, lemma) of each word of a shared name; the endings go on its last word."""
        key = ("NAME", pool, index, ending_keys)
        cached = self._cache.get(key)
        if cached is None:
            words = self._names[pool][index]
            suffix = tuple(s for k in ending_keys for s in self.endings.get(k, ()))
            cached = [(self._render_name(w, suffix if i == len(words) - 1 else ()), self._render_name(w, ()))
                      for i, w in enumerate(words)]
            self._cache[key] = cached
        return cached


# --------------------------------------------------------------------------------------------------
# Latent sentences
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Realisation: a latent sentence -> the tokens of one language
# --------------------------------------------------------------------------------------------------


class Token:
    __slots__ = ("form", "lemma", "upos", "feats", "ner", "head", "deprel", "space_after")

    def __init__(self, form, lemma, upos, feats=(), ner="O", head=None, deprel="dep"):
        self.form, self.lemma, self.upos, self.feats, self.ner = form, lemma, upos, feats, ner
        self.head, self.deprel, self.space_after = head, deprel, True


def ud_feats(feats: Sequence[Tuple[str, Optional[str]]]) -> str:
    """UD FEATS column from (Name, value) pairs: sorted, unset values dropped, '_' when empty."""
    return "|".join(f"{k}={v}" for k, v in sorted(feats) if v) or "_"


class Realizer:
    """Word order, morphology and script of one language applied to latent sentences."""

    def __init__(self, lexicon: Lexicon):
        self.lex = lexicon
        self.p = lexicon.profile
        self.punct = PUNCTUATION[self.p.script]

    def sentence(self, latent: LatentSentence) -> List[Token]:
        tokens, root = self.clause(latent.clauses[0])
        if latent.link is not None:
            second, second_verb = self.clause(latent.clauses[1])
            upos, concept = latent.link
            form, lemma = self.lex.word(upos, concept)
            link = Token(form, lemma, upos, head=second_verb, deprel="cc" if upos == "CCONJ" else "mark")
            second_verb.head, second_verb.deprel = root, ("conj" if upos == "CCONJ" else "advcl")
            comma = [Token(self.punct[1], self.punct[1], "PUNCT", head=second_verb, deprel="punct")]
            if concept == "and":
                comma = []
            if upos == "SCONJ" and self.p.word_order == "SOV":
                tokens = second + [link] + comma + tokens  # subordinate clause first, subordinator last
            else:
                tokens = tokens + comma + [link] + second
        end = self.punct[2] if latent.question else self.punct[0]
        tokens.append(Token(end, end, "PUNCT", head=root, deprel="punct"))
        root.deprel = "root"
        if self.p.script in CASED_SCRIPTS:
            tokens[0].form = capitalize(tokens[0].form)
        for before, token in zip(tokens, tokens[1:]):
            if token.upos == "PUNCT":
                before.space_after = False
        return tokens

    def clause(self, c: Clause) -> Tuple[List[Token], Token]:
        p = self.p
        subject_case = ("Erg" if c.obj is not None else "Abs") if p.ergative else "Nom"
        subject, subject_head = self.noun_phrase(c.subject, subject_case)
        verb_group, verb = self.verb_group(c)
        subject_head.head, subject_head.deprel = verb, "nsubj"
        slots = {"S": subject, "V": verb_group, "O": [], "X": []}
        if c.obj is not None:
            obj, obj_head = self.noun_phrase(c.obj, "Abs" if p.ergative else "Acc")
            obj_head.head, obj_head.deprel = verb, "obj"
            if p.object_marker:
                form, lemma = self.lex.word("ADP", "obj")
                obj.append(Token(form, lemma, "ADP", head=obj_head, deprel="case"))
            slots["O"] = obj
        for adp, np in c.obliques:
            phrase, head = self.noun_phrase(np, "Abs" if p.ergative else "Nom")
            head.head, head.deprel = verb, "obl"
            form, lemma = self.lex.word("ADP", adp)
            marker = Token(form, lemma, "ADP", head=head, deprel="case")
            slots["X"] += phrase + [marker] if p.postpositions else [marker] + phrase
        if c.adverb is not None:
            form, lemma = self.lex.word("ADV", c.adverb)
            slots["X"].append(Token(form, lemma, "ADV", head=verb, deprel="advmod"))
        order = "SVOX" if p.word_order == "SVO" else "SXOV"
        return [t for slot in order for t in slots[slot]], verb

    def verb_group(self, c: Clause) -> Tuple[List[Token], Token]:
        """The verb with its endings, plus an auxiliary (analytic tenses) and a negation particle."""
        p, number = self.p, c.subject.number
        analytic = c.tense in p.aux_tenses
        tense_on_verb = c.tense in p.tense_suffixes and not (analytic and p.fused)
        agreement_on_verb = p.verb_agreement and not analytic
        negation_on_verb = c.negated and p.neg_suffix
        if p.fused:
            keys = () if analytic else (("verb", c.tense, number),)
        else:
            keys = ((("tense", c.tense),) if tense_on_verb else ()) + ((("neg",),) if negation_on_verb else ())
            keys += (("agree", number),) if agreement_on_verb else ()
        form, lemma = self.lex.word("VERB", c.verb, keys)
        verb_feats = (("Tense", c.tense if tense_on_verb else None), ("Number", number if agreement_on_verb else None),
                      ("Polarity", "Neg" if negation_on_verb else None))
        verb = Token(form, lemma, "VERB", verb_feats)
        group = [verb]
        if analytic:
            if p.verb_agreement:
                aux_keys = (("verb", "Pres", number),) if p.fused else (("agree", number),)
            else:
                aux_keys = ()
            form, lemma = self.lex.word("AUX", c.tense, aux_keys)
            aux = Token(form, lemma, "AUX", (("Tense", c.tense), ("Number", number if p.verb_agreement else None)),
                        head=verb, deprel="aux")
            group = [aux, verb] if p.word_order == "SVO" else [verb, aux]
        if c.negated and not p.neg_suffix:
            form, lemma = self.lex.word("PART", "neg")
            group.insert(0, Token(form, lemma, "PART", (("Polarity", "Neg"),), head=verb, deprel="advmod"))
        return group, verb

    def _endings(self, kind: str, number: str, case: str) -> Tuple[tuple, ...]:
        p = self.p
        if p.fused:
            return ((kind, number, case if case in p.case_suffixes else "Nom"),)
        if kind != "noun":
            return ()
        keys = (("number", "Plur"),) if number == "Plur" and p.plural_suffix else ()
        return keys + ((("case", case),) if case in p.case_suffixes else ())

    def _case_feature(self, case: str) -> Optional[str]:
        return case if self.p.case_suffixes else None

    def noun_phrase(self, np: NounPhrase, case: str) -> Tuple[List[Token], Token]:
        if np.kind == "pron":
            return self._pronoun(np, case)
        if np.kind != "noun":
            return self._entity(np, case)
        p = self.p
        form, lemma = self.lex.word("NOUN", np.head, self._endings("noun", np.number, case))
        noun_feats = (("Number", np.number if p.plural_suffix else None), ("Case", self._case_feature(case)))
        head = Token(form, lemma, "NOUN", noun_feats)
        before, after = [], []
        adjective_endings = self._endings("adj", np.number, case) if p.adj_agreement else ()
        for adjective in np.adjectives:
            form, lemma = self.lex.word("ADJ", adjective, adjective_endings)
            token = Token(form, lemma, "ADJ", (("Number", np.number if p.adj_agreement else None),),
                          head=head, deprel="amod")
            (before if p.adj_before_noun else after).append(token)
        if np.num is not None:
            form, lemma = self.lex.word("NUM", np.num)
            before.insert(0, Token(form, lemma, "NUM", (("NumType", "Card"),), head=head, deprel="nummod"))
        if np.det is not None and (p.articles or np.det in ("this", "that")):
            det_endings = self._endings("det", np.number, case) if p.det_agreement else ()
            form, lemma = self.lex.word("DET", np.det, det_endings)
            pron_type = "Art" if np.det in ("def", "indef") else "Dem"
            before.insert(0, Token(form, lemma, "DET", (("PronType", pron_type),), head=head, deprel="det"))
        return before + [head] + after, head

    def _pronoun(self, np: NounPhrase, case: str) -> Tuple[List[Token], Token]:
        form, lemma = self.lex.word("PRON", np.head, self._endings("noun", "Sing", case))
        if np.head == "dem":
            features = (("PronType", "Dem"), ("Case", self._case_feature(case)))
        else:
            person, number = np.head
            features = (("Person", person), ("Number", number), ("PronType", "Prs"),
                        ("Case", self._case_feature(case)))
        token = Token(form, lemma, "PRON", features)
        return [token], token

    def _entity(self, np: NounPhrase, case: str) -> Tuple[List[Token], Token]:
        endings = self._endings("noun", "Sing", case)
        parts = list(np.head)
        if np.kind == "ORG" and not self.p.adj_before_noun:
            parts.reverse()  # "Banco Santander": the organisation word first in noun-adjective languages
        words: List[Tuple[str, str]] = []
        for i, (pool, index) in enumerate(parts):
            keys = endings if i == len(parts) - 1 else ()
            if pool == "org":
                form, lemma = self.lex.word("ORG", index, keys)
                if self.p.script in CASED_SCRIPTS:
                    form, lemma = capitalize(form), capitalize(lemma)
                words.append((form, lemma))
            else:
                words.extend(self.lex.name(pool, index, keys))
        tokens = [Token(form, lemma, "PROPN", ner=("B-" if i == 0 else "I-") + np.kind)
                  for i, (form, lemma) in enumerate(words)]
        for token in tokens[1:]:
            token.head, token.deprel = tokens[0], "flat"
        if self._case_feature(case):
            tokens[-1].feats = (("Case", case),)
        return tokens, tokens[0]


# --------------------------------------------------------------------------------------------------
# The benchmark: configuration, plan, files
# --------------------------------------------------------------------------------------------------

SPLITS = ("train", "dev", "test")


@dataclass
class SynthConfig:
    """What ``balkd-synth`` generates (its flags, one to one)."""

    preset: str = "shared"
    languages: Tuple[str, ...] = ()  # empty: the preset's toy selection; ("all",): the preset's full set
    low_resource: Optional[Tuple[str, ...]] = None  # None: the preset's low-resource languages among them
    anchor: Optional[str] = None  # None: the preset's anchor (de)
    high_size: int = 20000
    low_size: int = 500
    sizes: Dict[str, int] = field(default_factory=dict)  # explicit raw sizes per language
    probe_train: int = 1000
    probe_dev: int = 200
    probe_test: int = 500
    lexicon_size: int = 800
    zipf_exponent: float = 1.0
    cognate_rate: float = 0.2
    homograph_rate: float = 0.3
    seed: int = 1


@dataclass
class BenchmarkPlan:
    preset: str
    languages: List[str]
    low_resource: List[str]
    high_resource: List[str]
    anchor: str
    raw_sentences: Dict[str, int]
    probe_sentences: Dict[str, int]
    seed: int
    config: SynthConfig

    def manifest(self) -> dict:
        """The content of languages.json."""
        return {
            "preset": self.preset,
            "seed": self.seed,
            "anchor": self.anchor,
            "languages": self.languages,
            "low_resource": self.low_resource,
            "high_resource": self.high_resource,
            "raw_sentences": self.raw_sentences,
            "probe_sentences": self.probe_sentences,
            "scripts": {lang: PROFILES[lang].script for lang in self.languages},
            "profiles": {lang: _profile_summary(PROFILES[lang]) for lang in self.languages},
            "generator": {k: v for k, v in asdict(self.config).items()
                          if k in ("lexicon_size", "zipf_exponent", "cognate_rate", "homograph_rate")},
        }


def _profile_summary(p: LanguageProfile) -> dict:
    return {
        "script": p.script,
        "word_order": p.word_order,
        "adjective_noun": "AN" if p.adj_before_noun else "NA",
        "adpositions": "postpositions" if p.postpositions else "prepositions",
        "articles": p.articles,
        "morphology": _morphology(p),
    }


def _morphology(p: LanguageProfile) -> str:
    if p.fused:
        return "fusional"
    if p.case_suffixes or p.verb_agreement:
        return "agglutinative"
    return "analytic" if p.plural_suffix or p.tense_suffixes else "isolating"


def _check_subset(flag: str, names: Sequence[str], allowed: Sequence[str], what: str) -> None:
    for name in names:
        if name not in allowed:
            raise BalkdError(f"{flag}: '{name}' is not {what} ({', '.join(allowed)})")


def plan_benchmark(config: SynthConfig) -> BenchmarkPlan:
    """Validate the configuration and work out languages, resource levels and sizes."""
    if config.preset not in PRESETS:
        raise BalkdError(f"--preset: unknown preset '{config.preset}' (choose from {', '.join(PRESETS)})")
    preset = PRESETS[config.preset]
    if tuple(config.languages) == ("all",):
        languages = list(preset.languages)
    else:
        languages = list(config.languages or preset.toy_languages)
    _check_subset("--languages", languages, preset.languages, f"a language of preset '{config.preset}'")
    if len(set(languages)) != len(languages):
        raise BalkdError(f"--languages: a language is listed twice ({','.join(languages)})")
    anchor = config.anchor or preset.anchor
    if anchor not in languages:
        raise BalkdError(f"--anchor: '{anchor}' is not one of --languages ({','.join(languages)})")
    if config.low_resource is None:
        low = [lang for lang in languages if lang in preset.low_resource]
    else:
        low = list(config.low_resource)
        _check_subset("--low-resource", low, languages, "one of --languages")
    _check_subset("--sizes", list(config.sizes), languages, "one of --languages")
    for flag, value in (("--high-size", config.high_size), ("--low-size", config.low_size),
                        ("--probe-train", config.probe_train), ("--probe-dev", config.probe_dev),
                        ("--probe-test", config.probe_test)):
        if value < 1:
            raise BalkdError(f"{flag}: must be at least 1 (got {value})")
    for lang, size in config.sizes.items():
        if size < 1:
            raise BalkdError(f"--sizes: {lang}={size} must be at least 1")
    if config.lexicon_size < 50:
        raise BalkdError(f"--lexicon-size: must be at least 50 (got {config.lexicon_size})")
    if config.zipf_exponent <= 0:
        raise BalkdError(f"--zipf-exponent: must be positive (got {config.zipf_exponent})")
    for flag, rate in (("--cognate-rate", config.cognate_rate), ("--homograph-rate", config.homograph_rate)):
        if not 0 <= rate <= 1:
            raise BalkdError(f"{flag}: must be between 0 and 1 (got {rate})")
    raw = {lang: config.sizes.get(lang, config.low_size if lang in low else config.high_size) for lang in languages}
    probes = {"train": config.probe_train, "dev": config.probe_dev, "test": config.probe_test}
    return BenchmarkPlan(config.preset, languages, low, [lang for lang in languages if lang not in low], anchor,
                         raw, probes, config.seed, config)


def detokenize(tokens: Sequence[Token]) -> str:
    return "".join(t.form + (" " if t.space_after else "") for t in tokens).rstrip()


def conllu_block(tokens: Sequence[Token], sent_id: str) -> str:
    """One sentence in 10-column CoNLL-U (ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC)."""
    index = {id(t): i + 1 for i, t in enumerate(tokens)}
    lines = [f"# sent_id = {sent_id}", f"# text = {detokenize(tokens)}"]
    for i, t in enumerate(tokens, 1):
        head = index[id(t.head)] if t.head is not None else 0
        misc = "_" if t.space_after else "SpaceAfter=No"
        lines.append(f"{i}\t{t.form}\t{t.lemma}\t{t.upos}\t_\t{ud_feats(t.feats)}\t{head}\t{t.deprel}\t_\t{misc}")
    return "\n".join(lines) + "\n\n"


def iob2_block(tokens: Sequence[Token]) -> str:
    return "".join(f"{t.form}\t{t.ner}\n" for t in tokens) + "\n"


CHUNK_SENTENCES = 1000  # sentences drawn from one random stream; chunks are generated in parallel
GENERATOR_KNOBS = ("seed", "lexicon_size", "zipf_exponent", "cognate_rate", "homograph_rate")


@dataclass(frozen=True)
class Chunk:
    """Sentences [start, start + size) of one output file, from their own random stream."""

    lang: str
    stream: str  # "raw", "pos-train", "ner-dev", ...
    start: int
    size: int
    path: str  # relative to the output directory


def plan_chunks(plan: BenchmarkPlan) -> List[Chunk]:
    files = []
    for lang in plan.languages:
        files.append((lang, "raw", plan.raw_sentences[lang], f"raw/{lang}.txt"))
        for task, suffix in (("pos", "conllu"), ("ner", "iob2")):
            for split in SPLITS:
                files.append((lang, f"{task}-{split}", plan.probe_sentences[split], f"{task}/{lang}/{split}.{suffix}"))
    return [Chunk(lang, stream, start, min(CHUNK_SENTENCES, n - start), path)
            for lang, stream, n, path in files for start in range(0, n, CHUNK_SENTENCES)]


@functools.lru_cache(maxsize=32)
def _realizer(lang: str, knobs: Tuple) -> Tuple[Grammar, Realizer]:
    seed, lexicon_size, zipf_exponent, cognate_rate, homograph_rate = knobs
    inventory = Inventory.build(lexicon_size, seed)
    lexicon = Lexicon(PROFILES[lang], inventory, seed, cognate_rate, homograph_rate)
    return Grammar(inventory, zipf_exponent), Realizer(lexicon)


def render_chunk(task: Tuple[Tuple, Chunk]) -> str:
    """The text of one chunk: raw lines, CoNLL-U sentences or IOB2 sentences."""
    knobs, chunk = task
    grammar, realizer = _realizer(chunk.lang, knobs)
    rng = derive_rng(knobs[0], "sentences", chunk.lang, chunk.stream, str(chunk.start // CHUNK_SENTENCES))
    split = chunk.stream.split("-")[-1]
    out = []
    for i in range(chunk.start + 1, chunk.start + chunk.size + 1):
        tokens = realizer.sentence(grammar.sentence(rng))
        if chunk.stream == "raw":
            out.append(detokenize(tokens) + "\n")
        elif chunk.stream.startswith("pos"):
            out.append(conllu_block(tokens, f"{chunk.lang}-{split}-{i}"))
        else:
            out.append(iob2_block(tokens))
    return "".join(out)


def write_benchmark(plan: BenchmarkPlan, out: Path, progress=None, workers: int = 1) -> None:
    """Write raw/, pos/, ner/ and languages.json into out (an existing, empty directory).

    Chunks are generated by ``workers`` processes and written in order, so the output does not depend
    on ``workers``. ``progress``: optional callable(n_sentences).
    """
    knobs = tuple(getattr(plan.config, k) for k in GENERATOR_KNOBS)
    chunks = plan_chunks(plan)
    with contextlib.ExitStack() as stack:
        if workers > 1 and len(chunks) > 1:
            pool = stack.enter_context(multiprocessing.get_context("fork").Pool(workers))
            texts = pool.imap(render_chunk, [(knobs, chunk) for chunk in chunks])
        else:
            texts = map(render_chunk, [(knobs, chunk) for chunk in chunks])
        files = {}
        for chunk, text in zip(chunks, texts):
            if chunk.path not in files:
                (out / chunk.path).parent.mkdir(parents=True, exist_ok=True)
                files[chunk.path] = stack.enter_context(open(out / chunk.path, "w", encoding="utf-8"))
            files[chunk.path].write(text)
            if progress is not None:
                progress(chunk.size)
    with open(out / "languages.json", "w", encoding="utf-8") as f:
        json.dump(plan.manifest(), f, indent=2, ensure_ascii=False)
        f.write("\n")


def total_sentences(plan: BenchmarkPlan) -> int:
    return sum(plan.raw_sentences.values()) + 2 * len(plan.languages) * sum(plan.probe_sentences.values())
