"""Prosodic words -> KAN-TTS symbol tokens with KAN-TTS's position flags
(its `kantts/preprocess/script_convertor/core/Syllable.py` and `ScriptWord.py`, as ttsfrd emits them).

A token is (phone or break, tone, syllable_flag, word_segment, emotion, speaker), the order of
serving.symbols.STREAMS. Breaks carry tone_none, s_none, word_none and emotion_none, as ttsfrd writes them.
"""

from __future__ import annotations

from serving.frontend.phones import syllable_phones
from serving.frontend.prosody import ProsodicWord

Token = tuple[str, str, str, str, str, str]


def syllable_flags(n_phones: int) -> list[str]:
    if n_phones == 1:
        return ["s_both"]
    return ["s_begin"] + ["s_middle"] * (n_phones - 2) + ["s_end"]


def word_flags(syllable_sizes: list[int]) -> list[str]:
    """word_segment flag of every phone of a prosodic word whose syllables have these phone counts."""
    if sum(syllable_sizes) == 1:
        return ["word_both"]
    flags = []
    last = len(syllable_sizes) - 1
    for index, size in enumerate(syllable_sizes):
        for sflag in syllable_flags(size):
            if index == 0 and sflag in ("s_begin", "s_both"):
                flags.append("word_begin")
            elif index == last and sflag in ("s_end", "s_both"):
                flags.append("word_end")
            else:
                flags.append("word_middle")
    return flags


def to_tokens(words: list[ProsodicWord], emotions: list[str], speaker: str) -> list[Token]:
    """Tokens of one sentence; emotions: the emotion symbol of every character of the sentence."""
    tokens: list[Token] = []
    for pw in words:
        syllables = pw.syllables
        phones = [syllable_phones(s.pinyin) for s in syllables]
        wflags = iter(word_flags([len(p) for p in phones]))
        for syl, syl_phones in zip(syllables, phones):
            tone = f"tone{syl.tone}"
            for phone, sflag in zip(syl_phones, syllable_flags(len(syl_phones))):
                tokens.append((phone, tone, sflag, next(wflags), emotions[syl.offset], speaker))
        tokens.append((f"#{pw.break_level}", "tone_none", "s_none", "word_none", "emotion_none", speaker))
    return tokens


def token_string(token: Token) -> str:
    return "{" + "$".join(token) + "}"
