"""The GPU vocoder: a TensorRT engine served as its own Triton model, fed bucketed batches by the vocoder step.

An engine batch has one shape, and Triton's dynamic batcher only merges requests of equal shape. So each
sentence's mel is zero-padded to a multiple of `bucket_frames` (a deploy setting), the sentences that
share a padded length go to the engine together (split where the engine's profile allows fewer), and
each waveform is cut back to its own frames x hop (an NSF vocoder's sources are padded alike). Requests
from the vocoder model's instances with the same bucket can then be merged by the engine model's batcher.

Exactness: a causal vocoder's samples never depend on later frames, so the padding changes nothing. A
non-causal one's last `right_context_frames` frames see the padding instead of the zeros an unpadded
run sees; only those frames may differ (tests/test_vocoder_engine.py checks both).
The call into the engine model (BLS inside Triton) is injected, so this runs anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from serving.runtime.vocoder import bucket_length, checked_mel, checked_sources


@dataclass(frozen=True)
class EngineCall:
    """Runs MEL [batch, n_mels, frames] (and an NSF engine's SOURCE [batch, channels, frames * hop]) through
    the engine model -> WAV [batch, 1, frames * hop]."""

    infer: Callable[[np.ndarray, np.ndarray | None], np.ndarray]
    max_batch_size: int  # the engine's profile, from its metadata


class EngineVocoder:
    def __init__(self, engine: EngineCall, hop_length: int, n_mels: int, bucket_frames: int = 1,
                 source_channels: int = 0):
        if bucket_frames < 1:
            raise ValueError(f"bucket_frames must be at least 1, not {bucket_frames}")
        self.engine, self.hop_length, self.n_mels, self.bucket_frames = engine, hop_length, n_mels, bucket_frames
        self.source_channels = source_channels

    def vocode(self, mels: list[np.ndarray], sources: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """mels: float32 [frames_i, n_mels] each (an NSF engine: and sources [channels, frames_i * hop] each)
        -> float32 audio [frames_i * hop_length] each."""
        mels = [checked_mel(i, mel, self.n_mels) for i, mel in enumerate(mels)]
        sources = checked_sources(mels, sources, self.source_channels, self.hop_length)
        buckets: dict[int, list[int]] = {}
        for index, mel in enumerate(mels):
            buckets.setdefault(bucket_length(len(mel), self.bucket_frames), []).append(index)
        audio: list[np.ndarray | None] = [None] * len(mels)
        for length, indices in sorted(buckets.items()):
            for start in range(0, len(indices), self.engine.max_batch_size):
                part = indices[start : start + self.engine.max_batch_size]
                batch = np.zeros((len(part), self.n_mels, length), dtype=np.float32)
                source = np.zeros((len(part), self.source_channels, length * self.hop_length), dtype=np.float32)
                for row, index in enumerate(part):
                    batch[row, :, : len(mels[index])] = mels[index].T
                    if sources[index] is not None:
                        source[row, :, : sources[index].shape[1]] = sources[index]
                wav = self.engine.infer(batch, source if self.source_channels else None)
                for row, index in enumerate(part):
                    audio[index] = wav[row, 0, : len(mels[index]) * self.hop_length]
        return audio
