"""Build each voice's vocoder TensorRT engine for the GPU and TensorRT version at hand.

    python -m export.trt_build EXPORT_DIR [--voice NAME ...] [--memory-budget-gib G] [--precision fp16|fp32]

writes EXPORT_DIR/<voice>/vocoder.plan and vocoder.plan.json (GPU, compute capability, TensorRT
version, profile, precision, source ONNX sha256, build time, and the engine-vs-FP32 comparison).

Precision: a *strongly typed* network built from a mixed-precision ONNX graph
(`vocoder_fp16.onnx`, written by `python -m export.fp16_check EXPORT_DIR --save-fp16`): FP16 everywhere
except the nodes the FP16 check keeps in FP32 (the output conv and tanh, and any node that would
overflow). Strong typing is used rather than the FP16 builder flag with per-layer precision and
OBEY_PRECISION_CONSTRAINTS because TensorRT 10.12 deprecated those weak-typing APIs and TensorRT 11
removed them; the types live in the graph, so the ONNX Runtime FP16 check and the engine run the same
graph, on TensorRT 10 (flag required) and 11 (always strongly typed) alike. `--precision fp32`
builds from vocoder.onnx instead, for a vocoder that fails the FP16 check.

One optimisation profile for MEL [batch, n_mels, frames] (`vocoder_profile`): frames 1 to the longest
sentence the server admits (serving.limits), batch 1 to as many such sentences as fit a memory budget
for activations (--memory-budget-gib; the graph's widest tensor, by shape inference). An NSF vocoder's
SOURCE [batch, harmonics + 1, frames * hop] follows the same batch and frames (`input_shapes`). Both bounds
go into the metadata, from which the GPU repository sets the engine model's max_batch_size and the acoustic
model's frame cap. Every voice built must share one vocoder (one engine per GPU repository): checked
before any build.

Builder: the `tensorrt` Python module; where only the `trtexec` binary exists, trtexec builds the
same engine (no engine check then). Device memory for `run_engine` comes from polygraphy's CUDA wrapper
(`polygraphy.cuda`), which the NGC TensorRT images ship, so neither torch nor cuda-python is needed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx

from deploy.engine_check import probe_gpus
from export import fp16_check
from serving.contract import (
    META_ACTIVATION_PER_FRAME,
    META_HOP,
    META_SOURCE_CHANNELS,
    SOURCE,
    TIMING_CACHE,
    VOCODER_FP16_ONNX,
    VOCODER_MEL,
    VOCODER_ONNX,
    VOCODER_PLAN,
    WAV,
    plan_metadata_path,
)
from serving.limits import MAX_BATCH_SIZE, MAX_SENTENCE_CHARS, max_sentence_frames

WORKSPACE_MIB = 4096

# The profile's optimum: a half-length sentence at an ordinary 4 characters per second, a quarter of the largest batch.
TYPICAL_SECONDS_PER_CHAR = 0.25
OPT_BATCH_DIVISOR = 4
# Activation memory one engine call may hold: bounds batch x frames of the profile (the engine itself, its
# weights and TensorRT's workspace come on top).
ACTIVATION_BUDGET_GIB = 2.0
LIVE_ACTIVATIONS = 4  # tensors of the graph's widest size alive at once: a stage's input, two branches, their sum
DTYPE_BYTES = {"fp16": 2, "fp32": 4}


class BuildError(RuntimeError):
    """The engine cannot be built or fails its checks (one-line message)."""


@dataclass(frozen=True)
class Profile:
    """Shapes of MEL [batch, n_mels, frames] for one optimisation profile."""

    min: tuple[int, int, int]
    opt: tuple[int, int, int]
    max: tuple[int, int, int]


def vocoder_profile(n_mels: int, sample_rate: int, hop_length: int, bytes_per_frame: int,
                    budget_bytes: int = int(ACTIVATION_BUDGET_GIB * 2**30), max_batch_size: int = MAX_BATCH_SIZE) -> Profile:
    """The profile for a vocoder behind Triton: any sentence the server admits (serving.limits), and as large
    a batch of such sentences, up to `max_batch_size`, as fits `budget_bytes` of activations at
    `bytes_per_frame` (activation_bytes_per_frame)."""
    if min(n_mels, sample_rate, hop_length, bytes_per_frame, budget_bytes, max_batch_size) < 1:
        raise BuildError(f"cannot derive a profile from n_mels={n_mels}, sample_rate={sample_rate}, "
                         f"hop_length={hop_length}, bytes_per_frame={bytes_per_frame}, budget_bytes={budget_bytes}, "
                         f"max_batch_size={max_batch_size}")
    max_frames = max_sentence_frames(sample_rate, hop_length)
    fits = budget_bytes // (max_frames * bytes_per_frame)
    if fits < 1:
        raise BuildError(f"one sentence of {max_frames} frames needs {max_frames * bytes_per_frame / 2**30:.2f} GiB of "
                         f"activations, more than the budget of {budget_bytes / 2**30:.2f} GiB: raise --memory-budget-gib")
    max_batch = min(max_batch_size, fits)
    opt_frames = math.ceil(MAX_SENTENCE_CHARS / 2 * TYPICAL_SECONDS_PER_CHAR * sample_rate / hop_length)
    opt_batch = max(1, max_batch // OPT_BATCH_DIVISOR)
    return Profile((1, n_mels, 1), (opt_batch, n_mels, opt_frames), (max_batch, n_mels, max_frames))


Shapes = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]  # input -> (min, opt, max)


def input_shapes(profile: Profile, onnx_path: Path) -> Shapes:
    """The profile's shapes of every input of the graph: MEL, and an NSF vocoder's SOURCE, whose samples are
    its frames times the hop (both from the graph's metadata)."""
    props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    shapes = {VOCODER_MEL.name: (profile.min, profile.opt, profile.max)}
    channels = int(props.get(META_SOURCE_CHANNELS, 0))
    if channels:
        hop = int(props[META_HOP])
        shapes[SOURCE.name] = tuple((batch, channels, frames * hop) for batch, _, frames in (profile.min, profile.opt, profile.max))
    return shapes


def activation_bytes_per_frame(onnx_path: Path, precision: str) -> int:
    """Bytes of activations per mel frame: the graph's widest tensor (recorded in its metadata by the export)
    times LIVE_ACTIVATIONS, in the engine's precision."""
    props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    if META_ACTIVATION_PER_FRAME not in props:
        raise BuildError(f"{onnx_path} lacks the metadata {META_ACTIVATION_PER_FRAME}: export the model again")
    return int(props[META_ACTIVATION_PER_FRAME]) * LIVE_ACTIVATIONS * DTYPE_BYTES[precision]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tensorrt_module():
    """The tensorrt module, or None where it is not installed."""
    try:
        import tensorrt
    except ImportError:
        return None
    return tensorrt


def build_with_python(trt, onnx_path: Path, plan_path: Path, shapes: Shapes, timing_cache: Path, log) -> None:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    if not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        raise BuildError(f"TensorRT {trt.__version__} has no strongly typed networks: use TensorRT 10 or newer")
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(f"TensorRT cannot parse {onnx_path}: {errors}")
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    if [t.name for t in inputs] != list(shapes) or any(len(t.shape) != 3 for t in inputs):
        raise BuildError(f"{onnx_path}: expected the inputs {list(shapes)} (each [batch, channels, length]), "
                         f"found {[t.name for t in inputs]}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_MIB << 20)
    optimization_profile = builder.create_optimization_profile()
    for name, (low, opt, high) in shapes.items():
        optimization_profile.set_shape(name, low, opt, high)
    if config.add_optimization_profile(optimization_profile) < 0:
        raise BuildError(f"TensorRT refused the profile {shapes}")
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        raise BuildError(f"{timing_cache} was written by another GPU or TensorRT version: delete it and build again")

    log(f"building ({network.num_layers} layers, profile (min, opt, max) {shapes})")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    plan_path.write_bytes(bytes(serialized))
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))


def build_with_trtexec(trtexec: str, onnx_path: Path, plan_path: Path, shapes: Shapes, timing_cache: Path,
                       log) -> str:
    """Build with the trtexec binary; returns the TensorRT version it reports."""

    def shape(which: int) -> str:
        return ",".join(f"{name}:{'x'.join(map(str, dims[which]))}" for name, dims in shapes.items())

    command = [
        trtexec, f"--onnx={onnx_path}", f"--saveEngine={plan_path}", "--stronglyTyped",
        f"--minShapes={shape(0)}", f"--optShapes={shape(1)}", f"--maxShapes={shape(2)}",
        f"--timingCacheFile={timing_cache}", f"--memPoolSize=workspace:{WORKSPACE_MIB}M", "--skipInference",
    ]
    log("running " + " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"trtexec failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
    version = re.search(r"TensorRT version: ([\d.]+)", done.stdout)
    if version is None:
        raise BuildError("trtexec did not report its TensorRT version")
    return version.group(1)


def describe_engine(engine, trt) -> list[dict]:
    """Every I/O tensor of the engine with its mode, type, shape and per-profile shapes."""
    tensors = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        tensor = {"name": name, "mode": "input" if is_input else "output",
                  "dtype": str(engine.get_tensor_dtype(name)).split(".")[-1], "shape": list(engine.get_tensor_shape(name))}
        if is_input:
            tensor["profiles"] = [[list(dims) for dims in engine.get_tensor_profile_shape(name, p)]
                                  for p in range(engine.num_optimization_profiles)]
        tensors.append(tensor)
    return tensors


class EngineRunner:
    """Runs a deserialized engine on host arrays; device buffers grow as needed (polygraphy.cuda)."""

    def __init__(self, engine):
        try:
            from polygraphy import cuda
        except ImportError:
            raise BuildError("running an engine needs polygraphy's CUDA wrapper: pip install polygraphy") from None
        self.cuda = cuda
        self.engine = engine
        self.context = engine.create_execution_context()
        self.stream = cuda.Stream()
        self.buffers: dict[str, object] = {}
        self.audio = cuda.DeviceArray(shape=(1,), dtype=np.float32)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """MEL float32 [batch, n_mels, frames] (and an NSF engine's SOURCE) -> float32 [batch, 1, frames * hop]."""
        for name, array in feeds.items():
            array = np.ascontiguousarray(array, dtype=np.float32)
            if not self.context.set_input_shape(name, array.shape):
                profile = [list(dims) for dims in self.engine.get_tensor_profile_shape(name, 0)]
                raise BuildError(f"the engine refused {name} shape {list(array.shape)}: its profile (min, opt, max) "
                                 f"is {profile}")
            buffer = self.buffers.setdefault(name, self.cuda.DeviceArray(shape=(1,), dtype=np.float32))
            buffer.resize(array.shape).copy_from(array, self.stream)
            self.context.set_tensor_address(name, buffer.ptr)
        shape = tuple(self.context.get_tensor_shape(WAV.name))
        if min(shape) < 0:
            raise BuildError(f"the engine gave the output shape {shape} for {({k: list(v.shape) for k, v in feeds.items()})}")
        self.audio.resize(shape)
        self.context.set_tensor_address(WAV.name, self.audio.ptr)
        if not self.context.execute_async_v3(self.stream.ptr):
            raise BuildError(f"the engine failed to run on {({k: list(v.shape) for k, v in feeds.items()})}")
        audio = np.empty(shape, dtype=np.float32)
        self.audio.copy_to(audio, self.stream)
        self.stream.synchronize()
        return audio

    def seconds_per_run(self, feeds: dict[str, np.ndarray], runs: int = 20) -> float:
        self.run(feeds)  # warm-up
        start = time.perf_counter()
        for _ in range(runs):
            self.run(feeds)
        return (time.perf_counter() - start) / runs

    def close(self) -> None:
        for buffer in self.buffers.values():
            buffer.free()
        self.audio.free()
        self.stream.free()


def load_engine(trt, plan_path: Path):
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan_path.read_bytes())
    if engine is None:
        raise BuildError(f"{plan_path} cannot be deserialized by TensorRT {trt.__version__}: rebuild it")
    return engine


def run_engine(plan_path: Path, mel: np.ndarray, source: np.ndarray | None = None) -> np.ndarray:
    """Run `plan_path` once on a mel batch [batch, n_mels, frames] (and an NSF engine's source batch; loads the
    engine every call)."""
    trt = tensorrt_module()
    if trt is None:
        raise BuildError("TensorRT is not installed: run on a GPU host (scripts/build_engines.sh)")
    runner = EngineRunner(load_engine(trt, plan_path))
    try:
        return runner.run({VOCODER_MEL.name: mel, **({} if source is None else {SOURCE.name: source})})
    finally:
        runner.close()


def check_engine_output(runner: EngineRunner, onnx_path: Path):
    """The engine against the FP32 graph in ONNX Runtime, with the FP16 check's metrics and inputs."""
    model = onnx.load(str(onnx_path))
    inputs = fp16_check.check_inputs(model)
    reference = fp16_check.run_onnx(model, inputs)
    engine_audio = [runner.run(feeds)[0, 0] for feeds in inputs]
    diff, snr, nonfinite = fp16_check.compare(reference, engine_audio)
    return {"backend": "tensorrt", "mels": "random normal", "max_abs_diff": diff, "snr_db": snr,
            "nonfinite": nonfinite, "passed": nonfinite == 0 and snr >= fp16_check.MIN_SNR_DB}


def benchmark(runner: EngineRunner, shapes: Shapes, hop_length: int, sample_rate: int, log) -> list[dict]:
    """Real-time factor of the engine at batch 1 and the opt batch, opt frames (seconds of compute per second of audio)."""
    rows = []
    _, opt, high = shapes[VOCODER_MEL.name]
    frames = opt[2]
    for batch in sorted({1, opt[0], high[0]}):
        generator = np.random.default_rng(0)
        # Random mels; an NSF source of a sine's size (its values do not change the engine's speed).
        feeds = {name: (generator.standard_normal((batch, *dims[1][1:])) * (0.1 if name == SOURCE.name else 1.0))
                 .astype(np.float32) for name, dims in shapes.items()}
        seconds = runner.seconds_per_run(feeds)
        audio_seconds = batch * frames * hop_length / sample_rate
        rows.append({"batch": batch, "frames": frames, "ms": seconds * 1e3, "rtf": seconds / audio_seconds})
        log(f"batch {batch} x {frames} frames: {seconds * 1e3:.2f} ms, RTF {seconds / audio_seconds:.5f}")
    return rows


def build_voice(voice_dir: Path, profile: Profile, precision: str, timing_cache: Path, hop_length: int,
                sample_rate: int, bench: bool, log=print, memory_budget_gib: float = ACTIVATION_BUDGET_GIB) -> dict:
    """Build voice_dir/vocoder.plan and write its metadata; returns the metadata. `profile`: MEL's shapes (an
    NSF vocoder's SOURCE follows them)."""
    source = voice_dir / VOCODER_ONNX
    built_from = voice_dir / (VOCODER_FP16_ONNX if precision == "fp16" else VOCODER_ONNX)
    for path in (source, built_from):
        if not path.is_file():
            hint = ("python -m export.fp16_check EXPORT_DIR --save-fp16" if path.name == VOCODER_FP16_ONNX
                    else "python -m export MODEL_DIR --out EXPORT_DIR")
            raise BuildError(f"{path} is missing: run {hint} first")
    plan_path = voice_dir / VOCODER_PLAN
    shapes = input_shapes(profile, built_from)
    trt = tensorrt_module()
    trtexec = shutil.which("trtexec")
    if trt is None and trtexec is None:
        raise BuildError("neither the tensorrt Python module nor trtexec is available: run scripts/build_engines.sh "
                         "on a GPU host (docker compose run builder)")
    start = time.perf_counter()
    if trt is not None:
        build_with_python(trt, built_from, plan_path, shapes, timing_cache, log)
        version, builder = trt.__version__, "tensorrt-python"
    else:
        version, builder = build_with_trtexec(trtexec, built_from, plan_path, shapes, timing_cache, log), "trtexec"
    build_seconds = time.perf_counter() - start
    gpus = probe_gpus()
    metadata = {
        "gpu_name": gpus[0].name, "compute_capability": gpus[0].compute_capability, "tensorrt_version": version,
        "precision": precision, "builder": builder,
        "profiles": [{"input": name, "min": list(low), "opt": list(opt), "max": list(high)}
                     for name, (low, opt, high) in shapes.items()],
        "max_batch_size": profile.max[0], "max_frames": profile.max[2], "memory_budget_gib": memory_budget_gib,
        "hop_length": hop_length, "sample_rate": sample_rate,
        "source_onnx": source.name, "source_onnx_sha256": sha256(source),
        "built_from": built_from.name, "built_from_sha256": sha256(built_from),
        "plan_sha256": sha256(plan_path), "build_seconds": round(build_seconds, 1),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if trt is not None:
        engine = load_engine(trt, plan_path)
        metadata["io_tensors"] = describe_engine(engine, trt)
        for tensor in metadata["io_tensors"]:
            log(f"engine {tensor['mode']} {tensor['name']} {tensor['dtype']} {tensor['shape']}"
                + (f" profiles {tensor['profiles']}" if "profiles" in tensor else ""))
        runner = EngineRunner(engine)
        try:
            metadata["engine_check"] = check_engine_output(runner, source)
            check = metadata["engine_check"]
            log(f"engine vs FP32: max abs diff {check['max_abs_diff']:.2e}, SNR {check['snr_db']:.1f} dB, "
                f"NaN/Inf {check['nonfinite']}")
            if bench:
                metadata["benchmark"] = benchmark(runner, shapes, hop_length, sample_rate, log)
        finally:
            runner.close()
    plan_metadata_path(plan_path).write_text(json.dumps(metadata, indent=2) + "\n")
    if not metadata.get("engine_check", {"passed": True})["passed"]:
        raise BuildError(f"{plan_path}: the engine's output differs from FP32 beyond the FP16 check's bounds "
                         f"({metadata['engine_check']}); rebuild with --precision fp32")
    log(f"wrote {plan_path} ({plan_path.stat().st_size / 1e6:.1f} MB) and {plan_metadata_path(plan_path).name} "
        f"in {build_seconds:.0f} s")
    return metadata


def summary_line(voice: str, metadata: dict) -> str:
    check = metadata.get("engine_check")
    verdict = f"SNR {check['snr_db']:.1f} dB vs FP32" if check else "not run (trtexec build)"
    return (f"  {voice}: {metadata['precision']} engine for {metadata['gpu_name']} (compute capability "
            f"{metadata['compute_capability']}), TensorRT {metadata['tensorrt_version']}, batch <= "
            f"{metadata['max_batch_size']}, frames <= {metadata['profiles'][0]['max'][2]}, built in "
            f"{metadata['build_seconds']} s; engine check: {verdict}")


def shared_vocoder(export_dir: Path, voices: list[str]) -> None:
    """The GPU repository serves one engine, so every voice built must share one vocoder: checked before any build."""
    hashes = {voice: sha256(export_dir / voice / VOCODER_ONNX) for voice in voices}
    if len(set(hashes.values())) > 1:
        raise BuildError(f"the voices {', '.join(voices)} use different vocoders, but a GPU repository serves one "
                         "TensorRT vocoder: build one voice (--voice NAME) or export one voice per directory")


def main(argv: list[str] | None = None) -> int:
    from deploy.engine_check import EngineCheckError, read_metadata
    from serving.contract import ExportConfig, ExportConfigError

    parser = argparse.ArgumentParser(prog="python -m export.trt_build", description=__doc__.split("\n")[0])
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--voice", action="append", help="voice to build (repeatable; default: every voice)")
    parser.add_argument("--max-batch-size", type=int, default=MAX_BATCH_SIZE,
                        help=f"largest batch of the profile, if the memory budget allows it (default {MAX_BATCH_SIZE})")
    parser.add_argument("--memory-budget-gib", type=float, default=ACTIVATION_BUDGET_GIB,
                        help=f"activation memory of one engine call (default {ACTIVATION_BUDGET_GIB:g} GiB): "
                             "bounds the profile's batch x frames")
    parser.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    parser.add_argument("--bench", action="store_true", help="time the engine after the build")
    parser.add_argument("--summary", action="store_true", help="only print the summary of the engines already built")
    args = parser.parse_args(argv)
    try:
        config = ExportConfig.read(args.export_dir)
        voices = args.voice or config.voice_names()
        if args.summary:
            built = {voice: read_metadata(args.export_dir / voice / VOCODER_PLAN) for voice in voices}
        else:
            shared_vocoder(args.export_dir, voices)
            built = {}
            for voice in voices:
                def log(line: str, voice=voice) -> None:
                    print(f"[trt_build] {voice}: {line}", flush=True)

                frame_bytes = activation_bytes_per_frame(args.export_dir / voice / VOCODER_ONNX, args.precision)
                profile = vocoder_profile(config.audio.n_mels, config.audio.sample_rate, config.audio.hop_length,
                                          frame_bytes, int(args.memory_budget_gib * 2**30), args.max_batch_size)
                log(f"profile for {args.memory_budget_gib:g} GiB of activations at {frame_bytes} bytes per frame: "
                    f"batch <= {profile.max[0]}, frames <= {profile.max[2]}")
                built[voice] = build_voice(args.export_dir / voice, profile, args.precision,
                                           args.export_dir / TIMING_CACHE, config.audio.hop_length,
                                           config.audio.sample_rate, args.bench, log, args.memory_budget_gib)
    except (BuildError, ExportConfigError, EngineCheckError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("[trt_build] summary")
    for voice, metadata in built.items():
        print(summary_line(voice, metadata))
    return 0


if __name__ == "__main__":
    sys.exit(main())
