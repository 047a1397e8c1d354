"""How a stream's chunk reaches the vocoder: as a one-row request of the vocoder step (serving.contract.VOCODER).

Either place runs what the `vocoder` model runs, so a chunk's audio is the one the `tts` ensemble makes:
- IN_PROCESS (the CPU target): the streaming model runs the vocoder step itself, on the same files and
  runtime (FP32 or BF16) as the vocoder model, one step per vocoder thread (VOCODER_LANES; a compiled
  OpenVINO model runs one inference at a time). Its two vocoder threads can then work at once, so a
  request's first chunk never waits for another request's long chunk (results/stream/decisions.md).
- VOCODER_MODEL (the GPU target): a BLS request to the `vocoder` model, which hands it to the TensorRT
  engine (serving.stream.adapter.vocoder_model).
"""

from __future__ import annotations

import queue
from collections.abc import Callable

import numpy as np

from serving.contract import FRAMES, MEL, NOISE_SEED, VOICE_INDEX, WAV
from serving.steps import RequestError, Tensors
from serving.steps.vocoder import VocoderStep

Vocode = Callable[[int, np.ndarray, int], np.ndarray]  # voice index, mel [frames, frame values], noise seed -> audio
IN_PROCESS, VOCODER_MODEL = "in_process", "vocoder_model"
VOCODER_PLACES = (IN_PROCESS, VOCODER_MODEL)


def chunk_request(voice: int, mel: np.ndarray, noise_seed: int) -> Tensors:
    """The vocoder model's inputs for one mel [frames, frame values] of a voice (an NSF voice's with the seed of
    its sentence's noise)."""
    return {MEL.name: np.ascontiguousarray(mel.T[None], dtype=np.float32),
            FRAMES.name: np.array([[len(mel)]], dtype=np.int32),
            VOICE_INDEX.name: np.array([[voice]], dtype=np.int32),
            NOISE_SEED.name: np.array([[noise_seed]], dtype=np.int64)}


def in_process(steps: list[VocoderStep]) -> Vocode:
    """Chunks vocoded by whichever of `steps` is free (one per thread that vocodes at once)."""
    free = queue.SimpleQueue()
    for step in steps:
        free.put(step)

    def vocode(voice: int, mel: np.ndarray, noise_seed: int) -> np.ndarray:
        step = free.get()
        try:
            (result,) = step.process([chunk_request(voice, mel, noise_seed)])
        finally:
            free.put(step)
        if isinstance(result, RequestError):
            raise result
        return result[WAV.name][0, 0]

    return vocode
