"""The GPU vocoder: a TensorRT engine served as its own Triton model, fed padded batches by the vocoder step.

An engine takes one shape per batch, so the sentences of a batch are zero-padded to the longest (an NSF
vocoder's sources too) and each waveform is cut back to its own frames x hop; batches larger than the
engine's profile allows are split. The call into the engine model (BLS inside Triton) is injected, so
this runs anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from serving.runtime.vocoder import checked_mel, checked_sources


@dataclass(frozen=True)
class EngineCall:
    """Runs MEL [batch, n_mels, frames] (and an NSF engine's SOURCE [batch, channels, frames * hop]) through
    the engine model -> WAV [batch, 1, frames * hop]."""

    infer: Callable[[np.ndarray, np.ndarray | None], np.ndarray]
    max_batch_size: int  # the engine's profile, from its metadata


class EngineVocoder:
    def __init__(self, engine: EngineCall, hop_length: int, n_mels: int, source_channels: int = 0):
        self.engine, self.hop_length, self.n_mels = engine, hop_length, n_mels
        self.source_channels = source_channels

    def vocode(self, mels: list[np.ndarray], sources: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """mels: float32 [frames_i, n_mels] each (an NSF engine: and sources [channels, frames_i * hop] each)
        -> float32 audio [frames_i * hop_length] each."""
        mels = [checked_mel(i, mel, self.n_mels) for i, mel in enumerate(mels)]
        sources = checked_sources(mels, sources, self.source_channels, self.hop_length)
        audio = []
        for start in range(0, len(mels), self.engine.max_batch_size):
            part = range(start, min(start + self.engine.max_batch_size, len(mels)))
            frames = max(len(mels[i]) for i in part)
            batch = np.zeros((len(part), self.n_mels, frames), dtype=np.float32)
            source = np.zeros((len(part), self.source_channels, frames * self.hop_length), dtype=np.float32)
            for row, i in enumerate(part):
                batch[row, :, : len(mels[i])] = mels[i].T
                if sources[i] is not None:
                    source[row, :, : sources[i].shape[1]] = sources[i]
            wav = self.engine.infer(batch, source if self.source_channels else None)
            audio += [wav[row, 0, : len(mels[i]) * self.hop_length] for row, i in enumerate(part)]
        return audio
