"""Join step: trim each sentence's waveform to its own frames and join the sentences with their pauses."""

from __future__ import annotations

import numpy as np

from serving.contract import AUDIO, FRAMES, JOIN, PAUSE, SAMPLE_RATE, WAV, ExportConfig
from serving.steps import RequestError, Tensors


def join_sentences(wav: np.ndarray, frames: np.ndarray, pause: np.ndarray, hop: int, sample_rate: int) -> np.ndarray:
    """wav [S, 1, L], frames [S, 1], pause [S, 1] seconds -> float32 [1, N] (no pause after the last)."""
    pieces = []
    for s in range(len(frames)):
        pieces.append(wav[s, 0, : int(frames[s, 0]) * hop])
        if s + 1 < len(frames):
            pieces.append(np.zeros(int(round(float(pause[s, 0]) * sample_rate)), dtype=np.float32))
    return np.concatenate(pieces).astype(np.float32, copy=False)[None, :]


class JoinStep:
    model = JOIN

    def __init__(self, config: ExportConfig):
        self.hop, self.sample_rate = config.audio.hop_length, config.audio.sample_rate

    def process(self, requests: list[Tensors]) -> list[Tensors | RequestError]:
        return [{AUDIO.name: join_sentences(r[WAV.name], r[FRAMES.name], r[PAUSE.name], self.hop, self.sample_rate),
                 SAMPLE_RATE.name: np.array([[self.sample_rate]], dtype=np.int32)} for r in requests]
