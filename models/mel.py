"""Mel analysis for HiFi-GAN V1 (jik876 `meldataset.mel_spectrogram`), in numpy, without librosa.

The recipe: reflect-pad (n_fft - hop) / 2 on both sides, STFT without centring (periodic Hann window),
magnitude sqrt(re^2 + im^2 + 1e-9), Slaney mel filterbank, natural log of max(x, 1e-5).
One frame per `hop_length` samples. All sizes come from an AudioSettings.
"""

import numpy as np

from serving.contract import AudioSettings

MAGNITUDE_EPS = 1e-9  # added to re^2 + im^2 before the square root, as in training
LOG_FLOOR = 1e-5  # mel magnitudes are clamped to this before the log

# Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above.
_SLANEY_HZ_PER_MEL = 200.0 / 3.0
_SLANEY_BREAK_HZ = 1000.0
_SLANEY_BREAK_MEL = _SLANEY_BREAK_HZ / _SLANEY_HZ_PER_MEL
_SLANEY_LOG_STEP = np.log(6.4) / 27.0


class AudioInputError(ValueError):
    """Audio given to the mel analysis has the wrong shape."""


def hz_to_slaney_mel(hz: np.ndarray | float) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    log_part = _SLANEY_BREAK_MEL + np.log(np.maximum(hz, _SLANEY_BREAK_HZ) / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    return np.where(hz >= _SLANEY_BREAK_HZ, log_part, hz / _SLANEY_HZ_PER_MEL)


def slaney_mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_part = _SLANEY_BREAK_HZ * np.exp(_SLANEY_LOG_STEP * (np.maximum(mel, _SLANEY_BREAK_MEL) - _SLANEY_BREAK_MEL))
    return np.where(mel >= _SLANEY_BREAK_MEL, log_part, mel * _SLANEY_HZ_PER_MEL)


def slaney_mel_filterbank(sampling_rate: int, n_fft: int, num_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """float32 [num_mels, n_fft // 2 + 1], equal to librosa.filters.mel's default (Slaney scale and area norm).

    Band i is a triangle from edge i to edge i + 2 with its peak at edge i + 1, the edges equally
    spaced in mel; it is scaled by 2 / (its width in Hz) so that every band has unit area in Hz.
    """
    bin_hz = np.fft.rfftfreq(n_fft, 1.0 / sampling_rate)
    edges = slaney_mel_to_hz(np.linspace(hz_to_slaney_mel(fmin), hz_to_slaney_mel(fmax), num_mels + 2))
    widths = np.diff(edges)
    offsets = edges[:, None] - bin_hz[None, :]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    # Rounded to float32 before the area norm, in the same order as librosa.
    triangles = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    area_norm = 2.0 / (edges[2:] - edges[:-2])
    return (triangles * area_norm[:, None]).astype(np.float32)


def periodic_hann(win_size: int, n_fft: int) -> np.ndarray:
    """torch.hann_window(win_size) (periodic), zero-padded to n_fft and centred as torch.stft does."""
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_size) / win_size)
    left = (n_fft - win_size) // 2
    return np.pad(window, (left, n_fft - win_size - left))


def log_mel_spectrogram(audio: np.ndarray, config: AudioSettings) -> np.ndarray:
    """float audio [..., samples] in [-1, 1] -> float32 ln-mel [..., n_mels, samples // hop_length]."""
    audio = np.asarray(audio, dtype=np.float64)
    side = (config.n_fft - config.hop_length) // 2
    if audio.ndim == 0 or audio.shape[-1] <= side:
        raise AudioInputError(f"audio needs more than {side} samples on its last axis, got shape {audio.shape}")
    padded = np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(side, side)], mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, config.n_fft, axis=-1)[..., :: config.hop_length, :]
    spectrum = np.fft.rfft(frames * periodic_hann(config.win_length, config.n_fft), axis=-1)
    magnitude = np.sqrt(spectrum.real**2 + spectrum.imag**2 + MAGNITUDE_EPS)
    filterbank = slaney_mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)
    mel = np.swapaxes(magnitude @ filterbank.T.astype(np.float64), -1, -2)
    return np.log(np.maximum(mel, LOG_FLOOR)).astype(np.float32)


def log_mel_l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two ln-mel spectrograms of the same shape."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"log_mel_l1 needs equal shapes, got {a.shape} and {b.shape}")
    return float(np.mean(np.abs(a - b)))
