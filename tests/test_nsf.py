"""serving.runtime.nsf: an NSF voice's source, made at once or in pieces, with its noise drawn per utterance."""

import numpy as np
import pytest

from serving.contract import F0Norm
from serving.runtime.nsf import HarmonicSource, SourceNoise, denormalise, sentence_seed

HOP, RATE, HARMONICS = 240, 24000, 7


def contour(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A voice-like f0 in Hz and a voicing that switches now and then."""
    rng = np.random.default_rng(seed)
    f0 = (180 + 60 * np.sin(np.arange(frames) / 30) + rng.normal(0, 5, frames)).astype(np.float32)
    uv = (np.arange(frames) % 40 < 28).astype(np.float32)
    return f0, uv


def make(noise: SourceNoise) -> HarmonicSource:
    return HarmonicSource(HARMONICS, RATE, HOP, noise)


def test_source_in_pieces_is_the_source_at_once_bit_for_bit():
    f0, uv = contour(500)
    whole = make(SourceNoise(3))(f0, uv)
    source = make(SourceNoise(3))
    pieces = [source(f0[a:b], uv[a:b]) for a, b in ((0, 1), (1, 77), (77, 78), (78, 400), (400, 500))]
    assert np.array_equal(np.concatenate(pieces, axis=1), whole)
    assert whole.shape == (HARMONICS + 1, 500 * HOP) and whole.dtype == np.float32


def test_phase_is_the_float64_sum_rounded_to_float32_not_a_float32_running_sum():
    f0, uv = contour(100 * 10)  # 10 s
    ones = np.ones_like(uv)
    ours = make(SourceNoise(enabled=False))(f0, ones)
    step = (np.repeat(f0, HOP)[None] * np.arange(1, HARMONICS + 2, dtype=np.float32)[:, None]) / np.float32(RATE)
    float64_sum = np.cumsum(step.astype(np.float64), axis=1).astype(np.float32)
    expected = np.float32(0.1) * np.sin(np.float32(2 * np.pi) * (float64_sum - np.floor(float64_sum)))
    assert np.abs(ours - expected).max() <= 1e-6
    float32_sum = np.cumsum(step, axis=1, dtype=np.float32)
    drifting = np.float32(0.1) * np.sin(np.float32(2 * np.pi) * (float32_sum - np.floor(float32_sum)))
    assert np.abs(ours - drifting).max() > 0.01  # why the sum must be float64


def test_noise_per_utterance_seeded_or_off():
    f0, uv = contour(50)
    a, b = make(SourceNoise(5))(f0, uv), make(SourceNoise(5))(f0, uv)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, make(SourceNoise(6))(f0, uv))
    assert not np.array_equal(make(SourceNoise())(f0, uv), make(SourceNoise())(f0, uv))  # unseeded, as ModelScope
    quiet = make(SourceNoise(enabled=False))(f0, uv)
    unvoiced = np.repeat(uv, HOP) == 0
    assert not quiet[:, unvoiced].any()  # unvoiced samples are noise alone
    phases = SourceNoise(5).initial_phases(HARMONICS + 1)
    assert phases[0] == 0 and (np.abs(phases[1:]) <= np.pi).all() and np.unique(phases).size == HARMONICS + 1


def test_sentence_seeds_differ_and_stay_put():
    seeds = [sentence_seed(7, s) for s in range(4)]
    assert len(set(seeds)) == 4 and all(0 <= s < 2**63 for s in seeds)
    assert seeds == [sentence_seed(7, s) for s in range(4)]
    assert sentence_seed(8, 0) not in seeds


@pytest.mark.parametrize("norm, dtype", [(F0Norm(scale=50.0, shift=200.0, dtype="float64"), np.float64),
                                         (F0Norm(scale=700.0, shift=30.0, dtype="float32"), np.float32)])
def test_denormalise_as_modelscope(norm, dtype):
    frames = np.random.default_rng(1).normal(0, 1, (300, 82)).astype(np.float32)
    frames[:, -1] = np.linspace(0, 1.2, 300)
    out = denormalise(frames, norm)
    f0 = frames[:, -2].astype(dtype) * dtype(norm.scale) + dtype(norm.shift)
    f0[f0 < 30] = 30
    assert np.array_equal(out[:, -2], f0.astype(np.float32))  # in the normalisation's dtype, then float32
    assert out[:, -2].min() >= 30
    assert np.array_equal(out[:, -1], (frames[:, -1] >= np.float32(0.6)).astype(np.float32))
    assert np.array_equal(out[:, :-2], frames[:, :-2])
