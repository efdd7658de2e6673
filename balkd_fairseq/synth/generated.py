"""Generated languages for ``--num-languages N``: codes, random typologies and power-law sizes.

A language's code, typology and lexicon depend only on (seed, its rank), so language k is the same
language whatever N; only the sizes depend on N. Sizes fall with the rank as a power law, like the
web corpora of XLM-R/CC-100 or Glot500: the largest language has ``largest`` lines, the smallest
``smallest``, and the exponent is whatever joins the two.
"""
import math
from typing import List

from .grammar import TENSES
from .presets import LanguageProfile
from .sampling import derive_rng
from .scripts import ALL_CODAS, ALL_ONSETS, BASE_VOWELS, SCRIPT_VOWELS

CODE_CONSONANTS = "bdfghklmnprstvz"
CODE_VOWELS = "aeiou"
MAX_LANGUAGES = 1000  # consonant-vowel-consonant codes: 15 * 5 * 15 = 1125

# Roughly the share of each script among the world's written languages, Latin first.
SCRIPT_WEIGHTS = {"latin": 30, "cyrillic": 10, "arabic": 8, "greek": 5, "armenian": 5, "georgian": 5, "hebrew": 6,
                  "thai": 6, "ethiopic": 6, "hangul": 6, "tifinagh": 5}
assert set(SCRIPT_WEIGHTS) == set(SCRIPT_VOWELS)

# Latin orthographies: each romanised unit keeps its spelling or takes one of these.
LATIN_ONSET_SPELLINGS = {"sh": ("sch", "sz", "x", "ş", "š"), "ch": ("tsch", "cs", "ç", "č", "tx"), "k": ("c", "q"),
                         "y": ("j", "i"), "w": ("v", "u", "hu"), "z": ("ź", "ž", "tz"), "h": ("j", "x"),
                         "f": ("ph",), "ny": ("ñ", "ň", "nh", "gn"), "v": ("w",)}
LATIN_CODA_SPELLINGS = {"k": ("ck", "q", "c"), "s": ("ss", "z"), "n": ("nn",)}
MORPHOLOGIES = ("isolating", "analytic", "agglutinative", "fusional")


def language_code(rank: int) -> str:
    """Three lowercase letters; codes sort in rank order (rank 0 is 'bab')."""
    first, rest = divmod(rank, len(CODE_VOWELS) * len(CODE_CONSONANTS))
    vowel, last = divmod(rest, len(CODE_CONSONANTS))
    return CODE_CONSONANTS[first] + CODE_VOWELS[vowel] + CODE_CONSONANTS[last]


def power_law_sizes(n: int, largest: int, smallest: int) -> List[int]:
    """Lines of the languages of rank 1..n: largest * rank ** -a, with a such that rank n gets smallest."""
    if n == 1:
        return [largest]
    exponent = math.log(largest / smallest) / math.log(n)
    return [max(smallest, round(largest * rank ** -exponent)) for rank in range(1, n + 1)]


def size_exponent(n: int, largest: int, smallest: int) -> float:
    return math.log(largest / smallest) / math.log(n) if n > 1 else 0.0


def _subset(rng, items, keep: float, minimum: int) -> tuple:
    kept = tuple(item for item in items if rng.random() < keep)
    return kept if len(kept) >= minimum else tuple(items)


def generated_profile(seed: int, rank: int) -> LanguageProfile:
    """A random typology: script, sounds and orthography, word order, morphology."""
    code = language_code(rank)
    rng = derive_rng(seed, "generated language", code)
    script = rng.choices(list(SCRIPT_WEIGHTS), weights=list(SCRIPT_WEIGHTS.values()))[0]
    sov = rng.random() < 0.45
    morphology = rng.choices(MORPHOLOGIES, weights=(0.15, 0.15, 0.4, 0.3))[0]
    inflecting = morphology in ("agglutinative", "fusional")
    ergative = inflecting and rng.random() < 0.1
    cases = ("Erg",) if ergative else rng.choice(((), ("Acc",), ("Acc",), ("Nom", "Acc"))) if inflecting else ()
    tense_suffixes = _subset(rng, TENSES, 0.6, 1) if inflecting else ("Past",) if morphology == "analytic" else ()
    if morphology == "isolating":
        aux_tenses = _subset(rng, ("Past", "Fut"), 0.7, 1)
    else:
        aux_tenses = tuple(t for t in TENSES if t not in tense_suffixes and rng.random() < 0.5)
    articles = rng.random() < 0.4
    extra_vowels = SCRIPT_VOWELS[script]
    vowels = BASE_VOWELS + tuple(rng.sample(extra_vowels, rng.randint(0, min(4, len(extra_vowels)))))
    onsets = _subset(rng, ALL_ONSETS, 0.85, 10) + (("ny",) if rng.random() < 0.2 else ())
    codas = _subset(rng, ALL_CODAS, 0.6, 2)
    onset_spelling = coda_spelling = ()
    if script == "latin":
        onset_spelling = tuple((unit, rng.choice(options)) for unit, options in LATIN_ONSET_SPELLINGS.items()
                               if rng.random() < 0.35)
        coda_spelling = tuple((unit, rng.choice(options)) for unit, options in LATIN_CODA_SPELLINGS.items()
                              if rng.random() < 0.3)
    return LanguageProfile(
        code, script,
        word_order="SOV" if sov else "SVO",
        adj_before_noun=rng.random() < 0.5,
        postpositions=rng.random() < (0.85 if sov else 0.15),
        articles=articles,
        fused=morphology == "fusional",
        plural_suffix=morphology != "isolating",
        case_suffixes=cases,
        ergative=ergative,
        tense_suffixes=tense_suffixes,
        aux_tenses=aux_tenses,
        verb_agreement=inflecting and (morphology == "fusional" or rng.random() < 0.6),
        adj_agreement=morphology == "fusional" and rng.random() < 0.7,
        det_agreement=morphology == "fusional" and articles and rng.random() < 0.7,
        neg_suffix=morphology == "agglutinative" and rng.random() < 0.4,
        object_marker=sov and rng.random() < 0.2,
        sconj_is_demonstrative=rng.random() < 0.25,
        proper_suffix_separator="'" if script == "latin" and morphology == "agglutinative" and rng.random() < 0.3
        else "",
        onsets=onsets,
        codas=codas,
        vowels=vowels,
        coda_rate=round(rng.uniform(0.1, 0.5), 2),
        harmony=script == "latin" and morphology == "agglutinative" and rng.random() < 0.5,
        onset_spelling=onset_spelling,
        coda_spelling=coda_spelling,
        monosyllabic=morphology == "isolating" and rng.random() < 0.5,
    )
