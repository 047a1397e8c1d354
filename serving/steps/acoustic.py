"""Acoustic step: every sentence row of every request in the dynamic batch through Sambert at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serving.export_config import ExportConfig
from serving.runtime.acoustic import AcousticRuntime
from serving.steps import rows_by_voice


class AcousticStep:
    def __init__(self, config: ExportConfig, export_dir: Path, providers: list[str] | None = None,
                 intra_op_threads: int | None = None):
        self.n_mels = config.audio.n_mels
        self.runtimes = [AcousticRuntime(Path(export_dir) / name, providers, intra_op_threads)
                         for name in config.voice_names()]

    def process(self, requests: list[dict[str, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """requests: per request IDS [S,T,6], TOKENS [S,1], VOICE_INDEX [S,1], DURATION_SCALE [S,1].

        Returns per request (MEL float32 [S, n_mels, F_max], FRAMES int32 [S, 1]); rows are grouped by
        voice so each voice's sentences run as one batch.
        """
        mels: dict[tuple[int, int], np.ndarray] = {}
        for voice, group in rows_by_voice(requests, len(self.runtimes)):
            ids = [requests[r]["IDS"][s, : int(requests[r]["TOKENS"][s, 0])] for r, s in group]
            scales = [float(requests[r]["DURATION_SCALE"][s, 0]) for r, s in group]
            mels.update(zip(group, self.runtimes[voice].synthesize(ids, scales)))
        return [self.pack([mels[(r, s)] for s in range(len(request["TOKENS"]))])
                for r, request in enumerate(requests)]

    def pack(self, mels: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        frames = np.array([[len(m)] for m in mels], dtype=np.int32)
        batch = np.zeros((len(mels), self.n_mels, int(frames.max())), dtype=np.float32)
        for row, mel in enumerate(mels):
            batch[row, :, : len(mel)] = mel.T
        return batch, frames
