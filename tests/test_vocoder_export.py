"""Vocoder ONNX export and its ONNX Runtime runner: valid graphs, parity with PyTorch, batched == single."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from export.fp16_check import random_mels
from export.onnx_vocoder import (
    check_vocoder_onnx,
    export_vocoder,
    kan_vocoder_meta,
    measure_right_context_frames,
)
from models.fixtures import voc_config
from models.hifigan import KanHifiGanGenerator
from models.loader import load_vocoder
from models.model_dir import ModelDir
from serving.contract import VOCODER_ONNX
from serving.runtime.vocoder import VocoderInputError, VocoderModelError, VocoderRuntime


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
    runtime = VocoderRuntime(path, intra_op_threads=1)
    assert (runtime.hop_length, runtime.n_mels) == (200, 80)
    mels = random_mels(80, [5, 11], seed=1)
    assert max_diff(runtime.vocode(mels), torch_vocode(vocoder, mels)) < PARITY_TOLERANCE


def test_full_fixture_vocoder_graph_is_valid(full_causal):
    _, path = full_causal
    model = check_vocoder_onnx(path)
    # Constant folding leaves one Pad per causal conv, not the exporter's shape arithmetic around it.
    assert len(model.graph.node) < 500
    assert {"ConstantOfShape", "Constant"}.isdisjoint(node.op_type for node in model.graph.node)


def test_full_causal_parity_batch_1_and_8(full_causal):
    vocoder, path = full_causal
    runtime = VocoderRuntime(path, intra_op_threads=1)
    single = random_mels(80, [96], seed=2)
    assert max_diff(runtime.vocode(single), torch_vocode(vocoder, single)) < PARITY_TOLERANCE
    batch = random_mels(80, BATCH_8_FRAMES, seed=3)
    audio = runtime.vocode(batch)
    assert [len(a) for a in audio] == [n * 200 for n in BATCH_8_FRAMES]
    assert max_diff(audio, torch_vocode(vocoder, batch)) < PARITY_TOLERANCE


def test_noncausal_items_of_a_list_equal_each_alone(full_noncausal):
    """A non-causal vocoder's last frames would see a padded batch's padding: items run one at a time."""
    vocoder, path = full_noncausal
    runtime = VocoderRuntime(path, intra_op_threads=1)
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
