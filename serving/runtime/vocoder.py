"""HiFi-GAN on OpenVINO's CPU plugin, in FP32 or BF16: a list of mels in, a list of waveforms out.

The items run one at a time, each at its own length (or its bucket's, below), so an item's audio is
the same whatever it was batched with, bit for bit: in BF16 a padded batch would not give that
(oneDNN sums in another order for another length, and BF16 rounding between layers makes that
audible, results/precision.md), and on CPU a batch is no faster per second of audio anyway.

Shapes: OpenVINO prepares kernels and keeps buffers for every input shape it has run (about 75 MB for a
576-frame mel of the full-size 16 kHz vocoder, never released), and the first call at a new shape costs
about half as much again as the call itself. So the runtime runs few shapes. Given the vocoder's context
(the mel frames before and after a frame that its samples depend on, models.hifigan.context_frames), a mel
runs in pieces, each with its context around it, and their audio is joined: the same samples up to float
noise (what the streaming model does with its chunks).
- Windows of at most WINDOW_FRAMES frames, each zero-padded to a multiple of `bucket_frames`: exact,
  since a window's kept frames never reach the padding (their later context is real mel, or none for a
  causal vocoder). So a server sees at most (WINDOW_FRAMES + context) / bucket_frames shapes.
- A non-causal vocoder's last frames depend on the sentence's true end, where each layer pads by itself:
  they run in one piece of exactly TAIL_FRAMES + context frames ending at the end (one shape), or a
  sentence shorter than that whole, at its own length.

An NSF vocoder also takes each mel's source (SOURCE [harmonics + 1, frames x hop], made on the host by
serving.runtime.nsf.vocoder_input), padded and cut like its mel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serving.contract import (
    BF16,
    FP32,
    META_HOP,
    META_N_MELS,
    META_RIGHT_CONTEXT,
    META_SOURCE_CHANNELS,
    SOURCE,
    VOCODER_MEL,
)
from serving.runtime.sessions import OV_BF16, OV_FP32, OpenVinoGraph

PRECISIONS = {FP32: OV_FP32, BF16: OV_BF16}
WINDOW_FRAMES = 512  # 6.4 s at 16 kHz: the context costs 7 % more work on sentences longer than that
TAIL_FRAMES = 32  # frames a non-causal vocoder's end piece keeps beyond its later context


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


def checked_sources(mels: list[np.ndarray], sources: list[np.ndarray] | None, channels: int,
                    hop_length: int) -> list[np.ndarray | None]:
    """Each mel's source [channels, frames * hop] for an NSF vocoder (channels > 0), else None each."""
    if not channels:
        if sources is not None:
            raise VocoderInputError("this vocoder takes no source (it is not an NSF vocoder)")
        return [None] * len(mels)
    if sources is None or len(sources) != len(mels):
        raise VocoderInputError("an NSF vocoder needs one source per mel (serving.runtime.nsf.vocoder_input)")
    for i, (mel, source) in enumerate(zip(mels, sources)):
        if source.shape != (channels, len(mel) * hop_length):
            raise VocoderInputError(f"source {i} has shape {list(source.shape)}: expected "
                                    f"[{channels}, {len(mel)} frames x {hop_length}]")
    return list(sources)


def bucket_length(frames: int, bucket_frames: int) -> int:
    """`frames` rounded up to a multiple of `bucket_frames`."""
    return -(-frames // bucket_frames) * bucket_frames


def vocoder_metadata(path: str | Path, metadata: dict[str, str]) -> tuple[int, int, int, int]:
    """(hop length, mel bins, right context frames, source channels) from a vocoder graph's metadata."""
    keys = (META_HOP, META_N_MELS, META_RIGHT_CONTEXT, META_SOURCE_CHANNELS)
    missing = [key for key in keys if key not in metadata]
    if missing:
        raise VocoderModelError(
            f"{path} lacks the metadata {', '.join(missing)}: export it again (python -m export MODEL_DIR --out DIR)"
        )
    return tuple(int(metadata[key]) for key in keys)


class VocoderRuntime:
    def __init__(self, onnx_path: str | Path, precision: str = FP32, threads: int | None = None,
                 bucket_frames: int = 1, context: tuple[int, int] | None = None):
        """context: (earlier, later) mel frames a frame's samples depend on; None runs every mel whole."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown vocoder precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        if bucket_frames < 1:
            raise ValueError(f"bucket_frames must be at least 1, not {bucket_frames}")
        self.graph = OpenVinoGraph(onnx_path, threads, PRECISIONS[precision])
        self.hop_length, self.n_mels, self.right_context, self.source_channels = vocoder_metadata(
            onnx_path, self.graph.metadata)
        self.bucket_frames = bucket_frames
        self.precision = BF16 if self.graph.precision == OV_BF16 else FP32  # what the CPU really runs
        self.context = context

    def vocode(self, mels: list[np.ndarray], sources: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """mels: float32 [frames_i, n_mels] each (an NSF vocoder: and sources [channels, frames_i * hop] each)
        -> float32 audio [frames_i * hop_length] each."""
        mels = [checked_mel(i, mel, self.n_mels) for i, mel in enumerate(mels)]
        sources = checked_sources(mels, sources, self.source_channels, self.hop_length)
        return [self._windowed(mel, source) for mel, source in zip(mels, sources)]

    def _windowed(self, mel: np.ndarray, source: np.ndarray | None) -> np.ndarray:
        frames = len(mel)
        if self.context is None:  # whole: padded only where that is exact
            return self._forward(mel, source, padded=self.right_context == 0)
        right = self.context[1]
        tail_start = frames  # the first frame the end piece keeps
        if right:
            tail_start = max(0, frames - (TAIL_FRAMES + right))
        pieces = [self._piece(mel, source, start, min(tail_start, start + WINDOW_FRAMES), True)
                  for start in range(0, tail_start, WINDOW_FRAMES)]
        if tail_start < frames:
            pieces.append(self._piece(mel, source, tail_start, frames, False))
        return np.concatenate(pieces)

    def _piece(self, mel: np.ndarray, source: np.ndarray | None, start: int, end: int, padded: bool) -> np.ndarray:
        """The audio of frames start .. end, run with the context around them."""
        left, right = self.context
        hop, lo, hi = self.hop_length, max(0, start - left), min(len(mel), end + right)
        audio = self._forward(mel[lo:hi], None if source is None else source[:, lo * hop : hi * hop], padded)
        return audio[(start - lo) * hop : (end - lo) * hop]

    def _forward(self, mel: np.ndarray, source: np.ndarray | None, padded: bool) -> np.ndarray:
        frames = len(mel)
        length = bucket_length(frames, self.bucket_frames if padded else 1)
        batch = np.zeros((1, self.n_mels, length), dtype=np.float32)
        batch[0, :, :frames] = mel.T
        feeds = {VOCODER_MEL.name: batch}
        if source is not None:
            feeds[SOURCE.name] = np.zeros((1, self.source_channels, length * self.hop_length), dtype=np.float32)
            feeds[SOURCE.name][0, :, : source.shape[1]] = source
        (audio,) = self.graph.run(feeds)
        return audio[0, 0, : frames * self.hop_length]
