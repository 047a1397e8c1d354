"""Soak: sustained concurrent load on the `tts` ensemble over gRPC and HTTP, with correctness and memory checks.

    scripts/soak.sh [--minutes 10] [--model-dir DIR | --repository DIR] [--out results/soak]   (see --help)

Starts its own tritonserver WITHOUT the response cache (so every request runs the whole pipeline, even
when two threads happen to draw the same text), then runs `--grpc-threads` + `--http-threads` client
threads (8 + 8: concurrency 16), each drawing its own seeded stream of short, medium and long texts, until
the time is up. Before the timed run every thread sends a few long texts at once (the warm-up), so the
largest batches have reached the models and their allocators their high-water marks before memory is
measured. Checks, after the load (the warm-up's answers included):

- failures: every request succeeded (any TTSError is a failure);
- lengths: every response's sample count equals sum(frames_i) * hop + the pauses joined between its
  sentences, where frames_i are the frame counts the acoustic model predicts for the text's sentences,
  computed here, in this process, by the front end and the acoustic duration loop (encoder + durations
  only; no decoder, no vocoder) from the repository's own files;
- audio: for one randomly kept request per thread, the whole pipeline run here alone on its text
  (front end, acoustic, vocoder, sentence join: the code of serving.steps) gives the served audio
  within 1e-3, so batching under load never garbles a request;
- memory: the resident memory of the server's process tree (tritonserver + one python stub per model,
  from /proc) grows by less than 10% from 20% of the run to its end (minute 2 to minute 10 of a
  10-minute run).

Writes soak.json, summary.md and soak.png (RSS and throughput over time) to --out, and exits 1 if a
check failed. The CPU model repository is required (the in-process checks run its ONNX files).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from bench.memory import tree_memory
from bench.report import describe_machine
from bench.texts import KINDS, MAKERS
from deploy.launcher import LauncherError, TritonServer
from deploy.repository import generate
from models.mel import log_mel_l1, log_mel_spectrogram
from serving.contract import (
    ACOUSTIC,
    AUDIO,
    BF16,
    DURATION_SCALE,
    EXPORT_CONFIG_FILE,
    IDS,
    MAX_BF16_BATCH_L1,
    MAX_FP32_BATCH_DIFF,
    PAUSE,
    TEXT,
    TOKENS,
    VOCODER,
    VOICE_INDEX,
    ExportConfig,
)
from serving.pipeline import Pipeline, config_parameters
from tts_client import TTSClient
from tts_client.client import TTSError

MAX_RSS_GROWTH = 0.10          # resident memory grows under 10% between minute 2 and minute 10
MEMORY_WINDOW_START = 0.2      # ... i.e. from 20% of the run to its end
MEMORY_SAMPLES_AVERAGED = 3    # median of this many samples at each end of the window, against one-off spikes
REQUEST_TIMEOUT_S = 600.0      # generous: a long text waits behind 15 others on a shared 2-core machine
THROUGHPUT_WINDOW = 0.1        # throughput curve: completions over the last 10% of the run, at every memory sample
WARMUP_ROUNDS = 2              # long texts per thread, all threads at once, before the timed run


class SoakError(RuntimeError):
    """The soak cannot run (no CPU repository, the server did not start); one line says why."""


@dataclass
class Request:
    """One synthesis as a client thread saw it; times in seconds from the start of the load."""
    thread: int
    protocol: str
    kind: str
    text: str
    start_s: float
    end_s: float
    samples: int | None = None   # None when the request failed
    error: str | None = None


@dataclass
class MemorySample:
    t_s: float
    rss_mib: float
    pss_mib: float
    processes: int
    completed: int


@dataclass
class Check:
    passed: bool
    detail: str


@dataclass
class SoakReport:
    config: dict
    requests: list[Request]
    memory: list[MemorySample]
    warmup: list[Request]
    checks: dict[str, Check] = field(default_factory=dict)
    kept_audio_diffs: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    loadavg: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks.values())


class Reference:
    """The serving pipeline of a CPU model repository with its configs' settings, run in this process."""

    def __init__(self, repository: Path):
        acoustic_dir = repository / ACOUSTIC.name / "1"
        if not (acoustic_dir / EXPORT_CONFIG_FILE).is_file():
            raise SoakError(f"{repository} is not a generated model repository (no "
                            f"{ACOUSTIC.name}/1/{EXPORT_CONFIG_FILE}): generate one with "
                            "python -m deploy.repository EXPORT_DIR --target cpu")
        if "runtime" not in config_parameters(repository / VOCODER.name / "config.pbtxt"):
            raise SoakError(f"{repository} is not a CPU model repository (its vocoder has no runtime parameter): "
                            "generate one with python -m deploy.repository EXPORT_DIR --target cpu")
        config = ExportConfig.read(acoustic_dir)
        self.audio_settings = config.audio
        self.hop, self.sample_rate = config.audio.hop_length, config.audio.sample_rate
        self.precision = config_parameters(repository / VOCODER.name / "config.pbtxt")["runtime"]
        self.pipeline = Pipeline.from_repository(repository)
        self._expected: dict[str, int] = {}

    def expected_samples(self, text: str) -> int:
        """sum(frames_i) * hop + the pauses between sentences, frames_i from the duration loop alone."""
        if text not in self._expected:
            rows = self.pipeline.frontend.sentence_rows({TEXT.name: np.array([[text.encode("utf-8")]], dtype=object)})
            runtime = self.pipeline.acoustic.runtimes[int(rows[VOICE_INDEX.name][0, 0])]
            ids = [rows[IDS.name][s, : int(rows[TOKENS.name][s, 0])] for s in range(len(rows[TOKENS.name]))]
            frames = runtime.predict_durations(ids, rows[DURATION_SCALE.name][:, 0].tolist()).frame_counts
            pauses = sum(int(round(float(p) * self.sample_rate)) for p in rows[PAUSE.name][:-1, 0])
            self._expected[text] = sum(frames) * self.hop + pauses
        return self._expected[text]

    def synthesize(self, text: str) -> np.ndarray:
        """The whole pipeline for one request alone: what the server returns for `text` without load."""
        (result,) = self.pipeline.process([{TEXT.name: np.array([[text.encode("utf-8")]], dtype=object)}])
        return result[AUDIO.name][0]

    def difference(self, served: np.ndarray, alone: np.ndarray) -> tuple[float, float, str]:
        """(difference, its bound, what it is) of served audio against the same text alone, for this repository's
        vocoder precision (serving.contract: MAX_FP32_BATCH_DIFF, MAX_BF16_BATCH_L1)."""
        if served.shape != alone.shape:
            return float("inf"), 0.0, "length"
        if self.precision == BF16:
            l1 = log_mel_l1(log_mel_spectrogram(served, self.audio_settings), log_mel_spectrogram(alone, self.audio_settings))
            return l1, MAX_BF16_BATCH_L1, "re-analysed log-mel L1"
        return float(np.abs(served - alone).max()), MAX_FP32_BATCH_DIFF, "max abs diff"


class TextStream:
    """One thread's texts: short, medium and long in turn (each thread starts at another kind), seeded."""

    def __init__(self, seed: int, thread: int):
        self._rng = random.Random(f"{seed}-{thread}")
        self._next = thread % len(KINDS)

    def take(self) -> tuple[str, str]:
        kind = KINDS[self._next]
        self._next = (self._next + 1) % len(KINDS)
        return kind, MAKERS[kind](self._rng)


class Load:
    """Client threads sending requests back to back until a deadline; keeps one random response's audio
    per thread (reservoir sampling) for the audio check."""

    def __init__(self, server: TritonServer, grpc_threads: int, http_threads: int, seed: int):
        self.clients = {"grpc": TTSClient(server.grpc_url, "grpc", timeout_s=REQUEST_TIMEOUT_S, retries=0),
                        "http": TTSClient(server.http_url, "http", timeout_s=REQUEST_TIMEOUT_S, retries=0)}
        self.protocols = ["grpc"] * grpc_threads + ["http"] * http_threads
        self.seed = seed
        self.warmup: list[Request] = []
        self.requests: list[Request] = []
        self.kept: dict[int, tuple[Request, np.ndarray]] = {}
        self._lock = threading.Lock()

    def completed(self) -> int:
        with self._lock:
            return len(self.requests)

    def warm_up(self, rounds: int) -> None:
        """Every thread sends `rounds` long texts at once: the largest batches reach the models first, so
        their allocators are at their high-water marks before memory is measured."""
        threads = [threading.Thread(target=self._warm_up_thread, args=(i, protocol, rounds))
                   for i, protocol in enumerate(self.protocols)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def run(self, t0: float, deadline: float) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._thread, args=(i, protocol, t0, deadline), daemon=True)
                   for i, protocol in enumerate(self.protocols)]
        for thread in threads:
            thread.start()
        return threads

    def _warm_up_thread(self, index: int, protocol: str, rounds: int) -> None:
        rng, t0 = random.Random(f"{self.seed}-warmup-{index}"), time.monotonic()
        for _ in range(rounds):
            request, _ = self._send(index, protocol, "long", MAKERS["long"](rng), t0)
            with self._lock:
                self.warmup.append(request)

    def _thread(self, index: int, protocol: str, t0: float, deadline: float) -> None:
        texts = TextStream(self.seed, index)
        keep_rng, seen = random.Random(f"{self.seed}-keep-{index}"), 0
        while time.monotonic() < deadline:
            request, audio = self._send(index, protocol, *texts.take(), t0)
            with self._lock:
                self.requests.append(request)
            if audio is not None:
                seen += 1
                if keep_rng.random() < 1.0 / seen:
                    self.kept[index] = (request, audio)

    def _send(self, index: int, protocol: str, kind: str, text: str, t0: float) -> tuple[Request, np.ndarray | None]:
        request = Request(index, protocol, kind, text, time.monotonic() - t0, 0.0)
        audio = None
        try:
            audio = self.clients[protocol].synthesize(text).audio
            request.samples = len(audio)
        except TTSError as e:
            request.error = f"{type(e).__name__}: {e}"
        request.end_s = time.monotonic() - t0
        return request, audio

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def run_soak(repository: Path, duration_s: float, grpc_threads: int = 8, http_threads: int = 8,
             sample_interval_s: float = 2.0, seed: int = 0, warmup_rounds: int = WARMUP_ROUNDS,
             log_path: Path | None = None) -> SoakReport:
    """Start a server on `repository` (no response cache), warm it up, load it for `duration_s`, stop it, check."""
    repository = Path(repository).resolve()
    reference = Reference(repository)  # fails early on a wrong repository
    config = dict(duration_s=duration_s, grpc_threads=grpc_threads, http_threads=http_threads,
                  concurrency=grpc_threads + http_threads, sample_interval_s=sample_interval_s, seed=seed,
                  warmup_rounds=warmup_rounds, repository=str(repository), response_cache=False, sample_rate=reference.sample_rate)
    server = TritonServer(repository, log_path=log_path)
    try:
        server.start()
    except LauncherError as e:
        raise SoakError(str(e)) from None
    load = Load(server, grpc_threads, http_threads, seed)
    memory: list[MemorySample] = []
    loadavg_before = os.getloadavg()[0]
    try:
        load.warm_up(warmup_rounds)
        t0 = time.monotonic()
        threads = load.run(t0, t0 + duration_s)
        while any(t.is_alive() for t in threads):
            usage = tree_memory(server.process.pid)
            memory.append(MemorySample(round(time.monotonic() - t0, 2), usage.rss_mib, usage.pss_mib,
                                       usage.processes, load.completed()))
            next_sample = time.monotonic() + sample_interval_s
            for thread in threads:
                thread.join(timeout=max(0.0, next_sample - time.monotonic()))
        wall_s = time.monotonic() - t0
    finally:
        load.close()
        server.stop()
    report = SoakReport(config, sorted(load.requests, key=lambda r: r.start_s), memory, load.warmup,
                        wall_s=wall_s, loadavg={"before": loadavg_before, "after": os.getloadavg()[0]})
    check(report, reference, list(load.kept.values()))
    return report


def check(report: SoakReport, reference: Reference, kept: list[tuple[Request, np.ndarray]]) -> None:
    requests = report.warmup + report.requests  # the warm-up's answers must be right too
    failed = [r for r in requests if r.error is not None]
    protocols = sorted({r.protocol for r in requests if r.error is None})
    report.checks["failures"] = Check(
        not failed and len(protocols) == 2,
        f"{len(failed)} of {len(requests)} requests failed; successes over {', '.join(protocols) or 'no protocol'}"
        + (f"; first error: {failed[0].error}" if failed else ""))

    wrong = []
    for r in requests:
        if r.samples is not None and r.samples != reference.expected_samples(r.text):
            wrong.append(f"{r.text!r}: {r.samples} samples, expected {reference.expected_samples(r.text)}")
    checked = sum(r.samples is not None for r in requests)
    report.checks["lengths"] = Check(
        not wrong and checked > 0,
        f"{checked - len(wrong)} of {checked} responses have sum(frames) x hop ({reference.hop}) + pauses samples"
        + (f"; first mismatch: {wrong[0]}" if wrong else ""))

    bound, measure = MAX_FP32_BATCH_DIFF, "max abs diff"
    for request, audio in kept:
        diff, bound, measure = reference.difference(audio, reference.synthesize(request.text))
        report.kept_audio_diffs.append(dict(text=request.text, protocol=request.protocol, kind=request.kind,
                                            samples=len(audio), difference=diff, measure=measure))
    worst = max((d["difference"] for d in report.kept_audio_diffs), default=float("inf"))
    report.checks["audio"] = Check(
        worst <= bound,
        f"{len(kept)} kept responses vs the same text synthesized alone in-process ({reference.precision} vocoder): "
        f"{measure} {worst:.2e} (bound {bound:g})")

    start, end, growth = rss_growth(report.memory, report.config["duration_s"])
    report.checks["memory"] = Check(
        growth < MAX_RSS_GROWTH,
        f"RSS of the server's process tree {start:.0f} MiB at {MEMORY_WINDOW_START:.0%} of the run, {end:.0f} MiB "
        f"at its end: growth {growth:+.1%} (bound {MAX_RSS_GROWTH:.0%})")


def rss_growth(memory: list[MemorySample], duration_s: float) -> tuple[float, float, float]:
    """RSS at the start and at the end of the window [20% of the run, its end], each the median of a few
    samples, and the relative growth between them (inf when the window holds too few samples)."""
    window = [m.rss_mib for m in memory if MEMORY_WINDOW_START * duration_s <= m.t_s <= duration_s]
    if len(window) < 2 * MEMORY_SAMPLES_AVERAGED:
        return float("nan"), float("nan"), float("inf")
    start = float(np.median(window[:MEMORY_SAMPLES_AVERAGED]))
    end = float(np.median(window[-MEMORY_SAMPLES_AVERAGED:]))
    return start, end, (end - start) / start


# -- outputs ---------------------------------------------------------------------------------------


def throughput(report: SoakReport) -> list[dict]:
    """Requests per second and audio seconds per wall second over a sliding window (a tenth of the run:
    large batches finish many requests at once, so shorter windows only show the batches)."""
    window_s = THROUGHPUT_WINDOW * report.config["duration_s"]
    points = []
    for m in report.memory:
        if m.t_s < window_s:
            continue
        done = [r for r in report.requests if m.t_s - window_s < r.end_s <= m.t_s and r.samples is not None]
        points.append(dict(t_s=m.t_s, window_s=window_s, requests_per_s=len(done) / window_s,
                           audio_s_per_s=sum(r.samples for r in done) / report.config["sample_rate"] / window_s))
    return points


def summarize(report: SoakReport) -> dict:
    ok = [r for r in report.requests if r.samples is not None]
    latencies = {}
    for group, members in [("all", ok)] + [(p, [r for r in ok if r.protocol == p]) for p in ("grpc", "http")] + \
                          [(k, [r for r in ok if r.kind == k]) for k in KINDS]:
        values = np.array([r.end_s - r.start_s for r in members])
        latencies[group] = dict(requests=len(members), **({f"p{q}": round(float(np.percentile(values, q)), 3)
                                                            for q in (50, 90, 99)} if len(values) else {}))
    audio_s = sum(r.samples for r in ok) / report.config["sample_rate"]
    return dict(warmup_requests=len(report.warmup), requests=len(report.requests),
                failed=len(report.requests) - len(ok), audio_s=round(audio_s, 1),
                requests_per_s=round(len(ok) / report.wall_s, 3), audio_s_per_s=round(audio_s / report.wall_s, 3),
                latency_s=latencies)


def write_outputs(report: SoakReport, out_dir: Path, note: str = "") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    results = dict(config=report.config, machine=describe_machine(), note=note, loadavg=report.loadavg,
                   wall_s=round(report.wall_s, 1), summary=summarize(report), passed=report.passed,
                   checks={name: asdict(c) for name, c in report.checks.items()},
                   kept_audio=report.kept_audio_diffs, throughput=throughput(report),
                   memory=[asdict(m) for m in report.memory],
                   memory_growth=dict(zip(("start_mib", "end_mib", "growth"),
                                          rss_growth(report.memory, report.config["duration_s"]))),
                   failures=[asdict(r) for r in report.warmup + report.requests if r.error is not None][:50])
    json_path = out_dir / "soak.json"
    json_path.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n")
    summary_path = out_dir / "summary.md"
    summary_path.write_text(summary_markdown(results))
    return [json_path, summary_path, plot(results, out_dir / "soak.png")]


def summary_markdown(results: dict) -> str:
    config, summary, machine = results["config"], results["summary"], results["machine"]
    lines = [
        f"# Soak: {config['duration_s'] / 60:g} min at concurrency {config['concurrency']} "
        f"({config['grpc_threads']} gRPC + {config['http_threads']} HTTP threads)",
        "",
        f"Result: **{'PASS' if results['passed'] else 'FAIL'}**. Repository `{config['repository']}`; "
        "no response cache; short, medium and long texts in turn on every thread.",
        f"Machine: {machine['cpu_model']}, {machine['cores']} cores; load average {results['loadavg']['before']:.1f} "
        f"before, {results['loadavg']['after']:.1f} after." + (f" {results['note']}" if results["note"] else ""),
        "",
        "| check | result | detail |",
        "| --- | --- | --- |",
        *[f"| {name} | {'pass' if c['passed'] else 'FAIL'} | {c['detail']} |" for name, c in results["checks"].items()],
        "",
        f"After a warm-up of {summary['warmup_requests']} long texts: "
        f"{summary['requests']} requests ({summary['failed']} failed) in {results['wall_s']:.0f} s: "
        f"{summary['requests_per_s']:.2f} requests/s, {summary['audio_s_per_s']:.2f} audio seconds per wall second.",
        "",
        "| requests | count | p50 s | p90 s | p99 s |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {group} | {s['requests']} | {s.get('p50', '-')} | {s.get('p90', '-')} | {s.get('p99', '-')} |"
          for group, s in summary["latency_s"].items()],
        "",
        "![RSS and throughput over time](soak.png)",
        "",
    ]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    duration_min = results["config"]["duration_s"] / 60
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    memory = results["memory"]
    top.plot([m["t_s"] / 60 for m in memory], [m["rss_mib"] for m in memory], label="RSS (server + stubs)")
    top.plot([m["t_s"] / 60 for m in memory], [m["pss_mib"] for m in memory], label="PSS", linestyle="--")
    top.axvspan(MEMORY_WINDOW_START * duration_min, duration_min, color="grey", alpha=0.12,
                label=f"growth window (bound {MAX_RSS_GROWTH:.0%})")
    bound = results["memory_growth"]["start_mib"] * (1 + MAX_RSS_GROWTH)
    if np.isfinite(bound):  # nan when the run was too short for the window
        top.axhline(bound, color="red", linewidth=0.8, linestyle=":",
                    label=f"+{MAX_RSS_GROWTH:.0%} over the window's start")
    top.set(ylabel="MiB", title="Resident memory of the tritonserver process tree")
    top.set_ylim(0, np.nanmax([bound] + [m["rss_mib"] for m in memory]) * 1.08)
    points = results["throughput"]
    t = [p["t_s"] / 60 for p in points]
    bottom.plot(t, [p["audio_s_per_s"] for p in points], label="audio s / wall s")
    bottom.plot(t, [p["requests_per_s"] for p in points], label="requests / s")
    window = f" (over the last {points[0]['window_s']:.0f} s)" if points else ""
    bottom.set(xlabel="minutes", ylabel="per second", title="Throughput" + window)
    bottom.set_ylim(bottom=0)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- command line ------------------------------------------------------------------------------------


def prepare_repository(model_dir: Path | None, work: Path) -> Path:
    """Export `model_dir` (default: the full-size fixture) and generate the CPU repository under `work`."""
    if model_dir is None:
        model_dir = work / "fixture_full"
        if not (model_dir / "configuration.json").exists():
            shutil.rmtree(model_dir, ignore_errors=True)
            run_step([sys.executable, "-m", "models.fixtures", str(model_dir), "--size", "full"], "writing the fixture")
    export_dir = work / "export"
    shutil.rmtree(export_dir, ignore_errors=True)
    run_step([sys.executable, "-m", "export", str(model_dir), "--out", str(export_dir)], f"exporting {model_dir}")
    return generate(export_dir, work / "model_repository", "cpu")


def run_step(command: list[str], what: str) -> None:
    print(f"[soak] {what}", flush=True)
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        raise SoakError(f"{what} failed (its message is above)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model-dir", type=Path, help="a ModelScope model directory (default: the full-size fixture)")
    source.add_argument("--repository", type=Path, help="an already generated CPU model repository to serve")
    parser.add_argument("--grpc-threads", type=int, default=8)
    parser.add_argument("--http-threads", type=int, default=8)
    parser.add_argument("--sample-interval", type=float, default=2.0, help="seconds between memory samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "soak")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "soak")
    parser.add_argument("--note", default="", help="a line for summary.md, e.g. how busy the machine was")
    args = parser.parse_args()
    try:
        repository = args.repository or prepare_repository(args.model_dir, args.work)
        print(f"[soak] {args.minutes:g} min at concurrency {args.grpc_threads + args.http_threads} on {repository}",
              flush=True)
        report = run_soak(repository, args.minutes * 60, args.grpc_threads, args.http_threads,
                          args.sample_interval, args.seed, log_path=args.work / "tritonserver.log")
    except SoakError as e:
        sys.exit(f"error: {e}")
    paths = write_outputs(report, args.out, args.note)
    for name, c in report.checks.items():
        print(f"[soak] {name}: {'pass' if c.passed else 'FAIL'}: {c.detail}")
    print(f"[soak] wrote {', '.join(str(p) for p in paths)}")
    sys.exit(0 if report.passed else 1)


if __name__ == "__main__":
    main()
