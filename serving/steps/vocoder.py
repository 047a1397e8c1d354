"""Vocoder step: every sentence's mel in the dynamic batch through HiFi-GAN, grouped by voice.

On CPU the step runs each voice's vocoder.onnx itself on OpenVINO (FP32 or BF16); on a GPU host it hands
bucketed batches to the TensorRT engine model. Either way it returns WAV [S, 1, F * hop] per request and
the join step trims each row to its own length. An NSF voice's rows first become the vocoder's mel and
source (serving.runtime.nsf.vocoder_input), with the noise of the row's NOISE_SEED.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serving.contract import (
    BF16,
    FP32,
    FRAMES,
    MEL,
    NOISE_SEED,
    TENSORRT,
    VOCODER,
    VOCODER_ONNX,
    VOICE_INDEX,
    WAV,
    ExportConfig,
)
from serving.runtime.nsf import SourceNoise, vocoder_input
from serving.runtime.sessions import RuntimeOptions
from serving.runtime.vocoder import VocoderRuntime
from serving.runtime.vocoder_engine import EngineCall, EngineVocoder
from serving.steps import RequestError, Tensors, checked, rows_by_voice

RUNTIMES = (FP32, BF16, TENSORRT)


class VocoderConfigurationError(ValueError):
    """The vocoder model's parameters ask for a runtime that cannot be built."""


class VocoderStep:
    model = VOCODER

    def __init__(self, config: ExportConfig, voices_dir: Path, options: RuntimeOptions = RuntimeOptions(),
                 runtime: str = FP32, engine: EngineCall | None = None, bucket_frames: int = 1):
        """voices_dir holds a folder per voice with its vocoder.onnx (CPU); `engine` is the engine model (GPU);
        each mel is padded to a multiple of `bucket_frames` where that is exact (serving.runtime.vocoder)."""
        self.hop = config.audio.hop_length
        self.sizes = config.sizes()
        voices = config.voice_names()
        self.nsf = [config.voices[name].nsf for name in voices]
        if runtime not in RUNTIMES:
            raise VocoderConfigurationError(f"unknown vocoder runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
        if runtime == TENSORRT:
            if engine is None:
                raise VocoderConfigurationError("the tensorrt vocoder runtime needs the engine model to call")
            # The GPU repository serves one engine, built from a vocoder every voice shares.
            self.runtimes = [EngineVocoder(engine, self.hop, config.audio.n_mels, bucket_frames,
                                           self.sizes["source_channels"])] * len(voices)
        else:
            self.runtimes = [VocoderRuntime(Path(voices_dir) / name / VOCODER_ONNX, runtime, options.intra_op_threads,
                                            bucket_frames, tuple(config.voices[name].vocoder_context_frames))
                             for name in voices]

    def process(self, requests: list[Tensors]) -> list[Tensors | RequestError]:
        results: list[Tensors | RequestError | None] = [None] * len(requests)
        for r, request in enumerate(requests):
            try:
                self.check(request)
            except RequestError as e:
                results[r] = e
        valid = [r for r, result in enumerate(results) if result is None]
        waves: dict[tuple[int, int], np.ndarray] = {}
        for voice, group in rows_by_voice([requests[r] for r in valid], len(self.runtimes)):
            pairs = [(valid[i], s) for i, s in group if requests[valid[i]][FRAMES.name][s, 0] > 0]
            frames = [requests[r][MEL.name][s, :, : int(requests[r][FRAMES.name][s, 0])].T for r, s in pairs]
            seeds = [int(requests[r][NOISE_SEED.name][s, 0]) for r, s in pairs]
            waves.update(zip(pairs, self.runtimes[voice].vocode(*self.vocoder_inputs(voice, frames, seeds))))
        for r in valid:
            mel, rows = requests[r][MEL.name], len(requests[r][FRAMES.name])
            batch = np.zeros((rows, 1, mel.shape[2] * self.hop), dtype=np.float32)
            for s in range(rows):
                wave = waves.get((r, s), batch[s, 0, :0])  # a sentence of no frames has no samples
                batch[s, 0, : len(wave)] = wave
            results[r] = {WAV.name: batch}
        return results

    def vocoder_inputs(self, voice: int, frames: list[np.ndarray], seeds: list[int]):
        """The vocoder's mels, and an NSF voice's sources (None otherwise), of a voice's sentences."""
        nsf = self.nsf[voice]
        if not nsf:
            return frames, None
        made = [vocoder_input(f, nsf, self.hop, SourceNoise(seed)) for f, seed in zip(frames, seeds)]
        return [mel for mel, _ in made], [source for _, source in made]

    def check(self, request: Tensors) -> None:
        mel = checked(request, MEL, self.sizes)
        frames = checked(request, FRAMES, self.sizes, len(mel))[:, 0]
        voices = checked(request, VOICE_INDEX, self.sizes, len(mel))[:, 0]
        if (checked(request, NOISE_SEED, self.sizes, len(mel)) < 0).any():
            raise RequestError("NOISE_SEED must be 0 or more")
        if ((voices < 0) | (voices >= len(self.runtimes))).any():
            raise RequestError(f"VOICE_INDEX must be 0 to {len(self.runtimes) - 1} (the voices of this export)")
        if ((frames < 0) | (frames > mel.shape[2])).any():
            raise RequestError(f"FRAMES must be 0 to {mel.shape[2]} (MEL's frame axis)")
        if not all(np.isfinite(mel[s, :, :count]).all() for s, count in enumerate(frames)):
            raise RequestError("MEL holds NaN or infinite values")
