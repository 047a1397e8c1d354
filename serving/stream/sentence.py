"""One sentence of a stream: its decoder frames become mel frames and then vocoder windows, chunk by chunk.

A chunk is the mel frames [start, end) of the sentence. Its samples are exactly those of the sentence
vocoded at once when the vocoder gets the mel from `left` frames before it to `right` frames after it
(the vocoder's context, models.hifigan.context_frames), cut at the sentence's ends. Those mel frames in
turn are exactly the postnet's over the whole sentence once the decoder has made the frames up to the
postnet's own later context past them, and the postnet's LSTM goes on from where the last chunk left it
(serving.runtime.acoustic.AcousticRuntime.postnet). So a chunk can leave as soon as the decoder is
`right + postnet later context` frames past its end.

An NSF voice's sentence goes out as one chunk: its vocoder's source runs a phase and a noise over the
whole sentence (serving.runtime.nsf), which the vocoder step makes from the sentence's frames and its
noise seed, so a sentence vocoded at once is the audio `tts` makes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.runtime.acoustic import AcousticRuntime, Decoding


@dataclass(frozen=True)
class Window:
    """What the vocoder runs for one chunk: `mel` [frames, frame values] holds the chunk's frames from `skip` on,
    with the context around them; the chunk's audio is samples skip * hop .. (skip + frames) * hop. An NSF
    voice's noise comes from `noise_seed`."""

    mel: np.ndarray
    skip: int
    frames: int
    noise_seed: int


class SentenceAudio:
    def __init__(self, runtime: AcousticRuntime, decoding: Decoding, vocoder_context: tuple[int, int],
                 pause_s: float, last: bool, noise_seed: int, whole: bool):
        self.runtime = runtime
        self.noise_seed = noise_seed
        self.whole = whole  # one chunk: an NSF voice's sentence
        self.decoding = decoding
        self.left, self.right = vocoder_context
        self.pause_s = pause_s  # silence after the sentence (none after the request's last)
        self.last = last  # the request's last sentence
        self.mel = np.zeros((decoding.frames, runtime.num_mels), dtype=np.float32)
        self.made = 0  # mel frames the postnet has made
        self.state = runtime.initial_postnet_state()
        self.sent = 0  # mel frames handed to the vocoder

    @property
    def frames(self) -> int:
        return self.decoding.frames

    @property
    def finished(self) -> bool:
        return self.sent >= self.frames

    def needs_decoder(self, end: int) -> bool:
        """Whether the decoder must go on before the chunk that ends at `end` can leave."""
        mel_end = min(self.frames, end + self.right)
        return self.decoding.decoded < min(self.frames, mel_end + self.runtime.postnet_context[1])

    def take(self, end: int) -> Window:
        """The window of the next chunk, frames sent .. end (needs_decoder(end) must be False)."""
        mel_end = min(self.frames, end + self.right)
        if mel_end > self.made:
            self.mel[self.made : mel_end], self.state = self.runtime.postnet(self.decoding, self.state, self.made, mel_end)
            self.made = mel_end
        lo = max(0, self.sent - self.left)
        window = Window(self.mel[lo:mel_end].copy(), self.sent - lo, end - self.sent, self.noise_seed)
        self.sent = end
        return window
