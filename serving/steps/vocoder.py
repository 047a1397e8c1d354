"""Vocoder step on CPU: every sentence's mel in the dynamic batch through HiFi-GAN, grouped by voice.

On a GPU host this step is Triton's tensorrt backend running the FP16 engine instead; both produce
WAV [S, 1, F * hop] per request and the audio step trims each row to its own length.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serving.export_config import ExportConfig
from serving.runtime.vocoder import VocoderRuntime


class VocoderStep:
    def __init__(self, config: ExportConfig, export_dir: Path, providers: list[str] | None = None,
                 intra_op_threads: int | None = None):
        self.hop = config.audio.hop_length
        self.runtimes = [VocoderRuntime(Path(export_dir) / name / "vocoder.onnx", providers, intra_op_threads)
                         for name in config.voice_names()]

    def process(self, requests: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """requests: per request MEL [S, n_mels, F], FRAMES [S, 1], VOICE_INDEX [S, 1] -> WAV [S, 1, F*hop]."""
        rows = [(r, s) for r, request in enumerate(requests) for s in range(len(request["FRAMES"]))]
        waves: dict[tuple[int, int], np.ndarray] = {}
        for voice, runtime in enumerate(self.runtimes):
            group = [(r, s) for r, s in rows if int(requests[r]["VOICE_INDEX"][s, 0]) == voice]
            if not group:
                continue
            mels = [requests[r]["MEL"][s, :, : int(requests[r]["FRAMES"][s, 0])].T for r, s in group]
            waves.update(zip(group, runtime.vocode(mels)))
        out = []
        for r, request in enumerate(requests):
            batch = np.zeros((len(request["FRAMES"]), 1, request["MEL"].shape[2] * self.hop), dtype=np.float32)
            for s in range(len(request["FRAMES"])):
                batch[s, 0, : len(waves[(r, s)])] = waves[(r, s)]
            out.append(batch)
        return out
