"""The benchmark's outputs: machine description, results.json, summary.md and the two plots."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from serving.contract import PIPELINE, TTS

CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
PIPELINE_MODELS = tuple(model.name for model in PIPELINE)


def describe_machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}  # the last processor's entries
    flags = set(fields.get("flags", "").split())
    memory_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal:"))
    import numpy
    import onnxruntime
    import openvino
    import torch
    return {
        "cpu_model": fields.get("model name", platform.processor() or "unknown"),
        "cores": os.cpu_count(),
        "cpu_flags": [f for f in CPU_FLAGS_OF_INTEREST if f in flags],
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                     "openvino": openvino.__version__.split("-")[0], "numpy": numpy.__version__},
    }


def machine_cpu(machine: dict) -> str:
    """describe_machine()'s CPU in words: model, cores and the flags of interest."""
    return f"{machine['cpu_model']}, {machine['cores']} cores ({', '.join(machine['cpu_flags']) or 'no AVX-512'})"


def write_json(results: dict, path: Path) -> None:
    path.write_text(json.dumps(results, ensure_ascii=False, indent=1, allow_nan=True) + "\n")


def _level_rows(results: dict) -> list[str]:
    rows = ["| system | concurrency | requests | failed | audio s / wall s | RTF | requests/s | p50 s | p90 s | p99 s "
            "| peak RSS MiB | load before/after |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, system in results["systems"].items():
        for level in system["levels"]:
            lat = level["latency_s"]
            rows.append(
                f"| {name} | {level['concurrency']} | {level['requests']} | {level['failed']} | "
                f"{level['audio_per_wall']:.3f} | {level['rtf']:.2f} | {level['requests_per_s']:.3f} | "
                f"{lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | {level['memory']['rss_mib']:.0f} | "
                f"{level['loadavg']['before']:.1f} / {level['loadavg']['after']:.1f} |")
    return rows


def _ratio_rows(results: dict) -> list[str]:
    rows = ["| concurrency | throughput ours / baseline | p50 latency ours / baseline |", "|---|---|---|"]
    rows += [f"| {r['concurrency']} | {r['throughput_ratio']:.2f}x | {r['p50_ratio']:.2f} |" for r in results["ratios"]]
    return rows


def _floor_lines(results: dict) -> list[str]:
    lines = []
    for floor in results["floors"]:
        verdict = "n/a (not measured)" if floor["passed"] is None else ("PASS" if floor["passed"] else "FAIL")
        value = "-" if floor["value"] is None else f"{floor['value']:.2f}"
        lines.append(f"- {floor['name']}: {value} (needs {floor['needs']}): **{verdict}**")
    return lines


def _stats_rows(results: dict) -> list[str]:
    ours = results["systems"].get("ours")
    if not ours:
        return []
    rows = ["| concurrency | model | requests | executions | rows per execution | queue ms | compute ms "
            "| in model ms |", "|---|---|---|---|---|---|---|---|"]
    for level in ours["levels"]:
        stats = level.get("triton_stats", {})
        for model in PIPELINE_MODELS + (TTS.name,):
            s = stats.get(model)
            if s is None:
                continue
            compute = s["compute_input_ms"] + s["compute_infer_ms"] + s["compute_output_ms"]
            per_execution = s["inferences"] / s["executions"] if s["executions"] else float("nan")
            rows.append(f"| {level['concurrency']} | {model} | {s['requests']} | {s['executions']} | "
                        f"{per_execution:.1f} | {s['queue_ms']:.0f} | {compute:.0f} | {s['success_ms']:.0f} |")
    return rows


def _profile_rows(profile: dict) -> list[str]:
    batches = list(profile)
    rows = ["| step | " + " | ".join(f"ms per request, {b} request(s) batched" for b in batches) + " |",
            "|---|" + "---|" * len(batches)]
    steps = list(profile[batches[0]]["per_request_ms"])
    for step in steps:
        rows.append(f"| {step} | " + " | ".join(f"{profile[b]['per_request_ms'][step]:.0f}" for b in batches) + " |")
    rows.append("| **total** | " + " | ".join(f"**{profile[b]['total_ms']:.0f}**" for b in batches) + " |")
    rows.append("| audio s per request (pauses included) | " + " | ".join(
        f"{profile[b]['audio_s_per_request']:.2f}" for b in batches) + " |")
    return rows


def write_summary(results: dict, path: Path) -> None:
    meta, machine = results["meta"], results["meta"]["machine"]
    lines = [f"# Benchmark: Triton `tts` ensemble vs the eager PyTorch baseline ({meta['date']})", ""]
    if meta.get("note"):
        lines += [f"> {meta['note']}", ""]
    lines += [
        f"Command: `{meta['command']}`", "",
        f"Machine: {machine_cpu(machine)}, "
        f"{machine['memory_gib']} GiB memory, Linux {machine['kernel']}, Python {machine['python']}, "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
        + f", tritonserver {meta.get('tritonserver', 'n/a')}.", "",
        f"Model: {meta['model']}. Texts: {meta['requests_per_level']} unique Chinese texts per level (short, "
        f"medium, long in turn; seed {meta['seed']}), {meta['warmup']} warm-up requests per system. Baseline: "
        f"eager PyTorch ({', '.join(f'{k} {v}' for k, v in meta['baseline_settings'].items())}) behind a "
        "single-threaded HTTP server "
        "(bench/baseline_server.py). Ours: tritonserver without the response cache, the `tts` ensemble through "
        f"tts_client over {meta['protocol']} (exported with "
        f"`python -m export {' '.join(['MODEL_DIR', '--out', 'DIR', *meta['export_args']])}`"
        + "".join(f"; {line}" for line in meta["repository"]) + ").", "",
        "Throughput is audio seconds produced per wall second over the level (first request sent to last answer); "
        "RTF is its inverse (wall seconds per audio second); latencies are per request, end to end at the client. "
        "Memory is the peak sum of RSS over the server's process tree during the level (PSS in results.json). "
        "The load average columns show other work on the machine, which skews timings.", "",
        "## Results", "", *_level_rows(results), "",
    ]
    if results["ratios"]:
        lines += ["## Ours / baseline", "", *_ratio_rows(results), "", *_floor_lines(results), ""]
    else:
        lines += [f"Only {', '.join(results['systems'])} ran: no ratios.", ""]
    agreement = results.get("audio_agreement")
    if agreement:
        lines += [f"Same text, same audio length: {agreement['equal']} of {agreement['compared']} texts "
                  f"(largest difference {agreement['max_difference_s'] * 1000:.0f} ms).", ""]
    stats = _stats_rows(results)
    if stats:
        lines += ["## Triton statistics per model", "",
                  "Mean per request over each level, from `GET /v2/models/stats`; `compute` is input + infer + "
                  "output; a batched request counts its whole batch's compute time; `in model` is the whole time "
                  "a request spent in that model.", "", *stats, ""]
    profile = results.get("profile")
    if profile:
        lines += ["## Profile: where a request's time goes (in-process)", "",
                  "The server's step code run in this process with the repository's settings "
                  "(serving.pipeline.Pipeline.from_repository), every acoustic graph timed; a column batches that "
                  "many requests' sentences together, as the dynamic batcher does at that concurrency at best. `host work` is the numpy between the graphs "
                  "(duration rounding, length regulation, cache windows).", "", *_profile_rows(profile), ""]
    path.write_text("\n".join(lines))


def plot(results: dict, out_dir: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = {name: system["levels"] for name, system in results["systems"].items()}
    ticks = sorted({lv["concurrency"] for lvs in levels.values() for lv in lvs})
    paths = []

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, lvs in levels.items():
        ax.plot([lv["concurrency"] for lv in lvs], [lv["audio_per_wall"] for lv in lvs], marker="o", label=name)
    ours = {lv["concurrency"]: lv["audio_per_wall"] for lv in levels.get("ours", [])}
    for ratio in results["ratios"]:  # ours/baseline next to our point
        ax.annotate(f"{ratio['throughput_ratio']:.1f}x", (ratio["concurrency"], ours[ratio["concurrency"]]),
                    textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    top = max(lv["audio_per_wall"] for lvs in levels.values() for lv in lvs)
    ax.set(xlabel="concurrent clients", ylabel="audio seconds per wall second", title="Throughput (ours/baseline)",
           xscale="log", ylim=(0, top * 1.15))
    paths.append(_finish(fig, ax, ticks, out_dir / "throughput.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, lvs in levels.items():
        c = [lv["concurrency"] for lv in lvs]
        line, = ax.plot(c, [lv["latency_s"]["p50"] for lv in lvs], marker="o", label=f"{name} p50")
        ax.plot(c, [lv["latency_s"]["p99"] for lv in lvs], marker="x", linestyle="--", color=line.get_color(),
                label=f"{name} p99")
    ax.set(xlabel="concurrent clients", ylabel="latency (s)", title="Request latency", xscale="log", yscale="log")
    paths.append(_finish(fig, ax, ticks, out_dir / "latency.png"))
    return paths


def _finish(fig, ax, ticks: list[int], path: Path) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())  # only the measured concurrencies on the log axis
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
