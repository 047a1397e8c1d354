"""HiFi-GAN on ONNX Runtime: a list of mels in, a list of waveforms out, each of its own length.

The items run one at a time. On CPU a batch is no faster per second of audio than a single item
(results/precision.md), while padding a batch to its longest item costs compute for the padding and
changes a non-causal vocoder's last frames of every shorter item. One at a time, a request's audio is
the same whatever it was batched with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serving.contract import META_HOP, META_N_MELS, META_SOURCE_CHANNELS, SOURCE, VOCODER_MEL
from serving.runtime.sessions import CPU, create_session, session_options


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


class VocoderRuntime:
    def __init__(self, onnx_path: str | Path, providers: list[str] | None = None, intra_op_threads: int | None = None):
        self.session = create_session(onnx_path, session_options(intra_op_threads), providers or [CPU])
        props = self.session.get_modelmeta().custom_metadata_map
        missing = [key for key in (META_HOP, META_N_MELS, META_SOURCE_CHANNELS) if key not in props]
        if missing:
            raise VocoderModelError(
                f"{onnx_path} lacks the metadata {', '.join(missing)}: export it again with python -m export.onnx_vocoder"
            )
        self.hop_length = int(props[META_HOP])
        self.n_mels = int(props[META_N_MELS])
        self.source_channels = int(props[META_SOURCE_CHANNELS])

    def vocode(self, mels: list[np.ndarray], sources: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """mels: float32 [frames_i, n_mels] each (an NSF vocoder: and sources [channels, frames_i * hop] each)
        -> float32 audio [frames_i * hop_length] each."""
        sources = checked_sources(mels, sources, self.source_channels, self.hop_length)
        return [self._forward(checked_mel(i, mel, self.n_mels), source)
                for i, (mel, source) in enumerate(zip(mels, sources))]

    def _forward(self, mel: np.ndarray, source: np.ndarray | None) -> np.ndarray:
        feeds = {VOCODER_MEL.name: np.ascontiguousarray(mel.T[None])}
        if source is not None:
            feeds[SOURCE.name] = np.ascontiguousarray(source[None], dtype=np.float32)
        (audio,) = self.session.run(None, feeds)
        return audio[0, 0]
