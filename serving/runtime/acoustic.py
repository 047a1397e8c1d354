"""Sambert on ONNX Runtime or OpenVINO: a batch of id sequences in, one mel per item out (no torch).

Runs the graphs written by export.onnx_acoustic the way models.reference runs the PyTorch model:

    encoder        once for the padded batch
    duration_step  once per phone, all items together; an item leaves the batch after its last phone
    (host)         log-durations -> frames per phone (KAN-TTS rounding) -> length regulation (a gather)
    decoder_memory once for the padded frames
    decoder_step   once per decoder step, all items together; an item leaves after its last step
    postnet        once for the padded batch; each mel is cut to its own frame count

Items are ordered longest first for each loop, so the items still running are always a prefix of the
batch. The decoder's attention is banded: a step sees only the last `band` cached steps and memory
positions [step, step + band]. So the runtime hands a step only that window of the key/value cache
and of the memory keys/values (the graph's masks are relative to the window it is given), which keeps
the cost of a step independent of the sentence length.

Each graph runs on the backend that RuntimeOptions.backends names for it (ONNX Runtime by default):
the decoder step is called once per step, so a backend's per-call overhead matters as much as its
kernels (deploy/targets/cpu.yaml, measured by `python -m bench.acoustic_backends`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.contract import (
    ACOUSTIC_GRAPHS,
    DECODER_MEMORY,
    DECODER_STEP,
    DURATION_STEP,
    ENCODER,
    META_MAX_LEN,
    META_OUTPUTS_PER_STEP,
    META_VOCABULARY_SIZES,
    POSTNET,
)
from serving.runtime.sessions import ONNXRUNTIME, RuntimeOptions, open_graph
from serving.symbols import STREAMS

ID_COLUMNS = len(STREAMS)  # sy, tone, syllable_flag, word_segment, emotion, speaker
LINGUISTIC_COLUMNS = 4  # the first four go to the encoder's `ids`, then emotion, then speaker


class AcousticInputError(ValueError):
    """A request the acoustic model cannot take (shape, ids, length, duration scale)."""


class AcousticModelError(ValueError):
    """The voice directory does not hold the graphs export.onnx_acoustic writes."""


def round_durations(log_durations: np.ndarray, scale: float, outputs_per_step: int) -> tuple[np.ndarray, int]:
    """One item's log(1 + frames) [phones] -> frames per phone int64 and its decoder band width.

    KAN-TTS: d = exp(log_dur) - 1 (times the duration scale), frames = long(d + 0.5),
    band = int(max(d) / r + 0.5) with the unrounded d; all in float32 like the PyTorch model.
    """
    durations = (np.exp(log_durations.astype(np.float32)) - np.float32(1)) * np.float32(scale)
    frames = (durations + np.float32(0.5)).astype(np.int64)
    band = int(durations.max() / np.float32(outputs_per_step) + np.float32(0.5))
    return frames, band


def regulate_lengths(frames_per_phone: list[np.ndarray], outputs_per_step: int) -> tuple[np.ndarray, ...]:
    """Frames per phone of each item -> phone index [B,F] int64, 1-based position of each frame in its
    phone [B,F] float32 (0 past the item's frames), valid [B,F] bool, frame counts [B] int64.

    F is the longest item's frame count rounded up to a multiple of outputs_per_step.
    """
    lengths = np.array([int(f.sum()) for f in frames_per_phone], dtype=np.int64)
    padded = -(-int(lengths.max()) // outputs_per_step) * outputs_per_step
    phone = np.zeros((len(frames_per_phone), padded), dtype=np.int64)
    positions = np.zeros((len(frames_per_phone), padded), dtype=np.float32)
    for b, frames in enumerate(frames_per_phone):
        phone[b, : lengths[b]] = np.repeat(np.arange(len(frames)), frames)
        starts = np.repeat(np.cumsum(frames) - frames, frames)
        positions[b, : lengths[b]] = np.arange(lengths[b]) - starts + 1
    valid = np.arange(padded)[None, :] < lengths[:, None]
    return phone, positions, valid, lengths


def _gather_frames(features: np.ndarray, phone: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-phone features [B,T,D] -> per-frame [B,F,D], zero past each item's frames."""
    picked = np.take_along_axis(features, phone[..., None], axis=1)
    return np.where(valid[..., None], picked, np.float32(0)).astype(np.float32)


@dataclass(frozen=True)
class Durations:
    """The encoder's and the duration loop's result for a batch of items: all that the decoder needs."""

    text_aug: np.ndarray  # float32 [B, T, d_text], padded phones
    speaker_hid: np.ndarray  # float32 [B, T, d_speaker]
    emotion_hid: np.ndarray  # float32 [B, T, d_emotion]
    frames_per_phone: list[np.ndarray]  # int64 [T_i] per item
    bands: np.ndarray  # int64 [B], each item's decoder band width

    @property
    def frame_counts(self) -> list[int]:
        return [int(frames.sum()) for frames in self.frames_per_phone]

    def select(self, items: list[int]) -> "Durations":
        """The durations of some items only (decoding them alone gives each the same mel)."""
        return Durations(self.text_aug[items], self.speaker_hid[items], self.emotion_hid[items],
                         [self.frames_per_phone[i] for i in items], self.bands[items])


class AcousticRuntime:
    """The acoustic graphs of one voice (DIR/<voice>/ of an export)."""

    def __init__(self, voice_dir: str | Path, options: RuntimeOptions = RuntimeOptions()):
        voice_dir = Path(voice_dir)
        missing = [name for name in ACOUSTIC_GRAPHS if not (voice_dir / name).is_file()]
        if missing:
            raise AcousticModelError(
                f"{voice_dir} lacks {', '.join(missing)}: export the model again (python -m export MODEL_DIR --out DIR)"
            )
        self.graphs = {name: open_graph(voice_dir / name, options.backends.get(name, ONNXRUNTIME), options)
                       for name in ACOUSTIC_GRAPHS}
        encoder_meta = self._metadata(voice_dir, ENCODER, (META_MAX_LEN, META_VOCABULARY_SIZES))
        self.max_len = int(encoder_meta[META_MAX_LEN])
        sizes = json.loads(encoder_meta[META_VOCABULARY_SIZES])
        self.vocabulary_sizes = np.array([sizes[stream] for stream in STREAMS])  # in id column order
        self.r = int(self._metadata(voice_dir, DECODER_STEP, (META_OUTPUTS_PER_STEP,))[META_OUTPUTS_PER_STEP])
        # Everything else is in the graphs' fixed input dimensions.
        state = self._input_shape(DURATION_STEP, "h")  # [layers, batch, units]
        self.duration_state_shape = (state[0], state[2])
        cache = self._input_shape(DECODER_STEP, "x_keys")  # [layers, batch, heads, cache, d_head]
        self.decoder_layers, self.decoder_heads, self.decoder_head_dim = cache[0], cache[2], cache[4]
        self.num_mels = self._input_shape(DECODER_STEP, "previous_frame")[1]

    def _metadata(self, voice_dir: Path, graph: str, keys: tuple[str, ...]) -> dict[str, str]:
        props = self.graphs[graph].metadata
        missing = [key for key in keys if key not in props]
        if missing:
            raise AcousticModelError(
                f"{voice_dir / graph} lacks the metadata {', '.join(missing)}: export the model again "
                "(python -m export MODEL_DIR --out DIR)"
            )
        return props

    def _input_shape(self, graph: str, name: str) -> list:
        return self.graphs[graph].input_shapes[name]

    def _run(self, graph: str, **feeds: np.ndarray) -> list[np.ndarray]:
        return self.graphs[graph].run({k: np.ascontiguousarray(v) for k, v in feeds.items()})

    # -- the public calls --------------------------------------------------------------------

    def synthesize(self, ids: list[np.ndarray], duration_scales: list[float]) -> list[np.ndarray]:
        """ids: int64 [T_i, 6] per item (columns as serving.symbols.STREAMS), duration_scales: one
        positive float per item (multiplies the predicted durations; 1.0 = the model's own speed).
        Returns each item's mel, float32 [frames_i, num_mels]."""
        return self.decode(self.predict_durations(ids, duration_scales))

    def predict_durations(self, ids: list[np.ndarray], duration_scales: list[float]) -> Durations:
        """The encoder and the duration loop: each item's frames per phone, before any decoding."""
        ids = [self._checked_ids(i, item) for i, item in enumerate(ids)]
        scales = self._checked_scales(duration_scales, len(ids))
        if not ids:
            empty = np.zeros((0, 0, 0), dtype=np.float32)
            return Durations(empty, empty, empty, [], np.zeros(0, dtype=np.int64))
        lengths = np.array([len(item) for item in ids], dtype=np.int64)
        padded = np.zeros((len(ids), int(lengths.max()), ID_COLUMNS), dtype=np.int64)
        for b, item in enumerate(ids):
            padded[b, : len(item)] = item
        text_aug, duration_cond, speaker_hid, emotion_hid = self._run(
            ENCODER,
            ids=padded[..., :LINGUISTIC_COLUMNS],
            emotion=padded[..., LINGUISTIC_COLUMNS],
            speaker=padded[..., LINGUISTIC_COLUMNS + 1],
            lengths=lengths,
        )
        log_durations = self._predict_log_durations(duration_cond, lengths)
        rounded = [round_durations(log_durations[b, : lengths[b]], scales[b], self.r) for b in range(len(ids))]
        return Durations(text_aug, speaker_hid, emotion_hid, [frames for frames, _ in rounded],
                         np.array([band for _, band in rounded], dtype=np.int64))

    def decode(self, durations: Durations) -> list[np.ndarray]:
        """The decoder and the postnet for items whose durations are known: each item's mel [frames_i, num_mels]."""
        frame_counts = durations.frame_counts
        if not frame_counts or max(frame_counts) == 0:
            return [np.zeros((0, self.num_mels), dtype=np.float32) for _ in frame_counts]
        phone, positions, valid, frame_lengths = regulate_lengths(durations.frames_per_phone, self.r)
        memory, memory_keys, memory_values = self._run(
            DECODER_MEMORY,
            lr_text=_gather_frames(durations.text_aug, phone, valid),
            lr_speaker=_gather_frames(durations.speaker_hid, phone, valid),
            lr_emotion=_gather_frames(durations.emotion_hid, phone, valid),
            frame_positions=positions,
        )
        decoder_frames = self._decode(memory, memory_keys, memory_values, -(-frame_lengths // self.r), durations.bands)
        (mel,) = self._run(POSTNET, decoder_frames=decoder_frames, frame_lengths=frame_lengths)
        return [mel[b, : frame_lengths[b]].copy() for b in range(len(frame_counts))]

    def _checked_ids(self, index: int, item: np.ndarray) -> np.ndarray:
        item = np.asarray(item)
        if item.ndim != 2 or item.shape[1] != ID_COLUMNS or not np.issubdtype(item.dtype, np.integer):
            raise AcousticInputError(
                f"ids {index} has shape {list(item.shape)} and dtype {item.dtype}: expected integer [tokens, {ID_COLUMNS}]"
            )
        if not 1 <= len(item) <= self.max_len:
            raise AcousticInputError(
                f"sentence {index} has {len(item)} tokens; the acoustic model takes 1 to {self.max_len} "
                "(its max_len): split the text into shorter sentences"
            )
        outside = (item < 0) | (item >= self.vocabulary_sizes)
        if outside.any():
            column = int(np.argwhere(outside)[0][1])
            raise AcousticInputError(
                f"ids {index} column {column} holds ids outside 0..{self.vocabulary_sizes[column] - 1}: "
                "encode the text with this voice's vocabulary"
            )
        return item.astype(np.int64, copy=False)

    @staticmethod
    def _checked_scales(duration_scales: list[float], count: int) -> np.ndarray:
        scales = np.asarray(duration_scales, dtype=np.float32).reshape(-1)
        if len(scales) != count:
            raise AcousticInputError(f"{len(scales)} duration scales for {count} sentences: give one per sentence")
        if not (np.isfinite(scales) & (scales > 0)).all():
            raise AcousticInputError("every duration scale must be a positive, finite number")
        return scales

    # -- the two loops -------------------------------------------------------------------------

    def _predict_log_durations(self, duration_cond: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """The duration predictor over phones: log(1 + frames) [B,T], 0 past each item's phones."""
        order = np.argsort(-lengths, kind="stable")  # longest first: running items are a prefix
        cond = duration_cond[order]
        sorted_lengths = lengths[order]
        batch, phones = cond.shape[:2]
        layers, units = self.duration_state_shape
        h = np.zeros((layers, batch, units), dtype=np.float32)
        c = np.zeros_like(h)
        previous = np.zeros(batch, dtype=np.float32)
        log_durations = np.zeros((batch, phones), dtype=np.float32)
        for i in range(phones):
            n = int((sorted_lengths > i).sum())
            previous, h, c = self._run(
                DURATION_STEP, previous_log_duration=previous[:n], cond=cond[:n, i], h=h[:, :n], c=c[:, :n]
            )
            log_durations[:n, i] = previous
        result = np.zeros_like(log_durations)
        result[order] = log_durations
        return result

    def _decode(
        self,
        memory: np.ndarray,
        memory_keys: np.ndarray,
        memory_values: np.ndarray,
        steps: np.ndarray,
        bands: np.ndarray,
    ) -> np.ndarray:
        """The PNCA decoder over steps: decoder frames [B, max steps * r, num_mels].

        steps [B]: each item's decoder steps (its memory length), bands [B]: its x and h band width.
        """
        order = np.argsort(-steps, kind="stable")  # longest first: running items are a prefix
        memory, steps, bands = memory[order], steps[order], bands[order]
        memory_keys, memory_values = memory_keys[:, order], memory_values[:, order]
        batch, total_steps = memory.shape[:2]
        frames = np.zeros((batch, total_steps, self.r * self.num_mels), dtype=np.float32)
        shape = (self.decoder_layers, batch, self.decoder_heads, 0, self.decoder_head_dim)
        x_keys, x_values = np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32)
        previous = np.zeros((batch, self.num_mels), dtype=np.float32)
        for s in range(int(steps.max())):
            n = int((steps > s).sum())
            widest = int(bands[:n].max())
            # The window starts where the cache starts, so the graph's step index (the cache length)
            # lands on memory position s; it ends at the widest band's last memory position.
            start = s - x_keys.shape[3]
            end = min(total_steps, s + widest + 1)
            out, x_keys, x_values = self._run(
                DECODER_STEP,
                previous_frame=previous[:n],
                memory_step=memory[:n, s],
                x_keys=x_keys[:, :n],
                x_values=x_values[:, :n],
                memory_keys=memory_keys[:, :n, :, start:end],
                memory_values=memory_values[:, :n, :, start:end],
                x_band=bands[:n],
                h_band=bands[:n],
                memory_lengths=steps[:n] - start,
            )
            frames[:n, s] = out
            previous = out[:, -self.num_mels :]
            # Step s+1 sees steps s+1-band .. s+1, so it needs the last `band` cached steps.
            keep = max(0, x_keys.shape[3] - widest)
            x_keys, x_values = x_keys[:, :, :, keep:], x_values[:, :, :, keep:]
        result = np.zeros_like(frames)
        result[order] = frames
        return result.reshape(batch, total_steps * self.r, self.num_mels)
