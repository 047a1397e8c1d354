"""Where a request's time goes: Triton's own statistics per model, and the steps timed in-process.

Triton's statistics API reports, per model, how long requests waited in its queue and how long they
were computed. The acoustic model's parts (encoder, the two autoregressive loops, postnet) are inside
one python-backend model, so `in_process_profile` runs the same step code as the server, with the
repository's own settings (serving.pipeline.Pipeline.from_repository), with every acoustic graph timed.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from serving.contract import (
    ACOUSTIC,
    AUDIO,
    DECODER_MEMORY,
    DECODER_STEP,
    DURATION_STEP,
    ENCODER,
    FRONTEND,
    JOIN,
    POSTNET_FSMN,
    POSTNET_LSTM,
    TEXT,
    VOCODER,
    ExportConfig,
)
from serving.pipeline import Pipeline

STAT_KINDS = ("queue", "compute_input", "compute_infer", "compute_output")
ACOUSTIC_PARTS = {ENCODER: "encoder", DURATION_STEP: "duration loop", DECODER_MEMORY: "decoder memory",
                  DECODER_STEP: "decoder loop", POSTNET_FSMN: "postnet", POSTNET_LSTM: "postnet"}


def stats_delta(before: dict[str, dict], after: dict[str, dict]) -> dict[str, dict]:
    """Per model, what happened between two snapshots of Triton's statistics: requests, executions, rows
    (inferences) and the mean milliseconds per request in each phase (queue, compute input/infer/output,
    and `success`: the whole time a request spent in that model)."""
    delta = {}
    for name, now in after.items():
        then = before.get(name)
        if then is None:
            continue
        stats_now, stats_then = now["inference_stats"], then["inference_stats"]
        requests = stats_now["success"]["count"] - stats_then["success"]["count"]
        if requests <= 0:
            continue
        row = {"requests": requests,
               "executions": int(now["execution_count"]) - int(then["execution_count"]),
               "inferences": int(now["inference_count"]) - int(then["inference_count"])}
        for kind in ("success",) + STAT_KINDS:
            row[f"{kind}_ms"] = (int(stats_now[kind]["ns"]) - int(stats_then[kind]["ns"])) / requests / 1e6
        delta[name] = row
    return delta


class TimedGraph:
    """A graph (serving.runtime.sessions) whose run() adds its wall time to a shared total."""

    def __init__(self, graph, totals: dict[str, float], key: str):
        self._graph, self._totals, self._key = graph, totals, key

    def run(self, feeds):
        started = time.perf_counter()
        try:
            return self._graph.run(feeds)
        finally:
            self._totals[self._key] += time.perf_counter() - started


def in_process_profile(repository: Path, texts: list[str], batch_sizes: list[int]) -> dict[str, dict]:
    """Mean milliseconds per request for each step, with `batch` requests' sentences run together
    (what the dynamic batcher forms at that concurrency at best), for each batch size.

    Runs the serving pipeline with the repository's settings (graph backends, threads, vocoder precision).
    """
    pipeline = Pipeline.from_repository(repository)
    rate = ExportConfig.read(repository / ACOUSTIC.name / "1").audio.sample_rate
    graph_s: dict[str, float] = defaultdict(float)
    for runtime in pipeline.acoustic.runtimes:
        runtime.graphs = {name: TimedGraph(g, graph_s, name) for name, g in runtime.graphs.items()}

    def run(group: list[str]) -> dict[str, float]:
        graph_s.clear()
        steps: dict[str, float] = {}
        results = pipeline.process([{TEXT.name: np.array([[text.encode()]], dtype=object)} for text in group], steps)
        seconds = {"front end": steps[FRONTEND.name]}
        for graph, part in ACOUSTIC_PARTS.items():  # the postnet's two graphs are one part
            seconds[f"acoustic: {part}"] = seconds.get(f"acoustic: {part}", 0.0) + graph_s[graph]
        seconds["acoustic: host work"] = steps[ACOUSTIC.name] - sum(graph_s.values())
        seconds["vocoder"] = steps[VOCODER.name] + steps[JOIN.name]
        seconds["samples"] = sum(result[AUDIO.name].shape[-1] for result in results)
        return seconds

    run(texts[:1])  # warm up the sessions
    result = {}
    for batch in batch_sizes:
        groups = [texts[i : i + batch] for i in range(0, len(texts) - batch + 1, batch)]
        print(f"[bench] profile: {len(groups)} batch(es) of {batch} request(s) in-process", flush=True)
        totals: dict[str, float] = defaultdict(float)
        for group in groups:
            for key, value in run(group).items():
                totals[key] += value
        requests = len(groups) * batch
        samples = totals.pop("samples")
        per_request_ms = {key: 1000 * value / requests for key, value in totals.items()}
        result[str(batch)] = {
            "requests": requests,
            "audio_s_per_request": samples / rate / requests,  # with the pauses between sentences
            "per_request_ms": per_request_ms,
            "total_ms": float(np.sum(list(per_request_ms.values()))),
        }
    return result
