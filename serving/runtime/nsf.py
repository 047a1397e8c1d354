"""The host side of an NSF voice (numpy only): f0 and voicing from the acoustic model, the vocoder's source.

An NSF acoustic model ends each frame with two more values, the normalised f0 and the voicing. Between
the acoustic model and the vocoder, ModelScope (`voice.py` `denorm_f0`, `binarize`) turns them into f0 in
Hz and a 0/1 voicing (`denormalise`). The vocoder (KAN-TTS `Generator` with `nsf_params`) then builds a
source from them (`SourceModule`): per harmonic k = 1..H+1 a sine of phase 2 pi frac(sum of f0 k / rate)
plus Gaussian noise, in unvoiced samples the noise alone. `HarmonicSource` computes that source here,
exactly as KAN-TTS does on a CPU: the running sum accumulates in float64 and is rounded to float32 before
its fraction is taken (torch's CPU cumsum of float32), since a float32 running sum, or one taken mod 1,
moves the waveform audibly after a few seconds. The vocoder graph takes the source as an input, so no
engine has to compute a phase in its own precision.

KAN-TTS draws the random part (an initial phase per harmonic, none on the fundamental, and the noise)
unseeded from torch's global generator. `SourceNoise` draws it per utterance from its own generator,
seeded or not, in an order that lets an utterance be made in chunks (`HarmonicSource` keeps its sums
and its place in the noise from one call to the next) and that does not depend on what else is in a batch.
"""

from __future__ import annotations

import numpy as np

from serving.contract import F0Norm, NsfSpec

UV_THRESHOLD = np.float32(0.6)  # voiced where the voicing output is at least this (ModelScope's default)
F0_FLOOR = 30.0  # f0 below this many Hz is raised to it; unvoiced frames keep their f0 (ModelScope)
SOURCE_AMPLITUDE = np.float32(0.1)  # SourceModule's alpha: the voiced sines' amplitude
NOISE_STD = 0.003  # SourceModule's sigma
UNVOICED_GAIN = np.float32(0.1 / 3 / 0.003)  # alpha / 3 / sigma: unvoiced samples are this times the noise
TWO_PI = np.float32(2 * np.pi)
MAX_SEED = 2**63 - 1  # seeds are non-negative int64


def denormalise(frames: np.ndarray, norm: F0Norm) -> np.ndarray:
    """An NSF acoustic model's frames [T, n_mels + 2] -> the same with f0 in Hz and the voicing 0 or 1,
    float32 [T, n_mels + 2], what the vocoder takes (ModelScope's denorm_f0 then binarize).

    f0 = f0 * scale + shift in the normalisation's dtype (float64 for a float64 mvn.npy, as torch promotes
    a float32 tensor times a float64 array), raised to F0_FLOOR, then rounded to float32.
    """
    out = np.array(frames, dtype=np.float32)
    dtype = np.dtype(norm.dtype)
    f0 = out[:, -2].astype(dtype) * dtype.type(norm.scale) + dtype.type(norm.shift)
    f0[f0 < F0_FLOOR] = F0_FLOOR
    out[:, -2] = f0
    out[:, -1] = out[:, -1] >= UV_THRESHOLD
    return out


def sentence_seed(request_seed: int, sentence: int) -> int:
    """The noise seed of a request's sentence (a request's seed gives each sentence its own noise, the same
    whatever the sentence is batched or streamed with): a non-negative int64."""
    return int(np.random.SeedSequence([request_seed, sentence]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class SourceNoise:
    """The random part of one utterance's source: an initial phase per channel (0 on the fundamental), then
    noise of NOISE_STD for every sample and channel. `seed` None draws unseeded (as ModelScope does);
    `enabled` False gives no noise and no phases (the source's deterministic part alone).

    The noise is drawn sample by sample ([samples, channels]), so drawing an utterance in chunks gives what
    one draw gives."""

    def __init__(self, seed: int | None = None, enabled: bool = True):
        self.rng = np.random.default_rng(seed) if enabled else None

    def initial_phases(self, channels: int) -> np.ndarray:
        if self.rng is None:
            return np.zeros(channels, dtype=np.float32)
        phases = self.rng.uniform(-np.pi, np.pi, channels).astype(np.float32)
        phases[0] = 0.0
        return phases

    def noise(self, samples: int, channels: int) -> np.ndarray:
        """float32 [channels, samples], the next `samples` of the utterance."""
        if self.rng is None:
            return np.zeros((channels, samples), dtype=np.float32)
        return self.rng.normal(0.0, NOISE_STD, (samples, channels)).astype(np.float32).T


class HarmonicSource:
    """One utterance's source, made frame range by frame range: [channels = harmonics + 1, frames * hop].

    Calls continue where the last one ended: the float64 running sums (unreduced, so the result equals one
    call over the whole utterance bit for bit) and the noise carry over."""

    def __init__(self, harmonics: int, sample_rate: int, hop_length: int, noise: SourceNoise):
        self.channels = harmonics + 1
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.noise = noise
        self.phases = noise.initial_phases(self.channels)[:, None]
        self.sums = np.zeros((self.channels, 1), dtype=np.float64)

    def __call__(self, f0: np.ndarray, uv: np.ndarray) -> np.ndarray:
        """f0 in Hz and the 0/1 voicing, float32 [frames] each -> the source, float32 [channels, frames * hop]."""
        f0 = np.repeat(np.asarray(f0, dtype=np.float32), self.hop_length)
        uv = np.repeat(np.asarray(uv, dtype=np.float32), self.hop_length)
        harmonic = np.arange(1, self.channels + 1, dtype=np.float32)[:, None]
        # Two float32 roundings, as torch does pitch * (i + 1) / sampling_rate.
        step = f0[None, :] * harmonic / np.float32(self.sample_rate)
        sums = np.cumsum(np.concatenate([self.sums, step.astype(np.float64)], axis=1), axis=1)[:, 1:]
        if sums.shape[1]:
            self.sums = sums[:, -1:]
        rounded = sums.astype(np.float32)
        theta = TWO_PI * (rounded - np.floor(rounded))
        noise = self.noise.noise(len(f0), self.channels)
        voiced = SOURCE_AMPLITUDE * np.sin(theta + self.phases) + noise
        unvoiced = UNVOICED_GAIN * noise
        return (voiced * uv + unvoiced * (np.float32(1) - uv)).astype(np.float32, copy=False)


def vocoder_input(frames: np.ndarray, nsf: NsfSpec, hop_length: int, noise: SourceNoise) -> tuple[np.ndarray, np.ndarray]:
    """An NSF acoustic model's frames [T, n_mels + 2] of one utterance -> the vocoder graph's inputs: the mel
    [T, n_mels] and the source [harmonics + 1, T * hop]."""
    frames = denormalise(frames, nsf.f0_norm)
    source = HarmonicSource(nsf.harmonics, nsf.sample_rate, hop_length, noise)(frames[:, -2], frames[:, -1])
    return np.ascontiguousarray(frames[:, :-2]), source
