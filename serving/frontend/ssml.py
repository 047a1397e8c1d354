"""The SSML subset the front end reads, parsed into pieces of text with their attributes.

Text is SSML only when it starts (after leading whitespace) with "<speak". Supported elements:
- <speak> ... </speak>: the root; its attributes (version, xmlns, xml:lang) are ignored.
- <phoneme alphabet="py" ph="chong2 fu4">重复</phoneme>: one pinyin syllable with a tone digit
  1-5 (5 = neutral) per character; the characters must be Han characters and are read exactly so
  (no tone sandhi, no erhua, no normalisation).
- <break time="300ms"/> or time="1.5s" (0 to MAX_BREAK_S): ends the sentence there and puts that
  much silence after it; consecutive breaks add up; a break before any text is ignored.
- <emotion category="happy" intensity="1.0">...</emotion>: the emotion of the enclosed text
  (nested: the innermost wins); intensity is accepted and ignored (the model has no such input).
Anything else (another element, an unknown attribute, a bad ph or time, malformed XML) is a
FrontEndError naming the line and column.
"""

from __future__ import annotations

import re
import xml.parsers.expat
from collections.abc import Callable
from dataclasses import dataclass, field

from serving.frontend.errors import FrontEndError
from serving.frontend.phones import is_syllable
from serving.limits import MAX_BREAK_S

_TIME = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*$")
_SYLLABLE = re.compile(r"^([a-zü]+)([1-5])$")
_HAN = re.compile(r"^[\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+$")
_ATTRIBUTES = {  # element -> (required, optional) attributes
    "phoneme": ({"alphabet", "ph"}, set()),
    "break": ({"time"}, set()),
    "emotion": ({"category"}, {"intensity"}),
}


@dataclass
class Span:
    text: str
    emotion: str | None  # an emotion symbol (emotion_happy), None: the request's emotion
    pinyin: list[tuple[str, int]] | None = None  # from <phoneme>: (syllable, tone) per character


@dataclass
class Piece:
    """Text between two breaks; pause_after: seconds of the <break> that ends it, if any."""

    spans: list[Span] = field(default_factory=list)
    pause_after: float | None = None


def is_ssml(text: str) -> bool:
    return text.lstrip().startswith("<speak")


def parse_ssml(text: str, resolve_emotion: Callable[[str], str]) -> list[Piece]:
    """Pieces of an SSML document; resolve_emotion maps a category to its symbol or raises FrontEndError."""
    parser = xml.parsers.expat.ParserCreate()
    pieces = [Piece()]
    stack: list[tuple[str, object]] = []  # open elements: (name, emotion symbol or phoneme data)

    def where() -> str:
        return f"line {parser.CurrentLineNumber}, column {parser.CurrentColumnNumber + 1}"

    def fail(message: str) -> FrontEndError:
        return FrontEndError(f"invalid SSML at {where()}: {message}")

    def emotion() -> str | None:
        return next((data for name, data in reversed(stack) if name == "emotion"), None)

    def start(name: str, attrs: dict[str, str]) -> None:
        if not stack:
            if name != "speak":
                raise fail(f"the root element must be <speak>, not <{name}>")
            stack.append((name, None))
            return
        if name not in _ATTRIBUTES:
            raise fail(f"unsupported element <{name}>; use <phoneme>, <break> or <emotion> inside <speak>")
        if stack[-1][0] == "phoneme":
            raise fail(f"<phoneme> may contain only text, not <{name}>")
        required, optional = _ATTRIBUTES[name]
        missing = required - attrs.keys()
        unknown = attrs.keys() - required - optional
        if missing:
            raise fail(f"<{name}> needs the attribute(s) {', '.join(sorted(missing))}")
        if unknown:
            raise fail(f"<{name}> has unsupported attribute(s) {', '.join(sorted(unknown))}")
        if name == "break":
            _add_break(pieces, _break_seconds(attrs["time"], fail))
            stack.append((name, None))
        elif name == "emotion":
            try:
                stack.append((name, resolve_emotion(attrs["category"])))
            except FrontEndError as error:
                raise fail(str(error)) from None
        else:
            if attrs["alphabet"] != "py":
                raise fail(f'<phoneme alphabet="{attrs["alphabet"]}"> is not supported; use alphabet="py" (pinyin)')
            stack.append((name, {"ph": _parse_ph(attrs["ph"], fail), "text": [], "where": where()}))

    def end(name: str) -> None:
        _, data = stack.pop()
        if name != "phoneme":
            return
        chars = "".join(data["text"]).strip()
        if not _HAN.match(chars):
            raise fail(f"<phoneme> at {data['where']} must contain only Chinese characters, got {chars!r}")
        if len(chars) != len(data["ph"]):
            raise fail(f"<phoneme> at {data['where']} has {len(chars)} character(s) but "
                       f"{len(data['ph'])} syllable(s) in ph; give one syllable per character")
        pieces[-1].spans.append(Span(chars, emotion(), data["ph"]))

    def characters(content: str) -> None:
        if not stack:
            return
        name, data = stack[-1]
        if name == "phoneme":
            data["text"].append(content)
            return
        spans = pieces[-1].spans
        if spans and spans[-1].pinyin is None and spans[-1].emotion == emotion():
            spans[-1].text += content
        else:
            spans.append(Span(content, emotion()))

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    try:
        parser.Parse(text.strip(), True)
    except xml.parsers.expat.ExpatError as error:
        message = xml.parsers.expat.ErrorString(error.code)
        raise FrontEndError(f"invalid SSML at line {error.lineno}, column {error.offset + 1}: {message} "
                            "(check that every tag is closed and attributes are quoted)") from None
    return [p for p in pieces if _has_text(p)]


def _has_text(piece: Piece) -> bool:
    return any(span.text.strip() for span in piece.spans)


def _add_break(pieces: list[Piece], seconds: float) -> None:
    if not _has_text(pieces[-1]):
        if len(pieces) > 1:  # right after another break: they add up
            pieces[-2].pause_after += seconds
        return  # else: before any text, nothing to pause after
    pieces[-1].pause_after = seconds
    pieces.append(Piece())


def _break_seconds(value: str, fail: Callable[[str], FrontEndError]) -> float:
    match = _TIME.match(value)
    if not match:
        raise fail(f'bad <break time="{value}">; write it like "300ms" or "1.5s"')
    seconds = float(match.group(1)) / (1000.0 if match.group(2) == "ms" else 1.0)
    if seconds > MAX_BREAK_S:
        raise fail(f'<break time="{value}"> is longer than {MAX_BREAK_S:g}s; use a shorter break')
    return seconds


def _parse_ph(value: str, fail: Callable[[str], FrontEndError]) -> list[tuple[str, int]]:
    syllables = []
    for item in value.lower().split():
        match = _SYLLABLE.match(item)
        if not match or not is_syllable(match.group(1)):
            raise fail(f'bad ph syllable "{item}"; write pinyin with a tone digit 1-5, e.g. ph="chong2"')
        syllables.append((match.group(1).replace("ü", "v"), int(match.group(2))))
    if not syllables:
        raise fail('empty ph; write pinyin with a tone digit 1-5, e.g. ph="chong2"')
    return syllables
