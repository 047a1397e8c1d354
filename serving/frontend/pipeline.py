"""FrontEnd: request text (plain or SSML) -> sentences of KAN-TTS symbol ids for one voice."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from serving.frontend.errors import FrontEndError
from serving.frontend.normalize import normalize
from serving.frontend.prosody import prosodic_words
from serving.frontend.sentences import split_sentences
from serving.frontend.ssml import Piece, Span, is_ssml, parse_ssml
from serving.frontend.tokens import to_tokens, token_string
from serving.limits import MAX_SENTENCE_CHARS, MAX_TEXT_CHARS, SENTENCE_PAUSE_S
from serving.symbols import DEFAULT_SPEAKER, STREAMS, Vocabulary

DEFAULT_EMOTION = "neutral"
_EMOTION_PREFIX = "emotion_"
# How far ahead a character of a split sentence is looked for in the text it came from
# (split_sentences may drop whitespace between sentences).
_ALIGN_WINDOW = 64


@dataclass
class Sentence:
    text: str            # the normalised sentence
    symbols: list[str]   # "{phone$tone$syllable_flag$word_segment$emotion$speaker}" per token
    ids: np.ndarray      # int64 [T, 6], columns in serving.symbols.STREAMS order
    pause_after: float   # seconds of silence after this sentence


class FrontEnd:
    """The text front end of one voice.

    Every token carries the speaker: DEFAULT_SPEAKER (ttsfrd's F7), looked up in the voice's speaker list
    as ModelScope does, or another speaker of a multi-speaker voice's list when a request names one.

    max_sentence_chars: longest sentence (in normalised characters) sent to the acoustic model;
    the default, serving.limits.MAX_SENTENCE_CHARS, keeps a sentence far below the model's
    800-position table (about 2.7 tokens per character). max_text_chars bounds a request
    (None: no bound). Every sentence but the last is followed by SENTENCE_PAUSE_S seconds of
    silence; an SSML <break> sets the pause of the sentence it ends instead.
    """

    def __init__(self, vocabulary: Vocabulary, max_sentence_chars: int = MAX_SENTENCE_CHARS,
                 max_text_chars: int | None = MAX_TEXT_CHARS):
        self.vocabulary = vocabulary
        self.max_sentence_chars = max_sentence_chars
        self.max_text_chars = max_text_chars
        self._emotions = [
            e[len(_EMOTION_PREFIX):] for e in vocabulary.tables["emotion"]
            if e.startswith(_EMOTION_PREFIX) and e != "emotion_none" and "placeholder" not in e
        ]
        if DEFAULT_EMOTION not in self._emotions:
            raise ValueError(f"the voice's emotion list has no {DEFAULT_EMOTION!r}")

    def emotions(self) -> list[str]:
        """Emotions a request may ask for, as plain names (neutral, happy, ...)."""
        return list(self._emotions)

    def speakers(self) -> list[str]:
        """Speakers a request may ask for (the voice's speaker list)."""
        return self.vocabulary.speakers

    def __call__(self, text: str, emotion: str | None = None, speaker: str | None = None) -> list[Sentence]:
        return list(self.sentences(text, emotion, speaker))

    def sentences(self, text: str, emotion: str | None = None, speaker: str | None = None) -> Iterator[Sentence]:
        """The sentences of a text, read as they are asked for: the text, its length, the emotion, the speaker
        and the SSML are checked here, each sentence is made when the iterator reaches it (so a long text's
        first sentence is ready at once); a text with nothing to read raises when the first is asked for."""
        speaker = self._speaker_symbol(speaker)
        if not text or not text.strip():
            raise FrontEndError("the text is empty: send the Chinese text to read")
        if self.max_text_chars is not None and len(text) > self.max_text_chars:
            raise FrontEndError(f"the text has {len(text)} characters, more than {self.max_text_chars}: "
                                "split it into several requests")
        default_emotion = self._emotion_symbol(emotion or DEFAULT_EMOTION)
        if is_ssml(text):
            pieces = parse_ssml(_clean(text), self._emotion_symbol)
        else:
            pieces = [Piece([Span(_clean(text), None)])]
        return self._read(pieces, default_emotion, speaker)

    def _read(self, pieces: list[Piece], default_emotion: str, speaker: str) -> Iterator[Sentence]:
        # A sentence is handed out once the next one is found: a <break> after it may still set its pause.
        pending: Sentence | None = None
        found = False
        for piece in pieces:
            found = False
            for sentence in self._piece_sentences(piece, default_emotion, speaker):
                if pending is not None:
                    yield pending
                pending, found = sentence, True
            if piece.pause_after is not None and pending is not None:
                if found:
                    pending.pause_after = piece.pause_after
                else:  # nothing readable since the last break: the breaks add up
                    pending.pause_after += piece.pause_after
        if pending is None:
            raise FrontEndError("the text has nothing to read (only punctuation, symbols or characters "
                                "without a Mandarin reading): send Chinese text")
        if pieces[-1].pause_after is None and found:
            pending.pause_after = 0.0  # nothing follows the last sentence
        yield pending

    def _speaker_symbol(self, name: str | None) -> str:
        speakers = self.vocabulary.speakers
        if name is None:
            if self.vocabulary.default_speaker is None:
                raise FrontEndError(f"this voice has no default speaker (its speaker list {', '.join(speakers)} lacks "
                                    f"{DEFAULT_SPEAKER}, the speaker ModelScope reads): name one of those")
            return self.vocabulary.default_speaker
        if name not in speakers:
            raise FrontEndError(f"unknown speaker {name!r}: use one of {', '.join(speakers)}")
        return name

    def _emotion_symbol(self, name: str) -> str:
        key = name.strip().lower()
        key = key[len(_EMOTION_PREFIX):] if key.startswith(_EMOTION_PREFIX) else key
        if key not in self._emotions:
            raise FrontEndError(f"unknown emotion {name!r}: use one of {', '.join(self._emotions)}")
        return _EMOTION_PREFIX + key

    def _piece_sentences(self, piece: Piece, default_emotion: str, speaker: str) -> Iterator[Sentence]:
        """Sentences of a piece of text, with the emotion and pinyin overrides of its spans."""
        texts: list[str] = []
        emotions: list[str] = []  # per character of the piece
        overrides: dict[int, tuple[str, int]] = {}
        for span in piece.spans:
            text = span.text if span.pinyin is not None else normalize(span.text)
            if span.pinyin is not None:
                overrides.update({len(emotions) + i: p for i, p in enumerate(span.pinyin)})
            texts.append(text)
            emotions += [span.emotion or default_emotion] * len(text)
        # One string, not a list of characters: a long text's sentences are read while this generator
        # lives, and what it holds should be little more than the text.
        full = "".join(texts)
        del texts
        start = 0
        for sentence_text in split_sentences(full, self.max_sentence_chars):
            positions, start = _align(sentence_text, full, start)
            sentence_overrides = {i: overrides[p] for i, p in enumerate(positions) if p in overrides}
            sentence_emotions = [default_emotion if p is None else emotions[p] for p in positions]
            words = prosodic_words(sentence_text, sentence_overrides)
            if not words:
                continue
            tokens = to_tokens(words, sentence_emotions, speaker)
            ids = self.vocabulary.encode(tokens)
            if ids.shape != (len(tokens), len(STREAMS)):  # KAN-TTS would silently drop unknown phones
                raise RuntimeError(f"symbol streams of {sentence_text!r} differ in length: {ids.shape}")
            yield Sentence(sentence_text, [token_string(t) for t in tokens], ids, SENTENCE_PAUSE_S)


def _align(sentence: str, full: str, start: int) -> tuple[list[int | None], int]:
    """Position in `full` of every character of `sentence` (a piece of it found from `start` on)."""
    positions: list[int | None] = []
    for char in sentence:
        found = full.find(char, start, start + _ALIGN_WINDOW)
        positions.append(found if found >= 0 else None)
        if found >= 0:
            start = found + 1
    return positions, start


def _clean(text: str) -> str:
    """Control, format and unassigned characters become spaces; line breaks stay."""
    return "".join(
        c if c == "\n" or not unicodedata.category(c).startswith("C") else " " for c in text
    )
