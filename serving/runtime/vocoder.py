"""HiFi-GAN on OpenVINO's CPU plugin, in FP32 or BF16: a list of mels in, a list of waveforms out.

The items run one at a time, each at its own length (or its bucket's, below), so an item's audio is
the same whatever it was batched with, bit for bit: in BF16 a padded batch would not give that
(oneDNN sums in another order for another length, and BF16 rounding between layers makes that
audible, results/precision.md), and on CPU a batch is no faster per second of audio anyway.

Buckets: OpenVINO prepares its kernels per input shape, and the first call at a new length costs
about half as much again as the call itself. A causal vocoder (right context 0) therefore runs each
mel zero-padded to a multiple of `bucket_frames` and cuts the audio back to frames x hop: exact, since
no sample depends on later frames, and a server sees a few dozen shapes instead of one per length. A
non-causal vocoder runs at the exact length (its last frames would see the padding).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serving.contract import BF16, FP32, MEL, META_HOP, META_N_MELS, META_RIGHT_CONTEXT
from serving.runtime.sessions import OV_BF16, OV_FP32, OpenVinoGraph

PRECISIONS = {FP32: OV_FP32, BF16: OV_BF16}


class VocoderInputError(ValueError):
    """A mel given to the vocoder has the wrong shape or values."""


class VocoderModelError(ValueError):
    """The vocoder ONNX file is not one written by export.onnx_vocoder."""


def checked_mel(index: int, mel: np.ndarray, n_mels: int) -> np.ndarray:
    """A mel [frames >= 1, n_mels] of finite values as float32, or VocoderInputError saying what is wrong."""
    mel = np.asarray(mel)
    if mel.ndim != 2 or mel.shape[1] != n_mels or mel.shape[0] < 1:
        raise VocoderInputError(f"mel {index} has shape {list(mel.shape)}: expected [frames >= 1, {n_mels}] (frames first)")
    if not np.isfinite(mel).all():
        raise VocoderInputError(f"mel {index} holds NaN or infinite values")
    return mel.astype(np.float32, copy=False)


def bucket_length(frames: int, bucket_frames: int) -> int:
    """`frames` rounded up to a multiple of `bucket_frames`."""
    return -(-frames // bucket_frames) * bucket_frames


def vocoder_metadata(path: str | Path, metadata: dict[str, str]) -> tuple[int, int, int]:
    """(hop length, mel bins, right context frames) from a vocoder graph's metadata."""
    missing = [key for key in (META_HOP, META_N_MELS, META_RIGHT_CONTEXT) if key not in metadata]
    if missing:
        raise VocoderModelError(
            f"{path} lacks the metadata {', '.join(missing)}: export it again (python -m export MODEL_DIR --out DIR)"
        )
    return int(metadata[META_HOP]), int(metadata[META_N_MELS]), int(metadata[META_RIGHT_CONTEXT])


class VocoderRuntime:
    def __init__(self, onnx_path: str | Path, precision: str = FP32, threads: int | None = None,
                 bucket_frames: int = 1):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown vocoder precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        if bucket_frames < 1:
            raise ValueError(f"bucket_frames must be at least 1, not {bucket_frames}")
        self.graph = OpenVinoGraph(onnx_path, threads, PRECISIONS[precision])
        self.hop_length, self.n_mels, right_context = vocoder_metadata(onnx_path, self.graph.metadata)
        self.bucket_frames = bucket_frames if right_context == 0 else 1
        self.precision = BF16 if self.graph.precision == OV_BF16 else FP32  # what the CPU really runs

    def vocode(self, mels: list[np.ndarray]) -> list[np.ndarray]:
        """mels: float32 [frames_i, n_mels] each -> float32 audio [frames_i * hop_length] each."""
        return [self._forward(checked_mel(i, mel, self.n_mels)) for i, mel in enumerate(mels)]

    def _forward(self, mel: np.ndarray) -> np.ndarray:
        frames = len(mel)
        padded = np.zeros((1, self.n_mels, bucket_length(frames, self.bucket_frames)), dtype=np.float32)
        padded[0, :, :frames] = mel.T
        (audio,) = self.graph.run({MEL.name: padded})
        return audio[0, 0, : frames * self.hop_length]
