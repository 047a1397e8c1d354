"""Each acoustic graph on ONNX Runtime and on OpenVINO, side by side; writes results/acoustic_backends.md.

    .venv/bin/python -m bench.acoustic_backends [--threads 1] [--repeats 5] [--out results/acoustic_backends.md]

The full-size fixture's acoustic graphs run the real loops once (serving.runtime.acoustic, ONNX Runtime)
over --sentences sentences of the benchmark's texts (bench.texts), one at a time and in batches of 8, and every graph call's inputs are kept. Each
graph's recorded calls are then replayed on both backends in turn (same thread count, the served
settings of serving.runtime.sessions), --repeats times, after a warm-up pass over every call (the
first call at a shape costs more on both; a server meets each shape again and again). Per graph: the
milliseconds per synthesis, calls, microseconds per call, the faster backend and the largest output
difference between the two. deploy/targets/cpu.yaml's acoustic_backends puts a graph on OpenVINO only
where OpenVINO is faster both one at a time and batched, and keeps ONNX Runtime otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.precision import machine_line
from bench.texts import TextPool
from export.onnx_acoustic import export_acoustic
from models.fixtures import make_model_dir
from models.loader import load_voice
from models.model_dir import ModelDir
from serving.contract import ACOUSTIC_GRAPHS
from serving.frontend import FrontEnd
from serving.runtime.acoustic import AcousticRuntime
from serving.runtime.sessions import BACKENDS, ONNXRUNTIME, RuntimeOptions, open_graph

ROOT = Path(__file__).resolve().parent.parent
BATCHES = (1, 8)


class Recorder:
    """A graph that keeps a copy of every call's inputs."""

    def __init__(self, graph, calls: list):
        self._graph, self._calls = graph, calls

    def run(self, feeds):
        self._calls.append({k: v.copy() for k, v in feeds.items()})
        return self._graph.run(feeds)


def record_calls(voice_dir: Path, ids: list[np.ndarray], batch: int) -> dict[str, list[dict]]:
    """Every graph's inputs over the sentences synthesised `batch` at a time."""
    runtime = AcousticRuntime(voice_dir)
    calls: dict[str, list[dict]] = defaultdict(list)
    runtime.graphs = {name: Recorder(graph, calls[name]) for name, graph in runtime.graphs.items()}
    for start in range(0, len(ids), batch):
        part = ids[start : start + batch]
        runtime.synthesize(part, [1.0] * len(part))
    return calls


def replay(graph, calls: list[dict]) -> float:
    start = time.perf_counter()
    for feeds in calls:
        graph.run(feeds)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="threads of each backend (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed replays per backend (default 5)")
    parser.add_argument("--sentences", type=int, default=16, help="sentences (a multiple of 8; default 16)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "acoustic_backends.md")
    args = parser.parse_args()
    options = RuntimeOptions(intra_op_threads=args.threads)
    rows, faster = [], defaultdict(dict)
    with tempfile.TemporaryDirectory() as tmp:
        print("[bench.acoustic_backends] writing the full-size fixture and exporting its acoustic graphs", flush=True)
        voice = load_voice(ModelDir(make_model_dir(Path(tmp) / "full", size="full", voices=("zhitian_emo",))))
        voice_dir = Path(tmp) / "export"
        export_acoustic(voice.am, voice_dir, log=lambda _: None)
        frontend = FrontEnd(voice.vocabulary)
        texts = TextPool(0).take(args.sentences)
        ids = [rows_.ids for text in texts for rows_ in frontend(text)][: args.sentences]
        for batch in BATCHES:
            calls = record_calls(voice_dir, ids, batch)
            syntheses = -(-len(ids) // batch)
            for graph_file in ACOUSTIC_GRAPHS:
                graphs = {backend: open_graph(voice_dir / graph_file, backend, options) for backend in BACKENDS}
                outputs = {}
                for backend, graph in graphs.items():  # warm-up: every shape once
                    replay(graph, calls[graph_file])
                    outputs[backend] = graph.run(calls[graph_file][-1])
                seconds = {backend: [] for backend in BACKENDS}
                for _ in range(args.repeats):  # interleaved, so that load from elsewhere hits both alike
                    for backend, graph in graphs.items():
                        seconds[backend].append(replay(graph, calls[graph_file]))
                diff = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                           for a, b in zip(*outputs.values()))
                best = {b: min(s) for b, s in seconds.items()}
                winner = min(best, key=best.get)
                faster[graph_file][batch] = winner
                n = len(calls[graph_file])
                rows.append((graph_file, batch, n // syntheses,
                             {b: (1000 * best[b] / syntheses, 1000 * statistics.median(seconds[b]) / syntheses,
                                  1e6 * best[b] / n) for b in BACKENDS}, winner, diff))
                print(f"[bench.acoustic_backends] batch {batch} {graph_file}: " + ", ".join(
                    f"{b} {1000 * best[b] / syntheses:.1f} ms" for b in BACKENDS) + f" -> {winner}", flush=True)
    lines = ["| graph | sentences per synthesis | calls per synthesis | " + " | ".join(
        f"{b} ms per synthesis (min / median), µs per call" for b in BACKENDS) + " | faster | max output diff |",
        "|---|---|---|" + "---|" * len(BACKENDS) + "---|---|"]
    for graph_file, batch, calls_per, figures, winner, diff in rows:
        cells = " | ".join(f"{figures[b][0]:.1f} / {figures[b][1]:.1f}, {figures[b][2]:.0f}" for b in BACKENDS)
        lines.append(f"| {graph_file} | {batch} | {calls_per} | {cells} | **{winner}** | {diff:.1e} |")
    choice = {g: (v[1] if v[1] == v[8] else f"{v[1]} at batch 1, {v[8]} at batch 8") for g, v in faster.items()}
    table = "\n".join(lines)
    print(table)
    args.out.write_text(
        "# The acoustic graphs on ONNX Runtime and OpenVINO\n\n"
        f"Written by `python -m bench.acoustic_backends --threads {args.threads} --repeats {args.repeats} "
        f"--sentences {args.sentences}`.\n\nMachine: {machine_line(args.threads)}.\n\n{table}\n\n"
        "Faster per graph: " + "; ".join(f"`{g}` {c}" for g, c in choice.items()) + f" (default {ONNXRUNTIME}).\n\n"
        + "How measured. " + __doc__.split("\n\n", 2)[2].strip() + "\n")
    print(f"[bench.acoustic_backends] wrote {args.out}")


if __name__ == "__main__":
    main()
