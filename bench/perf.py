"""perf_analyzer against the `tts` ensemble over gRPC and HTTP, a concurrency sweep, CSV + plot.

    scripts/perf.sh [--repository build/serve-0/model_repository] [--concurrency 1 2 4 8 16]

Starts its own tritonserver WITHOUT the response cache (perf_analyzer cycles through its inputs, so
a cache would turn the sweep into a cache benchmark), feeds real Chinese sentences (short, medium,
long) as BYTES input data, and writes results/perf/{grpc,http}.csv, summary.md and perf.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.report import describe_machine, machine_cpu
from deploy.launcher import TritonServer, triton_env
from serving.contract import ACOUSTIC, VOCODER
from serving.pipeline import config_parameters

ROOT = Path(__file__).resolve().parent.parent

SENTENCES = {
    "short": ["你好。", "谢谢你。", "请稍等。", "早上好。"],
    "medium": ["今天天气很好，我们去公园散步吧。", "您可以向我询问户籍的办理。",
               "会议改到下午三点半，请大家准时参加。", "银行就在前面路口的左边。"],
    "long": ["地铁二号线今天晚上停运检修，请乘客选择其他线路出行，给您带来的不便敬请谅解。",
             "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。这是一首大家都很熟悉的唐诗。",
             "根据最新发布的数据，今年前三季度全国居民人均可支配收入比去年同期实际增长了百分之五。",
             "如果您需要办理业务，请携带本人有效身份证件，到附近的营业网点咨询工作人员。"],
}
COLUMNS = ["Concurrency", "Inferences/Second", "p50 latency", "p90 latency", "p99 latency"]


def write_input_data(path: Path) -> None:
    texts = [t for group in SENTENCES.values() for t in group]
    path.write_text(json.dumps({"data": [{"TEXT": [t]} for t in texts]}, ensure_ascii=False))


def window_requests(concurrency: int) -> int:
    """At least 4 requests per client, rounded up to whole cycles of the texts."""
    cycle = sum(map(len, SENTENCES.values()))
    return cycle * -(-4 * concurrency // cycle)


def run_perf_analyzer(url: str, protocol: str, concurrency: int, data: Path, csv_path: Path) -> dict:
    env = triton_env()
    cmd = [env["PERF_ANALYZER"], "-m", "tts", "-u", url, "-i", protocol, "--input-data", str(data),
           f"--concurrency-range={concurrency}:{concurrency}",
           # Windows of a request count, not a time: a request takes seconds on CPU, so a time window holds
           # too few of them to look stable. Whole cycles of the texts, so every window has the same mix.
           "--measurement-mode", "count_windows", "--measurement-request-count", str(window_requests(concurrency)),
           "--stability-percentage", "50", "--max-trials", "6", "--percentile", "99", "-f", str(csv_path)]
    run_env = dict(os.environ, LD_LIBRARY_PATH=env["PERF_ANALYZER_LD_LIBRARY_PATH"])
    print(f"[perf] {protocol} concurrency {concurrency} ...", flush=True)
    subprocess.run(cmd, check=True, env=run_env, stdout=subprocess.DEVNULL)
    with open(csv_path) as f:
        row = next(csv.DictReader(f))
    return {k: float(row[k]) for k in COLUMNS}


def plot(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(11, 4))
    for protocol, rows in results.items():
        c = [r["Concurrency"] for r in rows]
        ax_t.plot(c, [r["Inferences/Second"] for r in rows], marker="o", label=protocol)
        ax_l.plot(c, [r["p50 latency"] / 1000 for r in rows], marker="o", label=f"{protocol} p50")
        ax_l.plot(c, [r["p99 latency"] / 1000 for r in rows], marker="x", linestyle="--", label=f"{protocol} p99")
    ax_t.set(xlabel="concurrency", ylabel="requests / s", title="tts throughput", xscale="log", xticks=c)
    ax_l.set(xlabel="concurrency", ylabel="latency (ms)", title="tts latency", xscale="log", xticks=c)
    for ax in (ax_t, ax_l):
        ax.set_xticklabels([str(int(x)) for x in c])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "build" / "serve-0" / "model_repository",
                        help="a generated CPU repository (default: the one scripts/serve.sh writes)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--protocols", nargs="+", default=["grpc", "http"])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "perf")
    args = parser.parse_args()
    if not (args.repository / "tts" / "config.pbtxt").exists():
        sys.exit(f"error: no model repository at {args.repository}: run scripts/serve.sh once (it generates it)")
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "input_data.json"
    write_input_data(data)
    results: dict[str, list[dict]] = {}
    started = time.time()
    load_before = os.getloadavg()[0]
    with TritonServer(args.repository, log_path=args.repository.parent / "perf_tritonserver.log") as server:
        for protocol in args.protocols:
            url = server.grpc_url if protocol == "grpc" else server.http_url
            rows = [run_perf_analyzer(url, protocol, c, data, args.out / f"{protocol}_c{c}.csv")
                    for c in args.concurrency]
            results[protocol] = rows
            with open(args.out / f"{protocol}.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
            for c in args.concurrency:
                (args.out / f"{protocol}_c{c}.csv").unlink()
    plot(results, args.out / "perf.png")
    machine = describe_machine()
    vocoder, acoustic = (config_parameters(args.repository / m.name / "config.pbtxt") for m in (VOCODER, ACOUSTIC))
    lines = [f"# perf_analyzer: `tts` ensemble, no response cache ({time.strftime('%Y-%m-%d')})", "",
             f"Repository: {args.repository} (vocoder runtime {vocoder.get('runtime')}, "
             f"{vocoder.get('threads')} thread(s) per vocoder and acoustic instance, acoustic backends "
             f"{acoustic.get('backends')}); texts: {sum(map(len, SENTENCES.values()))} sentences "
             "(short, medium, long) cycled; latencies in ms.", "",
             f"Machine: {machine_cpu(machine)}, "
             + ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
             + f"; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (shared cores).", "",
             "| protocol | concurrency | requests/s | p50 | p90 | p99 |", "|---|---|---|---|---|---|"]
    for protocol, rows in results.items():
        for r in rows:
            lines.append(f"| {protocol} | {int(r['Concurrency'])} | {r['Inferences/Second']:.2f} | "
                         f"{r['p50 latency'] / 1000:.0f} | {r['p90 latency'] / 1000:.0f} | {r['p99 latency'] / 1000:.0f} |")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"[perf] done in {time.time() - started:.0f} s: {args.out}")


if __name__ == "__main__":
    main()
