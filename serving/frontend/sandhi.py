"""Tone sandhi on pinyin syllables, as spoken Mandarin (and ttsfrd's output) applies it.

- 不 (base bu4): neutral between two equal characters (去不去) or in the middle of a three-character
  word (对不起, 差不多); bu2 before a 4th (or neutral) tone; bu4 otherwise.
- 一 (base yi1): yi1 when counting or ordinal (after a numeral or 第/初, before a digit, 一九四九),
  at the end of a word (统一) or of a phrase; neutral between two equal characters (看一看);
  yi2 before a 4th or neutral tone (一个, 一样); yi4 before tones 1-3 (一天, 一年, 一起).
- Third tone: inside a prosodic word, a 3rd tone followed by a 3rd tone becomes 2nd (可以 ke2 yi3).
  Each lexical word is handled first (a 3-character word is split 2+1 or 1+2 by the dictionary:
  展览馆 2 2 3, 小老虎 3 2 3), then the boundaries between the lexical words, left to right.
  Prosodic-word boundaries (#1 and up) stop the chain.
Syllables set by SSML <phoneme> never change.
"""

from __future__ import annotations

from collections.abc import Callable

from serving.frontend.g2p import Syllable, Word

NUMERAL_CHARS = frozenset("零〇一二三四五六七八九十百千万亿两幺")
DIGIT_CHARS = frozenset("零〇一二三四五六七八九幺")
ORDINAL_PREFIXES = frozenset("第初")


def yi_bu_sandhi(phrase: list[Word]) -> None:
    """Apply the 一/不 rules to the syllables of one phrase (a stretch without pause punctuation)."""
    entries = [(word, i, s) for word in phrase for i, s in enumerate(word.syllables)]
    for k, (word, index, syl) in enumerate(entries):
        if syl.fixed or not ((syl.char == "一" and syl.pinyin == "yi") or (syl.char == "不" and syl.pinyin == "bu")):
            continue
        prev = entries[k - 1][2] if k > 0 else None
        nxt = entries[k + 1][2] if k + 1 < len(entries) else None
        reduplicated = prev is not None and nxt is not None and prev.char == nxt.char
        if syl.char == "不":
            if reduplicated or (len(word.text) == 3 and word.text[1] == "不"):
                syl.tone = 5
            elif nxt is not None and nxt.tone in (4, 5):
                syl.tone = 2
            else:
                syl.tone = 4
            continue
        last_in_word = index == len(word.syllables) - 1 and len(word.syllables) > 1
        if (nxt is None or last_in_word or nxt.char in DIGIT_CHARS
                or (prev is not None and (prev.char in NUMERAL_CHARS or prev.char in ORDINAL_PREFIXES))):
            syl.tone = 1
        elif reduplicated:
            syl.tone = 5
        elif nxt.tone in (4, 5):
            syl.tone = 2
        else:
            syl.tone = 4


def third_tone_sandhi(words: list[Word], is_word: Callable[[str], bool]) -> None:
    """Apply the 3-3 rule inside one prosodic word made of `words` (is_word: dictionary lookup)."""
    units: list[list[Syllable]] = []
    for word in words:
        syls = word.syllables
        if len(syls) == 3 and len(word.text) == 3 and not is_word(word.text[:2]) and is_word(word.text[1:]):
            units += [syls[:1], syls[1:]]
        elif len(syls) == 3 and len(word.text) == 3:
            units += [syls[:2], syls[2:]]
        elif syls:
            units.append(syls)
    for unit in units:
        for a, b in zip(unit, unit[1:]):
            _lower(a, b)
    for left, right in zip(units, units[1:]):
        _lower(left[-1], right[0])


def _lower(a: Syllable, b: Syllable) -> None:
    if a.tone == 3 and b.tone == 3 and not a.fixed:
        a.tone = 2
