"""Scripts and orthography: a word is a list of romanised syllables (onset, vowel, coda), rendered per script.

Romanised units: onsets and codas from ``ALL_ONSETS`` (plus "ny"), vowels from ``BASE_VOWELS`` plus a
few per-script extras (``SCRIPT_VOWELS``). Latin languages spell them through their own orthography
(``render_latin``); every other script has one renderer.

The scripts generated languages draw from (``GENERATED_SCRIPTS``) use letters only (Unicode categories
L*): no combining marks, so Python's ``\\w`` and SentencePiece's whitespace-delimited pieces treat
every word as one run of word characters, and NFKC normalisation leaves the text unchanged.
Devanagari and Telugu (vowel signs and viramas are marks) stay with the presets' hi and te.
"""
import unicodedata
from typing import Callable, Dict, Sequence, Tuple

Syllable = Tuple[str, str, str]

BASE_VOWELS = ("a", "e", "i", "o", "u")
ALL_ONSETS = ("p", "t", "k", "b", "d", "g", "m", "n", "s", "z", "f", "v", "l", "r", "h", "y", "w", "ch", "sh")
ALL_CODAS = ("n", "m", "l", "r", "s", "k", "t")
CASED_SCRIPTS = ("latin", "cyrillic", "greek", "armenian")

# Unicode ranges of the letters (and combining marks) each script may use; tests check against them.
SCRIPT_RANGES: Dict[str, Tuple[Tuple[int, int], ...]] = {
    "latin": ((0x0041, 0x024F), (0x1E00, 0x1EFF)),
    "cyrillic": ((0x0400, 0x04FF),),
    "greek": ((0x0370, 0x03FF),),
    "devanagari": ((0x0900, 0x097F),),
    "hangul": ((0xAC00, 0xD7A3),),
    "arabic": ((0x0600, 0x06FF),),
    "telugu": ((0x0C00, 0x0C7F),),
    "armenian": ((0x0531, 0x0586),),
    "georgian": ((0x10D0, 0x10FA),),
    "hebrew": ((0x05D0, 0x05EA),),
    "thai": ((0x0E01, 0x0E45),),
    "ethiopic": ((0x1200, 0x135A),),
    "tifinagh": ((0x2D30, 0x2D67),),
}

PUNCTUATION = {  # (full stop, comma, question mark)
    "latin": (".", ",", "?"), "cyrillic": (".", ",", "?"), "greek": (".", ",", ";"), "hangul": (".", ",", "?"),
    "devanagari": ("।", ",", "?"), "telugu": (".", ",", "?"), "arabic": ("۔", "،", "؟"),
    "armenian": ("։", ",", "?"), "georgian": (".", ",", "?"), "hebrew": (".", ",", "?"), "thai": (".", ",", "?"),
    "ethiopic": ("።", "፣", "፧"), "tifinagh": (".", ",", "?"),
}

# --------------------------------------------------------------------------------------------------
# The presets' scripts
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# Scripts only generated languages use (letters only, see the module docstring)
# --------------------------------------------------------------------------------------------------


def _table(letters: str, units: Sequence[str]) -> Dict[str, str]:
    """Romanised units -> letters, given as two parallel space-separated lists."""
    spelled = letters.split()
    assert len(spelled) == len(units), (letters, units)
    return dict(zip(units, spelled))


CONSONANT_UNITS = ALL_ONSETS + ("ny",)
ARMENIAN = _table("պ տ կ բ դ գ մ ն ս զ ֆ վ լ ր հ յ ւ ճ շ նյ", CONSONANT_UNITS)
ARMENIAN_VOWELS = {"a": "ա", "e": "ե", "i": "ի", "o": "օ", "u": "ու", "y": "ը"}
GEORGIAN = _table("პ ტ კ ბ დ გ მ ნ ს ზ ფ ვ ლ რ ჰ ჲ ჳ ჩ შ ნჲ", CONSONANT_UNITS)
GEORGIAN_VOWELS = {"a": "ა", "e": "ე", "i": "ი", "o": "ო", "u": "უ"}
TIFINAGH = _table("ⵒ ⵜ ⴽ ⴱ ⴷ ⴳ ⵎ ⵏ ⵙ ⵣ ⴼ ⵠ ⵍ ⵔ ⵀ ⵢ ⵡ ⵞ ⵛ ⵏⵢ", CONSONANT_UNITS)
TIFINAGH_VOWELS = {"a": "ⴰ", "e": "ⴻ", "i": "ⵉ", "o": "ⵧ", "u": "ⵓ"}
HEBREW = _table("פ ת ק ב ד ג מ נ ס ז פ ב ל ר ה י ו צ ש ני", CONSONANT_UNITS)
HEBREW_MATRES = {"a": "", "e": "", "i": "י", "o": "ו", "u": "ו"}  # an abjad: a and e are not written
HEBREW_FINAL = {"כ": "ך", "מ": "ם", "נ": "ן", "פ": "ף", "צ": "ץ"}
THAI = _table("ป ต ก บ ด ค ม น ส ซ ฟ ว ล ร ห ย ว ช ศ ญ", CONSONANT_UNITS)
THAI_VOWELS = {"a": ("", "า"), "e": ("เ", ""), "i": ("ไ", ""), "o": ("โ", ""), "u": ("แ", "")}  # (before, after)
THAI_NO_ONSET = "อ"
# Ethiopic is a syllabary: one letter per consonant + vowel; the sixth order is the bare consonant.
ETHIOPIC_ROWS = _table("P T K B D G M N S Z F V L R H Y W C SH NY", CONSONANT_UNITS)
ETHIOPIC_ORDERS = {"a": "AA", "e": "EE", "i": "I", "o": "O", "u": "U", "": "E"}


def _ethiopic(row: str, vowel: str) -> str:
    name = "GLOTTAL " if not row else row
    return unicodedata.lookup(f"ETHIOPIC SYLLABLE {name}{ETHIOPIC_ORDERS[vowel]}")


ETHIOPIC = {(o, v): _ethiopic(ETHIOPIC_ROWS.get(o, ""), v) for o in ("",) + CONSONANT_UNITS for v in ETHIOPIC_ORDERS}


def _render_alphabet(sylls: Sequence[Syllable], consonants: Dict[str, str], vowels: Dict[str, str]) -> str:
    return "".join(consonants.get(o, "") + vowels[v] + consonants.get(c, "") for o, v, c in sylls)


def render_armenian(sylls: Sequence[Syllable]) -> str:
    return _render_alphabet(sylls, ARMENIAN, ARMENIAN_VOWELS)


def render_georgian(sylls: Sequence[Syllable]) -> str:
    return _render_alphabet(sylls, GEORGIAN, GEORGIAN_VOWELS)


def render_tifinagh(sylls: Sequence[Syllable]) -> str:
    return _render_alphabet(sylls, TIFINAGH, TIFINAGH_VOWELS)


def render_hebrew(sylls: Sequence[Syllable]) -> str:
    out = []
    for i, (o, v, c) in enumerate(sylls):
        onset = HEBREW.get(o, "א" if i == 0 else "")
        vowel = HEBREW_MATRES[v] or ("ה" if i == len(sylls) - 1 and not c else "")
        out.append(onset + vowel + HEBREW.get(c, ""))
    word = "".join(out)
    return word[:-1] + HEBREW_FINAL.get(word[-1], word[-1])


def render_thai(sylls: Sequence[Syllable]) -> str:
    out = []
    for o, v, c in sylls:
        before, after = THAI_VOWELS[v]
        out.append(before + THAI.get(o, THAI_NO_ONSET) + after + THAI.get(c, ""))
    return "".join(out)


def render_ethiopic(sylls: Sequence[Syllable]) -> str:
    return "".join(ETHIOPIC[(o, v)] + (ETHIOPIC[(c, "")] if c else "") for o, v, c in sylls)


SCRIPT_RENDERERS: Dict[str, Callable[[Sequence[Syllable]], str]] = {
    "cyrillic": render_cyrillic, "greek": render_greek, "devanagari": render_devanagari,
    "telugu": render_telugu, "arabic": render_urdu, "hangul": render_hangul,
    "armenian": render_armenian, "georgian": render_georgian, "tifinagh": render_tifinagh,
    "hebrew": render_hebrew, "thai": render_thai, "ethiopic": render_ethiopic,
}

# The vowels each script can write beyond BASE_VOWELS (a generated language draws its extras from these).
SCRIPT_VOWELS: Dict[str, Tuple[str, ...]] = {
    "latin": ("ä", "ö", "ü", "á", "é", "í", "ó", "ú", "à", "è", "ò", "â", "ê", "ô", "ā", "ē", "ī", "ō", "ū",
              "å", "ø", "æ", "ë", "y", "ee", "oo", "ai", "ou"),
    "cyrillic": ("y",), "greek": ("ii", "oo"), "arabic": ("aa",), "hangul": ("eo", "eu", "aa"),
    "armenian": ("y",), "georgian": (), "tifinagh": (), "hebrew": (), "thai": (), "ethiopic": (),
}
GENERATED_SCRIPTS = tuple(SCRIPT_VOWELS)


def capitalize(word: str) -> str:
    return word[:1].upper() + word[1:]
