"""One normalised sentence -> prosodic words with break levels, their syllables tone-corrected.

Rules (the ttsfrd sample 您|可以|向我|询问|关于|拖欠|工资、供水、公积金|和|户籍的|相关|问题，我将|尽力|解答。
follows from them):
- Lexical words and parts of speech come from jieba posseg. A lone 儿 joins the word before it,
  so that erhua applies to it (小孩 + 儿).
- A spelled-out number is one word even where jieba cuts it (一九九|八年 -> 一九九八年; a
  trailing unit or measure character stays on it). Numbers of more than 4 numerals are cut after
  点, 亿 or 万, then after 千 or 百 (一万|两千|三百|四十五), and digit strings into groups of 4
  from the right (幺三八|幺二三四|五六七八); each piece keeps 2+ characters.
- Other words of 4+ characters are split into dictionary words of 2-3 characters when jieba's
  dictionary covers them exactly (拖欠工资 -> 拖欠|工资); otherwise words of 5+ characters are cut
  into pieces of two (a last odd character joins the last piece).
- A one-syllable particle (jieba POS u*: 的 了 着 过 得 地, or y: 吗 呢 吧) joins the word before it
  (户籍的). Then adjacent one-syllable words pair up, from the right of each run (向我, 我将,
  我|很好); a one-syllable word between longer ones stays alone (您, 和).
- Breaks: #1 after every prosodic word; #3 at punctuation inside the sentence (，、；：— … quotes,
  brackets, line breaks; all pause punctuation); #4 at the end of the sentence.
- #2: a phrase (the stretch between two #3/#4 breaks) longer than PHRASE_MAX_SYLLABLES syllables is
  cut at the prosodic-word boundary nearest its middle, recursively. (The ttsfrd sample's longest
  phrase, 13 syllables, has no #2.)
- Characters with no reading (emoji, symbols, Latin letters left by normalisation, Han characters
  without pinyin) are skipped and make no break; whitespace makes no break either.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass

import jieba
import jieba.posseg

from serving.frontend.g2p import Word, word_syllables
from serving.frontend.sandhi import third_tone_sandhi, yi_bu_sandhi

PHRASE_MAX_SYLLABLES = 15
NUMERALS = frozenset("零〇一二三四五六七八九十百千万亿两幺点")
NUMBER_CUT_AFTER = ("点亿万", "千百")  # where a long number is cut first, then second
PARTICLE_POS_PREFIXES = ("u", "y")

jieba.setLogLevel(logging.WARNING)  # jieba logs its dictionary loading to stderr
jieba.initialize()
_FREQ = jieba.dt.FREQ
_HAN = re.compile(r"[\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")


@dataclass
class ProsodicWord:
    words: list[Word]
    break_level: int  # 1..4: the break token that follows it

    @property
    def syllables(self):
        return [s for w in self.words for s in w.syllables]


def is_dictionary_word(text: str) -> bool:
    return _FREQ.get(text, 0) > 0


def _is_pause(token: str) -> bool:
    """Punctuation (or a line break) that marks a pause inside a sentence."""
    return any(c in "\n\r\u2028\u2029" or unicodedata.category(c).startswith("P") or c in "…—～~"
               for c in token)


def prosodic_words(text: str, overrides: dict[int, tuple[str, int]]) -> list[ProsodicWord]:
    """Prosodic words of one sentence (overrides: character offset -> (pinyin, tone) from SSML)."""
    items: list[tuple[str, str, int] | None] = []  # (text, pos, offset) of Han words; None: a pause
    offset = 0
    for token in jieba.posseg.lcut(text):
        word, pos = token.word, token.flag
        previous = items[-1] if items and items[-1] is not None and items[-1][2] + len(items[-1][0]) == offset else None
        if previous and (word == "儿" or _continues_number(previous[0], word)):
            items[-1] = (previous[0] + word, "m" if word != "儿" else previous[1], previous[2])
        elif _HAN.search(word):
            items.append((word, pos, offset))
        elif _is_pause(word):
            items.append(None)
        offset += len(word)
    phrases: list[list[Word]] = [[]]
    for item in items:
        if item is None:
            if phrases[-1]:
                phrases.append([])
            continue
        token, pos, start = item
        word = word_syllables(token, pos, start, overrides)
        if word.syllables:
            phrases[-1].extend(_split_long_word(word))
    result: list[ProsodicWord] = []
    for phrase in phrases:
        if not phrase:
            continue
        yi_bu_sandhi(phrase)
        group = _group(phrase)
        for pw in group:
            third_tone_sandhi(pw.words, is_dictionary_word)
        _mark_phrase_breaks(group)
        group[-1].break_level = 3
        result.extend(group)
    if result:
        result[-1].break_level = 4
    return result


def _continues_number(number: str, token: str) -> bool:
    """Whether jieba's `token` continues the spelled-out number `number` (一九九 + 八年, 三百六 + 十五)."""
    return (all(c in NUMERALS for c in number) and any(c in NUMERALS for c in token)
            and all(c in NUMERALS for c in token[:-1]))


def _is_number(text: str) -> bool:
    """A spelled-out number, possibly with one unit or measure character after it."""
    return len(text) > 1 and all(c in NUMERALS for c in text[:-1])


def _number_cuts(text: str) -> list[int]:
    """End offsets of the pieces of a number: at most 4 numerals each (see the module rules)."""
    numerals = len(text) - (text[-1] not in NUMERALS)
    if numerals <= 4:
        return [len(text)]
    for chars in NUMBER_CUT_AFTER:
        for i, char in enumerate(text[1:-2], start=1):  # both pieces keep 2+ characters
            if char in chars:
                return _number_cuts(text[:i + 1]) + [i + 1 + c for c in _number_cuts(text[i + 1:])]
    cut = max(2, numerals - 4)  # a digit string: groups of 4 from the right (phone numbers 3-4-4)
    return _number_cuts(text[:cut]) + [cut + c for c in _number_cuts(text[cut:])]


def _split_long_word(word: Word) -> list[Word]:
    """Pieces of a long word or number (see the module rules); shorter words stay whole."""
    text = word.text
    if len(text) < 4 or len(word.syllables) != len(text):
        return [word]
    if _is_number(text):
        return _cut(word, _number_cuts(text))
    # Fewest pieces of 2-3 characters that are all dictionary words (dynamic programming).
    best: list[list[int] | None] = [[]] + [None] * len(text)
    for end in range(2, len(text) + 1):
        for size in (2, 3):
            start = end - size
            if start >= 0 and best[start] is not None and is_dictionary_word(text[start:end]):
                candidate = best[start] + [end]
                if best[end] is None or len(candidate) < len(best[end]):
                    best[end] = candidate
    cuts = best[len(text)]
    if cuts is None:
        if len(text) == 4:
            return [word]
        cuts = list(range(2, len(text) - 1, 2)) + [len(text)]
    return _cut(word, cuts)


def _cut(word: Word, cuts: list[int]) -> list[Word]:
    pieces, start = [], 0
    for end in cuts:
        pieces.append(Word(word.text[start:end], word.pos, word.syllables[start:end]))
        start = end
    return pieces


def _group(phrase: list[Word]) -> list[ProsodicWord]:
    """Prosodic words of one phrase: particles join the word before, one-syllable words pair up."""
    units: list[list[Word]] = []
    for word in phrase:
        if units and len(word.text) == 1 and word.pos.startswith(PARTICLE_POS_PREFIXES):
            units[-1].append(word)
        else:
            units.append([word])
    # Pair up runs of one-syllable units from the right, so that an odd one out is the first
    # (我|很好, 他|在家); the ttsfrd sample's runs (向我, 我将) have two.
    grouped: list[ProsodicWord] = []
    i = len(units) - 1
    while i >= 0:
        if i > 0 and _syllable_count(units[i]) == 1 and _syllable_count(units[i - 1]) == 1:
            grouped.append(ProsodicWord(units[i - 1] + units[i], 1))
            i -= 2
        else:
            grouped.append(ProsodicWord(units[i], 1))
            i -= 1
    grouped.reverse()
    return grouped


def _syllable_count(words: list[Word]) -> int:
    return sum(len(w.syllables) for w in words)


def _mark_phrase_breaks(group: list[ProsodicWord]) -> None:
    """Put #2 at the boundary nearest the middle of a phrase that is too long, recursively."""
    sizes = [len(pw.syllables) for pw in group]
    if sum(sizes) <= PHRASE_MAX_SYLLABLES or len(group) < 2:
        return
    half, running, cut = sum(sizes) / 2, 0, 1
    best = None
    for i, size in enumerate(sizes[:-1]):
        running += size
        distance = abs(running - half)
        if best is None or distance < best:
            best, cut = distance, i + 1
    group[cut - 1].break_level = 2
    _mark_phrase_breaks(group[:cut])
    _mark_phrase_breaks(group[cut:])
