"""The acoustic ONNX graphs and serving.runtime.acoustic against the PyTorch reference, at full size.

Parity inputs are chosen away from rounding boundaries: a predicted duration d becomes
long(d * scale + 0.5) frames and the band int(max(d) / r + 0.5), so where d * scale + 0.5 (or
max(d) / r + 0.5) lies within float noise of an integer, a 1e-7 difference between ONNX Runtime and
PyTorch would legitimately change a frame count and the mel comparison would compare different
things. Candidate sentences whose values come within DURATION_MARGIN of such a boundary are
passed over (deterministically, from a seeded generator); on the chosen ones the frame counts and
bands must be exactly equal, then the mels must agree within MEL_TOLERANCE.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.onnx_acoustic import (
    EXAMPLE_BATCH,
    EXAMPLE_CACHE,
    EXAMPLE_PHONES,
    EXAMPLE_STEPS,
    GraphModule,
    acoustic_graphs,
    check_graph,
    example_inputs,
    export_acoustic,
)
from export.onnx_vocoder import export_vocoder, kan_vocoder_meta
from models.loader import load_voice
from models.reference import synthesize
from models.sambert import predict_log_durations
from serving.contract import ACOUSTIC_GRAPHS, VOCODER_ONNX
from serving.limits import MAX_SENTENCE_TOKENS
from serving.runtime.acoustic import AcousticInputError, AcousticRuntime
from serving.runtime.sessions import OPENVINO, RuntimeOptions
from serving.runtime.vocoder import VocoderRuntime
from serving.symbols import STREAMS

MEL_TOLERANCE = 1e-3
AUDIO_TOLERANCE = 1e-3
GRAPH_TOLERANCE = 1e-4
DURATION_MARGIN = 1e-3
SPECIAL_SYMBOLS = 3  # "_", "~" and "@[MASK]" end every table; text never holds them
BATCH_LENGTHS = (3, 17, 9, 24, 5, 12, 20, 14)  # eight different phone counts
BATCH_SCALES = (1.0, 0.8, 1.0, 1.25, 1.0, 1.5, 1.0, 0.9)


@pytest.fixture(scope="module")
def voice(full_model_dir):
    torch.set_num_threads(1)
    return load_voice(full_model_dir)


@pytest.fixture(scope="module")
def voice_dir(voice, tmp_path_factory):
    out = tmp_path_factory.mktemp("acoustic_export") / voice.name
    export_acoustic(voice.am, out, voice.vocabulary.sizes(), log=lambda line: None)
    return out


@pytest.fixture(scope="module")
def runtime(voice_dir):
    return AcousticRuntime(voice_dir, RuntimeOptions(intra_op_threads=1))


def boundary_distance(log_durations: np.ndarray, scale: float, r: int) -> float:
    """How far the values that get rounded are from flipping, in float64."""
    durations = (np.exp(log_durations.astype(np.float64)) - 1) * np.float64(np.float32(scale))
    rounded = np.concatenate([durations + 0.5, [durations.max() / r + 0.5]])
    return float(np.abs(rounded - np.round(rounded)).min())


def pick_sentences(voice, lengths, scales, seed: int = 0) -> list[np.ndarray]:
    """Random real-symbol ids [T, 6], one sentence per length, each at least DURATION_MARGIN from a
    rounding boundary by the PyTorch model's durations (candidates that are not are passed over)."""
    rng = np.random.default_rng(seed)
    sizes = voice.vocabulary.sizes()
    picked = []
    for length, scale in zip(lengths, scales):
        for _ in range(20):
            ids = np.stack([rng.integers(0, sizes[s] - SPECIAL_SYMBOLS, length) for s in STREAMS], 1)
            log_durations = torch_log_durations(voice.am, ids)
            if boundary_distance(log_durations, scale, voice.am.r) >= DURATION_MARGIN:
                picked.append(ids.astype(np.int64))
                break
        else:
            pytest.fail(f"no sentence of {length} phones clear of rounding boundaries in 20 tries")
    return picked


@torch.no_grad()
def torch_log_durations(model, ids: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(ids)[None]
    lengths = torch.tensor([len(ids)])
    duration_cond = model.encode(t[..., :4], t[..., 4], t[..., 5], lengths)[1]
    return predict_log_durations(model, duration_cond, lengths)[0].numpy()


def reference(voice, items: list[np.ndarray], scales) -> list:
    padded = np.zeros((len(items), max(len(i) for i in items), len(STREAMS)), dtype=np.int64)
    for b, item in enumerate(items):
        padded[b, : len(item)] = item
    lengths = [len(i) for i in items]
    return synthesize(voice.am, padded[..., :4], padded[..., 4], padded[..., 5], lengths, list(scales))


def check_parity(voice, runtime, items, scales) -> list[float]:
    expected = reference(voice, items, scales)
    for item, scale in zip(expected, scales):
        # The batched reference's own durations must be clear of boundaries too.
        assert boundary_distance(item.log_durations, scale, voice.am.r) >= DURATION_MARGIN / 2
    durations = runtime.predict_durations(items, list(scales))
    for frames, band, item in zip(durations.frames_per_phone, durations.bands, expected):
        np.testing.assert_array_equal(frames, item.frames_per_phone)
        assert band == item.band_width
    mels = runtime.synthesize(items, list(scales))
    diffs = []
    for mel, item in zip(mels, expected):
        assert mel.dtype == np.float32 and mel.shape == item.mel.shape
        diffs.append(float(np.abs(mel - item.mel).max()))
    print(f"mel max abs diff per request ({len(items)} in the batch): {', '.join(f'{d:.1e}' for d in diffs)}")
    assert max(diffs) <= MEL_TOLERANCE
    return diffs


def test_graphs_pass_checks_and_avoid_export_hazards(voice, voice_dir):
    assert sorted(p.name for p in voice_dir.iterdir()) == sorted(ACOUSTIC_GRAPHS)
    for graph in acoustic_graphs(voice.am):
        path = voice_dir / graph.file
        check_graph(path, graph)  # checker, strict shape inference, opset 17, dynamic axes kept
        proto = onnx.load(str(path))
        ops = {node.op_type for node in proto.graph.node}
        # In-place strided writes would show as scatters; Python control flow as Loop/If.
        assert not ops & {"ScatterND", "ScatterElements", "Loop", "If"}, (graph.file, ops)
        constants = [onnx.numpy_helper.to_array(t) for t in proto.graph.initializer]
        constants += [
            onnx.numpy_helper.to_array(a.t) for n in proto.graph.node if n.op_type == "Constant" for a in n.attribute
            if a.type == onnx.AttributeProto.TENSOR
        ]
        assert all(np.isfinite(c).all() for c in constants if c.dtype.kind == "f"), graph.file  # no -inf masks
        for lstm in (n for n in proto.graph.node if n.op_type == "LSTM"):
            assert len(lstm.input) < 5 or lstm.input[4] == "", "LSTM with sequence lengths (packing)"


@pytest.mark.parametrize("sizes", [dict(batch=5, phones=11, steps=8, cache=4), dict(batch=1, phones=2, steps=1, cache=0)])
def test_each_graph_follows_batch_and_time_sizes(voice, voice_dir, sizes):
    assert (sizes["batch"], sizes["phones"], sizes["steps"]) != (EXAMPLE_BATCH, EXAMPLE_PHONES, EXAMPLE_STEPS)
    assert sizes["cache"] != EXAMPLE_CACHE
    for graph in acoustic_graphs(voice.am):
        inputs = example_inputs(voice.am, graph, voice.vocabulary.sizes(), seed=7, **sizes)
        with torch.no_grad():
            expected = GraphModule(voice.am, graph)(*inputs)
        session = ort.InferenceSession(str(voice_dir / graph.file), providers=["CPUExecutionProvider"])
        got = session.run(None, {name: t.numpy() for name, t in zip(graph.inputs, inputs)})
        for name, g, e in zip(graph.outputs, got, expected):
            assert g.shape == tuple(e.shape), (graph.file, name)
            assert np.abs(g - e.numpy()).max() <= GRAPH_TOLERANCE, (graph.file, name)


def test_runtime_reads_its_numbers_from_the_graphs(voice, runtime):
    am = voice.am
    dec = am.mel_decoder.mel_dec
    assert (runtime.max_len, runtime.r, runtime.num_mels) == (am.max_phones, am.r, am.num_mels)
    assert runtime.max_len == MAX_SENTENCE_TOKENS > am.max_len  # the table regrown past the checkpoint's rows
    assert (runtime.decoder_layers, runtime.decoder_heads) == (len(dec.pnca), dec.n_heads)
    assert runtime.vocabulary_sizes.tolist() == [voice.vocabulary.sizes()[s] for s in STREAMS]


def test_parity_batch_of_one(voice, runtime):
    items = pick_sentences(voice, [15], [1.0], seed=1)
    check_parity(voice, runtime, items, [1.0])


def test_parity_batch_of_eight_different_lengths(voice, runtime):
    items = pick_sentences(voice, BATCH_LENGTHS, BATCH_SCALES, seed=2)
    check_parity(voice, runtime, items, BATCH_SCALES)
    # Alone, each item gives what it gives in the batch.
    alone = runtime.synthesize(items[:1], BATCH_SCALES[:1])[0]
    together = runtime.synthesize(items, list(BATCH_SCALES))[0]
    assert np.abs(alone - together).max() <= 1e-5


def test_parity_with_every_graph_on_openvino(voice, voice_dir):
    """The acoustic graphs on OpenVINO (FP32) give PyTorch's durations and mels, as on ONNX Runtime."""
    on_openvino = AcousticRuntime(voice_dir, RuntimeOptions(intra_op_threads=1,
                                                            backends={g: OPENVINO for g in ACOUSTIC_GRAPHS}))
    items = pick_sentences(voice, BATCH_LENGTHS, BATCH_SCALES, seed=4)
    check_parity(voice, on_openvino, items, BATCH_SCALES)


def test_waveform_parity_through_the_vocoder(voice, runtime, tmp_path):
    items = pick_sentences(voice, [10, 6], [1.0, 1.0], seed=3)
    vocoder_path = export_vocoder(voice.vocoder, tmp_path / VOCODER_ONNX, kan_vocoder_meta(voice.vocoder),
                                  log=lambda line: None)
    audio = VocoderRuntime(vocoder_path, threads=1).vocode(runtime.synthesize(items, [1.0, 1.0]))
    diffs = []
    for wave, item in zip(audio, reference(voice, items, [1.0, 1.0])):
        with torch.no_grad():
            expected = voice.vocoder(torch.from_numpy(item.mel.T[None]))[0, 0].numpy()
        assert wave.shape == expected.shape
        diffs.append(float(np.abs(wave - expected).max()))
    print(f"waveform max abs diff per request: {', '.join(f'{d:.1e}' for d in diffs)}")
    assert max(diffs) <= AUDIO_TOLERANCE


def test_runtime_refuses_what_the_model_cannot_take(runtime):
    ok = np.zeros((4, len(STREAMS)), dtype=np.int64)
    too_long = np.zeros((runtime.max_len + 1, len(STREAMS)), dtype=np.int64)
    with pytest.raises(AcousticInputError, match=f"at most|1 to {runtime.max_len}"):
        runtime.synthesize([ok, too_long], [1.0, 1.0])
    with pytest.raises(AcousticInputError, match="shape"):
        runtime.synthesize([ok[:, :4]], [1.0])
    bad_id = ok.copy()
    bad_id[2, 0] = runtime.vocabulary_sizes[0]
    with pytest.raises(AcousticInputError, match="column 0"):
        runtime.synthesize([bad_id], [1.0])
    with pytest.raises(AcousticInputError, match="one per sentence"):
        runtime.synthesize([ok, ok], [1.0])
    with pytest.raises(AcousticInputError, match="positive"):
        runtime.synthesize([ok], [0.0])
    assert runtime.synthesize([], []) == []


def test_postnet_graphs_record_the_fsmn_context(voice, runtime):
    assert runtime.postnet_context == voice.am.postnet_context_frames()
    p = voice.am.params
    left = round((p["postnet_filter_size"] - 1) / 2) + p["postnet_shift"]
    assert runtime.postnet_context == (p["postnet_fsmn_num_layers"] * left,
                                       p["postnet_fsmn_num_layers"] * (p["postnet_filter_size"] - 1 - left))


def test_items_at_different_steps_decode_as_they_do_alone(voice, runtime):
    """Streams join and leave the decoder between steps: each item's frames equal its frames decoded alone."""
    items = pick_sentences(voice, [14, 6, 21], [1.0, 1.3, 0.8], seed=4)
    scales = [1.0, 1.3, 0.8]
    alone = []
    for item, scale in zip(items, scales):
        (decoding,) = runtime.begin(runtime.predict_durations([item], [scale]))
        while not decoding.done:
            runtime.decode_step([decoding])
        alone.append(decoding.output)
    decodings = runtime.begin(runtime.predict_durations(items, scales))
    joins = [0, 3, 7]  # the step of the first item at which each item joins
    iteration = 0
    while not all(d.done for d in decodings):
        runtime.decode_step([d for d, join in zip(decodings, joins) if join <= iteration and not d.done])
        iteration += 1
    for decoding, expected in zip(decodings, alone):
        assert decoding.output.shape == expected.shape
        assert np.abs(decoding.output - expected).max() <= 1e-5


@pytest.mark.parametrize("ranges", [[5, 1, 40, 7], [1], [64]])
def test_postnet_over_ranges_equals_the_postnet_over_the_sentence(voice, runtime, ranges):
    """Frame ranges of any size, each from the LSTM state where the last ended, give the sentence's mel."""
    (item,) = pick_sentences(voice, [18], [1.0], seed=5)
    (decoding,) = runtime.begin(runtime.predict_durations([item], [1.0]))
    while not decoding.done:
        runtime.decode_step([decoding])
    (whole,) = runtime.synthesize([item], [1.0])
    pieces, state, start = [], runtime.initial_postnet_state(), 0
    while start < decoding.frames:
        end = min(decoding.frames, start + ranges[len(pieces) % len(ranges)])
        mel, state = runtime.postnet(decoding, state, start, end)
        pieces.append(mel)
        start = end
    assert np.abs(np.concatenate(pieces) - whole).max() <= 1e-5


def test_postnet_waits_for_its_later_context(voice, runtime):
    (item,) = pick_sentences(voice, [18], [1.0], seed=5)
    (decoding,) = runtime.begin(runtime.predict_durations([item], [1.0]))
    runtime.decode_step([decoding])  # r frames made; the first frame needs `later` more
    assert runtime.postnet_context[1] >= runtime.r
    with pytest.raises(ValueError, match="need decoder frames"):
        runtime.postnet(decoding, runtime.initial_postnet_state(), 0, 1)
