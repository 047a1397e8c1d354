"""Eager reference synthesis with `KanTtsSambert`: the KAN-TTS inference procedure, batched.

This is the ground truth the exported graphs are checked against. Every loop steps all items
together; each item keeps its own phone count, durations, band width and number of decoder
steps, and gets the same mel as when synthesised alone (which is what KAN-TTS computes).
`vocode` takes a mel on to audio as ModelScope's Voice does (an NSF voice's f0 de-normalised first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.loader import LoadedVoice
from models.sambert import (
    KanTtsSambert,
    SambertInputError,
    predict_log_durations,
    regulate_lengths,
    round_durations,
)
from serving.runtime.nsf import SourceNoise, denormalise


@dataclass(frozen=True)
class Synthesis:
    """One item's result."""

    mel: np.ndarray  # float32 [frames, num_mels]
    frames_per_phone: np.ndarray  # int64 [phones]; sums to the mel's frame count
    log_durations: np.ndarray  # float32 [phones], log(1 + predicted frames), before any scale
    band_width: int  # decoder x/h attention band, in decoder steps
    pitch: np.ndarray  # float32 [phones]
    energy: np.ndarray  # float32 [phones]


def _check_inputs(
    ids: torch.Tensor, emotion: torch.Tensor, speaker: torch.Tensor, lengths: torch.Tensor, scale: torch.Tensor
) -> None:
    if ids.ndim != 3 or ids.shape[2] != 4:
        raise SambertInputError(f"ids must be [batch, phones, 4], got {list(ids.shape)}")
    if emotion.shape != ids.shape[:2] or speaker.shape != ids.shape[:2]:
        raise SambertInputError("emotion and speaker must be [batch, phones], like ids without its last axis")
    if lengths.shape != ids.shape[:1]:
        raise SambertInputError(f"lengths must be [batch] = [{ids.shape[0]}], got {list(lengths.shape)}")
    if bool(((lengths < 1) | (lengths > ids.shape[1])).any()):
        raise SambertInputError(f"every length must be between 1 and {ids.shape[1]} phones")
    if scale.shape != lengths.shape or not bool((torch.isfinite(scale) & (scale > 0)).all()):
        raise SambertInputError("duration_scale must hold one positive, finite number per item")


@torch.no_grad()
def synthesize(
    model: KanTtsSambert,
    ids,
    emotion,
    speaker,
    lengths,
    duration_scale=None,
) -> list[Synthesis]:
    """Mel spectrograms of a padded batch.

    ids int [B,T,4] (sy, tone, syllable_flag, word_segment ids), emotion and speaker int [B,T],
    lengths int [B] (phones per item, without KAN-TTS's trailing "~"), duration_scale float [B]
    (default 1.0): multiplies each item's predicted durations before rounding.
    """
    model.eval()
    ids, emotion, speaker, lengths = (torch.as_tensor(t, dtype=torch.long) for t in (ids, emotion, speaker, lengths))
    scale = torch.ones(len(lengths)) if duration_scale is None else torch.as_tensor(duration_scale, dtype=torch.float32)
    scale = scale.reshape(-1)
    _check_inputs(ids, emotion, speaker, lengths, scale)
    batch = ids.shape[0]
    r = model.r

    text_aug, duration_cond, speaker_hid, emotion_hid, pitch, energy = model.encode(ids, emotion, speaker, lengths)

    log_durations = predict_log_durations(model, duration_cond, lengths)
    # A scale of 1.0 is exact (d * 1.0 == d), so the default is KAN-TTS's rounding unchanged.
    frames_per_phone, band = round_durations(log_durations, lengths, r, scale)

    lr_text, lr_speaker, lr_emotion, positions, frame_lengths = regulate_lengths(
        frames_per_phone, text_aug, speaker_hid, emotion_hid, r
    )
    memory, memory_keys, memory_values = model.decoder_memory(lr_text, lr_speaker, lr_emotion, positions)
    steps = memory.shape[1]
    memory_lengths = (frame_lengths + r - 1) // r

    # Autoregressive decoder, r frames a step; an item's steps past its own M are discarded.
    x_keys, x_values = model.empty_decoder_cache(batch)
    previous = torch.zeros(batch, model.num_mels)
    outputs = []
    for s in range(steps):
        frames, x_keys, x_values = model.decoder_step(
            previous, memory[:, s], x_keys, x_values, memory_keys, memory_values, band, band, memory_lengths
        )
        outputs.append(frames)
        previous = frames[:, -model.num_mels :]
    if outputs:
        mel = model.postnet(torch.stack(outputs, dim=1).reshape(batch, steps * r, model.num_mels), frame_lengths)
    else:  # every duration rounded to 0 frames (KAN-TTS fails here); the mels are empty
        mel = torch.zeros(batch, 0, model.num_mels)

    return [
        Synthesis(
            mel=mel[b, : frame_lengths[b]].numpy(),
            frames_per_phone=frames_per_phone[b, : lengths[b]].numpy(),
            log_durations=log_durations[b, : lengths[b]].numpy(),
            band_width=int(band[b]),
            pitch=pitch[b, : lengths[b]].numpy(),
            energy=energy[b, : lengths[b]].numpy(),
        )
        for b in range(batch)
    ]


def synthesize_mel(model: KanTtsSambert, ids, emotion, speaker, lengths, duration_scale=None) -> list[np.ndarray]:
    """Each item's mel [frames_i, num_mels], trimmed to its own length (see `synthesize`)."""
    return [item.mel for item in synthesize(model, ids, emotion, speaker, lengths, duration_scale)]


def vocoder_input(voice: LoadedVoice, mel: np.ndarray) -> np.ndarray:
    """The acoustic model's frames [frames, num_mels] -> what the vocoder takes: for an NSF voice the f0 in Hz
    and the voicing 0 or 1 (ModelScope's am_forward and vocoder_forward)."""
    return denormalise(mel, voice.voice.f0_norm) if voice.voice.nsf else mel


@torch.no_grad()
def vocode(voice: LoadedVoice, mel: np.ndarray, noise: SourceNoise | None = None) -> np.ndarray:
    """One sentence's acoustic frames [frames, num_mels] -> float32 audio [frames * hop]. An NSF voice's random
    source part comes from `noise` (default: unseeded, as ModelScope)."""
    frames = torch.from_numpy(np.ascontiguousarray(vocoder_input(voice, mel).T[None]))
    return voice.vocoder(frames, [noise] if noise else None)[0, 0].numpy()
