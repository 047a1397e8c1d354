"""How a stream's chunk reaches the vocoder: as a one-row request of the vocoder model (serving.contract.VOCODER).

The streaming model calls the `vocoder` Triton model through BLS (serving.adapter.vocoder_model), so a
chunk runs on whatever the deployment serves (FP32 or BF16 on CPU, the TensorRT engine on a GPU host)
and its audio is the one the `tts` ensemble makes; `in_process` runs the same step in this process.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from serving.contract import FRAMES, MEL, VOICE_INDEX, WAV
from serving.steps import RequestError, Tensors
from serving.steps.vocoder import VocoderStep

Vocode = Callable[[int, np.ndarray], np.ndarray]  # voice index, mel [frames, n_mels] -> audio [frames * hop]


def chunk_request(voice: int, mel: np.ndarray) -> Tensors:
    """The vocoder model's inputs for one mel [frames, n_mels] of a voice."""
    return {MEL.name: np.ascontiguousarray(mel.T[None], dtype=np.float32),
            FRAMES.name: np.array([[len(mel)]], dtype=np.int32),
            VOICE_INDEX.name: np.array([[voice]], dtype=np.int32)}


def in_process(step: VocoderStep) -> Vocode:
    def vocode(voice: int, mel: np.ndarray) -> np.ndarray:
        (result,) = step.process([chunk_request(voice, mel)])
        if isinstance(result, RequestError):
            raise result
        return result[WAV.name][0, 0]

    return vocode
