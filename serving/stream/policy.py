"""The streaming model's settings: chunk sizes, how far ahead of its listener a stream may run, how many
streams run at once, and where the vocoder runs (deploy/targets/*.yaml, `streaming:`).

A chunk is a range of one sentence's mel frames, vocoded with the context its vocoder needs around it
(serving.stream.sentence). Every chunk after a sentence's first costs that context again, so chunks
should be as large as the listener allows: the first chunk of a request is small, so that audio leaves
as soon as the decoder has passed it and its lookahead; each later one holds `growth` times the audio
the listener has buffered (what was sent minus what has played since the first chunk arrived), so it is
made while that buffer plays, and never less than the one before (a stream that only just keeps up
would otherwise shrink its chunks and fall behind on their contexts). A stream that is behind its
listener, or whose chunk would wait at the vocoder behind other streams' chunks (the server is busy,
and a small chunk would not arrive sooner), gets the largest chunk, which wastes least. A chunk never
ends within `first_frames` of its sentence's end (such a tail would cost a whole context for a few
frames).
"""

from __future__ import annotations

from dataclasses import dataclass

from serving.stream.vocoder import VOCODER_PLACES


class StreamPolicyError(ValueError):
    """Streaming settings that cannot work (deploy/targets/*.yaml)."""


@dataclass(frozen=True)
class StreamPolicy:
    first_frames: int  # mel frames of a request's first chunk
    max_frames: int  # the largest chunk (and the longest piece of silence)
    growth: float  # a later chunk holds this many times the audio the listener has buffered
    max_lead_s: float  # a stream makes no more audio while this far ahead of its listener (0: no bound)
    max_streams: int  # requests streamed at once; more are refused (overload is shed, not queued)
    vocoder: str  # where chunks are vocoded: serving.stream.vocoder.IN_PROCESS or VOCODER_MODEL

    def __post_init__(self):
        if not 1 <= self.first_frames <= self.max_frames:
            raise StreamPolicyError(f"chunk sizes need 1 <= first_frames ({self.first_frames}) <= max_frames "
                                   f"({self.max_frames})")
        if not self.growth > 0:
            raise StreamPolicyError(f"growth must be positive, not {self.growth}")
        if self.max_lead_s < 0:
            raise StreamPolicyError(f"max_lead_s must be 0 (no bound) or positive, not {self.max_lead_s}")
        if self.max_streams < 1:
            raise StreamPolicyError(f"max_streams must be at least 1, not {self.max_streams}")
        if self.vocoder not in VOCODER_PLACES:
            raise StreamPolicyError(f"vocoder must be one of {', '.join(VOCODER_PLACES)}, not {self.vocoder!r}")

    def frames(self, previous: int, buffered_frames: float, contended: bool, remaining: int) -> int:
        """The next chunk's frame count, given the request's previous chunk (0: this is its first), how
        many frames of audio the listener has buffered, whether other streams' chunks wait for the
        vocoder, and how many frames are left in the sentence."""
        if not previous:
            size = self.first_frames
        elif contended or buffered_frames <= 0:
            size = self.max_frames
        else:
            size = int(min(self.max_frames, max(previous, self.growth * buffered_frames)))
        return remaining if remaining - size < self.first_frames else size

    def ahead(self, buffered_s: float) -> bool:
        """True while a stream with this much audio buffered at its listener should wait."""
        return self.max_lead_s > 0 and buffered_s >= self.max_lead_s
