"""The embedded multilingual benchmark behind ``balkd-synth`` (test and demo data, not part of the method).

Every language realises the same latent grammar (``grammar.py``): sentences whose noun phrases,
verbs, adpositional phrases and named entities (PER/LOC/ORG) are drawn from one shared inventory of
concepts with Zipfian frequencies. Languages differ in what a multilingual model has to bridge: the
lexicon and morphology (``lexicon.py``: own words, a few cognates, suffix chains with vowel harmony,
fused endings or none), word order (``realize.py``) and script (``scripts.py``). The languages are
either a preset's (``presets.py``: ``shared``, all Latin; ``diverse``, seven scripts) or ``N``
generated ones (``generated.py``) with power-law sizes. ``corpus.py`` streams raw text and the
probing files (``probing.py``: CoNLL-U POS, IOB2 NER) to disk.

Everything is deterministic from the seed: a language's lexicon depends only on (seed, language),
its sentences only on (seed, language, file), so adding a language or changing sizes leaves the
other languages' data unchanged.

Entry point::

    plan = plan_benchmark(SynthConfig(num_languages=100, seed=1))
    write_benchmark(plan, out_dir)
"""
from .corpus import total_sentences, write_benchmark
from .generated import MAX_LANGUAGES
from .plan import GENERATED_DEFAULTS, NAMES_SCRIPTS, PRESET_DEFAULTS, BenchmarkPlan, SynthConfig, plan_benchmark
from .presets import PRESETS, PROFILES, LanguageProfile
from .scripts import GENERATED_SCRIPTS, SCRIPT_RANGES

__all__ = [
    "BenchmarkPlan", "GENERATED_DEFAULTS", "GENERATED_SCRIPTS", "LanguageProfile", "MAX_LANGUAGES", "NAMES_SCRIPTS", "PRESETS",
    "PRESET_DEFAULTS", "PROFILES", "SCRIPT_RANGES", "SynthConfig", "plan_benchmark", "total_sentences",
    "write_benchmark",
]
