"""Pinyin syllable -> KAN-TTS phones (KAN-TTS `kantts/preprocess/languages/PinYin/py2phoneMap.txt`),
by rule rather than by table.

A syllable is toneless pinyin as pypinyin's TONE3 style spells it (ü written v: lv, nve, ju) or as
KAN-TTS spells it (jv, yvan); an erhua syllable has an "r" appended (huar, zhir, yer). The result is
the initial phone and the final phone, both of which are in serving.symbols.PHONES:

- initials get the "_c" suffix, x becomes xx_c; y- and w- syllables are "y_c"/"w_c" + the remaining
  spelling (ye -> y_c e_c, wu -> w_c u_c, yu -> y_c v_c);
- zero-initial syllables get the pseudo-initial ga (a...), ge (e..., er) or go (o...);
- finals are written in full: zi/ci/si -> ii, zhi/chi/shi/ri -> ih, iu -> iou, ui -> uei,
  un -> uen, and u after j/q/x is ü (v, ve, van, vn);
- erhua appends r to the final (an -> anr_c), except e + r, which is er_c (ger -> g_c er_c).
"""

from __future__ import annotations

from functools import lru_cache

from pypinyin.contrib.tone_convert import to_normal
from pypinyin.pinyin_dict import pinyin_dict

from serving.symbols import PHONES


class InvalidSyllable(ValueError):
    """A string that is not a Mandarin pinyin syllable."""


# Two-letter initials first so that "zh" is not read as "z" + "h...".
INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h",
            "j", "q", "x", "r", "z", "c", "s")
FINALS = frozenset(
    "a o e ai ei ao ou an en ang eng ong er i ii ih ia iao ie iou ian in iang ing iong "
    "u ua uo uai uei uan uen uang ueng v ve van vn io".split()
)
# Interjections without a vowel nucleus (嗯 n, 呣 m, 噷 hm, 哼 hng) and ê (欸) have no KAN-TTS
# phones: they are read as the nearest syllable. KAN-TTS itself rewrites ng as en.
INTERJECTIONS = {"n": "en", "ng": "en", "m": "mu", "hm": "hen", "hng": "heng", "ê": "ei"}

_SPELLED_FINALS = {"iu": "iou", "ui": "uei", "un": "uen"}  # written short after an initial
_UMLAUT_AFTER_JQXY = {"u": "v", "ue": "ve", "uan": "van", "un": "vn"}


def _initial_and_final(base: str) -> tuple[str, str]:
    """Split a toneless non-erhua syllable into (initial phone, final name)."""
    base = base.replace("ü", "v")
    base = INTERJECTIONS.get(base, base)
    if base[0] in "yw":
        rest = base[1:]
        if base[0] == "y":
            rest = _UMLAUT_AFTER_JQXY.get(rest, rest)
        return base[0] + "_c", rest
    for initial in INITIALS:
        if base.startswith(initial) and len(base) > len(initial):
            rest = base[len(initial):]
            if initial in "jqx":
                rest = _UMLAUT_AFTER_JQXY.get(rest, rest)
            elif initial in ("z", "c", "s") and rest == "i":
                rest = "ii"
            elif initial in ("zh", "ch", "sh", "r") and rest == "i":
                rest = "ih"
            elif initial in ("l", "n") and rest == "ue":  # lue/nue are pypinyin's lve/nve
                rest = "ve"
            rest = _SPELLED_FINALS.get(rest, rest)
            return ("xx_c" if initial == "x" else initial + "_c"), rest
    pseudo = {"a": "ga", "e": "ge", "o": "go"}.get(base[0])
    if pseudo is None:
        raise InvalidSyllable(base)
    return pseudo, base


@lru_cache(maxsize=None)
def syllable_phones(syllable: str) -> tuple[str, str]:
    """(initial phone, final phone) of a toneless syllable such as "zhong", "lv", "yuan" or "huar"."""
    if not syllable or not syllable.isalpha() or not syllable.islower():
        raise InvalidSyllable(syllable)
    erhua = syllable.endswith("r") and syllable != "er"
    initial, final = _initial_and_final(syllable[:-1] if erhua else syllable)
    if final not in FINALS or (erhua and final == "er"):
        raise InvalidSyllable(syllable)
    if erhua:
        final = "er" if final == "e" else final + "r"
    phones = (initial, final + "_c")
    if not all(p in _PHONE_SET for p in phones):
        raise InvalidSyllable(syllable)
    return phones


_PHONE_SET = frozenset(PHONES)


@lru_cache(maxsize=1)
def pinyin_syllables() -> frozenset[str]:
    """Every toneless syllable of pypinyin's character dictionary, spelled as TONE3 does (lv, ju)."""
    readings = {r for value in set(pinyin_dict.values()) for r in value.split(",")}
    return frozenset(to_normal(r) for r in readings)


def is_syllable(syllable: str) -> bool:
    """Whether a toneless syllable (pypinyin or KAN-TTS spelling, erhua allowed) is real Mandarin."""
    base = syllable[:-1] if syllable.endswith("r") and syllable != "er" else syllable
    base = base.replace("ü", "v")
    if base[:1] in ("j", "q", "x", "y") and base[1:2] == "v":  # KAN-TTS jv, yvan -> ju, yuan
        base = base[0] + "u" + base[2:]
    if base not in pinyin_syllables():
        return False
    try:
        syllable_phones(syllable.replace("ü", "v"))
    except InvalidSyllable:
        return False
    return True
