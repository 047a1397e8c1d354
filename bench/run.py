"""Benchmark the Triton `tts` ensemble against the eager PyTorch baseline, side by side, in one run.

    scripts/bench.sh [--model-dir DIR] [--requests 32] [--profile]      (see --help)

Same machine, model and texts for both systems. Prepares the model (the full-size fixture unless
--model-dir), exports it with this checkout's code and generates the CPU model repository; then,
one system at a time (never both at once): starts the baseline (bench/baseline_server.py), warms it
up and runs its concurrency levels; starts tritonserver without the response cache, warms it up and
runs ours. Writes results.json, summary.md, throughput.png and latency.png to --out (results/bench).
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.load import run_level
from bench.memory import PeakMemory, tree_memory
from bench.profile import in_process_profile, stats_delta
from bench.report import describe_machine, plot, write_json, write_summary
from bench.systems import ROOT, BaselineSystem, BenchError, TritonSystem
from bench.texts import TextPool
from deploy.launcher import LauncherError
from deploy.repository import RepositoryError, generate
from deploy.vocoder_precision import AUTO, CHOICES
from models.model_dir import ModelDir, ModelDirError
from serving.contract import ExportConfigError

FLOOR_CONCURRENCY_THROUGHPUT = 8   # at concurrency 8, ours must reach >= 5x the baseline's throughput
FLOOR_THROUGHPUT_RATIO = 5.0
FLOOR_CONCURRENCY_LATENCY = 1      # at concurrency 1, our p50 latency must be at most 0.3x the baseline's
FLOOR_LATENCY_RATIO = 0.3


def prepare_model(args: argparse.Namespace) -> tuple[Path, Path, str]:
    """The model directory, its export and a description of the model."""
    if args.model_dir:
        model_dir, description = args.model_dir.resolve(), f"model directory {args.model_dir.resolve()}"
        ModelDir(model_dir).voices()  # a wrong directory fails here, in one line, before anything runs
    else:
        model_dir = args.work / f"fixture_{args.fixture_size}"
        description = f"the {args.fixture_size}-size fixture (random weights, ModelScope layout)"
        if not (model_dir / "configuration.json").exists():
            print(f"[bench] writing the {args.fixture_size}-size fixture to {model_dir}", flush=True)
            from models.fixtures import make_model_dir  # torch: only needed here
            shutil.rmtree(model_dir, ignore_errors=True)
            make_model_dir(model_dir, size=args.fixture_size)
    export_dir = args.work / "export"
    stamp = export_dir / ".source"
    source = shlex.join([str(model_dir), *args.export_arg])
    if not (args.reuse_export and stamp.exists() and stamp.read_text() == source):
        print(f"[bench] exporting {model_dir} to {export_dir}", flush=True)
        shutil.rmtree(export_dir, ignore_errors=True)
        command = [sys.executable, "-m", "export", str(model_dir), "--out", str(export_dir), *args.export_arg]
        exported = subprocess.run(command, cwd=ROOT)
        if exported.returncode != 0:
            raise BenchError(f"the export of {model_dir} failed (its message is above)")
        stamp.write_text(source)
    return model_dir, export_dir, description


def measure(system, warmup: list[str], texts: dict[int, list[str]], stats: bool = False) -> dict:
    """Start `system`, warm it up, run each concurrency level, stop it; every figure of that system."""
    print(f"[bench] starting {system.name}", flush=True)
    started = time.perf_counter()
    system.start()
    try:
        result = {"start_s": time.perf_counter() - started, "levels": []}
        print(f"[bench] {system.name} ready after {result['start_s']:.1f} s; {len(warmup)} warm-up request(s)", flush=True)
        if stats:
            result["tritonserver"] = system.version()
        else:
            result["settings"] = system.settings
        for text in warmup:
            try:
                system.send(text)
            except Exception as e:  # the server is broken: no point measuring it
                raise BenchError(f"{system.name}: a warm-up request failed ({type(e).__name__}: {e}); "
                                 f"see {system.log_path}") from None
        answered = len(warmup)
        result["memory_after_warmup"] = dataclasses.asdict(tree_memory(system.pid))
        for concurrency, level_texts in texts.items():
            before = system.model_stats(answered) if stats else None
            with PeakMemory(system.pid) as memory:
                level = run_level(system.send, level_texts, concurrency, system.name).as_dict()
            answered += len(level_texts)
            level["memory"] = dataclasses.asdict(memory.peak)
            if stats:
                level["triton_stats"] = stats_delta(before, system.model_stats(answered))
            print(f"[bench] {system.name} c={concurrency}: {level['audio_per_wall']:.3f} audio s per wall s, "
                  f"p50 {level['latency_s']['p50']:.2f} s, {level['failed']} failed, "
                  f"peak RSS {memory.peak.rss_mib:.0f} MiB", flush=True)
            result["levels"].append(level)
        return result
    finally:
        system.stop()


def compare(systems: dict) -> tuple[list[dict], list[dict], dict | None]:
    """Ratios ours/baseline per concurrency both measured, the issue's floors, and whether the same texts
    gave the same audio length from both systems."""
    if not {"baseline", "ours"} <= systems.keys():
        return [], [], None
    base = {lv["concurrency"]: lv for lv in systems["baseline"]["levels"]}
    ours = {lv["concurrency"]: lv for lv in systems["ours"]["levels"]}
    ratios = [{"concurrency": c,
               "throughput_ratio": ours[c]["audio_per_wall"] / base[c]["audio_per_wall"],
               "p50_ratio": ours[c]["latency_s"]["p50"] / base[c]["latency_s"]["p50"]}
              for c in sorted(base.keys() & ours.keys())]
    by_c = {r["concurrency"]: r for r in ratios}
    throughput = by_c.get(FLOOR_CONCURRENCY_THROUGHPUT, {}).get("throughput_ratio")
    latency = by_c.get(FLOOR_CONCURRENCY_LATENCY, {}).get("p50_ratio")
    floors = [
        {"name": f"throughput ours/baseline at concurrency {FLOOR_CONCURRENCY_THROUGHPUT}", "value": throughput,
         "needs": f">= {FLOOR_THROUGHPUT_RATIO:g}", "passed": None if throughput is None else throughput >= FLOOR_THROUGHPUT_RATIO},
        {"name": f"p50 latency ours/baseline at concurrency {FLOOR_CONCURRENCY_LATENCY}", "value": latency,
         "needs": f"<= {FLOOR_LATENCY_RATIO:g}", "passed": None if latency is None else latency <= FLOOR_LATENCY_RATIO},
    ]
    differences = [abs(a["audio_s"] - b["audio_s"])
                   for c in base.keys() & ours.keys()
                   for a, b in zip(base[c]["records"], ours[c]["records"]) if not (a["error"] or b["error"])]
    agreement = {"compared": len(differences), "equal": sum(d == 0 for d in differences),
                 "max_difference_s": max(differences, default=0.0)}
    return ratios, floors, agreement


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="a ModelScope sambert-hifigan model directory "
                        "(default: the fixture of --fixture-size, random weights)")
    parser.add_argument("--fixture-size", choices=["full", "tiny"], default="full", help="(full)")
    parser.add_argument("--requests", type=int, default=32, help="requests per concurrency level (32)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up requests per system (3)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="levels for ours (1 2 4 8 16)")
    parser.add_argument("--baseline-concurrency", type=int, nargs="+", default=[1, 8, 16], help="levels for the baseline (1 8 16)")
    parser.add_argument("--systems", nargs="+", choices=["baseline", "ours"], default=["baseline", "ours"])
    parser.add_argument("--protocol", choices=["grpc", "http"], default="grpc", help="how the client talks to Triton (grpc)")
    parser.add_argument("--baseline-threads", type=int, default=None, help="torch threads (default: every core)")
    parser.add_argument("--profile", action="store_true", help="also time each step in-process (front end, "
                        "acoustic parts, vocoder) with the requests of one and of 8 clients batched")
    parser.add_argument("--profile-batches", type=int, nargs="+", default=[1, 8], help="(1 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the texts (0)")
    parser.add_argument("--note", default="", help="a line to put at the top of the summary (e.g. 'provisional')")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench", help="fixture, export, repository, logs (build/bench)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench", help="(results/bench)")
    parser.add_argument("--export-arg", action="append", default=[], help="an option for python -m export (repeatable)")
    # The deployment default of scripts/serve.sh: `auto` decides.
    parser.add_argument("--vocoder-precision", choices=CHOICES, default=AUTO, help="ours: the CPU vocoder's "
                        "precision, as for python -m deploy.repository (auto: BF16 where the CPU computes BF16 "
                        "natively and every voice's BF16 quality record holds the bound, else FP32)")
    parser.add_argument("--reuse-export", action="store_true", help="skip the export when --work holds one of the "
                        "same model directory (made by older code, perhaps: not for the figures you publish)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.warmup < 0 or min(args.concurrency + args.baseline_concurrency) < 1:
        parser.error("--requests and every concurrency must be at least 1, --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.work, args.out = args.work.resolve(), args.out.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        model_dir, export_dir, model = prepare_model(args)
        repository_log: list[str] = []
        repository = generate(export_dir, args.work / "model_repository", "cpu", args.vocoder_precision,
                              log=lambda line: (print(f"[bench] {line}", flush=True), repository_log.append(line)))

        # One pool: every text of the run is unique; a level gets the same texts on both systems.
        pool = TextPool(args.seed)
        levels = sorted(set(args.concurrency) | set(args.baseline_concurrency))
        texts = {c: pool.take(args.requests) for c in levels}
        warmups = {name: pool.take(args.warmup) for name in ("baseline", "ours")}
        systems: dict[str, dict] = {}
        if "baseline" in args.systems:
            baseline = BaselineSystem(model_dir, args.work / "baseline.log", args.baseline_threads)
            systems["baseline"] = measure(baseline, warmups["baseline"],
                                          {c: texts[c] for c in args.baseline_concurrency})
        if "ours" in args.systems:
            ours = TritonSystem(repository, args.work / "tritonserver.log", args.protocol)
            systems["ours"] = measure(ours, warmups["ours"], {c: texts[c] for c in args.concurrency}, stats=True)
        profile = None
        if args.profile:
            profile_texts = pool.take(max(args.profile_batches) * max(1, args.requests // max(args.profile_batches)))
            profile = in_process_profile(repository, profile_texts, args.profile_batches)
    except (BenchError, ModelDirError, LauncherError, RepositoryError, ExportConfigError) as e:
        sys.exit(f"error: {e}")

    ratios, floors, agreement = compare(systems)
    results = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M"), "command": shlex.join(["scripts/bench.sh", *(argv or sys.argv[1:])]),
            "note": args.note, "machine": describe_machine(), "model": model, "requests_per_level": args.requests,
            "warmup": args.warmup, "seed": args.seed, "protocol": args.protocol,
            "export_args": args.export_arg, "repository": repository_log,
            "baseline_settings": systems.get("baseline", {}).get("settings", {}),
            "tritonserver": systems.get("ours", {}).get("tritonserver", "n/a"),
            "duration_s": time.perf_counter() - started,
        },
        "systems": systems, "ratios": ratios, "floors": floors, "audio_agreement": agreement, "profile": profile,
    }
    write_json(results, args.out / "results.json")
    write_summary(results, args.out / "summary.md")
    plot(results, args.out)
    print((args.out / "summary.md").read_text())
    print(f"[bench] done in {time.perf_counter() - started:.0f} s: {args.out}", flush=True)


if __name__ == "__main__":
    main()
