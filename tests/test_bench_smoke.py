"""The benchmark harness end to end on a one-voice tiny model: both real servers, two levels, the outputs.

No timing is asserted (figures on a shared CI machine mean nothing); the run must succeed, every
request must be answered, and the result file must hold consistent figures for both systems.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import wave
from pathlib import Path

import pytest

from bench.baseline_server import BaselineTTS, OneAtATimeServer, make_handler
from deploy.launcher import LauncherError, triton_env
from models.fixtures import DEFAULT_VOICES, make_model_dir
from serving.limits import SENTENCE_PAUSE_S

ROOT = Path(__file__).resolve().parent.parent
PIPELINE_MODELS = ("frontend", "acoustic", "vocoder", "join", "tts")
REQUESTS = 2
LEVELS = [1, 2]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("bench_model"), size="tiny", voices=DEFAULT_VOICES[:1])


@pytest.fixture(scope="module")
def results(model_dir, tmp_path_factory) -> tuple[dict, Path]:
    try:
        triton_env()
    except LauncherError as e:
        pytest.skip(f"no local tritonserver: {e}")
    base = tmp_path_factory.mktemp("bench")
    out = base / "out"
    levels = [str(c) for c in LEVELS]
    subprocess.run(
        [sys.executable, "-m", "bench.run", "--model-dir", str(model_dir), "--requests", str(REQUESTS),
         "--warmup", "1", "--concurrency", *levels, "--baseline-concurrency", *levels, "--profile",
         "--profile-batches", "1", "2", "--work", str(base / "work"), "--out", str(out)],
        cwd=ROOT, check=True,
    )
    return json.loads((out / "results.json").read_text()), out


@pytest.mark.server
def test_every_request_of_both_systems_succeeded(results):
    data, _ = results
    assert list(data["systems"]) == ["baseline", "ours"]
    for system in data["systems"].values():
        assert [level["concurrency"] for level in system["levels"]] == LEVELS
        for level in system["levels"]:
            assert level["requests"] == REQUESTS and level["failed"] == 0
            assert [r["index"] for r in level["records"]] == list(range(REQUESTS))
            assert all(r["error"] is None and r["audio_s"] > 0 for r in level["records"])


@pytest.mark.server
def test_level_figures_are_consistent(results):
    data, _ = results
    for system in data["systems"].values():
        for level in system["levels"]:
            records = level["records"]
            assert level["audio_s"] == pytest.approx(sum(r["audio_s"] for r in records))
            assert level["audio_per_wall"] == pytest.approx(level["audio_s"] / level["wall_s"])
            assert level["rtf"] * level["audio_per_wall"] == pytest.approx(1.0)
            # The level's wall time spans every request: none ends after it or starts before it.
            assert max(r["start_s"] + r["latency_s"] for r in records) <= level["wall_s"] + 1e-6
            latency = level["latency_s"]
            assert min(r["latency_s"] for r in records) <= latency["p50"] <= latency["p90"] <= latency["p99"]
            assert latency["p99"] <= latency["max"] == pytest.approx(max(r["latency_s"] for r in records))
            assert level["memory"]["rss_mib"] > 50
            # Two requests per level: the first short, the second medium (texts alternate by length).
            assert {k: v["max"] for k, v in level["latency_by_kind_s"].items()} == pytest.approx(
                {"short": records[0]["latency_s"], "medium": records[1]["latency_s"]})


@pytest.mark.server
def test_triton_process_tree_and_statistics(results):
    data, _ = results
    ours = data["systems"]["ours"]
    assert ours["tritonserver"].count(".") == 2
    assert data["meta"]["baseline_settings"]["omp_wait_policy"] in ("PASSIVE", os.environ.get("OMP_WAIT_POLICY"))
    for level in ours["levels"]:
        # tritonserver and one python-backend stub per python model instance
        assert level["memory"]["processes"] >= 5
        stats = level["triton_stats"]
        # Exactly this level's requests: the warm-up and the other level are not counted.
        assert {model: stats[model]["requests"] for model in PIPELINE_MODELS} == dict.fromkeys(PIPELINE_MODELS, REQUESTS)
        for model in PIPELINE_MODELS[:-1]:
            s = stats[model]
            assert 1 <= s["executions"] <= REQUESTS
            assert s["success_ms"] >= s["compute_infer_ms"] > 0


@pytest.mark.server
def test_ratios_floors_and_same_audio_from_both(results):
    data, _ = results
    base = {lv["concurrency"]: lv for lv in data["systems"]["baseline"]["levels"]}
    ours = {lv["concurrency"]: lv for lv in data["systems"]["ours"]["levels"]}
    assert [r["concurrency"] for r in data["ratios"]] == LEVELS
    for ratio in data["ratios"]:
        c = ratio["concurrency"]
        assert ratio["throughput_ratio"] == pytest.approx(ours[c]["audio_per_wall"] / base[c]["audio_per_wall"])
        assert ratio["p50_ratio"] == pytest.approx(ours[c]["latency_s"]["p50"] / base[c]["latency_s"]["p50"])
    throughput_floor, latency_floor = data["floors"]
    assert throughput_floor["value"] is None and throughput_floor["passed"] is None  # concurrency 8 not run
    assert latency_floor["value"] == pytest.approx(data["ratios"][0]["p50_ratio"])
    assert latency_floor["passed"] == (latency_floor["value"] <= 0.3)
    # The same model, front end and texts: each text gives exactly as many samples from either system.
    agreement = data["audio_agreement"]
    assert agreement["compared"] == REQUESTS * len(LEVELS)
    assert agreement["equal"] == agreement["compared"]


@pytest.mark.server
def test_profile_and_report_files(results):
    data, out = results
    profile = data["profile"]
    assert list(profile) == ["1", "2"]
    for entry in profile.values():
        steps = entry["per_request_ms"]
        assert {"front end", "acoustic: encoder", "acoustic: duration loop", "acoustic: decoder loop",
                "acoustic: postnet", "vocoder"} <= steps.keys()
        assert all(value >= 0 for value in steps.values())
        assert entry["total_ms"] == pytest.approx(sum(steps.values()))
    summary = (out / "summary.md").read_text()
    assert "## Ours / baseline" in summary and "## Profile" in summary and data["meta"]["machine"]["cpu_model"] in summary
    for plot in ("throughput.png", "latency.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def post(port: int, body: dict) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/synthesize", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def torch_threads_restored():
    import torch
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # BaselineTTS sets the process-wide number


def test_baseline_server_answers_wav_and_clear_errors(model_dir, torch_threads_restored):
    tts = BaselineTTS(model_dir, threads=1)
    server = OneAtATimeServer(("127.0.0.1", 0), make_handler(tts))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            health = json.load(r)
        assert health["status"] == "ready" and health["voices"] == [DEFAULT_VOICES[0]]
        assert health["settings"]["torch_threads"] == 1 and health["settings"]["precision"] == "fp32"
        text = "今天天气很好。我们去公园散步吧。"
        status, body = post(port, {"text": text})
        assert status == 200
        with wave.open(io.BytesIO(body)) as w:
            rate, samples = w.getframerate(), w.getnframes()
        # Two sentences: each one's frames times the hop, and one pause between them.
        sentences = tts.frontends[DEFAULT_VOICES[0]](text)
        assert len(sentences) == 2
        audio, sample_rate = tts.synthesize(text)
        assert (rate, samples) == (sample_rate, len(audio))
        hop = tts.voices[DEFAULT_VOICES[0]].audio.hop_length
        speech = samples - round(SENTENCE_PAUSE_S * rate)
        assert speech > 0 and speech % hop == 0
        for bad, message in [({"text": ""}, "empty"), ({"text": "你好", "voice": "nobody"}, "unknown voice"),
                             ({"text": "你好", "emotion": "furious"}, "emotion"), ({"words": "你好"}, "JSON object")]:
            status, body = post(port, bad)
            assert status == 400 and message in json.loads(body)["error"], bad
    finally:
        server.shutdown()
        server.server_close()


def test_families_benchmark_runs_for_every_family(tmp_path):
    """bench.families on tiny fixtures: every family exported and timed, a summary row and the plot each."""
    from bench.families import BASELINE_FAMILY, run
    from models.fixtures import FAMILIES

    results = run(tmp_path, repeats=1, seconds=0.2, threads=1, size="tiny", log=lambda _: None)
    assert list(results["families"]) == list(FAMILIES)
    for name, family in results["families"].items():
        assert family["vocoder"]["median"] > 0 and family["acoustic"]["median"] > 0
        assert ("source" in family) == family["nsf"]
    assert results["families"][BASELINE_FAMILY]["vocoder_vs_emo16k"]["median"] == 1.0
    summary = (tmp_path / "summary.md").read_text()
    assert all(f"| {name} |" in summary for name in FAMILIES)
    assert (tmp_path / "vocoder_rtf.png").stat().st_size > 0
