"""Splits normalised text into chunks of at most max_chars characters, one acoustic-model call each.

Rules, in order of preference:
1. Sentences end after 。！？；… (a run of them stays together) and at line breaks (the line
   break itself is dropped, so such a sentence has no closing mark).
2. A sentence longer than max_chars is cut after ，、： marks; its clauses are packed greedily,
   so each chunk is as long as max_chars allows and ends with its clause's mark.
3. A clause longer than max_chars is cut between words (jieba's tokenizer); the marks after
   the clause stay on its last word. A single word longer than max_chars (only possible with
   a tiny max_chars) is cut every max_chars characters.
Marks count as characters. Text is scanned once and each character is tokenized at most once,
so the cost grows linearly with the text length. Pieces made only of marks are dropped.
"""

import logging
import re

import jieba

from serving.frontend.normalize import CLAUSE_MARKS, SENTENCE_END_MARKS

jieba.setLogLevel(logging.WARNING)

_SENTENCE = re.compile(rf"[^{SENTENCE_END_MARKS}{CLAUSE_MARKS}\s][^{SENTENCE_END_MARKS}\n]*[{SENTENCE_END_MARKS}]*")
_CLAUSE = re.compile(rf"[^{CLAUSE_MARKS}]+[{CLAUSE_MARKS}]*")
_MARKS_ONLY = re.compile(rf"[{SENTENCE_END_MARKS}{CLAUSE_MARKS}\s]+")


def _words(clause: str) -> list[str]:
    """jieba's words of `clause`, with each run of marks glued to the word before it."""
    words: list[str] = []
    for token in jieba.lcut(clause):
        if words and _MARKS_ONLY.fullmatch(token):
            words[-1] += token
        else:
            words.append(token)
    return words


class _Packer:
    """Greedily joins pieces into chunks of at most max_chars characters."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.chunks: list[str] = []
        self._pieces: list[str] = []
        self._length = 0

    def add(self, piece: str) -> None:
        if self._length + len(piece) > self.max_chars:
            self.flush()
        start = 0
        while len(piece) - start > self.max_chars:  # a single word longer than a chunk
            self.chunks.append(piece[start:start + self.max_chars])
            start += self.max_chars
        self._pieces.append(piece[start:])
        self._length += len(piece) - start

    def flush(self) -> None:
        if self._pieces:
            self.chunks.append("".join(self._pieces))
            self._pieces, self._length = [], 0


def split_sentences(text: str, max_chars: int) -> list[str]:
    """Splits normalised text into chunks of at most `max_chars` characters (see module doc)."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    packer = _Packer(max_chars)
    for sentence in _SENTENCE.findall(text):
        if len(sentence) <= max_chars:
            packer.flush()
            packer.chunks.append(sentence)
            continue
        packer.flush()
        for clause in _CLAUSE.findall(sentence):
            if len(clause) <= max_chars:
                packer.add(clause)
                continue
            # Cut a long clause at word boundaries, starting a fresh chunk at its beginning.
            packer.flush()
            for word in _words(clause):
                packer.add(word)
        packer.flush()
    return packer.chunks
