"""The generated model repository against serving.contract, and who may import whom.

Every model config declares exactly the tensors of its serving.contract.Model (names, types, dims),
the `tts` ensemble runs serving.contract.PIPELINE in order with each tensor mapped to itself, and the
packages keep their layering: serving/ (what the Triton stub imports) and deploy/ import no torch and
nothing of models/ or export/.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from deploy.repository import RepositoryError, TargetSettings, generate
from serving.contract import (
    ACOUSTIC,
    ACOUSTIC_GRAPHS,
    PIPELINE,
    TEXT,
    TTS,
    TTS_STREAM,
    VOCODER,
    VOCODER_ENGINE,
    VOCODER_ONNX,
    VOCODER_PLAN,
    ExportConfig,
    Model,
    plan_metadata_path,
)
from serving.stream.vocoder import IN_PROCESS

ROOT = Path(__file__).resolve().parent.parent


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def declared(tensors, sizes: dict[str, int]) -> list[tuple]:
    return [(t.name, t.dtype, [sizes.get(d, d) for d in t.dims]) for t in tensors]


def configured(tensors) -> list[tuple]:
    return [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in tensors]


def check_model(config: model_config_pb2.ModelConfig, model: Model, sizes: dict[str, int]) -> None:
    assert config.name == model.name
    assert configured(config.input) == declared(model.inputs, sizes)
    assert configured(config.output) == declared(model.outputs, sizes)
    assert [t.name for t in config.input if t.optional] == [t.name for t in model.optional]


def test_every_model_declares_the_contracts_tensors(tiny_repository):
    sizes = ExportConfig.read(tiny_repository / "frontend" / "1").sizes()
    for model in (*PIPELINE, TTS, TTS_STREAM):
        check_model(read_config(tiny_repository / model.name / "config.pbtxt"), model, sizes)


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_the_streaming_model_is_decoupled_and_takes_the_tts_request_with_its_targets_chunk_policy(
        tiny_repository, tmp_path, target):
    """tts_stream answers the request `tts` takes, in chunks (decoupled), from one scheduler per instance,
    with the chunk policy of deploy/targets/<target>.yaml; it runs the acoustic graphs from its own folder."""
    repository = tiny_repository if target == "cpu" else generate_gpu_repository(tiny_repository, tmp_path)
    config = read_config(repository / TTS_STREAM.name / "config.pbtxt")
    settings = TargetSettings.read(target)
    assert TTS_STREAM.inputs == TTS.inputs and TTS_STREAM.outputs == TTS.outputs
    assert config.model_transaction_policy.decoupled
    assert config.backend == "python" and config.max_batch_size == read_config(repository / TTS.name / "config.pbtxt").max_batch_size
    assert [g.count for g in config.instance_group] == [settings.models[TTS_STREAM.name].instances]
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    policy = settings.streaming
    assert (int(parameters["first_chunk_frames"]), int(parameters["max_chunk_frames"]), float(parameters["chunk_growth"]),
            float(parameters["max_lead_s"]), int(parameters["max_streams"]), parameters["vocoder"]) == \
        (policy.first_frames, policy.max_frames, policy.growth, policy.max_lead_s, policy.max_streams, policy.vocoder)
    assert parameters["providers"] == ",".join(settings.providers)
    vocoder = read_config(repository / VOCODER.name / "config.pbtxt").parameters["runtime"].string_value
    assert parameters["runtime"] == vocoder  # in-process, the vocoder model's own runtime and files
    voices = ExportConfig.read(repository / TTS_STREAM.name / "1").voice_names()
    for voice in voices:
        for graph in ACOUSTIC_GRAPHS:
            assert (repository / TTS_STREAM.name / "1" / voice / graph).read_bytes() == \
                (repository / ACOUSTIC.name / "1" / voice / graph).read_bytes()
    if policy.vocoder == IN_PROCESS:
        assert parameters["bucket_frames"] == str(settings.vocoder_bucket_frames)
        for voice in voices:
            assert (repository / TTS_STREAM.name / "1" / voice / VOCODER_ONNX).read_bytes() == \
                (repository / VOCODER.name / "1" / voice / VOCODER_ONNX).read_bytes()


def test_a_gpu_repository_cannot_vocode_streams_in_process(tiny_repository, tmp_path):
    settings = TargetSettings.read("gpu")
    in_process = dataclasses.replace(settings, streaming=dataclasses.replace(settings.streaming, vocoder=IN_PROCESS))
    with pytest.raises(RepositoryError, match="vocoder_model"):
        generate_gpu_repository(tiny_repository, tmp_path, in_process)


def generate_gpu_repository(tiny_repository: Path, tmp_path: Path, settings: TargetSettings | None = None) -> Path:
    """The GPU target from an export directory with an engine built, put together from the CPU repository."""
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    config = ExportConfig.read(tiny_repository / "frontend" / "1")
    config.write(export_dir)
    for voice in config.voice_names():
        voice_dir = export_dir / voice
        shutil.copytree(tiny_repository / "acoustic" / "1" / voice, voice_dir)
        shutil.copyfile(tiny_repository / "vocoder" / "1" / voice / VOCODER_ONNX, voice_dir / VOCODER_ONNX)
        (voice_dir / VOCODER_PLAN).write_bytes(b"an engine")
        plan_metadata_path(voice_dir / VOCODER_PLAN).write_text(json.dumps({"max_batch_size": 24, "max_frames": 1500}))
    return generate(export_dir, tmp_path / "gpu", "gpu", settings=settings)


def test_the_gpu_repository_calls_the_engine_with_the_engines_own_batch_size(tiny_repository, tmp_path):
    """The GPU target: the same ensemble and vocoder model; the engine model's max_batch_size is the one its
    metadata records, so the engine and its config cannot disagree."""
    repository = generate_gpu_repository(tiny_repository, tmp_path)
    config = ExportConfig.read(repository / "frontend" / "1")
    assert sorted(p.name for p in repository.iterdir()) == sorted([*TargetSettings.read("gpu").models, TTS.name])
    vocoder = read_config(repository / VOCODER.name / "config.pbtxt")
    engine = read_config(repository / VOCODER_ENGINE.name / "config.pbtxt")
    sizes = config.sizes()
    check_model(vocoder, VOCODER, sizes)
    check_model(engine, VOCODER_ENGINE, sizes)
    assert engine.platform == "tensorrt_plan" and engine.max_batch_size == 24
    assert vocoder.parameters["runtime"].string_value == "tensorrt"
    assert vocoder.parameters["engine_max_batch_size"].string_value == "24"
    assert vocoder.parameters["bucket_frames"].string_value == str(TargetSettings.read("gpu").vocoder_bucket_frames)
    acoustic = read_config(repository / ACOUSTIC.name / "config.pbtxt")
    assert acoustic.parameters["max_sentence_frames"].string_value == "1500"  # what the engine takes
    assert (repository / VOCODER_ENGINE.name / "1" / "model.plan").read_bytes() == b"an engine"
    assert read_config(repository / TTS.name / "config.pbtxt") == read_config(
        ROOT / "model_repository" / TTS.name / "config.pbtxt.in")


@pytest.mark.parametrize("cores", [1, 2, 16])
def test_instances_never_oversubscribe_the_cores(tiny_repository, tmp_path, cores):
    """Each acoustic and vocoder instance gets an explicit thread count in its config, derived from the cores,
    and all their threads together fit the cores (one each where there are fewer cores than instances)."""
    export_dir = tmp_path / "export"  # the tiny repository's files, laid out as an export directory
    export_dir.mkdir()
    config = ExportConfig.read(tiny_repository / "frontend" / "1")
    config.write(export_dir)
    for voice in config.voice_names():
        shutil.copytree(tiny_repository / "acoustic" / "1" / voice, export_dir / voice)
        shutil.copyfile(tiny_repository / "vocoder" / "1" / voice / VOCODER_ONNX, export_dir / voice / VOCODER_ONNX)
    lines = []
    repository = generate(export_dir, tmp_path / "cpu", "cpu", "fp32", log=lines.append, cores=cores)
    total = 0
    for name in (ACOUSTIC.name, VOCODER.name):
        model = read_config(repository / name / "config.pbtxt")
        threads = int(model.parameters["threads"].string_value)
        assert threads >= 1
        total += threads * sum(group.count for group in model.instance_group)
    assert total <= max(cores, 2)
    assert f"threads per acoustic and vocoder instance: {max(1, cores // 2)} ({cores} core(s))" in lines


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package,forbidden", [
    ("serving", {"torch", "models", "export", "deploy", "bench"}),
    ("deploy", {"torch", "models", "export", "bench"}),
    ("models", {"export", "deploy", "bench"}),
    ("model_repository", {"torch", "models", "export", "deploy", "bench"}),
])
def test_layering(package, forbidden):
    for path in sorted((ROOT / package).rglob("*.py")):
        found = imports_of(path) & forbidden
        assert not found, f"{path.relative_to(ROOT)} imports {sorted(found)}"


def test_the_readme_table_of_the_tts_tensors_is_the_contract():
    readme = (ROOT / "README.md").read_text()
    rows = [line.split("|")[1:4] for line in readme.splitlines() if line.startswith("| `")]
    table = [(name.strip(" `"), direction.strip(), kind.strip()) for name, direction, kind in rows
             if direction.strip().startswith(("input", "output"))]
    protocol_type = {"TYPE_STRING": "BYTES", "TYPE_FP32": "FP32", "TYPE_INT32": "INT32", "TYPE_INT64": "INT64"}
    # TEXT is optional in the configs only so that its absence gets a clear error; users must send it.
    expected = [(t.name, "input" if t is TEXT else "input, optional", f"{protocol_type[t.dtype]} {list(t.dims)}")
                for t in TTS.inputs]
    expected += [(t.name, "output", f"{protocol_type[t.dtype]} {list(t.dims)}") for t in TTS.outputs]
    assert table == expected
