"""Sambert on ONNX Runtime or OpenVINO: a batch of id sequences in, one mel per item out (no torch).

Runs the graphs written by export.onnx_acoustic the way models.reference runs the PyTorch model:

    encoder        once for the padded batch                                  (predict_durations)
    duration_step  once per phone, all items together; an item leaves the batch after its last phone
    (host)         log-durations -> frames per phone (KAN-TTS rounding) -> length regulation (a gather)
    decoder_memory once for the padded frames; each item keeps its own memory as a `Decoding` (begin)
    decoder_step   one step for any set of Decodings, each at its own step              (decode_step)
    postnet_fsmn   over a range of an item's decoder frames and the context around it  (postnet)
    postnet_lstm   over that range, from the LSTM state where the previous range ended

`decode` steps a batch's Decodings together until each has decoded its sentence and runs the postnet
over each whole sentence (`synthesize` is predict_durations, then decode: the durations are known, and
can be checked, before any decoding). Streaming synthesis (serving.stream) uses the same pieces: it steps
the Decodings of many requests together, one step per iteration, with requests joining and leaving
between steps, and runs the postnet over ranges of frames as soon as the decoder has passed their
context; the result is the same mel.

The decoder's attention is banded: step s sees only the last `band` cached steps and memory positions
[s, s + band]. So a Decoding keeps only that window of the key/value cache, and a step hands the graph
only the memory keys/values of that window (the graph's masks are relative to the window it is given),
which keeps the cost of a step independent of the sentence length. Items of a step may be at different
steps and have different bands: each one's cache is right-aligned in the batch's cache and its visible
part given as its x band, each one's memory window placed so that the batch's step index lands on its own.

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
    META_CONTEXT,
    META_MAX_LEN,
    META_OUTPUTS_PER_STEP,
    META_VOCABULARY_SIZES,
    POSTNET_FSMN,
    POSTNET_LSTM,
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


@dataclass(eq=False)
class Decoding:
    """One sentence on its way through the decoder (AcousticRuntime.begin, then decode_step per step)."""

    frames: int  # the sentence's mel frame count
    band: int  # its x and h attention band, in decoder steps
    memory: np.ndarray  # [steps, d_memory]
    memory_keys: np.ndarray  # [layers, heads, steps, d_head]
    memory_values: np.ndarray
    x_keys: np.ndarray  # [layers, heads, cached, d_head]: the last min(step, band) steps
    x_values: np.ndarray
    previous: np.ndarray  # [num_mels]: the last frame of the previous step (zeros before the first)
    output: np.ndarray  # [steps * r, num_mels] decoder frames, written step by step
    outputs_per_step: int  # r
    step: int = 0

    @property
    def steps(self) -> int:
        return len(self.memory)

    @property
    def done(self) -> bool:
        return self.step >= self.steps

    @property
    def decoded(self) -> int:
        """How many of the sentence's frames the decoder has made so far."""
        return min(self.frames, self.step * self.outputs_per_step)


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
        # A personal voice's encoder has no speaker input (its speaker embedding is in the graph).
        self.input_names = {name: set(graph.input_shapes) for name, graph in self.graphs.items()}
        encoder_meta = self._metadata(voice_dir, ENCODER, (META_MAX_LEN, META_VOCABULARY_SIZES))
        self.max_len = int(encoder_meta[META_MAX_LEN])
        sizes = json.loads(encoder_meta[META_VOCABULARY_SIZES])
        self.vocabulary_sizes = np.array([sizes[stream] for stream in STREAMS])  # in id column order
        self.r = int(self._metadata(voice_dir, DECODER_STEP, (META_OUTPUTS_PER_STEP,))[META_OUTPUTS_PER_STEP])
        # (earlier, later) decoder frames that one mel frame's FSMN features depend on
        self.postnet_context = tuple(json.loads(self._metadata(voice_dir, POSTNET_FSMN, (META_CONTEXT,))[META_CONTEXT]))
        # Everything else is in the graphs' fixed input dimensions.
        state = self._input_shape(DURATION_STEP, "h")  # [layers, batch, units]
        self.duration_state_shape = (state[0], state[2])
        cache = self._input_shape(DECODER_STEP, "x_keys")  # [layers, batch, heads, cache, d_head]
        self.decoder_layers, self.decoder_heads, self.decoder_head_dim = cache[0], cache[2], cache[4]
        self.num_mels = self._input_shape(DECODER_STEP, "previous_frame")[1]
        self.d_memory = self._input_shape(DECODER_STEP, "memory_step")[1]
        self.postnet_units = self._input_shape(POSTNET_LSTM, "h")[2]

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
        names = self.input_names[graph]
        return self.graphs[graph].run({k: np.ascontiguousarray(v) for k, v in feeds.items() if k in names})

    # -- the public calls ----------------------------------------------------------------------

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
        decodings = self.begin(durations)
        running = [d for d in decodings if not d.done]
        while running:
            self.decode_step(running)
            running = [d for d in running if not d.done]
        return [self.postnet(d, self.initial_postnet_state(), 0, d.frames)[0] for d in decodings]

    def begin(self, durations: Durations) -> list[Decoding]:
        """The decoder memory of items whose durations are known: each one's Decoding, at its first step."""
        frame_counts = durations.frame_counts
        steps = [-(-count // self.r) for count in frame_counts]
        if frame_counts and max(frame_counts) > 0:
            phone, positions, valid, _ = regulate_lengths(durations.frames_per_phone, self.r)
            memory, memory_keys, memory_values = self._run(
                DECODER_MEMORY,
                lr_text=_gather_frames(durations.text_aug, phone, valid),
                lr_speaker=_gather_frames(durations.speaker_hid, phone, valid),
                lr_emotion=_gather_frames(durations.emotion_hid, phone, valid),
                frame_positions=positions,
            )
        else:  # no items, or every duration rounded to 0 frames: nothing to decode
            memory = np.zeros((len(frame_counts), 0, self.d_memory), dtype=np.float32)
            memory_keys = memory_values = np.zeros(
                (self.decoder_layers, len(frame_counts), self.decoder_heads, 0, self.decoder_head_dim), dtype=np.float32)
        empty_cache = np.zeros((self.decoder_layers, self.decoder_heads, 0, self.decoder_head_dim), dtype=np.float32)
        return [
            Decoding(
                frames=frame_counts[b],
                band=int(durations.bands[b]),
                memory=memory[b, : steps[b]].copy(),
                memory_keys=np.ascontiguousarray(memory_keys[:, b, :, : steps[b]]),
                memory_values=np.ascontiguousarray(memory_values[:, b, :, : steps[b]]),
                x_keys=empty_cache,
                x_values=empty_cache,
                previous=np.zeros(self.num_mels, dtype=np.float32),
                output=np.zeros((steps[b] * self.r, self.num_mels), dtype=np.float32),
                outputs_per_step=self.r,
            )
            for b in range(len(frame_counts))
        ]

    def decode_step(self, items: list[Decoding]) -> None:
        """One decoder step (r frames) for each item, each at its own step; none may be done."""
        count = len(items)
        cached = [min(d.step, d.band) for d in items]
        cache = max(cached)
        # The window of memory positions a step may see: its own (at the cache length, the graph's step
        # index) and the widest band after it.
        window = cache + max(d.band for d in items) + 1
        shape = (self.decoder_layers, count, self.decoder_heads)
        x_keys = np.zeros((*shape, cache, self.decoder_head_dim), dtype=np.float32)
        x_values = np.zeros_like(x_keys)
        memory_keys = np.zeros((*shape, window, self.decoder_head_dim), dtype=np.float32)
        memory_values = np.zeros_like(memory_keys)
        memory_lengths = np.empty(count, dtype=np.int64)
        for i, d in enumerate(items):
            x_keys[:, i, :, cache - cached[i]:] = d.x_keys
            x_values[:, i, :, cache - cached[i]:] = d.x_values
            start = d.step - cache  # the memory position at window position 0 (may be before the first)
            lo, hi = max(0, start), min(d.steps, start + window)
            memory_keys[:, i, :, lo - start : hi - start] = d.memory_keys[:, :, lo:hi]
            memory_values[:, i, :, lo - start : hi - start] = d.memory_values[:, :, lo:hi]
            memory_lengths[i] = d.steps - start
        out, keys_out, values_out = self._run(
            DECODER_STEP,
            previous_frame=np.stack([d.previous for d in items]),
            memory_step=np.stack([d.memory[d.step] for d in items]),
            x_keys=x_keys,
            x_values=x_values,
            memory_keys=memory_keys,
            memory_values=memory_values,
            x_band=np.array(cached, dtype=np.int64),  # what each item's own band lets it see of the cache
            h_band=np.array([d.band for d in items], dtype=np.int64),
            memory_lengths=memory_lengths,
        )
        for i, d in enumerate(items):
            d.output[d.step * self.r : (d.step + 1) * self.r] = out[i].reshape(self.r, self.num_mels)
            d.previous = out[i, -self.num_mels :]
            # The next step sees the last `band` steps.
            first = cache + 1 - min(d.step + 1, d.band)
            d.x_keys = keys_out[:, i, :, first:].copy()
            d.x_values = values_out[:, i, :, first:].copy()
            d.step += 1

    def initial_postnet_state(self) -> tuple[np.ndarray, np.ndarray]:
        """The postnet LSTM's state (h, c) before a sentence's first frame."""
        zeros = np.zeros((1, 1, self.postnet_units), dtype=np.float32)
        return zeros, zeros

    def postnet(self, decoding: Decoding, state: tuple[np.ndarray, np.ndarray], start: int, end: int
                ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Mel frames start..end of a sentence [end - start, num_mels] and the LSTM state after them.

        `state` is the LSTM state after frame start - 1 (initial_postnet_state() at 0). The decoder
        must have made the frames up to min(frames, end + later context): the FSMN part runs over the
        range and the context on both sides, cut where the sentence is, so each frame sees what it
        sees when the postnet runs over the whole sentence at once.
        """
        if end <= start:
            return np.zeros((0, self.num_mels), dtype=np.float32), state
        earlier, later = self.postnet_context
        lo, hi = max(0, start - earlier), min(decoding.frames, end + later)
        if decoding.decoded < hi:
            raise ValueError(f"postnet frames {start}..{end} need decoder frames to {hi}, only {decoding.decoded} made")
        frames = decoding.output[None, lo:hi]
        (features,) = self._run(POSTNET_FSMN, decoder_frames=frames, frame_lengths=np.array([hi - lo], dtype=np.int64))
        mel, h, c = self._run(POSTNET_LSTM, features=features[:, start - lo : end - lo],
                              decoder_frames=frames[:, start - lo : end - lo], h=state[0], c=state[1])
        return mel[0], (h, c)

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

    # -- the duration loop ---------------------------------------------------------------------

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
