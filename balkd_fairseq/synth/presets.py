"""The presets' languages: one typology (``LanguageProfile``) per language, and the two language sets.

Each profile is loosely modelled on the real language it is named after; ``generated.py`` draws
profiles of the same kind at random for ``--num-languages``.
"""
import unicodedata
from dataclasses import dataclass
from typing import Dict, Tuple

from .scripts import ALL_CODAS, ALL_ONSETS, BASE_VOWELS


@dataclass(frozen=True)
class LanguageProfile:
    """Typology of one synthetic language: lexicon key, word order, morphology, sounds and script."""

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
