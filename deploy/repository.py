"""Generate a Triton model repository for a target (cpu or gpu) from an export directory.

    python -m deploy.repository EXPORT_DIR --target cpu|gpu --out DIR [--vocoder-precision auto|fp32|bf16]

The templates and thin model.py adapters live in model_repository/; the target's deploy settings
(instances, queue delays, providers, graph backends, vocoder buckets) in deploy/targets/<target>.yaml.
This fills the templates in with those settings, the export's own numbers (export.json, serving.limits)
and each instance's thread count (derived from this machine's cores, `instance_threads`), copies the
graph files next to the models that run them, and writes the warmup inputs. One source of truth for both
targets: the `tts` ensemble and the vocoder model are the same on both; a GPU repository adds the
TensorRT engine model that the vocoder model calls.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template

import numpy as np
import yaml

from deploy.vocoder_precision import AUTO, CHOICES, PrecisionError, choose, cpu_flags
from serving.contract import (
    ACOUSTIC,
    ACOUSTIC_GRAPHS,
    CATALOGUE_MODEL,
    CATALOGUE_PARAMETER,
    EXPORT_CONFIG_FILE,
    FRONTEND,
    JOIN,
    TENSORRT,
    TTS,
    TTS_STREAM,
    VOCODER,
    VOCODER_ENGINE,
    VOCODER_ONNX,
    VOCODER_PLAN,
    ExportConfig,
    ExportConfigError,
    plan_metadata_path,
)
from serving.limits import MAX_BATCH_SIZE, max_sentence_frames
from serving.steps.frontend import FrontendStep
from serving.stream.policy import StreamPolicy, StreamPolicyError
from serving.stream.vocoder import IN_PROCESS, VOCODER_MODEL

TEMPLATES = Path(__file__).resolve().parent.parent / "model_repository"
TARGETS_DIR = Path(__file__).resolve().parent / "targets"
TARGETS = ("cpu", "gpu")
PYTHON_MODELS = (FRONTEND, ACOUSTIC, VOCODER, JOIN, TTS_STREAM)  # each gets model.py and export.json in its version folder
ACOUSTIC_GRAPH_MODELS = (ACOUSTIC, TTS_STREAM)  # each runs the acoustic graphs, from its own version folder
ENGINE_LIMITS = ("max_batch_size", "max_frames")  # of the engine's profile, in its metadata
# The models whose instances run graphs with threads of their own; the cores are divided among them.
# tts_stream gets the same count: it does the work of these two for the requests that stream.
GRAPH_MODELS = (ACOUSTIC, VOCODER)
WARMUP_TOKENS = 16
WARMUP_FRAMES = 64


class RepositoryError(ValueError):
    pass


@dataclass(frozen=True)
class ModelSettings:
    kind: str  # KIND_CPU or KIND_GPU
    instances: int
    queue_delay_us: int  # how long the dynamic batcher waits to fill a batch
    max_queue_size: int  # requests waiting beyond this are refused
    queue_timeout_s: float  # a request waiting longer is refused


@dataclass(frozen=True)
class TargetSettings:
    """deploy/targets/<target>.yaml."""

    providers: list[str]
    acoustic_backends: dict[str, str]  # graph file -> onnxruntime | openvino
    vocoder_bucket_frames: int
    models: dict[str, ModelSettings]
    streaming: StreamPolicy
    noise_seed: int | None = None  # NSF voices: the seed of requests without SEED (None: unseeded, as ModelScope)

    @classmethod
    def read(cls, target: str) -> "TargetSettings":
        if target not in TARGETS:
            raise RepositoryError(f"unknown target {target!r}: use one of {', '.join(TARGETS)}")
        data = yaml.safe_load((TARGETS_DIR / f"{target}.yaml").read_text())
        s = data["streaming"]
        try:
            policy = StreamPolicy(s["first_chunk_frames"], s["max_chunk_frames"], s["chunk_growth"], s["max_lead_s"],
                                  s["max_streams"], s["vocoder"])
        except StreamPolicyError as e:
            raise RepositoryError(f"deploy/targets/{target}.yaml, streaming: {e}") from None
        return cls(data["providers"], data["acoustic_backends"], data["vocoder_bucket_frames"],
                   {name: ModelSettings(**values) for name, values in data["models"].items()}, policy,
                   data.get("noise_seed"))

    def instance_threads(self, cores: int) -> int:
        """Threads per instance of the models that run graphs (acoustic, vocoder): the cores divided among
        all their instances, at least one each, so that together they never outnumber the cores."""
        instances = sum(self.models[model.name].instances for model in GRAPH_MODELS if model.name in self.models)
        return max(1, cores // instances)


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's cpuset)."""
    return len(os.sched_getaffinity(0))


def pbtxt_string(text: str) -> str:
    """Escape a string for a double-quoted protobuf text field."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def pbtxt_parameters(parameters: dict[str, str]) -> str:
    return "\n".join(f'parameters {{ key: "{key}" value {{ string_value: "{pbtxt_string(value)}" }} }}'
                     for key, value in parameters.items())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy(src: Path, dst: Path) -> None:
    if not src.is_file():
        raise RepositoryError(f"{src} is missing: export the model again (python -m export MODEL_DIR --out ...)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def read_engine_metadata(export_dir: Path, voices: list[str]) -> dict:
    """The GPU repository serves one engine: every voice must share one vocoder, and its engine must be built."""
    hashes = {v: sha256(export_dir / v / VOCODER_ONNX) for v in voices}
    if len(set(hashes.values())) > 1:
        raise RepositoryError("the voices use different vocoders, but the GPU repository serves one TensorRT "
                              "vocoder: export one voice (python -m export MODEL_DIR --voice NAME)")
    path = plan_metadata_path(export_dir / voices[0] / VOCODER_PLAN)
    if not path.is_file():
        raise RepositoryError(f"{path} is missing: build the engines first (scripts/build_engines.sh {export_dir})")
    metadata = json.loads(path.read_text())
    missing = [key for key in ENGINE_LIMITS if key not in metadata]
    if missing:
        raise RepositoryError(f"{path} lacks {', '.join(missing)}: rebuild the engines (scripts/build_engines.sh {export_dir})")
    return metadata


def generate(export_dir: Path, out: Path, target: str, vocoder_precision: str = AUTO, log=print,
             settings: TargetSettings | None = None, cores: int | None = None) -> Path:
    """vocoder_precision (CPU target only): fp32, bf16 or auto (deploy.vocoder_precision.choose);
    settings: the target's deploy settings (default: deploy/targets/<target>.yaml);
    cores: what the instances' threads are derived from (default: this machine's, available_cores())."""
    settings = settings or TargetSettings.read(target)
    export_dir, out = Path(export_dir), Path(out)
    config = ExportConfig.read(export_dir)
    voices = config.voice_names()
    cores = cores or available_cores()
    threads = settings.instance_threads(cores)
    log(f"threads per {' and '.join(m.name for m in GRAPH_MODELS)} instance: {threads} ({cores} core(s))")
    graph_settings = {"providers": ",".join(settings.providers), "threads": str(threads)}
    vocoder_settings = {**graph_settings, "bucket_frames": str(settings.vocoder_bucket_frames)}
    max_frames = max_sentence_frames(config.audio.sample_rate, config.audio.hop_length)
    policy = settings.streaming
    values = dict(max_batch_size=MAX_BATCH_SIZE, warmup_tokens=WARMUP_TOKENS,
                  warmup_frames=WARMUP_FRAMES, **config.sizes())
    if target == "gpu" and policy.vocoder == IN_PROCESS:
        raise RepositoryError(f"deploy/targets/{target}.yaml, streaming: vocoder {IN_PROCESS} runs a CPU vocoder; "
                              f"a GPU host streams through the engine: use {VOCODER_MODEL}")
    if target == "gpu":
        engine = read_engine_metadata(export_dir, voices)
        runtime = TENSORRT
        values["engine_max_batch_size"] = engine["max_batch_size"]
        # An NSF engine's second input (its contract: ExportConfig.vocoder_engine).
        values["source_input"] = "".join(
            f', {{ name: "{t.name}" data_type: {t.dtype} dims: [ {", ".join(str(values.get(d, d)) for d in t.dims)} ] }}'
            for t in config.vocoder_engine.inputs[1:])
        max_frames = min(max_frames, engine["max_frames"])  # a sentence the engine cannot take is refused earlier
        vocoder = {**vocoder_settings, "runtime": runtime, "engine_max_batch_size": str(engine["max_batch_size"])}
    else:
        try:
            runtime, why = choose(export_dir, voices, vocoder_precision, cpu_flags())
        except PrecisionError as e:
            raise RepositoryError(str(e)) from None
        log(f"CPU vocoder precision: {runtime} ({why})")
        vocoder = {**vocoder_settings, "runtime": runtime}
    acoustic = {**graph_settings, "backends": json.dumps(settings.acoustic_backends)}
    noise_seed = {"noise_seed": "" if settings.noise_seed is None else str(settings.noise_seed)}
    parameters = {CATALOGUE_MODEL.name: {CATALOGUE_PARAMETER: json.dumps(FrontendStep(config).catalog(), ensure_ascii=False),
                                         **noise_seed},
                  ACOUSTIC.name: {**acoustic, "max_sentence_frames": str(max_frames)},
                  VOCODER.name: vocoder,
                  TTS_STREAM.name: {**acoustic, **noise_seed, "first_chunk_frames": str(policy.first_frames),
                                    "max_chunk_frames": str(policy.max_frames), "chunk_growth": str(policy.growth),
                                    "max_lead_s": str(policy.max_lead_s), "max_streams": str(policy.max_streams),
                                    "vocoder": policy.vocoder, "runtime": runtime,
                                    "bucket_frames": str(settings.vocoder_bucket_frames)}}

    if out.exists():
        shutil.rmtree(out)
    for name, model in settings.models.items():
        (out / name / "1").mkdir(parents=True)
        text = Template((TEMPLATES / name / "config.pbtxt.in").read_text()).substitute(
            values, kind=model.kind, instances=model.instances, queue_delay_us=model.queue_delay_us,
            max_queue_size=model.max_queue_size, queue_timeout_us=round(model.queue_timeout_s * 1e6),
            parameters=pbtxt_parameters(parameters.get(name, {})))
        (out / name / "config.pbtxt").write_text(text)
    (out / TTS.name).mkdir()
    (out / TTS.name / "config.pbtxt").write_text((TEMPLATES / TTS.name / "config.pbtxt.in").read_text())

    for model in PYTHON_MODELS:
        copy(TEMPLATES / model.name / "1" / "model.py", out / model.name / "1" / "model.py")
        copy(export_dir / EXPORT_CONFIG_FILE, out / model.name / "1" / EXPORT_CONFIG_FILE)
    for model in ACOUSTIC_GRAPH_MODELS:
        for voice in voices:
            for graph in ACOUSTIC_GRAPHS:
                copy(export_dir / voice / graph, out / model.name / "1" / voice / graph)
    if target == "gpu":
        plan = export_dir / voices[0] / VOCODER_PLAN
        copy(plan, out / VOCODER_ENGINE.name / "1" / "model.plan")
        copy(plan_metadata_path(plan), plan_metadata_path(out / VOCODER_ENGINE.name / "1" / "model.plan"))
    else:
        for model in (VOCODER, TTS_STREAM) if policy.vocoder == IN_PROCESS else (VOCODER,):
            for voice in voices:
                copy(export_dir / voice / VOCODER_ONNX, out / model.name / "1" / voice / VOCODER_ONNX)

    write_warmup(out)
    # The response cache keys `tts` answers by its version: a repository with other contents gets another
    # version, so a reload after regenerating never serves audio cached from the models it replaced.
    (out / TTS.name / str(content_version(out))).mkdir()
    return out


def content_version(repository: Path) -> int:
    """A version number that changes whenever any file of the repository does."""
    digest = hashlib.sha256()
    for path in sorted(p for p in repository.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(repository)).encode() + b"\0" + sha256(path).encode())
    return 1 + int(digest.hexdigest()[:8], 16)


def write_warmup(out: Path) -> None:
    """The files the configs' model_warmup sections name: one sentence of WARMUP_TOKENS and WARMUP_FRAMES."""
    acoustic, vocoder = out / ACOUSTIC.name / "warmup", out / VOCODER.name / "warmup"
    acoustic.mkdir()
    vocoder.mkdir()
    np.array([WARMUP_TOKENS], dtype=np.int32).tofile(acoustic / "tokens")
    np.array([1.0], dtype=np.float32).tofile(acoustic / "duration_scale")
    np.array([WARMUP_FRAMES], dtype=np.int32).tofile(vocoder / "frames")


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate a Triton model repository from an export directory.")
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--target", choices=TARGETS, default="cpu")
    parser.add_argument("--out", type=Path, default=Path("build/model_repository"))
    parser.add_argument("--vocoder-precision", choices=CHOICES, default=AUTO,
                        help="CPU target: the vocoder's precision; auto picks BF16 where the CPU and the export's "
                             "quality record allow it (default auto)")
    args = parser.parse_args()
    try:
        out = generate(args.export_dir, args.out, args.target, args.vocoder_precision)
    except (RepositoryError, ExportConfigError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote the {args.target} model repository to {out}")


if __name__ == "__main__":
    main()
