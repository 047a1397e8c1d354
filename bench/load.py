"""Closed-loop load: `concurrency` clients send a fixed list of texts, each taking the next text when done."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from bench.texts import KINDS, kind_of

# A sender speaks one text and returns the seconds of audio it got back (raises on any failure).
Sender = Callable[[str], float]


@dataclass
class RequestRecord:
    index: int
    kind: str           # short, medium, long
    chars: int
    start_s: float      # since the level started
    latency_s: float
    audio_s: float      # 0 when it failed
    error: str | None   # None when it succeeded


@dataclass
class LevelResult:
    concurrency: int
    requests: int
    failed: int
    wall_s: float               # first request sent -> last answer received
    audio_s: float              # audio produced by the requests that succeeded
    audio_per_wall: float       # audio seconds per wall second (the throughput)
    rtf: float                  # real-time factor: wall seconds per audio second (1 / audio_per_wall)
    requests_per_s: float
    latency_s: dict[str, float]  # p50, p90, p99, mean, max over the requests that succeeded
    latency_by_kind_s: dict[str, dict[str, float]]  # the same per text length (short, medium, long)
    loadavg: dict[str, float]    # the machine's 1-minute load average before and after (other work skews timings)
    records: list[RequestRecord]

    def as_dict(self) -> dict:
        return asdict(self)


def latency_summary(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "mean": float("nan"), "max": float("nan")}
    values = np.asarray(latencies)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(values.mean()),
            "max": float(values.max())}


def run_level(send: Sender, texts: list[str], concurrency: int, label: str) -> LevelResult:
    """Send every text once with `concurrency` requests in flight; prints one line per answered request."""
    records: list[RequestRecord | None] = [None] * len(texts)
    next_index = iter(range(len(texts)))
    lock = threading.Lock()
    done = 0
    load_before = os.getloadavg()[0]
    started = time.perf_counter()

    def client() -> None:
        nonlocal done
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            sent = time.perf_counter()
            try:
                audio_s, error = send(texts[index]), None
            except Exception as e:  # any failure counts as a failed request, with its message
                audio_s, error = 0.0, f"{type(e).__name__}: {e}"
            latency = time.perf_counter() - sent
            records[index] = RequestRecord(index, kind_of(index), len(texts[index]), sent - started, latency,
                                           audio_s, error)
            with lock:
                done += 1
                status = f"failed: {error}" if error else f"{latency:6.2f} s for {audio_s:5.2f} s of audio"
                print(f"[bench] {label} c={concurrency}: {done}/{len(texts)} {kind_of(index):6} {status}", flush=True)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ok = [r for r in records if r.error is None]
    audio = sum(r.audio_s for r in ok)
    return LevelResult(
        concurrency=concurrency, requests=len(texts), failed=len(texts) - len(ok), wall_s=wall, audio_s=audio,
        audio_per_wall=audio / wall, rtf=wall / audio if audio else float("inf"),
        requests_per_s=len(ok) / wall, latency_s=latency_summary([r.latency_s for r in ok]),
        latency_by_kind_s={kind: latency_summary([r.latency_s for r in ok if r.kind == kind])
                           for kind in KINDS if any(r.kind == kind for r in ok)},
        loadavg={"before": load_before, "after": os.getloadavg()[0]}, records=records,
    )
