"""How close the CPU vocoder runs to this machine's convolution peak, in FP32 and BF16; writes results/conv_peak.md.

    .venv/bin/python -m bench.conv_peak [--threads 1] [--repeats 5] [--out results/conv_peak.md]

Side by side in one run, on OpenVINO's CPU plugin with the same settings as the served vocoder:
- the peak: the best of three large 1-D convolutions (C -> C channels, kernel K, 8192 frames: 512/7, 1024/7,
  1024/3; 2 x C x C x K x 8192 FLOP each), the best case for the convolution kernels, in FP32 and in BF16;
- the vocoder: the full-size fixture's exported vocoder.onnx (the architecture of ModelScope's 16 kHz
  voices) on a 5-second mel, in FP32 and in BF16, its GFLOP counted from the graph's convolutions
  (2 x multiply-adds of every Conv and ConvTranspose at that length; the element-wise ops are left out).
GFLOP/s is that count over the best of --repeats timed runs after a warm-up run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bench.precision import machine_line
from export.onnx_vocoder import export_vocoder, kan_vocoder_meta
from models.fixtures import make_model_dir
from models.loader import load_voice
from models.model_dir import ModelDir
from serving.runtime.sessions import OV_BF16, OV_FP32, OpenVinoGraph

ROOT = Path(__file__).resolve().parent.parent
PEAK_SHAPES = ((512, 7), (1024, 7), (1024, 3))  # (channels, kernel) of the convolutions the peak is taken from
PEAK_FRAMES = 8192
VOCODER_SECONDS = 5.0


def conv_flops(model: onnx.ModelProto, input_shape: list[int]) -> float:
    """2 x multiply-adds of every Conv and ConvTranspose of `model` for an input of `input_shape`."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for dim, size in zip(fixed.graph.input[0].type.tensor_type.shape.dim, input_shape):
        dim.Clear()
        dim.dim_value = size
    inferred = onnx.shape_inference.infer_shapes(fixed)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    weights = {init.name: list(init.dims) for init in model.graph.initializer}
    flops = 0.0
    for node in model.graph.node:
        if node.op_type == "Conv":  # weight [out, in / groups, k]: each output sample costs in/groups x k MACs
            out, per_group, kernel = weights[node.input[1]]
            flops += 2.0 * np.prod(shapes[node.output[0]], dtype=np.float64) * per_group * kernel
        elif node.op_type == "ConvTranspose":  # weight [in, out, k]: each input sample is spread over out x k
            _, out, kernel = weights[node.input[1]]
            flops += 2.0 * np.prod(shapes[node.input[0]], dtype=np.float64) * out * kernel
    return flops


def peak_conv(path: Path, channels: int, kernel: int) -> onnx.ModelProto:
    weight = np.random.default_rng(0).standard_normal((channels, channels, kernel)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[kernel // 2] * 2)
    graph = helper.make_graph([node], "peak",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return model


def best_seconds(graph: OpenVinoGraph, feeds: dict, repeats: int) -> tuple[float, float]:
    graph.run(feeds)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        graph.run(feeds)
        seconds.append(time.perf_counter() - start)
    return min(seconds), statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="OpenVINO threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure after a warm-up (default 5)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "conv_peak.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("[bench.conv_peak] writing the full-size fixture and exporting its vocoder", flush=True)
        voice = load_voice(ModelDir(make_model_dir(tmp / "full", size="full", voices=("zhitian_emo",))))
        vocoder_path = export_vocoder(voice.vocoder, tmp / "vocoder.onnx", kan_vocoder_meta(voice.vocoder),
                                      log=lambda _: None)
        frames = int(VOCODER_SECONDS * voice.audio.sample_rate / voice.audio.hop_length)
        mel = np.random.default_rng(2).standard_normal((1, voice.audio.n_mels, frames)).astype(np.float32)
        vocoder_flops = conv_flops(onnx.load(str(vocoder_path)), list(mel.shape))
        measured = []  # (what, precision, flops, best, median)
        for channels, kernel in PEAK_SHAPES:
            path = tmp / f"peak_{channels}_{kernel}.onnx"
            x = np.random.default_rng(1).standard_normal((1, channels, PEAK_FRAMES)).astype(np.float32)
            flops = conv_flops(peak_conv(path, channels, kernel), list(x.shape))
            for precision in (OV_FP32, OV_BF16):
                graph = OpenVinoGraph(path, args.threads, precision)
                best, median = best_seconds(graph, {"x": x}, args.repeats)
                measured.append((f"Conv {channels}->{channels}, k {kernel}, {PEAK_FRAMES} frames", graph.precision,
                                 flops, best, median))
                print(f"[bench.conv_peak] {measured[-1][0]} {graph.precision}: {flops / best / 1e9:.0f} GFLOP/s",
                      flush=True)
        peaks = {p: max(f / b / 1e9 for _, q, f, b, _ in measured if q == p) for p in (OV_FP32, OV_BF16)}
        for what, precision, flops, best, median in measured:
            rate = flops / best / 1e9
            rows.append((f"peak candidate: {what}", precision, flops / 1e9, best, median, None, rate,
                         rate / peaks[precision]))
        for precision in (OV_FP32, OV_BF16):
            graph = OpenVinoGraph(vocoder_path, args.threads, precision)
            best, median = best_seconds(graph, {"MEL": mel}, args.repeats)
            achieved = vocoder_flops / best / 1e9
            rows.append(("vocoder: full-size fixture, 5 s mel", graph.precision, vocoder_flops / 1e9, best, median,
                         best / VOCODER_SECONDS, achieved, achieved / peaks[precision]))
            print(f"[bench.conv_peak] vocoder {graph.precision}: RTF {best / VOCODER_SECONDS:.3f}, "
                  f"{achieved:.0f} GFLOP/s", flush=True)
    lines = ["| what | precision | GFLOP | best s | median s | RTF | GFLOP/s | of the peak |",
             "|---|---|---|---|---|---|---|---|"]
    for what, precision, gflop, best, median, rtf, rate, share in rows:
        lines.append(f"| {what} | {precision.upper()} | {gflop:.1f} | {best:.3f} | {median:.3f} | "
                     f"{'–' if rtf is None else f'{rtf:.3f}'} | {rate:.0f} | {share:.0%} |")
    table = "\n".join(lines)
    print(table)
    how = __doc__.split("Side by side", 1)[1].strip()
    args.out.write_text(
        "# The vocoder against the machine's convolution peak\n\n"
        f"Written by `python -m bench.conv_peak --threads {args.threads} --repeats {args.repeats}`.\n\n"
        f"Machine: {machine_line(args.threads)}.\n\n{table}\n\nSide by side {how}\n")
    print(f"[bench.conv_peak] wrote {args.out} (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
