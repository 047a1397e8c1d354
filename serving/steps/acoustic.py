"""Acoustic step: every sentence row of every request in the dynamic batch through Sambert at once."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serving.contract import (
    ACOUSTIC,
    DURATION_SCALE,
    FRAMES,
    IDS,
    MEL,
    TOKENS,
    ExportConfig,
)
from serving.runtime.acoustic import AcousticRuntime
from serving.runtime.sessions import RuntimeOptions
from serving.steps import RequestError, Tensors, rows_by_voice


class AcousticStep:
    model = ACOUSTIC

    def __init__(self, config: ExportConfig, voices_dir: Path, options: RuntimeOptions = RuntimeOptions()):
        """voices_dir holds a folder of acoustic graphs per voice (an export directory, or acoustic/1 of a repository)."""
        self.n_mels = config.audio.n_mels
        self.runtimes = [AcousticRuntime(Path(voices_dir) / name, list(options.providers), options.intra_op_threads)
                         for name in config.voice_names()]

    def process(self, requests: list[Tensors]) -> list[Tensors | RequestError]:
        """Rows are grouped by voice so that each voice's sentences run as one batch."""
        mels: dict[tuple[int, int], np.ndarray] = {}
        for voice, group in rows_by_voice(requests, len(self.runtimes)):
            ids = [requests[r][IDS.name][s, : int(requests[r][TOKENS.name][s, 0])] for r, s in group]
            scales = [float(requests[r][DURATION_SCALE.name][s, 0]) for r, s in group]
            mels.update(zip(group, self.runtimes[voice].synthesize(ids, scales)))
        return [self.pack([mels[(r, s)] for s in range(len(request[TOKENS.name]))])
                for r, request in enumerate(requests)]

    def pack(self, mels: list[np.ndarray]) -> Tensors:
        """Each sentence's mel [frames, n_mels] -> MEL [S, n_mels, longest] (zero padded) and FRAMES [S, 1]."""
        frames = np.array([[len(m)] for m in mels], dtype=np.int32)
        batch = np.zeros((len(mels), self.n_mels, int(frames.max())), dtype=np.float32)
        for row, mel in enumerate(mels):
            batch[row, :, : len(mel)] = mel.T
        return {MEL.name: batch, FRAMES.name: frames}
