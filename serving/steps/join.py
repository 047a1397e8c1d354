"""Join step: trim each sentence's waveform to its own frames and join the sentences with their pauses."""

from __future__ import annotations

import numpy as np

from serving.contract import AUDIO, FRAMES, JOIN, PAUSE, SAMPLE_RATE, WAV, ExportConfig
from serving.limits import MAX_AUDIO_S
from serving.steps import RequestError, Tensors, checked


def pause_samples(pause_s: float, sample_rate: int) -> int:
    """How many samples of silence a pause between sentences is; the pause as the PAUSE tensor carries it (float32)."""
    return round(float(np.float32(pause_s)) * sample_rate)


def join_sentences(wav: np.ndarray, frames: np.ndarray, pause: np.ndarray, hop: int, sample_rate: int) -> np.ndarray:
    """wav [S, 1, L], frames [S, 1], pause [S, 1] seconds -> float32 [1, N] (no pause after the last)."""
    pieces = []
    for s in range(len(frames)):
        pieces.append(wav[s, 0, : int(frames[s, 0]) * hop])
        if s + 1 < len(frames):
            pieces.append(np.zeros(pause_samples(pause[s, 0], sample_rate), dtype=np.float32))
    return np.concatenate(pieces).astype(np.float32, copy=False)[None, :]


class JoinStep:
    model = JOIN

    def __init__(self, config: ExportConfig):
        self.hop, self.sample_rate = config.audio.hop_length, config.audio.sample_rate
        self.sizes = config.sizes()

    def process(self, requests: list[Tensors]) -> list[Tensors | RequestError]:
        results = []
        for request in requests:
            try:
                wav, frames, pause = self.check(request)
            except RequestError as e:
                results.append(e)
                continue
            results.append({AUDIO.name: join_sentences(wav, frames, pause, self.hop, self.sample_rate),
                            SAMPLE_RATE.name: np.array([[self.sample_rate]], dtype=np.int32)})
        return results

    def check(self, request: Tensors) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        wav = checked(request, WAV, self.sizes)
        frames = checked(request, FRAMES, self.sizes, len(wav))
        pause = checked(request, PAUSE, self.sizes, len(wav))
        if ((frames < 0) | (frames * self.hop > wav.shape[2])).any():
            raise RequestError(f"FRAMES x {self.hop} must fit WAV's {wav.shape[2]} samples")
        if not (np.isfinite(pause) & (pause >= 0)).all() or pause.sum() > MAX_AUDIO_S:
            raise RequestError(f"PAUSE must be 0 or more seconds, {MAX_AUDIO_S:g} s at most in all")
        return wav, frames, pause
