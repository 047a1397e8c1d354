"""Vocoder ONNX export and its CPU runtime (OpenVINO): a clean valid graph, parity with PyTorch on OpenVINO and
ONNX Runtime (the FP16 TensorRT path starts from the same graph), batched == single."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

from export.fp16_check import random_mels
from export.onnx_vocoder import (
    check_vocoder_onnx,
    export_vocoder,
    fold_pads_into_convs,
    kan_vocoder_meta,
    measure_right_context_frames,
)
from models.fixtures import voc_config
from models.hifigan import KanHifiGanGenerator
from models.loader import load_vocoder
from models.model_dir import ModelDir
from serving.contract import VOCODER_ONNX
from serving.runtime.vocoder import WINDOW_FRAMES, VocoderInputError, VocoderModelError, VocoderRuntime


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One thread: on the shared 2-core CI machine two spinning threads per process slow everything down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

PARITY_TOLERANCE = 1e-3
BATCH_8_FRAMES = [37, 11, 24, 3, 30, 17, 6, 26]  # 154 frames, unequal so the batch is padded


@torch.no_grad()
def torch_vocode(vocoder: torch.nn.Module, mels: list[np.ndarray]) -> list[np.ndarray]:
    return [vocoder(torch.from_numpy(mel.T[None]))[0, 0].numpy() for mel in mels]


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert [len(x) for x in a] == [len(y) for y in b]
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def export_model_dir_vocoder(model_dir: Path, out: Path) -> tuple[torch.nn.Module, Path]:
    spec = ModelDir(model_dir).voice()
    vocoder = load_vocoder(spec)
    return vocoder, export_vocoder(vocoder, out / spec.name / VOCODER_ONNX, kan_vocoder_meta(vocoder), log=lambda _: None)


def generator_16k(causal: bool, seed: int = 0) -> KanHifiGanGenerator:
    """A full-size 16 kHz generator (causal or the non-causal variant) with seeded random weights."""
    torch.manual_seed(seed)
    vocoder = KanHifiGanGenerator(**voc_config("full", causal)["Model"]["Generator"]["params"])
    vocoder.remove_weight_norm()
    return vocoder.eval()


@pytest.fixture(scope="module")
def full_causal(full_model_dir: Path, tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    return export_model_dir_vocoder(full_model_dir, tmp_path_factory.mktemp("full_causal"))


@pytest.fixture(scope="module")
def full_noncausal(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    vocoder = generator_16k(causal=False)
    path = tmp_path_factory.mktemp("full_noncausal") / VOCODER_ONNX
    return vocoder, export_vocoder(vocoder, path, kan_vocoder_meta(vocoder), log=lambda _: None)


def test_tiny_fixture_vocoder_exports_a_valid_graph(tiny_model_dir: Path, tmp_path: Path):
    vocoder, path = export_model_dir_vocoder(tiny_model_dir, tmp_path)
    model = check_vocoder_onnx(path)
    assert model.opset_import[0].version == 17
    mel_dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    audio_dims = [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert mel_dims == ["batch", 80, "frames"]
    assert audio_dims[:2] == ["batch", 1]
    assert not any(init.name.endswith(("weight_g", "weight_v")) for init in model.graph.initializer)
    runtime = VocoderRuntime(path, threads=1)
    assert (runtime.hop_length, runtime.n_mels) == (200, 80)
    mels = random_mels(80, [5, 11], seed=1)
    assert max_diff(runtime.vocode(mels), torch_vocode(vocoder, mels)) < PARITY_TOLERANCE


def test_full_fixture_vocoder_graph_is_clean(full_causal, full_noncausal):
    """No Resize (the repeat upsampling is Unsqueeze -> Expand -> Reshape), no Pad (folded into the convs),
    no shape arithmetic: the convolutions and the element-wise ops between them."""
    for _, path in (full_causal, full_noncausal):
        model = check_vocoder_onnx(path)
        ops = [node.op_type for node in model.graph.node]
        assert {"Resize", "Pad", "Shape", "Gather", "Concat", "ConstantOfShape", "Constant"}.isdisjoint(ops)
        assert ops.count("Conv") == 102 and ops.count("ConvTranspose") == 4
        assert ops.count("Expand") == ops.count("Reshape") == 4 and len(ops) < 320
    causal = onnx.load(str(full_causal[1]))
    pre = next(node for node in causal.graph.node if node.op_type == "Conv")  # conv_pre: kernel 7, causal
    assert next(a.ints for a in pre.attribute if a.name == "pads") == [6, 0]


def conv_after_pad(pads: list[int], value: float = 0.0, mode: str = "constant") -> onnx.ModelProto:
    """x [1, 2, 5] -> Pad -> Conv (kernel 3, its own pads [1, 1]) -> y."""
    weight = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(2, 2, 3) / 10, "w")
    nodes = [helper.make_node("Pad", ["x", "pads", "value"], ["padded"], mode=mode),
             helper.make_node("Conv", ["padded", "w"], ["y"], pads=[1, 1])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 5])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [weight, numpy_helper.from_array(np.array(pads, dtype=np.int64), "pads"),
         numpy_helper.from_array(np.array(value, dtype=np.float32), "value")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run_graph(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_pad_folding_is_exact_and_only_where_it_is_exact():
    x = np.random.default_rng(0).standard_normal((1, 2, 5)).astype(np.float32)
    model = conv_after_pad([0, 0, 4, 0, 0, 2])
    expected = run_graph(model, x)
    assert fold_pads_into_convs(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv"]
    assert next(a.ints for a in model.graph.node[0].attribute if a.name == "pads") == [5, 3]
    np.testing.assert_array_equal(run_graph(model, x), expected)
    # A non-zero value, another mode or padded channels are not what a Conv's own padding does.
    for kept in (conv_after_pad([0, 0, 4, 0, 0, 2], value=1.0), conv_after_pad([0, 0, 4, 0, 0, 2], mode="reflect"),
                 conv_after_pad([0, 1, 4, 0, 0, 2])):
        assert fold_pads_into_convs(kept) == 0 and len(kept.graph.node) == 2


def test_full_causal_parity_batch_1_and_8(full_causal):
    vocoder, path = full_causal
    runtime = VocoderRuntime(path, threads=1)
    single = random_mels(80, [96], seed=2)
    assert max_diff(runtime.vocode(single), torch_vocode(vocoder, single)) < PARITY_TOLERANCE
    batch = random_mels(80, BATCH_8_FRAMES, seed=3)
    audio = runtime.vocode(batch)
    assert [len(a) for a in audio] == [n * 200 for n in BATCH_8_FRAMES]
    assert max_diff(audio, torch_vocode(vocoder, batch)) < PARITY_TOLERANCE


@pytest.mark.parametrize("fixture", ["full_causal", "full_noncausal"])
def test_onnx_runtime_padded_batch_parity(fixture, request):
    """The graph itself (what the TensorRT engine is built from) on ONNX Runtime, as one padded batch: every
    item's samples outside the right context of its end equal PyTorch's."""
    vocoder, path = request.getfixturevalue(fixture)
    context = vocoder.right_context_frames()
    frames = [n + context for n in BATCH_8_FRAMES]  # each longer than the right context
    mels = random_mels(80, frames, seed=6)
    batch = np.zeros((len(mels), 80, max(frames)), dtype=np.float32)
    for row, mel in enumerate(mels):
        batch[row, :, : len(mel)] = mel.T
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (audio,) = session.run(None, {"MEL": batch})
    kept = [(n - context) * vocoder.hop_length for n in frames]
    expected = torch_vocode(vocoder, mels)
    assert max_diff([audio[row, 0, :n] for row, n in enumerate(kept)], [e[:n] for e, n in zip(expected, kept)]) \
        < PARITY_TOLERANCE


def test_causal_buckets_are_exact(full_causal):
    """A causal vocoder runs each mel padded to its bucket: the audio is what an exact-length run gives."""
    _, path = full_causal
    exact, bucketed = VocoderRuntime(path, threads=1), VocoderRuntime(path, threads=1, bucket_frames=16)
    assert bucketed.bucket_frames == 16
    mels = random_mels(80, [37, 11, 32], seed=7)
    assert max_diff(bucketed.vocode(mels), exact.vocode(mels)) < 1e-5


def test_noncausal_items_of_a_list_equal_each_alone(full_noncausal):
    """A non-causal vocoder's last frames would see a padded batch's padding: items run one at a time, and
    without the vocoder's context (to cut them in pieces) each at its own length, whatever the buckets."""
    vocoder, path = full_noncausal
    runtime = VocoderRuntime(path, threads=1, bucket_frames=16)
    mels = random_mels(80, BATCH_8_FRAMES, seed=5)
    together = runtime.vocode(mels)
    assert max_diff(together, [runtime.vocode([mel])[0] for mel in mels]) == 0
    assert max_diff(together, torch_vocode(vocoder, mels)) < PARITY_TOLERANCE


def test_right_context_bound_covers_the_measured_reach(full_causal, full_noncausal):
    noncausal, _ = full_noncausal
    measured = measure_right_context_frames(noncausal, 80, noncausal.hop_length, frames=40)
    assert 0 < measured <= noncausal.right_context_frames()
    causal, _ = full_causal
    assert measure_right_context_frames(causal, 80, causal.hop_length, frames=40) == 0


@pytest.mark.parametrize("fixture", ["full_causal", "full_noncausal"])
def test_long_mels_run_in_windows_with_the_same_samples(fixture, request):
    """A mel longer than WINDOW_FRAMES runs in windows with the vocoder's context around each (so the
    runtime's memory is one window's): the samples are the whole mel's, up to float noise."""
    vocoder, path = request.getfixturevalue(fixture)
    whole = VocoderRuntime(path, threads=1)
    windowed = VocoderRuntime(path, threads=1, bucket_frames=32, context=vocoder.context_frames())
    # long (windows and, non-causal, the end piece), middle (one padded window and the end piece), short
    for mel in random_mels(80, [WINDOW_FRAMES * 2 + 37, 301, 40], seed=5):
        (expected,), (got,) = whole.vocode([mel]), windowed.vocode([mel])
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-4, len(mel)


def test_runtime_rejects_bad_mels_and_foreign_graphs(full_causal, tmp_path: Path):
    _, path = full_causal
    runtime = VocoderRuntime(path)
    assert runtime.vocode([]) == []
    with pytest.raises(VocoderInputError, match=r"expected \[frames >= 1, 80\]"):
        runtime.vocode([np.zeros((80, 30), np.float32)])
    with pytest.raises(VocoderInputError, match="NaN"):
        runtime.vocode([np.full((4, 80), np.nan, np.float32)])
    bare = onnx.load(str(path))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(VocoderModelError, match="export it again"):
        VocoderRuntime(tmp_path / "bare.onnx")


def test_export_refuses_weight_norm():
    vocoder = KanHifiGanGenerator(**voc_config("tiny", True)["Model"]["Generator"]["params"])
    with pytest.raises(ValueError, match="remove_weight_norm"):
        export_vocoder(vocoder, Path("unused.onnx"), kan_vocoder_meta(vocoder))
