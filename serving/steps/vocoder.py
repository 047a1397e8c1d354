"""Vocoder step on CPU: every sentence's mel in the dynamic batch through HiFi-GAN, grouped by voice.

On a GPU host this step is Triton's tensorrt backend running the FP16 engine instead; both produce
WAV [S, 1, F * hop] per request and the audio step trims each row to its own length.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serving.export_config import ExportConfig
from serving.runtime.vocoder import FILE_NAME, VocoderRuntime
from serving.steps import rows_by_voice
from serving.vocoder_precision import BF16, BF16_FILE, FP32, PRECISIONS, PrecisionError


class VocoderStep:
    def __init__(self, config: ExportConfig, export_dir: Path, providers: list[str] | None = None,
                 intra_op_threads: int | None = None, precision: str = FP32):
        self.hop = config.audio.hop_length
        if precision not in PRECISIONS:
            raise PrecisionError(f"unknown vocoder precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        if precision == BF16:
            from serving.runtime.vocoder_torch import TorchVocoderRuntime  # torch: only where BF16 is chosen

            self.runtimes = [TorchVocoderRuntime(Path(export_dir) / name / BF16_FILE, intra_op_threads)
                             for name in config.voice_names()]
        else:
            self.runtimes = [VocoderRuntime(Path(export_dir) / name / FILE_NAME, providers, intra_op_threads)
                             for name in config.voice_names()]

    def process(self, requests: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """requests: per request MEL [S, n_mels, F], FRAMES [S, 1], VOICE_INDEX [S, 1] -> WAV [S, 1, F*hop]."""
        waves: dict[tuple[int, int], np.ndarray] = {}
        for voice, group in rows_by_voice(requests, len(self.runtimes)):
            mels = [requests[r]["MEL"][s, :, : int(requests[r]["FRAMES"][s, 0])].T for r, s in group]
            waves.update(zip(group, self.runtimes[voice].vocode(mels)))
        out = []
        for r, request in enumerate(requests):
            batch = np.zeros((len(request["FRAMES"]), 1, request["MEL"].shape[2] * self.hop), dtype=np.float32)
            for s in range(len(request["FRAMES"])):
                batch[s, 0, : len(waves[(r, s)])] = waves[(r, s)]
            out.append(batch)
        return out
