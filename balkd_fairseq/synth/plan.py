"""What ``balkd-synth`` generates: the configuration (its flags), validated into a plan of languages and sizes."""
import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import BalkdError
from .generated import MAX_LANGUAGES, generated_profile, language_code, power_law_sizes, size_exponent
from .presets import PRESETS, PROFILES, LanguageProfile

NAMES_SCRIPTS = ("own", "latin")  # how non-Latin-script languages write the shared names

# Defaults that differ between the presets and --num-languages (None in SynthConfig: "the mode's default").
PRESET_DEFAULTS = {"low_size": 500, "probe_train": 1000, "probe_dev": 200, "probe_test": 500}
GENERATED_DEFAULTS = {"low_size": 20, "probe_train": 100, "probe_dev": 50, "probe_test": 100}
MIN_GENERATED_SIZE = 3  # balkd-prepare needs a train, a valid and a test line


@dataclass
class SynthConfig:
    """What ``balkd-synth`` generates (its flags, one to one)."""

    preset: str = "shared"
    num_languages: Optional[int] = None  # that many generated languages instead of a preset
    languages: Tuple[str, ...] = ()  # empty: the preset's toy selection; ("all",): the preset's full set
    low_resource: Optional[Tuple[str, ...]] = None  # None: the preset's low-resource languages among them
    anchor: Optional[str] = None  # None: the preset's anchor (de), or the largest generated language
    high_size: int = 20000
    low_size: Optional[int] = None
    sizes: Dict[str, int] = field(default_factory=dict)  # explicit raw sizes per language
    probe_train: Optional[int] = None
    probe_dev: Optional[int] = None
    probe_test: Optional[int] = None
    lexicon_size: int = 800
    zipf_exponent: float = 1.0
    cognate_rate: float = 0.2
    homograph_rate: float = 0.3
    # "own": names are written in each language's script (transliterated); "latin": in Latin letters in every
    # language, as text that leaves foreign names untransliterated does, which links them across scripts
    names_script: str = "own"
    seed: int = 1

    def resolved(self, name: str) -> int:
        value = getattr(self, name)
        if value is not None:
            return value
        return (PRESET_DEFAULTS if self.num_languages is None else GENERATED_DEFAULTS)[name]


@dataclass
class BenchmarkPlan:
    preset: Optional[str]  # None for generated languages
    languages: List[str]
    low_resource: List[str]
    high_resource: List[str]
    anchor: str
    raw_sentences: Dict[str, int]
    probe_sentences: Dict[str, int]
    seed: int
    config: SynthConfig
    profiles: Dict[str, LanguageProfile]
    size_law: Optional[dict] = None  # generated languages: the power law their sizes follow

    def languages_json(self) -> dict:
        """The content of languages.json."""
        record = {
            "preset": self.preset,
            "seed": self.seed,
            "anchor": self.anchor,
            "languages": self.languages,
            "low_resource": self.low_resource,
            "high_resource": self.high_resource,
            "raw_sentences": self.raw_sentences,
            "probe_sentences": self.probe_sentences,
            "scripts": {lang: self.profiles[lang].script for lang in self.languages},
            "profiles": {lang: _profile_summary(self.profiles[lang]) for lang in self.languages},
            "generator": {k: v for k, v in asdict(self.config).items()
                          if k in ("lexicon_size", "zipf_exponent", "cognate_rate", "homograph_rate")},
        }
        if self.config.names_script != "own":  # recorded only when set, so default benchmarks stay byte-identical
            record["generator"]["names_script"] = self.config.names_script
        if self.size_law is not None:
            record["num_languages"] = len(self.languages)
            record["size_law"] = self.size_law
        return record


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
            shown = ", ".join(allowed) if len(allowed) <= 20 else f"{', '.join(allowed[:5])}, ... {allowed[-1]}"
            raise BalkdError(f"{flag}: '{name}' is not {what} ({shown})")


def _check_numbers(config: SynthConfig) -> None:
    for flag, value in (("--high-size", config.high_size), ("--low-size", config.resolved("low_size")),
                        ("--probe-train", config.resolved("probe_train")),
                        ("--probe-dev", config.resolved("probe_dev")),
                        ("--probe-test", config.resolved("probe_test"))):
        if value < 1:
            raise BalkdError(f"{flag}: must be at least 1 (got {value})")
    for lang, size in config.sizes.items():
        if size < 1:
            raise BalkdError(f"--sizes: {lang}={size} must be at least 1")
    if config.resolved("low_size") > config.high_size:  # the "low-resource" languages would be the large ones
        raise BalkdError(f"--low-size: {config.resolved('low_size')} is larger than --high-size {config.high_size}")
    if config.lexicon_size < 50:
        raise BalkdError(f"--lexicon-size: must be at least 50 (got {config.lexicon_size})")
    if not (math.isfinite(config.zipf_exponent) and config.zipf_exponent > 0):  # nan crashed, inf gave one word
        raise BalkdError(f"--zipf-exponent: must be a finite positive number (got {config.zipf_exponent})")
    for flag, rate in (("--cognate-rate", config.cognate_rate), ("--homograph-rate", config.homograph_rate)):
        if not 0 <= rate <= 1:
            raise BalkdError(f"{flag}: must be between 0 and 1 (got {rate})")
    if config.names_script not in NAMES_SCRIPTS:
        raise BalkdError(f"--names-script: must be one of {', '.join(NAMES_SCRIPTS)} (got {config.names_script!r})")


def _probe_sentences(config: SynthConfig) -> Dict[str, int]:
    return {split: config.resolved(f"probe_{split}") for split in ("train", "dev", "test")}


def plan_benchmark(config: SynthConfig) -> BenchmarkPlan:
    """Validate the configuration and work out languages, resource levels and sizes."""
    if config.num_languages is not None:
        return _plan_generated(config)
    return _plan_preset(config)


def _plan_preset(config: SynthConfig) -> BenchmarkPlan:
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
    _check_numbers(config)
    low_size = config.resolved("low_size")
    raw = {lang: config.sizes.get(lang, low_size if lang in low else config.high_size) for lang in languages}
    profiles = {lang: PROFILES[lang] for lang in languages}
    return BenchmarkPlan(config.preset, languages, low, [lang for lang in languages if lang not in low], anchor,
                         raw, _probe_sentences(config), config.seed, config, profiles)


def _plan_generated(config: SynthConfig) -> BenchmarkPlan:
    n = config.num_languages
    if not 1 <= n <= MAX_LANGUAGES:
        raise BalkdError(f"--num-languages: must be between 1 and {MAX_LANGUAGES} (got {n})")
    if config.languages:
        raise BalkdError("--languages: cannot be combined with --num-languages (it selects preset languages)")
    _check_numbers(config)
    largest, smallest = config.high_size, config.resolved("low_size")
    if smallest < MIN_GENERATED_SIZE:
        raise BalkdError(f"--low-size: must be at least {MIN_GENERATED_SIZE} with --num-languages (got {smallest}): "
                         "balkd-prepare needs more lines than --valid-lines + --test-lines")
    languages = [language_code(rank) for rank in range(n)]
    anchor = config.anchor or languages[0]
    if anchor not in languages:
        raise BalkdError(f"--anchor: '{anchor}' is not a generated language ({languages[0]} ... {languages[-1]})")
    _check_subset("--sizes", list(config.sizes), languages, "a generated language")
    raw = dict(zip(languages, power_law_sizes(n, largest, smallest)))
    raw.update(config.sizes)
    if config.low_resource is None:
        # Below the geometric middle of the size range (on a log scale, the bottom half).
        low = [lang for lang in languages if raw[lang] ** 2 < largest * smallest]
    else:
        low = list(config.low_resource)
        _check_subset("--low-resource", low, languages, "a generated language")
    size_law = {"largest": largest, "smallest": smallest, "exponent": round(size_exponent(n, largest, smallest), 6)}
    profiles = {lang: generated_profile(config.seed, rank) for rank, lang in enumerate(languages)}
    return BenchmarkPlan(None, languages, low, [lang for lang in languages if lang not in low], anchor, raw,
                         _probe_sentences(config), config.seed, config, profiles, size_law)
