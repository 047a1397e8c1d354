"""The streaming model `tts_stream` on a real tritonserver (tiny fixture), through the real client.

Joined chunks equal the `tts` ensemble's AUDIO, within the bound of the repository's vocoder precision
(bench.soak.Reference: in FP32 float noise, in BF16 each chunk's own length changes the rounding); streams that join and leave share decoder steps (the
model's own metrics say how many streams each step advanced); a client that leaves stops the work; a
bad request gets one error; a vocoder model that dies mid-stream fails that stream with a message and the
server goes on; a 100,000-character text streams without the model's memory growing with it. The CPU
target vocodes in the streaming model's own process; one test streams through the vocoder model (BLS), as
the GPU target does.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
import soundfile as sf

from bench.memory import model_stub, rss_mib
from bench.soak import Reference
from deploy.launcher import TritonServer
from deploy.repository import TargetSettings, generate
from serving.contract import TTS_STREAM, VOCODER
from serving.limits import MAX_STREAM_TEXT_CHARS
from serving.stream.vocoder import VOCODER_MODEL
from tts_client import TTSClient
from tts_client.client import TTSError

pytestmark = pytest.mark.server  # every test here runs a real tritonserver

TEXTS = [
    ("今天天气很好，我们去公园散步吧。", 1.0),
    ("欢迎使用语音合成服务。今天是2026年11月21日！我们明天见。", 0.8),
    ('<speak>你好<break time="300ms"/>世界。<break time="1s"/>再见。</speak>', 1.5),
]
LONG_TEXT = ("我们明天早上八点出发，请大家准时集合。银行就在路口的左边。会议改到下午三点半。" * 3000)[:MAX_STREAM_TEXT_CHARS]
EXIT_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def server(tiny_repository, tmp_path_factory):
    server = TritonServer(tiny_repository, log_path=tmp_path_factory.mktemp("stream_server") / "tritonserver.log",
                          extra_args=["--model-control-mode=explicit", "--load-model=tts", f"--load-model={TTS_STREAM.name}",
                                      f"--exit-timeout-secs={EXIT_TIMEOUT_S}"])
    with server:
        yield server


@pytest.fixture
def client(server):
    with TTSClient(server.grpc_url, "grpc", timeout_s=120, retries=0) as c:
        yield c


def metrics(server: TritonServer) -> dict[str, float]:
    """The streaming model's own metrics (serving.stream.adapter.StreamMetrics), by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.ports.metrics}/metrics") as r:
        text = r.read().decode()
    return {name: float(value) for name, value in re.findall(r"^(tts_stream_\S+) (\S+)$", text, re.MULTILINE)}


def step_histogram(server: TritonServer) -> dict[str, float]:
    return {re.search(r'le="([^"]+)"', k).group(1): v for k, v in metrics(server).items()
            if k.startswith("tts_stream_decoder_step_streams_bucket")}


def audio_frames(server: TritonServer) -> float:
    return metrics(server)[f'tts_stream_vocoded_frames{{model="{TTS_STREAM.name}",part="audio"}}']


def active_streams(server: TritonServer) -> float:
    return metrics(server)[f'tts_stream_active_streams{{model="{TTS_STREAM.name}"}}']


def joined(chunks) -> np.ndarray:
    return np.concatenate([chunk.audio for chunk in chunks])


@functools.cache
def reference(repository) -> Reference:
    return Reference(repository)


def assert_equal_audio(server: TritonServer, got: np.ndarray, want: np.ndarray) -> None:
    """Streamed audio against the ensemble's, within the bound of the server's vocoder precision."""
    difference, bound, measure = reference(server.model_repository).difference(got, want)
    assert difference <= bound, (measure, difference)


def post(url: str, headers: dict[str, str]) -> int:
    with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST", headers=headers), timeout=300) as r:
        return r.status


def wait_until(predicate, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_joined_chunks_equal_the_ensembles_audio(server, client):
    for text, speed in TEXTS:
        chunks = list(client.stream(text, speed=speed))
        assert len(chunks) > 1 and {c.sample_rate for c in chunks} == {client.synthesize("你好").sample_rate}
        assert_equal_audio(server, joined(chunks), client.synthesize(text, speed=speed).audio)


def test_streams_joining_and_leaving_stay_exact_and_share_decoder_steps(server):
    before = step_histogram(server)
    results: dict[int, np.ndarray] = {}

    def run(index: int, text: str, speed: float) -> None:
        time.sleep(0.15 * index)  # each joins while the ones before it run
        with TTSClient(server.grpc_url, "grpc", timeout_s=120, retries=0) as c:
            results[index] = joined(c.stream(text, speed=speed))

    jobs = [(TEXTS[1][0] * 3, 1.0), *TEXTS, (TEXTS[0][0], 0.6)]
    threads = [threading.Thread(target=run, args=(i, *job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    with TTSClient(server.grpc_url, "grpc", timeout_s=120, retries=0) as c:
        for i, (text, speed) in enumerate(jobs):
            assert_equal_audio(server, results[i], c.synthesize(text, speed=speed).audio)
    after = step_histogram(server)
    alone = after["1"] - before.get("1", 0)
    steps = after["+Inf"] - before.get("+Inf", 0)
    assert alone > 0 and steps - alone > 0, f"decoder steps: {steps}, of them with one stream: {alone}"


def test_a_client_that_leaves_stops_the_work_within_a_chunk(server, client):
    texts = iter(client.stream(LONG_TEXT[:3000]))
    chunks = [next(texts), next(texts)]
    assert active_streams(server) == 1
    texts.close()  # leaving the loop early cancels the request
    wait_until(lambda: active_streams(server) == 0, "the stream to leave the model")
    frames = audio_frames(server)
    time.sleep(0.5)
    assert audio_frames(server) == frames  # nothing more is made for it
    assert len(chunks) == 2


def test_a_client_that_dies_stops_the_work(server):
    child = subprocess.Popen([sys.executable, "-c", f"""
import os, sys
from tts_client import TTSClient
chunks = TTSClient({server.grpc_url!r}, "grpc").stream({LONG_TEXT[:3000]!r})
next(chunks), next(chunks)
print("two chunks", flush=True)
os._exit(0)  # no cancel, no close: the connection just goes away
"""], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "two chunks"
    child.wait(30)
    wait_until(lambda: active_streams(server) == 0, "the dead client's stream to leave the model")


def test_a_bad_request_gets_one_error_while_other_streams_go_on(server, client):
    with TTSClient(server.grpc_url, "grpc", timeout_s=120, retries=0) as other:
        running = other.stream(TEXTS[1][0], speed=TEXTS[1][1])
        first = next(running)
        for kwargs, message in [({"text": ""}, "empty"), ({"text": "你好", "voice": "nobody"}, "unknown VOICE"),
                                ({"text": "你好", "speed": 9.0}, "out of range"),
                                ({"text": "好" * (MAX_STREAM_TEXT_CHARS + 1)}, f"more than {MAX_STREAM_TEXT_CHARS}")]:
            with pytest.raises(TTSError, match=message):
                list(client.stream(**kwargs))
        rest = list(running)
    assert_equal_audio(server, joined([first, *rest]), client.synthesize(TEXTS[1][0], speed=TEXTS[1][1]).audio)


def test_through_the_vocoder_model_the_stream_is_exact_and_a_vocoder_that_dies_fails_it_alone(
        tiny_export, tmp_path, killed_stub_regions):
    """The GPU target's way (BLS into the `vocoder` model), here on CPU: chunks equal `tts`; when the vocoder
    model's process dies mid-stream, that stream ends with Triton's message, the server stays up, and after
    the documented reload (unload, load) streams are exact again."""
    cpu = TargetSettings.read("cpu")
    settings = dataclasses.replace(cpu, streaming=dataclasses.replace(cpu.streaming, vocoder=VOCODER_MODEL))
    repository = generate(tiny_export, tmp_path / "model_repository", "cpu", settings=settings)
    server = TritonServer(repository, log_path=tmp_path / "tritonserver.log",
                          extra_args=["--model-control-mode=explicit", "--load-model=tts", f"--load-model={TTS_STREAM.name}",
                                      f"--exit-timeout-secs={EXIT_TIMEOUT_S}"])
    with server, TTSClient(server.grpc_url, "grpc", timeout_s=120, retries=0) as client:
        text, speed = TEXTS[1]
        assert_equal_audio(server, joined(client.stream(text, speed=speed)), client.synthesize(text, speed=speed).audio)
        chunks = client.stream(LONG_TEXT[:3000])
        next(chunks)
        pid, region = model_stub(server.process.pid, VOCODER.name)
        killed_stub_regions.append(region)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(TTSError, match="vocoder"):
            list(chunks)
        wait_until(lambda: active_streams(server) == 0, "the failed stream to leave the model")
        base = f"http://{server.http_url}"
        assert urllib.request.urlopen(f"{base}/v2/health/ready").status == 200
        assert post(f"{base}/v2/repository/models/{VOCODER.name}/unload", server.admin_headers()) == 200
        assert post(f"{base}/v2/repository/models/{VOCODER.name}/load", server.admin_headers()) == 200
        text, speed = TEXTS[0]
        assert_equal_audio(server, joined(client.stream(text, speed=speed)), client.synthesize(text, speed=speed).audio)


def test_a_long_text_streams_in_bounded_memory(server, client):
    """The model's process holds what it holds for a 3,000-character text while it streams 100,000 characters
    (both streamed for as many chunks, so the vocoder has met the same chunk shapes, whose kernels OpenVINO keeps)."""
    pid, _ = model_stub(server.process.pid, TTS_STREAM.name)

    def stream_peak(text: str) -> float:
        peak = 0.0
        chunks = client.stream(text)
        for count, _ in enumerate(chunks):
            peak = max(peak, rss_mib(pid))
            if count == 30:  # well within the deployment's max_lead_s: the stream runs at full speed
                break
        chunks.close()
        wait_until(lambda: active_streams(server) == 0, "the stream to leave the model")
        return peak

    short = stream_peak(LONG_TEXT[:3000])
    peak = stream_peak(LONG_TEXT)
    print(f"tts_stream RSS: at most {short:.0f} MiB streaming 3000 characters, at most {peak:.0f} MiB streaming "
          f"{len(LONG_TEXT)} characters")
    # The text itself and its sentence list take a few MiB; its audio (hours) and mel are never held.
    assert peak - short < 16


def test_the_cli_writes_the_stream_as_wav_or_raw_pcm(server, client, tmp_path):
    text, _ = TEXTS[1]
    cli = [sys.executable, "-m", "tts_client.cli", "--url", server.grpc_url, "--stream", text]
    done = subprocess.run([*cli, "-o", str(tmp_path / "out.wav")], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "first audio after" in done.stdout
    want = client.synthesize(text)
    written, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert rate == want.sample_rate and written.shape == want.audio.shape
    assert_equal_audio(server, written, want.audio)  # 16-bit PCM: within 1 / 32767 more
    raw = subprocess.run([*cli, "-o", "-"], capture_output=True, timeout=120, check=False)
    assert raw.returncode == 0, raw.stderr
    assert_equal_audio(server, np.frombuffer(raw.stdout, dtype="<f4"), want.audio)


def test_http_generate_stream_serves_the_chunks_as_server_sent_events(server, client):
    """Triton's own HTTP streaming endpoint works with this model's tensors (README: curl)."""
    text, speed = TEXTS[1]
    request = urllib.request.Request(f"http://{server.http_url}/v2/models/{TTS_STREAM.name}/generate_stream",
                                     data=json.dumps({"TEXT": text, "SPEED": speed}).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        events = [json.loads(line[len(b"data: "):]) for line in response if line.startswith(b"data: ")]
    assert len(events) > 1 and all("AUDIO" in e and e["SAMPLE_RATE"] == 16000 for e in events)
    assert_equal_audio(server, np.concatenate([np.array(e["AUDIO"], dtype=np.float32) for e in events]),
                       client.synthesize(text, speed=speed).audio)


def test_the_http_client_says_that_streaming_needs_grpc(server):
    with TTSClient(server.http_url, "http") as c, pytest.raises(TTSError, match="gRPC"):
        next(c.stream("你好"))
