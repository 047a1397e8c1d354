"""What the HTTP gateway costs: gateway POST /api/tts against the client straight to Triton, side by side.

    .venv/bin/python -m bench.gateway_overhead [--repository build/serve-0/model_repository] [--repeats 3] [--out DIR]

One tritonserver (no response cache) and one gateway process in front of it. Each repeat:
- concurrency 1: every text is spoken once unmeasured (the vocoder builds its kernels for each new input
  length, which would favour whichever side came second), then once straight to Triton (tts_client over
  gRPC) and once through the gateway (httpx, WAV back), back to back and in alternating order, so each
  pair sees the same machine; the p50 of each side and the median of the paired differences;
- concurrency 8: the texts are spoken once unmeasured (the same reason), then one closed-loop window per
  side with those texts (alternating which side goes first); throughput in audio seconds per wall second
  and the ratio gateway / direct; and, in the gateway's window, the CPU seconds the gateway process and
  Triton's process tree spent per request (CPU time, unlike wall time, does not depend on what else the
  shared machine runs).
Every figure comes with the 1-minute load average before and after (the machine is shared). The issue's
targets (p50 overhead at most 10 ms, throughput within 5 %) are printed next to the measured figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from bench.load import run_level
from bench.memory import process_tree
from bench.systems import ROOT
from bench.texts import TextPool
from deploy.launcher import LauncherError, Ports, TritonServer
from gateway.launcher import GatewayError, GatewayProcess
from tts_client import TTSClient

TARGET_P50_OVERHEAD_S = 0.010
TARGET_THROUGHPUT_RATIO = 0.95
LOW_CONCURRENCY, HIGH_CONCURRENCY = 1, 8
REQUEST_TIMEOUT_S = 600.0


class BenchError(RuntimeError):
    pass


@dataclass
class Repeat:
    index: int
    direct_first: bool
    c1_direct_s: list[float]
    c1_gateway_s: list[float]
    c1_load: tuple[float, float]
    c8_direct_audio_per_s: float
    c8_gateway_audio_per_s: float
    c8_load: tuple[float, float]
    c8_gateway_cpu_ms: float  # per request, in the gateway's window: the gateway process
    c8_triton_cpu_ms: float   # and tritonserver with its python stubs

    @property
    def c1_p50_direct_s(self) -> float:
        return statistics.median(self.c1_direct_s)

    @property
    def c1_p50_gateway_s(self) -> float:
        return statistics.median(self.c1_gateway_s)

    @property
    def c1_paired_overhead_s(self) -> float:
        return statistics.median(g - d for g, d in zip(self.c1_gateway_s, self.c1_direct_s, strict=True))

    @property
    def c8_ratio(self) -> float:
        return self.c8_gateway_audio_per_s / self.c8_direct_audio_per_s

    @property
    def c8_gateway_cpu_share(self) -> float:
        return self.c8_gateway_cpu_ms / (self.c8_gateway_cpu_ms + self.c8_triton_cpu_ms)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of a process and its descendants so far."""
    total = 0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


class Senders:
    """Speak one text and return the seconds of audio, straight to Triton or through the gateway."""

    def __init__(self, triton: TritonServer, gateway: GatewayProcess):
        self.triton_pid, self.gateway_pid = triton.process.pid, gateway.process.pid
        self.client = TTSClient(triton.grpc_url, protocol="grpc", timeout_s=REQUEST_TIMEOUT_S)
        limits = httpx.Limits(max_connections=2 * HIGH_CONCURRENCY)
        self.http = httpx.Client(base_url=gateway.url, timeout=REQUEST_TIMEOUT_S, limits=limits)

    def direct(self, text: str) -> float:
        return self.client.synthesize(text).duration_s

    def gateway(self, text: str) -> float:
        response = self.http.post("/api/tts", json={"text": text})
        if response.status_code != 200:
            raise BenchError(f"gateway answered {response.status_code}: {response.text[:200]}")
        return float(response.headers["x-audio-duration"])

    def close(self) -> None:
        self.client.close()
        self.http.close()


def timed(send, text: str) -> float:
    start = time.perf_counter()
    send(text)
    return time.perf_counter() - start


def run_repeat(index: int, senders: Senders, c1_texts: list[str], c8_texts: list[str]) -> Repeat:
    direct_first = index % 2 == 0
    load_before = os.getloadavg()[0]
    direct_s, gateway_s = [], []
    for number, text in enumerate(c1_texts):
        senders.direct(text)
        first_is_direct = direct_first == (number % 2 == 0)  # alternate within the repeat too
        if first_is_direct:
            direct_s.append(timed(senders.direct, text))
            gateway_s.append(timed(senders.gateway, text))
        else:
            gateway_s.append(timed(senders.gateway, text))
            direct_s.append(timed(senders.direct, text))
    c1_load = (load_before, os.getloadavg()[0])

    run_level(senders.direct, c8_texts, HIGH_CONCURRENCY, "warm-up")
    load_before = os.getloadavg()[0]
    windows = [("direct", senders.direct), ("gateway", senders.gateway)]
    throughput, cpu_ms = {}, {}
    for name, send in windows if direct_first else reversed(windows):
        cpu_before = tree_cpu_s(senders.gateway_pid), tree_cpu_s(senders.triton_pid)
        level = run_level(send, c8_texts, HIGH_CONCURRENCY, name)
        if level.failed:
            raise BenchError(f"{level.failed} {name} request(s) failed at concurrency {HIGH_CONCURRENCY}: "
                             f"{next(r.error for r in level.records if r.error)}")
        throughput[name] = level.audio_per_wall
        cpu_after = tree_cpu_s(senders.gateway_pid), tree_cpu_s(senders.triton_pid)
        cpu_ms[name] = [1000 * (after - before) / len(c8_texts) for before, after in zip(cpu_before, cpu_after,
                                                                                          strict=True)]
    return Repeat(index, direct_first, direct_s, gateway_s, c1_load, throughput["direct"], throughput["gateway"],
                  (load_before, os.getloadavg()[0]), *cpu_ms["gateway"])


def summarize(repeats: list[Repeat]) -> dict:
    overheads = [r.c1_paired_overhead_s for r in repeats]
    p50_deltas = [r.c1_p50_gateway_s - r.c1_p50_direct_s for r in repeats]
    ratios = [r.c8_ratio for r in repeats]
    shares = [r.c8_gateway_cpu_share for r in repeats]
    return {
        "c8_gateway_cpu_ms_per_request_median": statistics.median(r.c8_gateway_cpu_ms for r in repeats),
        "c8_triton_cpu_ms_per_request_median": statistics.median(r.c8_triton_cpu_ms for r in repeats),
        "c8_gateway_cpu_share_median": statistics.median(shares),
        "c1_paired_overhead_ms_median": 1000 * statistics.median(overheads),
        "c1_paired_overhead_ms_range": [1000 * min(overheads), 1000 * max(overheads)],
        "c1_p50_difference_ms_median": 1000 * statistics.median(p50_deltas),
        "c8_throughput_ratio_median": statistics.median(ratios),
        "c8_throughput_ratio_range": [min(ratios), max(ratios)],
        "meets_p50_target": statistics.median(overheads) <= TARGET_P50_OVERHEAD_S,
        "meets_throughput_target": statistics.median(ratios) >= TARGET_THROUGHPUT_RATIO,
    }


def write_results(out: Path, repeats: list[Repeat], summary: dict, setup: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    records = [asdict(r) | {"c1_p50_direct_s": r.c1_p50_direct_s, "c1_p50_gateway_s": r.c1_p50_gateway_s,
                            "c1_paired_overhead_s": r.c1_paired_overhead_s, "c8_ratio": r.c8_ratio,
                            "c8_gateway_cpu_share": r.c8_gateway_cpu_share}
               for r in repeats]
    (out / "overhead.json").write_text(json.dumps({"setup": setup, "summary": summary, "repeats": records}, indent=1))
    lines = [
        "# Gateway overhead: POST /api/tts vs the client straight to Triton",
        "",
        f"`python -m bench.gateway_overhead`, {setup['when']}; {setup['model']}; {setup['repeats']} repeats, "
        f"{setup['c1_requests']} texts at concurrency 1 (each spoken once unmeasured, then both ways back to "
        f"back) and {setup['c8_requests']} at concurrency {HIGH_CONCURRENCY} (spoken once unmeasured, then a window "
        f"each way); no response cache; "
        f"{setup['cpus']} CPUs shared with other work (load averages below).",
        "",
        f"| repeat | first | c=1 p50 direct | c=1 p50 gateway | paired overhead (median) | load c=1 | "
        f"c={HIGH_CONCURRENCY} direct audio s/s | c={HIGH_CONCURRENCY} gateway audio s/s | gateway / direct | "
        f"load c={HIGH_CONCURRENCY} | CPU per request: gateway, Triton |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in repeats:
        lines.append(
            f"| {r.index + 1} | {'direct' if r.direct_first else 'gateway'} | {1000 * r.c1_p50_direct_s:.0f} ms | "
            f"{1000 * r.c1_p50_gateway_s:.0f} ms | {1000 * r.c1_paired_overhead_s:+.1f} ms | "
            f"{r.c1_load[0]:.1f} to {r.c1_load[1]:.1f} | {r.c8_direct_audio_per_s:.2f} | "
            f"{r.c8_gateway_audio_per_s:.2f} | "
            f"{r.c8_ratio:.3f} | {r.c8_load[0]:.1f} to {r.c8_load[1]:.1f} | "
            f"{r.c8_gateway_cpu_ms:.1f} ms, {r.c8_triton_cpu_ms:.0f} ms |")
    overhead_range = summary["c1_paired_overhead_ms_range"]
    ratio_range = summary["c8_throughput_ratio_range"]
    lines += [
        "",
        f"- **p50 overhead at concurrency 1: {summary['c1_paired_overhead_ms_median']:+.1f} ms** (median of the "
        f"repeats' median paired difference; range {overhead_range[0]:+.1f} to {overhead_range[1]:+.1f} ms); "
        f"target at most {1000 * TARGET_P50_OVERHEAD_S:.0f} ms: {'met' if summary['meets_p50_target'] else 'NOT met'}.",
        f"- **throughput at concurrency {HIGH_CONCURRENCY}: gateway / direct = "
        f"{summary['c8_throughput_ratio_median']:.3f}** (range {ratio_range[0]:.3f} to {ratio_range[1]:.3f}); "
        f"target at least {TARGET_THROUGHPUT_RATIO}: {'met' if summary['meets_throughput_target'] else 'NOT met'}.",
        f"- **CPU per request at concurrency {HIGH_CONCURRENCY}: the gateway "
        f"{summary['c8_gateway_cpu_ms_per_request_median']:.1f} ms, Triton "
        f"{summary['c8_triton_cpu_ms_per_request_median']:.0f} ms**: the gateway's share of the work is "
        f"{100 * summary['c8_gateway_cpu_share_median']:.2f} % (CPU time, which the machine's other work does not "
        "change, unlike the wall-clock figures above).",
        "",
        "![overhead](overhead.png)",
        "",
    ]
    (out / "overhead.md").write_text("\n".join(lines))
    plot(out / "overhead.png", repeats)


def plot(path: Path, repeats: list[Repeat]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r.index + 1 for r in repeats]
    fig, (latency, throughput) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.38
    latency.bar([i - width / 2 for i in x], [1000 * r.c1_p50_direct_s for r in repeats], width, label="direct (gRPC)")
    latency.bar([i + width / 2 for i in x], [1000 * r.c1_p50_gateway_s for r in repeats], width, label="gateway (HTTP)")
    latency.set(title=f"p50 latency, concurrency {LOW_CONCURRENCY}", xlabel="repeat", ylabel="ms", xticks=x)
    latency.legend()
    throughput.bar([i - width / 2 for i in x], [r.c8_direct_audio_per_s for r in repeats], width, label="direct (gRPC)")
    throughput.bar([i + width / 2 for i in x], [r.c8_gateway_audio_per_s for r in repeats], width,
                   label="gateway (HTTP)")
    throughput.set(title=f"throughput, concurrency {HIGH_CONCURRENCY}", xlabel="repeat", ylabel="audio s per s",
                   xticks=x)
    throughput.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "build" / "serve-0" / "model_repository",
                        help="a generated CPU model repository (scripts/serve.sh writes one per port offset)")
    parser.add_argument("--model", default="the full-size fixture", help="what the repository serves, for the record")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--c1-requests", type=int, default=12)
    parser.add_argument("--c8-requests", type=int, default=24)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gateway")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "gateway_bench", help="logs")
    args = parser.parse_args(argv)
    if not (args.repository / "tts").is_dir():
        sys.exit(f"error: {args.repository} is not a generated model repository: run scripts/serve.sh once "
                 "(it writes build/serve-0/model_repository) or pass --repository")
    args.work.mkdir(parents=True, exist_ok=True)
    pool = TextPool(seed=11)
    triton = TritonServer(args.repository, Ports.free(), log_path=args.work / "tritonserver.log")
    gateway = senders = None
    try:
        triton.start()
        # The per-client cap must not refuse our own concurrent window.
        gateway = GatewayProcess(triton.grpc_url, args.work / "gateway.log", "--log-level", "warning",
                                 "--max-requests-per-client", str(2 * HIGH_CONCURRENCY))
        senders = Senders(triton, gateway)
        for text in pool.take(3):  # warm both paths up (sessions, connections, first-call costs)
            senders.direct(text)
            senders.gateway(text)
        repeats = []
        for index in range(args.repeats):
            repeat = run_repeat(index, senders, pool.take(args.c1_requests), pool.take(args.c8_requests))
            print(f"[overhead] repeat {index + 1}: c=1 p50 direct {1000 * repeat.c1_p50_direct_s:.0f} ms, gateway "
                  f"{1000 * repeat.c1_p50_gateway_s:.0f} ms, paired overhead "
                  f"{1000 * repeat.c1_paired_overhead_s:+.1f} ms; "
                  f"c=8 gateway/direct {repeat.c8_ratio:.3f}", flush=True)
            repeats.append(repeat)
    except (BenchError, GatewayError, LauncherError) as e:
        sys.exit(f"error: {e}")
    finally:
        if senders is not None:
            senders.close()
        if gateway is not None:
            gateway.stop()
        triton.stop()
    summary = summarize(repeats)
    setup = {"when": time.strftime("%Y-%m-%d %H:%M"), "model": args.model, "repeats": args.repeats,
             "c1_requests": args.c1_requests, "c8_requests": args.c8_requests, "cpus": os.cpu_count(),
             "repository": str(args.repository)}
    write_results(args.out, repeats, summary, setup)
    print(json.dumps(summary, indent=1))
    print(f"[overhead] wrote {args.out / 'overhead.md'}, overhead.json and overhead.png")


if __name__ == "__main__":
    main()
