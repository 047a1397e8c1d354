"""Acoustic step: every sentence row of every request in the dynamic batch through Sambert at once.

Each request is checked on its own (shapes, ids, voice, duration scale, pauses); then its sentences'
durations are predicted together with everyone else's, and a request whose audio would be longer than
serving.limits allows is refused before its sentences are decoded. A refused request fails alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serving.contract import ACOUSTIC, DURATION_SCALE, FRAMES, IDS, MEL, PAUSE, TOKENS, VOICE_INDEX, ExportConfig
from serving.limits import MAX_AUDIO_S, duration_scale_range, max_sentence_frames
from serving.runtime.acoustic import AcousticRuntime
from serving.runtime.sessions import RuntimeOptions
from serving.steps import RequestError, Tensors, checked

SCALE_TOLERANCE = 1e-6  # DURATION_SCALE is 1 / SPEED in float32


class AcousticStep:
    model = ACOUSTIC

    def __init__(self, config: ExportConfig, voices_dir: Path, options: RuntimeOptions = RuntimeOptions(),
                 max_frames: int | None = None):
        """voices_dir holds a folder of acoustic graphs per voice (an export directory, or acoustic/1 of a
        repository); max_frames bounds one sentence (default: serving.limits; a GPU engine's may be lower)."""
        self.audio = config.audio
        self.sizes = config.sizes()
        self.max_frames = max_frames or max_sentence_frames(config.audio.sample_rate, config.audio.hop_length)
        self.runtimes = [AcousticRuntime(Path(voices_dir) / name, options) for name in config.voice_names()]

    def process(self, requests: list[Tensors]) -> list[Tensors | RequestError]:
        results: list[Tensors | RequestError | None] = [None] * len(requests)
        rows: dict[int, list[tuple[int, int]]] = {}  # voice -> its (request, row) pairs
        for r, request in enumerate(requests):
            try:
                for s, voice in enumerate(self.check(request)):
                    rows.setdefault(voice, []).append((r, s))
            except RequestError as e:
                results[r] = e
        durations = {voice: self.runtimes[voice].predict_durations(
            [requests[r][IDS.name][s, : int(requests[r][TOKENS.name][s, 0])] for r, s in group],
            [float(requests[r][DURATION_SCALE.name][s, 0]) for r, s in group]) for voice, group in rows.items()}
        frames = {pair: count for voice, group in rows.items()
                  for pair, count in zip(group, durations[voice].frame_counts)}
        for r, request in enumerate(requests):
            if results[r] is None:
                try:
                    self.check_length(request, [frames[(r, s)] for s in range(len(request[TOKENS.name]))])
                except RequestError as e:
                    results[r] = e
        mels: dict[tuple[int, int], np.ndarray] = {}
        for voice, group in rows.items():
            kept = [i for i, (r, _) in enumerate(group) if results[r] is None]
            if kept:
                decoded = self.runtimes[voice].decode(durations[voice].select(kept))
                mels.update(zip([group[i] for i in kept], decoded))
        return [result if result is not None else self.pack([mels[(r, s)] for s in range(len(requests[r][TOKENS.name]))])
                for r, result in enumerate(results)]

    def check(self, request: Tensors) -> list[int]:
        """The request's inputs checked on their own; returns each sentence's voice index."""
        ids = checked(request, IDS, self.sizes)
        rows = len(ids)
        tokens = checked(request, TOKENS, self.sizes, rows)[:, 0]
        voices = checked(request, VOICE_INDEX, self.sizes, rows)[:, 0]
        scales = checked(request, DURATION_SCALE, self.sizes, rows)[:, 0]
        pauses = checked(request, PAUSE, self.sizes, rows)[:, 0]
        if ((voices < 0) | (voices >= len(self.runtimes))).any():
            raise RequestError(f"VOICE_INDEX must be 0 to {len(self.runtimes) - 1} (the voices of this export)")
        low, high = duration_scale_range()
        if not (np.isfinite(scales) & (scales >= low * (1 - SCALE_TOLERANCE)) & (scales <= high * (1 + SCALE_TOLERANCE))).all():
            raise RequestError(f"DURATION_SCALE must be {low:g} to {high:g} (1 / SPEED)")
        if not (np.isfinite(pauses) & (pauses >= 0) & (pauses <= MAX_AUDIO_S)).all():
            raise RequestError(f"PAUSE must be 0 to {MAX_AUDIO_S:g} seconds")
        for s, (count, voice) in enumerate(zip(tokens, voices)):
            runtime = self.runtimes[voice]
            if not 1 <= count <= min(ids.shape[1], runtime.max_len):
                raise RequestError(f"TOKENS of sentence {s} is {count}: it must be 1 to {min(ids.shape[1], runtime.max_len)}")
            row = ids[s, :count]
            if ((row < 0) | (row >= runtime.vocabulary_sizes)).any():
                raise RequestError(f"IDS of sentence {s} hold ids outside this voice's vocabulary: encode the text "
                                   "with the voice's own front end")
        return [int(v) for v in voices]

    def check_length(self, request: Tensors, frames: list[int]) -> None:
        """A request's audio, once its durations are known: no sentence longer than max_frames, and all of
        it, pauses included, at most MAX_AUDIO_S."""
        longest = max(frames)
        if longest > self.max_frames:
            raise RequestError(f"a sentence would be {longest} mel frames long, more than the {self.max_frames} this "
                               "server takes: raise SPEED or shorten the sentence")
        seconds = sum(frames) * self.audio.hop_length / self.audio.sample_rate + float(request[PAUSE.name].sum())
        if seconds > MAX_AUDIO_S:
            raise RequestError(f"the text would give {seconds:.0f} s of audio, more than {MAX_AUDIO_S:g} s: split it "
                               "into several requests or raise SPEED")

    def pack(self, mels: list[np.ndarray]) -> Tensors:
        """Each sentence's frames [frames, values] -> MEL [S, values, longest] (zero padded) and FRAMES [S, 1]."""
        frames = np.array([[len(m)] for m in mels], dtype=np.int32)
        batch = np.zeros((len(mels), self.sizes["frame_values"], max(1, int(frames.max()))), dtype=np.float32)
        for row, mel in enumerate(mels):
            batch[row, :, : len(mel)] = mel.T
        return {MEL.name: batch, FRAMES.name: frames}
