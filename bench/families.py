"""What each family costs per second of audio on this CPU: vocoder, acoustic model, NSF source.

    .venv/bin/python -m bench.families [--repeats 5] [--seconds 4] [--threads 1] [--out results/families]

Every family's full-size fixture (models.fixtures: the real network sizes, random weights; `--size tiny`
only checks that the benchmark runs) is exported
as `python -m export` exports it, and its served CPU runtimes are timed side by side in one run,
round-robin over the families for every repeat, so that the load of a shared machine falls on all of
them alike:
- the vocoder (serving.runtime.vocoder, what the CPU vocoder model runs) on `--seconds` of audio: a
  random mel (and for an NSF voice the source of a random f0 contour, made beforehand);
- an NSF voice's source made on the host (serving.runtime.nsf.vocoder_input) for the same audio;
- the acoustic graphs (serving.runtime.acoustic) on three sentences of the front end.
Each figure is a real-time factor: compute seconds per second of audio (lower is faster). The summary
gives the median with the min and max of the repeats, each family's vocoder cost relative to the 16 kHz
emotional voices', and the load average before and after. Writes OUT/summary.md, OUT/results.json and
OUT/vocoder_rtf.png.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from export.__main__ import run as export_model
from models.fixtures import FAMILIES, make_model_dir
from serving.contract import FP32, VOCODER_ONNX, ExportConfig
from serving.frontend import FrontEnd
from serving.runtime.acoustic import AcousticRuntime
from serving.runtime.nsf import SourceNoise, vocoder_input
from serving.runtime.sessions import RuntimeOptions
from serving.runtime.vocoder import VocoderRuntime

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = ("欢迎使用语音合成服务，今天天气很好。", "我们明天早上八点出发，请大家准时集合。", "春眠不觉晓，处处闻啼鸟。")
BASELINE_FAMILY = "emo16k"


class Family:
    """One family's export and the inputs its runtimes are timed on."""

    def __init__(self, name: str, export_dir: Path, seconds: float, threads: int):
        self.name = name
        self.config = ExportConfig.read(export_dir)
        voice = self.config.default_voice
        self.spec = self.config.voices[voice]
        audio = self.config.audio
        self.frames = round(seconds * audio.sample_rate / audio.hop_length)
        self.audio_seconds = self.frames * audio.hop_length / audio.sample_rate
        self.vocoder = VocoderRuntime(export_dir / voice / VOCODER_ONNX, FP32, threads=threads)
        self.acoustic = AcousticRuntime(export_dir / voice, RuntimeOptions(intra_op_threads=threads))
        self.ids = [FrontEnd(self.spec.vocabulary())(text)[0].ids for text in SENTENCES]
        rng = np.random.default_rng(0)
        self.acoustic_frames = rng.standard_normal((self.frames, self.config.sizes()["frame_values"])).astype(np.float32)
        if self.spec.nsf:  # a voice-like f0 contour around the fixture's (f0 column, normalised) and voicing
            self.acoustic_frames[:, -2] = 0.25 + 0.05 * np.sin(np.arange(self.frames) / 20)
            self.acoustic_frames[:, -1] = (np.arange(self.frames) % 50 < 35).astype(np.float32)
        self.mel, self.source = self.vocoder_inputs()

    def vocoder_inputs(self) -> tuple[np.ndarray, np.ndarray | None]:
        if not self.spec.nsf:
            return self.acoustic_frames, None
        return vocoder_input(self.acoustic_frames, self.spec.nsf, self.config.audio.hop_length, SourceNoise())

    def time_vocoder(self) -> float:
        start = time.perf_counter()
        self.vocoder.vocode([self.mel], None if self.source is None else [self.source])
        return (time.perf_counter() - start) / self.audio_seconds

    def time_source(self) -> float | None:
        if not self.spec.nsf:
            return None
        start = time.perf_counter()
        self.vocoder_inputs()
        return (time.perf_counter() - start) / self.audio_seconds

    def time_acoustic(self) -> float:
        start = time.perf_counter()
        mels = self.acoustic.synthesize(self.ids, [1.0] * len(self.ids))
        seconds = time.perf_counter() - start
        frames = sum(len(m) for m in mels)
        return seconds / (frames * self.config.audio.hop_length / self.config.audio.sample_rate)

    def describe(self) -> dict:
        nsf = self.spec.nsf
        return {"sample_rate": self.config.audio.sample_rate, "hop_length": self.config.audio.hop_length,
                "nsf": bool(nsf), "source_channels": nsf.source_channels if nsf else 0,
                "vocoder_frames": self.frames, "audio_seconds": self.audio_seconds}


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def run(out: Path, repeats: int, seconds: float, threads: int, size: str = "full", log=print) -> dict:
    """Export every family's fixture, time it, and write OUT/summary.md, results.json and vocoder_rtf.png."""
    families = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in FAMILIES:
            log(f"[families] {name}: writing the {size} fixture and exporting it")
            model_dir = make_model_dir(Path(tmp) / name / "model", size, family=name, voices=FAMILIES[name].voices[:1])
            export_model(model_dir, Path(tmp) / name / "export", None)
            families.append(Family(name, Path(tmp) / name / "export", seconds, threads))
        results = measure(families, repeats, log)
    results["machine"] = machine(threads)
    results["size"] = size
    results["vocoder_runtime"] = f"{VocoderRuntime.__module__}.{VocoderRuntime.__name__}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "summary.md").write_text(summary(results, repeats, seconds))
    plot(results, out / "vocoder_rtf.png")
    return results


def measure(families: list[Family], repeats: int, log=print) -> dict:
    for family in families:  # warm-up: first calls allocate and pick kernels
        family.time_vocoder()
        family.time_acoustic()
    timings = {family.name: {"vocoder": [], "source": [], "acoustic": []} for family in families}
    load_before = os.getloadavg()
    for repeat in range(repeats):
        for family in families:
            times = timings[family.name]
            times["vocoder"].append(family.time_vocoder())
            source = family.time_source()
            if source is not None:
                times["source"].append(source)
            times["acoustic"].append(family.time_acoustic())
        log(f"[families] repeat {repeat + 1}/{repeats}: vocoder RTF "
            + ", ".join(f"{f.name} {timings[f.name]['vocoder'][-1]:.3f}" for f in families))
    load_after = os.getloadavg()
    results = {name: {kind: spread(values) for kind, values in kinds.items() if values} for name, kinds in timings.items()}
    base = results[BASELINE_FAMILY]["vocoder"]["median"]
    for name, result in results.items():
        result.update(families[[f.name for f in families].index(name)].describe())
        # Per-repeat ratios: each repeat's families ran back to back under the same load.
        ratios = [v / b for v, b in zip(timings[name]["vocoder"], timings[BASELINE_FAMILY]["vocoder"])]
        result["vocoder_vs_emo16k"] = spread(ratios)
    return {"families": results, "baseline_median": base, "load_average": {"before": load_before, "after": load_after}}


def machine(threads: int) -> dict:
    from bench.report import describe_machine

    return {**describe_machine(), "threads": threads}


def summary(results: dict, repeats: int, seconds: float) -> str:
    m = results["machine"]
    lines = [
        "# Cost per family: real-time factors of the served CPU runtimes",
        "",
        f"`python -m bench.families --repeats {repeats} --seconds {seconds} --threads {m['threads']}` on "
        f"{m['cpu_model']} ({m['cores']} cores, {m['threads']} thread(s) per runtime; the vocoder as "
        f"`{results['vocoder_runtime']}` runs it), load average "
        f"{results['load_average']['before'][0]:.2f} before, {results['load_average']['after'][0]:.2f} after "
        "(a shared machine: the ratios, measured back to back in every repeat, are the figures to read).",
        f"{results['size'].capitalize()}-size fixtures (random weights); RTF = compute seconds per second of audio, "
        f"median (min to max) of {repeats} repeats.",
        "",
        "| family | rate | vocoder RTF | vocoder vs emo16k | NSF source RTF | acoustic RTF |",
        "|---|---|---|---|---|---|",
    ]

    def cell(entry: dict | None, spec: str = ".3f") -> str:
        return "-" if entry is None else f"{entry['median']:{spec}} ({entry['min']:{spec}} to {entry['max']:{spec}})"

    for name, r in results["families"].items():
        lines.append(f"| {name} | {r['sample_rate'] // 1000} kHz{' NSF' if r['nsf'] else ''} | {cell(r['vocoder'])} | "
                     f"{cell(r['vocoder_vs_emo16k'], '.2f')}x | {cell(r.get('source'), '.4f')} | {cell(r['acoustic'])} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["families"])
    medians = [results["families"][n]["vocoder"]["median"] for n in names]
    low = [m - results["families"][n]["vocoder"]["min"] for n, m in zip(names, medians)]
    high = [results["families"][n]["vocoder"]["max"] - m for n, m in zip(names, medians)]
    figure, axis = plt.subplots(figsize=(7, 3.5))
    axis.bar(names, medians, yerr=[low, high], capsize=4, color="#4c72b0")
    axis.set_ylabel("vocoder RTF (lower is faster)")
    axis.set_title("CPU vocoder cost per second of audio, per family")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.families", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0, help="audio per vocoder call")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of each runtime")
    parser.add_argument("--size", choices=("full", "tiny"), default="full", help="fixture size (tiny: a smoke run)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "families")
    args = parser.parse_args()
    run(args.out, args.repeats, args.seconds, args.threads, args.size)
    print((args.out / "summary.md").read_text())


if __name__ == "__main__":
    main()
