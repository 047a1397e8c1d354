"""Streaming benchmark: tts_stream's first audio, gaps, underruns and throughput beside tts, in one run.

    python -m bench.stream [--concurrency 1 4 8 16] [--repeats 2] [--out results/stream]   (scripts/stream_bench.sh)

perf_analyzer cannot time a decoupled model's chunks, so this drives both models through the project's
client (tts_client, gRPC) on one tritonserver without the response cache, deployed as scripts/serve.sh
deploys it (the full-size fixture unless --model-dir; the BF16 CPU vocoder where `auto` picks it):

1. Latency at concurrency 1: unique sentences of 10 to 20 characters and 444-character paragraphs, each
   streamed and synthesised whole in turn (which goes first alternates): time to first audio against
   the time `tts` takes to answer.
2. Load: at each concurrency, closed loops of that many clients over the same unique texts (short,
   medium, long in turn) for each model, the order of the two models alternating between repeats.
   Per stream: first audio, the gaps between chunks, and whether a listener who starts playing at the
   first chunk would run dry (the underrun: how long playback would stall); per level: audio seconds
   per wall second for both models, and from the streaming model's own metrics how many streams each
   decoder step advanced and how many mel frames the vocoder ran as context around the chunks.

Writes results.json, summary.md and stream.png to --out. Timings are wall clock: run it on a quiet
machine; the load average is recorded before and after every measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench.load import latency_summary
from bench.report import describe_machine, machine_cpu, write_json
from bench.run import prepare_model
from bench.systems import ROOT, BenchError
from bench.texts import TextPool
from deploy.launcher import LauncherError, TritonServer
from deploy.repository import RepositoryError, TargetSettings, generate
from deploy.vocoder_precision import AUTO, CHOICES
from models.model_dir import ModelDirError
from serving.contract import TTS, TTS_STREAM, ExportConfigError
from serving.stream.policy import StreamPolicy, StreamPolicyError
from serving.stream.vocoder import VOCODER_PLACES
from tts_client import TTSClient

REQUEST_TIMEOUT_S = 1800.0
SENTENCE_CHARS = (10, 20)  # the targets' short sentence
PARAGRAPH_CHARS = 444  # the targets' paragraph
TARGETS = {
    "sentence_first_audio_s": 0.150,  # p50 at concurrency 1
    "sentence_first_audio_vs_tts": 0.25,  # ... and at most this share of tts's time for the same sentences
    "paragraph_first_audio_s": 0.300,
    "c8_first_audio_s": 0.500,
    "c8_throughput_vs_tts": 0.90,  # streaming throughput at concurrency 8 within 10 % of tts's
}


@dataclass
class Stream:
    """One streamed request at the client."""

    text: str
    start_s: float  # since the measurement started
    arrivals_s: list[float] = field(default_factory=list)  # each chunk's arrival, since the request was sent
    samples: list[int] = field(default_factory=list)
    sample_rate: int = 0
    error: str | None = None

    @property
    def first_audio_s(self) -> float:
        return self.arrivals_s[0]

    @property
    def audio_s(self) -> float:
        return sum(self.samples) / self.sample_rate if self.sample_rate else 0.0

    def gaps_s(self) -> list[float]:
        return list(np.diff(self.arrivals_s))

    def stall_s(self) -> float:
        """How long a listener who starts playing at the first chunk would wait for later ones, in total."""
        played = self.arrivals_s[0]  # when the audio received so far has played out
        stall = 0.0
        for arrival, samples in zip(self.arrivals_s, self.samples):
            stall += max(0.0, arrival - played)
            played = max(played, arrival) + samples / self.sample_rate
        return stall


@dataclass
class Whole:
    """One `tts` request at the client."""

    text: str
    start_s: float
    latency_s: float = 0.0
    audio_s: float = 0.0
    error: str | None = None


def stream_once(client: TTSClient, text: str, started: float) -> Stream:
    record = Stream(text, time.perf_counter() - started)
    sent = time.perf_counter()
    try:
        for chunk in client.stream(text):
            record.arrivals_s.append(time.perf_counter() - sent)
            record.samples.append(len(chunk.audio))
            record.sample_rate = chunk.sample_rate
    except Exception as e:  # a failure is a result
        record.error = f"{type(e).__name__}: {e}"
    return record


def whole_once(client: TTSClient, text: str, started: float) -> Whole:
    record = Whole(text, time.perf_counter() - started)
    sent = time.perf_counter()
    try:
        record.audio_s = client.synthesize(text).duration_s
        record.latency_s = time.perf_counter() - sent
    except Exception as e:
        record.error = f"{type(e).__name__}: {e}"
    return record


def closed_loop(client: TTSClient, model: str, texts: list[str], concurrency: int) -> tuple[list, float]:
    """Every text once, `concurrency` requests in flight; the records in text order and the wall time."""
    records: list = [None] * len(texts)
    todo = iter(range(len(texts)))
    lock = threading.Lock()
    started = time.perf_counter()
    once = stream_once if model == TTS_STREAM.name else whole_once

    def worker() -> None:
        while True:
            with lock:
                index = next(todo, None)
            if index is None:
                return
            records[index] = once(client, texts[index], started)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return records, time.perf_counter() - started


class ServerMetrics:
    """The streaming model's own metrics (serving.stream.adapter.StreamMetrics) from Triton's metrics port."""

    def __init__(self, server: TritonServer):
        self.url = f"http://127.0.0.1:{server.ports.metrics}/metrics"

    def read(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url, timeout=10) as r:
            text = r.read().decode()
        return {name: float(value) for name, value in re.findall(r"^(tts_stream_\S+) (\S+)$", text, re.MULTILINE)}

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict:
        """Decoder steps and the streams they advanced (a histogram by bucket), vocoded frames by part."""
        diff = {key: after[key] - before.get(key, 0.0) for key in after}
        buckets = {re.search(r'le="([^"]+)"', key).group(1): value for key, value in diff.items()
                   if key.startswith("tts_stream_decoder_step_streams_bucket")}
        steps = diff.get(f'tts_stream_decoder_step_streams_count{{model="{TTS_STREAM.name}"}}', 0.0)
        advanced = diff.get(f'tts_stream_decoder_step_streams_sum{{model="{TTS_STREAM.name}"}}', 0.0)
        frames = {part: diff.get(f'tts_stream_vocoded_frames{{model="{TTS_STREAM.name}",part="{part}"}}', 0.0)
                  for part in ("audio", "context")}
        return {"decoder_steps": steps, "streams_per_step": advanced / steps if steps else float("nan"),
                "steps_by_bucket": buckets, "vocoded_frames": frames,
                "context_share": frames["context"] / frames["audio"] if frames["audio"] else float("nan")}


def stream_summary(records: list[Stream], wall_s: float) -> dict:
    ok = [r for r in records if r.error is None and r.arrivals_s]
    gaps = [g for r in ok for g in r.gaps_s()]
    stalls = [r.stall_s() for r in ok]
    audio = sum(r.audio_s for r in ok)
    return {"requests": len(records), "failed": len(records) - len(ok), "wall_s": wall_s, "audio_s": audio,
            "audio_per_wall": audio / wall_s, "first_audio_s": latency_summary([r.first_audio_s for r in ok]),
            "done_s": latency_summary([r.arrivals_s[-1] for r in ok]), "gap_s": latency_summary(gaps),
            "chunks_per_request": float(np.mean([len(r.arrivals_s) for r in ok])) if ok else float("nan"),
            "underrun_share": float(np.mean([s > 0 for s in stalls])) if ok else float("nan"),
            "stall_s": latency_summary(stalls),
            "errors": sorted({r.error for r in records if r.error})}


def whole_summary(records: list[Whole], wall_s: float) -> dict:
    ok = [r for r in records if r.error is None]
    audio = sum(r.audio_s for r in ok)
    return {"requests": len(records), "failed": len(records) - len(ok), "wall_s": wall_s, "audio_s": audio,
            "audio_per_wall": audio / wall_s, "latency_s": latency_summary([r.latency_s for r in ok]),
            "errors": sorted({r.error for r in records if r.error})}


def sentences(pool: TextPool, count: int) -> list[str]:
    """Unique single sentences of SENTENCE_CHARS characters (the pool's medium texts that fit)."""
    found = []
    while len(found) < count:
        found += [t for t in pool.take(3) if SENTENCE_CHARS[0] <= len(t) <= SENTENCE_CHARS[1]]
    return found[:count]


def paragraph(pool: TextPool) -> str:
    """A paragraph of PARAGRAPH_CHARS characters from the pool's long texts, ending with a full stop."""
    text = ""
    while len(text) < PARAGRAPH_CHARS:
        text += "".join(pool.take(3))
    return text[: PARAGRAPH_CHARS - 1] + "。"


def loadavg() -> float:
    return os.getloadavg()[0]


def single_latency(client: TTSClient, texts: list[str], label: str) -> dict:
    """Each text streamed and synthesised whole at concurrency 1; which goes first alternates."""
    pairs, load = [], [loadavg()]
    for i, text in enumerate(texts):
        runs = {}
        for model in ([TTS_STREAM.name, TTS.name] if i % 2 == 0 else [TTS.name, TTS_STREAM.name]):
            started = time.perf_counter()
            runs[model] = (stream_once if model == TTS_STREAM.name else whole_once)(client, text, started)
        stream, whole = runs[TTS_STREAM.name], runs[TTS.name]
        if stream.error or whole.error:
            raise BenchError(f"{label}: {stream.error or whole.error}")
        pairs.append({"chars": len(text), "first_audio_s": stream.first_audio_s, "stream_done_s": stream.arrivals_s[-1],
                      "tts_s": whole.latency_s, "audio_s": whole.audio_s, "stall_s": stream.stall_s(),
                      "chunks": len(stream.arrivals_s)})
        print(f"[bench] {label} {i + 1}/{len(texts)} ({len(text)} chars): first audio {stream.first_audio_s * 1000:.0f} ms,"
              f" tts {whole.latency_s * 1000:.0f} ms for {whole.audio_s:.1f} s of audio", flush=True)
    load.append(loadavg())
    first = latency_summary([p["first_audio_s"] for p in pairs])
    whole = latency_summary([p["tts_s"] for p in pairs])
    return {"pairs": pairs, "first_audio_s": first, "tts_s": whole, "first_audio_vs_tts": first["p50"] / whole["p50"],
            "loadavg": load}


def load_levels(client: TTSClient, metrics: ServerMetrics, pool: TextPool, concurrency: list[int], requests: int,
                repeat: int) -> list[dict]:
    levels = []
    for c in concurrency:
        texts = pool.take(max(requests * c, 3))
        level = {"concurrency": c, "repeat": repeat, "texts": len(texts), "loadavg": [loadavg()]}
        order = [TTS_STREAM.name, TTS.name] if repeat % 2 == 0 else [TTS.name, TTS_STREAM.name]
        for model in order:
            before = metrics.read() if model == TTS_STREAM.name else None
            records, wall = closed_loop(client, model, texts, c)
            if model == TTS_STREAM.name:
                level["stream"] = stream_summary(records, wall)
                level["stream"]["server"] = ServerMetrics.delta(before, metrics.read())
                level["stream_records"] = [asdict(r) for r in records]
            else:
                level["tts"] = whole_summary(records, wall)
                level["tts_records"] = [asdict(r) for r in records]
            level["loadavg"].append(loadavg())
        s, w = level["stream"], level["tts"]
        level["throughput_vs_tts"] = s["audio_per_wall"] / w["audio_per_wall"]
        print(f"[bench] c={c} repeat {repeat}: first audio p50 {s['first_audio_s']['p50'] * 1000:.0f} ms, "
              f"tts p50 {w['latency_s']['p50']:.2f} s; audio s/s stream {s['audio_per_wall']:.2f}, "
              f"tts {w['audio_per_wall']:.2f} ({level['throughput_vs_tts']:.2f}x); "
              f"{s['server']['streams_per_step']:.1f} streams per decoder step; "
              f"context {s['server']['context_share'] * 100:.0f} % of the vocoded audio frames; "
              f"load {level['loadavg'][0]:.1f}->{level['loadavg'][-1]:.1f}", flush=True)
        levels.append(level)
    return levels


def targets(results: dict) -> list[dict]:
    sentence, para = results["sentence"], results["paragraph"]
    c8 = [lv for lv in results["levels"] if lv["concurrency"] == 8]
    rows = [
        ("first audio p50, 10-20 character sentence, concurrency 1", sentence["first_audio_s"]["p50"],
         f"<= {TARGETS['sentence_first_audio_s'] * 1000:.0f} ms", sentence["first_audio_s"]["p50"] <= TARGETS["sentence_first_audio_s"], "s"),
        ("... as a share of tts's p50 for the same sentences", sentence["first_audio_vs_tts"],
         f"<= {TARGETS['sentence_first_audio_vs_tts']:g}", sentence["first_audio_vs_tts"] <= TARGETS["sentence_first_audio_vs_tts"], "x"),
        (f"first audio p50, {PARAGRAPH_CHARS}-character paragraph, concurrency 1", para["first_audio_s"]["p50"],
         f"<= {TARGETS['paragraph_first_audio_s'] * 1000:.0f} ms", para["first_audio_s"]["p50"] <= TARGETS["paragraph_first_audio_s"], "s"),
    ]
    if c8:
        first = float(np.median([lv["stream"]["first_audio_s"]["p50"] for lv in c8]))
        ratio = float(np.median([lv["throughput_vs_tts"] for lv in c8]))
        rows += [("first audio p50, concurrency 8 (median of the repeats)", first,
                  f"<= {TARGETS['c8_first_audio_s'] * 1000:.0f} ms", first <= TARGETS["c8_first_audio_s"], "s"),
                 ("throughput stream / tts, concurrency 8 (median of the repeats)", ratio,
                  f">= {TARGETS['c8_throughput_vs_tts']:g}", ratio >= TARGETS["c8_throughput_vs_tts"], "x")]
    return [{"name": n, "value": v, "needs": needs, "passed": bool(ok), "unit": unit} for n, v, needs, ok, unit in rows]


def write_summary(results: dict, path: Path) -> None:
    meta, machine = results["meta"], results["meta"]["machine"]
    policy = meta["chunk_policy"]

    def ms(value: float) -> str:
        return f"{value * 1000:.0f}"

    lines = [f"# Streaming benchmark: `tts_stream` beside `tts` ({meta['date']})", ""]
    if meta.get("note"):
        lines += [f"> {meta['note']}", ""]
    lines += [
        f"Command: `{meta['command']}`", "",
        f"Machine: {machine_cpu(machine)}, "
        f"{machine['memory_gib']} GiB, tritonserver {meta['tritonserver']}; the 1-minute load average before and "
        f"after each measurement is in the tables (other work on these cores skews every timing). Model: "
        f"{meta['model']}; {'; '.join(meta['repository'])}. Deployment: `deploy/targets/cpu.yaml`, streaming with "
        f"the chunk policy: first chunk {policy['first_frames']} frames, largest {policy['max_frames']}, growth "
        f"{policy['growth']:g}, lead bound {policy['max_lead_s']:g} s, vocoder {policy['vocoder']}; no response cache; "
        "the project's client over gRPC.", "",
        "## Targets", "",
        "| target | measured | needs | |", "|---|---|---|---|",
    ]
    for t in results["targets"]:
        value = f"{ms(t['value'])} ms" if t["unit"] == "s" else f"{t['value']:.2f}"
        lines.append(f"| {t['name']} | {value} | {t['needs']} | **{'PASS' if t['passed'] else 'FAIL'}** |")
    lines += ["", "## Concurrency 1: first audio against the whole answer", "",
              "| texts | n | first audio p50 / p90 ms | tts p50 / p90 ms | first audio / tts (p50) | audio s (mean) "
              "| load before/after |", "|---|---|---|---|---|---|---|"]
    for key, label in (("sentence", f"{SENTENCE_CHARS[0]}-{SENTENCE_CHARS[1]} character sentences"),
                       ("paragraph", f"{PARAGRAPH_CHARS}-character paragraphs")):
        r = results[key]
        lines.append(f"| {label} | {len(r['pairs'])} | {ms(r['first_audio_s']['p50'])} / {ms(r['first_audio_s']['p90'])} "
                     f"| {ms(r['tts_s']['p50'])} / {ms(r['tts_s']['p90'])} | {r['first_audio_vs_tts']:.3f} | "
                     f"{np.mean([p['audio_s'] for p in r['pairs']]):.1f} | {r['loadavg'][0]:.1f} / {r['loadavg'][1]:.1f} |")
    lines += ["", "## Under load", "",
              "Closed loops of `concurrency` clients over the same unique texts (short, medium, long in turn) for each "
              "model. First audio: request sent to first chunk; tts: request sent to the whole answer. Gaps: between "
              "a stream's chunks. Underrun: the share of streams whose listener, playing from the first chunk, would "
              "wait for a later one, and the p50/max of that wait. Throughput: audio seconds per wall second. "
              "Streams per step: how many streams one decoder step advanced on average (the model's own histogram); "
              "context: mel frames vocoded again around chunks, per frame of audio.", "",
              "| c | rep | first audio p50 / p90 / p99 ms | tts p50 / p90 / p99 ms | gap p50 / p90 / max ms | underrun "
              "(stall p50 / max s) | audio s/s stream / tts | ratio | streams per step | context | load |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for lv in results["levels"]:
        s, w = lv["stream"], lv["tts"]
        f, t, g = s["first_audio_s"], w["latency_s"], s["gap_s"]
        lines.append(
            f"| {lv['concurrency']} | {lv['repeat']} | {ms(f['p50'])} / {ms(f['p90'])} / {ms(f['p99'])} | "
            f"{ms(t['p50'])} / {ms(t['p90'])} / {ms(t['p99'])} | {ms(g['p50'])} / {ms(g['p90'])} / {ms(g['max'])} | "
            f"{s['underrun_share'] * 100:.0f} % ({s['stall_s']['p50']:.2f} / {s['stall_s']['max']:.2f}) | "
            f"{s['audio_per_wall']:.2f} / {w['audio_per_wall']:.2f} | {lv['throughput_vs_tts']:.2f} | "
            f"{s['server']['streams_per_step']:.1f} | {s['server']['context_share'] * 100:.0f} % | "
            f"{lv['loadavg'][0]:.1f}->{lv['loadavg'][-1]:.1f} |")
    failed = [(lv["concurrency"], e) for lv in results["levels"] for e in lv["stream"]["errors"] + lv["tts"]["errors"]]
    lines += ["", f"Failed requests: {sum(lv['stream']['failed'] + lv['tts']['failed'] for lv in results['levels'])}"
              + "".join(f"; c={c}: {e}" for c, e in failed[:5]) + ".", ""]
    lines += ["Decoder steps by streams advanced (all repeats): "
              + "; ".join(f"c={c}: " + ", ".join(f"<= {b}: {n:.0f}" for b, n in buckets.items())
                          for c, buckets in results["steps_by_concurrency"].items()), ""]
    path.write_text("\n".join(lines))


def plot(results: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    levels = results["levels"]
    ticks = sorted({lv["concurrency"] for lv in levels})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for repeat in sorted({lv["repeat"] for lv in levels}):
        lvs = [lv for lv in levels if lv["repeat"] == repeat]
        c = [lv["concurrency"] for lv in lvs]
        mark = dict(marker="o" if repeat == 0 else "s", alpha=1.0 if repeat == 0 else 0.6)
        left.plot(c, [lv["stream"]["first_audio_s"]["p50"] for lv in lvs], color="C0",
                  label="tts_stream first audio p50" if repeat == 0 else None, **mark)
        left.plot(c, [lv["stream"]["first_audio_s"]["p90"] for lv in lvs], color="C0", linestyle="--",
                  label="tts_stream first audio p90" if repeat == 0 else None, **mark)
        left.plot(c, [lv["tts"]["latency_s"]["p50"] for lv in lvs], color="C1",
                  label="tts whole answer p50" if repeat == 0 else None, **mark)
        right.plot(c, [lv["stream"]["audio_per_wall"] for lv in lvs], color="C0",
                   label="tts_stream" if repeat == 0 else None, **mark)
        right.plot(c, [lv["tts"]["audio_per_wall"] for lv in lvs], color="C1", label="tts" if repeat == 0 else None,
                   **mark)
    left.axhline(TARGETS["c8_first_audio_s"], color="grey", linewidth=0.8, linestyle=":")
    left.set(xlabel="concurrent clients", ylabel="seconds", title="Time to audio (log)", xscale="log", yscale="log")
    right.set(xlabel="concurrent clients", ylabel="audio seconds per wall second", title="Throughput", xscale="log",
              ylim=(0, None))
    for ax in (left, right):
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="a ModelScope model directory (default: the full-size fixture)")
    parser.add_argument("--fixture-size", choices=["full", "tiny"], default="full", help="(full)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16], help="(1 4 8 16)")
    parser.add_argument("--requests", type=int, default=2, help="texts per client and level (2)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of the concurrency sweep (2)")
    parser.add_argument("--sentences", type=int, default=10, help=f"{SENTENCE_CHARS}-character sentences at c=1 (10)")
    parser.add_argument("--paragraphs", type=int, default=3, help=f"{PARAGRAPH_CHARS}-character paragraphs at c=1 (3)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up requests per model (3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the texts (0)")
    parser.add_argument("--note", default="", help="a line for the top of the summary")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench", help="(build/bench)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "stream", help="(results/stream)")
    parser.add_argument("--export-arg", action="append", default=[],
                        help="an option for python -m export (repeatable)")
    parser.add_argument("--vocoder-precision", choices=CHOICES, default=AUTO, help="(auto, as scripts/serve.sh)")
    parser.add_argument("--reuse-export", action="store_true", help="skip the export when --work holds one of the "
                        "same model directory")
    default = TargetSettings.read("cpu").streaming
    parser.add_argument("--first-chunk-frames", type=int, default=default.first_frames,
                        help=f"the chunk policy to measure (default: deploy/targets/cpu.yaml's, {default.first_frames})")
    parser.add_argument("--max-chunk-frames", type=int, default=default.max_frames, help=f"({default.max_frames})")
    parser.add_argument("--chunk-growth", type=float, default=default.growth, help=f"({default.growth:g})")
    parser.add_argument("--max-lead-s", type=float, default=default.max_lead_s, help=f"({default.max_lead_s:g})")
    parser.add_argument("--vocoder", choices=VOCODER_PLACES, default=default.vocoder,
                        help=f"where the streaming model vocodes ({default.vocoder})")
    args = parser.parse_args(argv)
    if min(args.concurrency) < 1 or args.requests < 1 or args.repeats < 1:
        parser.error("concurrency, --requests and --repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.work, args.out = args.work.resolve(), args.out.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        deployed = TargetSettings.read("cpu").streaming
        policy = StreamPolicy(args.first_chunk_frames, args.max_chunk_frames, args.chunk_growth, args.max_lead_s,
                              deployed.max_streams, args.vocoder)
        _, export_dir, model = prepare_model(args)
        repository_log: list[str] = []
        settings = dataclasses.replace(TargetSettings.read("cpu"), streaming=policy)
        repository = generate(export_dir, args.work / "model_repository", "cpu", args.vocoder_precision,
                              log=lambda line: (print(f"[bench] {line}", flush=True), repository_log.append(line)),
                              settings=settings)
        server = TritonServer(repository, log_path=args.work / "tritonserver.log")  # no response cache
        print("[bench] starting tritonserver", flush=True)
        with server, TTSClient(server.grpc_url, "grpc", timeout_s=REQUEST_TIMEOUT_S) as client:
            with urllib.request.urlopen(f"http://{server.http_url}/v2", timeout=5) as r:
                version = json.load(r).get("version", "unknown")
            pool = TextPool(args.seed)
            for text in pool.take(args.warmup):
                stream_once(client, text, time.perf_counter())
                whole_once(client, text, time.perf_counter())
            metrics = ServerMetrics(server)
            results = {
                "sentence": single_latency(client, sentences(pool, args.sentences), "sentence"),
                "paragraph": single_latency(client, [paragraph(pool) for _ in range(args.paragraphs)], "paragraph"),
                "levels": [],
            }
            for repeat in range(args.repeats):
                results["levels"] += load_levels(client, metrics, pool, args.concurrency, args.requests, repeat)
    except (BenchError, ModelDirError, LauncherError, RepositoryError, ExportConfigError, StreamPolicyError) as e:
        sys.exit(f"error: {e}")

    results["steps_by_concurrency"] = {}
    for lv in results["levels"]:
        totals = results["steps_by_concurrency"].setdefault(str(lv["concurrency"]), {})
        previous = 0.0
        for bucket, count in sorted(lv["stream"]["server"]["steps_by_bucket"].items(),
                                    key=lambda item: float(item[0])):
            totals[bucket] = totals.get(bucket, 0.0) + count - previous  # per bucket, not cumulative
            previous = count
    results["meta"] = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "command": shlex.join(["python -m bench.stream", *(argv or sys.argv[1:])]),
        "note": args.note, "machine": describe_machine(), "model": model, "tritonserver": version,
        "repository": repository_log, "chunk_policy": asdict(policy), "seed": args.seed,
        "duration_s": time.perf_counter() - started,
    }
    results["targets"] = targets(results)
    write_json(results, args.out / "results.json")
    write_summary(results, args.out / "summary.md")
    plot(results, args.out / "stream.png")
    print((args.out / "summary.md").read_text())
    print(f"[bench] done in {time.perf_counter() - started:.0f} s: {args.out}", flush=True)


if __name__ == "__main__":
    main()
