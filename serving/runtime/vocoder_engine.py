"""The GPU vocoder: a TensorRT engine served as its own Triton model, fed padded batches by the vocoder step.

An engine takes one shape per batch, so the sentences of a batch are zero-padded to the longest and
each waveform is cut back to its own frames x hop; batches larger than the engine's profile allows are
split. The call into the engine model (BLS inside Triton) is injected, so this runs anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from serving.runtime.vocoder import checked_mel


@dataclass(frozen=True)
class EngineCall:
    """Runs MEL [batch, n_mels, frames] through the engine model -> WAV [batch, 1, frames * hop]."""

    infer: Callable[[np.ndarray], np.ndarray]
    max_batch_size: int  # the engine's profile, from its metadata


class EngineVocoder:
    def __init__(self, engine: EngineCall, hop_length: int, n_mels: int):
        self.engine, self.hop_length, self.n_mels = engine, hop_length, n_mels

    def vocode(self, mels: list[np.ndarray]) -> list[np.ndarray]:
        """mels: float32 [frames_i, n_mels] each -> float32 audio [frames_i * hop_length] each."""
        mels = [checked_mel(i, mel, self.n_mels) for i, mel in enumerate(mels)]
        audio = []
        for start in range(0, len(mels), self.engine.max_batch_size):
            part = mels[start : start + self.engine.max_batch_size]
            batch = np.zeros((len(part), self.n_mels, max(len(m) for m in part)), dtype=np.float32)
            for row, mel in enumerate(part):
                batch[row, :, : len(mel)] = mel.T
            wav = self.engine.infer(batch)
            audio += [wav[row, 0, : len(mel) * self.hop_length] for row, mel in enumerate(part)]
        return audio
