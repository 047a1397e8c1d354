"""HiFi-GAN on ONNX Runtime: a list of mels in, a list of waveforms out, each trimmed to its own length.

The items run as one batch padded to the longest. A causal vocoder's samples never see later frames,
so the padding cannot change an item's own samples. A non-causal vocoder's last
`right_context_frames` frames of each shorter item do see it; those tails are computed again from a
segment of the item alone (no padding after it, enough frames before it), so a batched item equals the
same item vocoded alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

FILE_NAME = "vocoder.onnx"  # in each voice folder of an export directory
INPUT_NAME = "mel"  # float32 [batch, n_mels, frames]
OUTPUT_NAME = "audio"  # float32 [batch, 1, frames * hop]
# metadata_props keys written by export.onnx_vocoder
META_HOP = "hop_length"
META_N_MELS = "n_mels"
META_RIGHT_CONTEXT = "right_context_frames"
# Frames before a recomputed tail, in units of the right context: only the transposed convolutions reach
# further left than right, by under 2 frames in total, so twice the right context is ample.
LEFT_CONTEXT_FACTOR = 2


class VocoderInputError(ValueError):
    """A mel given to the vocoder has the wrong shape or values."""


class VocoderModelError(ValueError):
    """The vocoder ONNX file is not one written by export.onnx_vocoder."""


class VocoderRuntime:
    def __init__(self, onnx_path: str | Path, providers: list[str] | None = None, intra_op_threads: int | None = None):
        options = ort.SessionOptions()
        # Memory patterns are planned and kept per input shape; batch and frame counts change with every
        # call, so the plans would pile up and the server's memory grow for as long as new shapes arrive.
        options.enable_mem_pattern = False
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=providers or ["CPUExecutionProvider"])
        props = self.session.get_modelmeta().custom_metadata_map
        missing = [key for key in (META_HOP, META_N_MELS, META_RIGHT_CONTEXT) if key not in props]
        if missing:
            raise VocoderModelError(
                f"{onnx_path} lacks the metadata {', '.join(missing)}: export it again with python -m export.onnx_vocoder"
            )
        self.hop_length = int(props[META_HOP])
        self.n_mels = int(props[META_N_MELS])
        self.right_context_frames = int(props[META_RIGHT_CONTEXT])

    def vocode(self, mels: list[np.ndarray]) -> list[np.ndarray]:
        """mels: float32 [frames_i, n_mels] each -> float32 audio [frames_i * hop_length] each."""
        mels = [self._checked(i, mel) for i, mel in enumerate(mels)]
        if not mels:
            return []
        audio = self._run(mels)
        if self.right_context_frames:
            self._redo_padded_tails(mels, audio)
        return audio

    def _checked(self, index: int, mel: np.ndarray) -> np.ndarray:
        mel = np.asarray(mel)
        if mel.ndim != 2 or mel.shape[1] != self.n_mels or mel.shape[0] < 1:
            raise VocoderInputError(
                f"mel {index} has shape {list(mel.shape)}: expected [frames >= 1, {self.n_mels}] (frames first)"
            )
        if not np.isfinite(mel).all():
            raise VocoderInputError(f"mel {index} holds NaN or infinite values")
        return mel.astype(np.float32, copy=False)

    def _run(self, mels: list[np.ndarray]) -> list[np.ndarray]:
        """One padded batch through the graph, each item's audio cut to its own frames."""
        longest = max(len(mel) for mel in mels)
        batch = np.zeros((len(mels), self.n_mels, longest), dtype=np.float32)
        for row, mel in enumerate(mels):
            batch[row, :, : len(mel)] = mel.T
        (audio,) = self.session.run(None, {INPUT_NAME: batch})
        return [audio[row, 0, : len(mel) * self.hop_length].copy() for row, mel in enumerate(mels)]

    def _redo_padded_tails(self, mels: list[np.ndarray], audio: list[np.ndarray]) -> None:
        """Recompute the samples of each shorter item that saw the padding, from a segment of that item alone."""
        right = self.right_context_frames
        segment_frames = right * (1 + LEFT_CONTEXT_FACTOR)
        longest = max(len(mel) for mel in mels)
        padded = [i for i, mel in enumerate(mels) if len(mel) < longest]
        # Segments of equal length run as one batch; an item no longer than a segment runs whole.
        by_length: dict[int, list[int]] = {}
        for i in padded:
            by_length.setdefault(min(len(mels[i]), segment_frames), []).append(i)
        for length, items in by_length.items():
            tails = self._run([mels[i][-length:] for i in items])
            for i, tail in zip(items, tails):
                kept = min(right, length) * self.hop_length
                audio[i][-kept:] = tail[-kept:]
