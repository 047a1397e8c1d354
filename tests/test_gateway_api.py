"""The gateway's routes over real HTTP: a uvicorn process in front of a real tritonserver (tiny fixture).

Audio is checked against the same request sent straight to Triton with the client package, so every
format, stream and task is compared with what the model itself answers.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
from gateway_support import CHUNK_DELAY_S, CHUNKS, triton_model_control
from prometheus_client.parser import text_string_to_metric_families

from gateway.audio import to_int16
from tts_client import TTSClient

pytestmark = pytest.mark.server

TEXT = "今天天气很好，我们去公园散步吧。"


@pytest.fixture(scope="module")
def http(gateway_process):
    with httpx.Client(base_url=gateway_process.url, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def triton_client(gateway_triton):
    with TTSClient(gateway_triton.grpc_url, protocol="grpc", timeout_s=120) as client:
        yield client


def direct_pcm(triton_client, text: str = TEXT, **kwargs) -> np.ndarray:
    """What Triton answers for the request, as the 16-bit samples the gateway sends."""
    return to_int16(triton_client.synthesize(text, **kwargs).audio)


def wav_samples(body: bytes) -> tuple[np.ndarray, int]:
    samples, rate = sf.read(io.BytesIO(body), dtype="int16")
    return samples, rate


def test_api_tts_answers_a_16_bit_wav_of_what_triton_says(http, triton_client):
    response = http.post("/api/tts", json={"text": TEXT})
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    info = sf.info(io.BytesIO(response.content))
    assert (info.format, info.subtype, info.channels, info.samplerate) == ("WAV", "PCM_16", 1, 16000)
    samples, _ = wav_samples(response.content)
    assert np.array_equal(samples, direct_pcm(triton_client))
    assert float(response.headers["x-audio-duration"]) == pytest.approx(len(samples) / 16000, abs=1e-3)


def test_flask_style_path_and_every_option(http, triton_client):
    body = {"text": TEXT, "voice": "zhitian_emo", "emotion": "happy", "speed": 1.5, "speaker": "F7", "seed": 7}
    response = http.post("/tts", json=body)
    assert response.status_code == 200
    samples, _ = wav_samples(response.content)
    assert np.array_equal(samples, direct_pcm(triton_client, voice="zhitian_emo", emotion="happy", speed=1.5))
    assert len(samples) < len(direct_pcm(triton_client))  # faster speech is shorter


def test_curl_without_a_json_content_type_is_understood(http):
    response = http.post("/api/tts", content=json.dumps({"text": TEXT}).encode(),
                         headers={"Content-Type": "application/x-www-form-urlencoded"})  # what curl -d sends
    assert response.status_code == 200


@pytest.mark.parametrize("fmt,media_type", [("flac", "audio/flac"), ("mp3", "audio/mpeg"), ("opus", "audio/ogg"),
                                            ("pcm", "audio/pcm; rate=16000")])
def test_formats(http, triton_client, fmt, media_type):
    response = http.post("/api/tts", json={"text": TEXT, "format": fmt})
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    expected = direct_pcm(triton_client)
    if fmt == "pcm":
        assert np.array_equal(np.frombuffer(response.content, dtype="<i2"), expected)
        return
    decoded, rate = sf.read(io.BytesIO(response.content), dtype="int16")
    assert rate == 16000
    if fmt == "flac":  # lossless
        assert np.array_equal(decoded, expected)
    else:  # lossy codecs pad with encoder delay and frame padding, a few tens of ms at most
        assert abs(len(decoded) - len(expected)) / rate < 0.1


TOO_LONG = "好" * 2001
BAD_REQUESTS = {
    "empty-body": (b"", 400, "body is empty"),
    "malformed-json": (b'{"text": "hi"', 400, "not valid JSON"),
    "not-an-object": (b'["hi"]', 400, "must be a JSON object"),
    "not-utf8": ('{"text": "你好"}'.encode("gbk"), 400, "not UTF-8"),
    "text-missing": ({"voice": "zhitian_emo"}, 400, "'text' is required"),
    "text-not-a-string": ({"text": 42}, 400, "'text': Input should be a valid string"),
    "text-empty": ({"text": "  "}, 400, "'text' is empty"),
    "text-too-long": ({"text": TOO_LONG}, 400, "2001 characters, at most 2000"),
    "voice-unknown": ({"text": "你好", "voice": "nobody"}, 400, "unknown voice 'nobody': use one of zhitian_emo"),
    "voice-not-a-string": ({"text": "你好", "voice": 3}, 400, "'voice': Input should be a valid string"),
    "emotion-unknown": ({"text": "你好", "emotion": "furious"}, 400, "has no emotion 'furious'"),
    "speaker-unknown": ({"text": "你好", "speaker": "M7"}, 400, "has no speaker 'M7': use one of F7"),
    "seed-negative": ({"text": "你好", "seed": -1}, 400, "'seed' -1 is out of range"),
    "seed-not-a-number": ({"text": "你好", "seed": "lucky"}, 400, "'seed': Input should be a valid integer"),
    "format-unknown": ({"text": "你好", "format": "aac"}, 400, "unknown format 'aac': use one of wav"),
    "speed-too-high": ({"text": "你好", "speed": 2.5}, 400, "out of range: use 0.5 to 2"),
    "speed-zero": ({"text": "你好", "speed": 0}, 400, "out of range"),
    "speed-not-a-number": ({"text": "你好", "speed": "fast"}, 400, "'speed': Input should be a valid number"),
    "speed-bool": ({"text": "你好", "speed": True}, 400, "'speed'"),
    # Checked by Triton's front end and passed on with its message:
    "bad-ssml": ({"text": '<speak>你好<break time="soon"/></speak>'}, 400, "invalid SSML"),
}


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_each_mistake_is_a_400_that_says_what_to_do_and_the_gateway_keeps_serving(http, name):
    body, status, message = BAD_REQUESTS[name]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = http.post("/api/tts", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["error"]
    assert "Traceback" not in response.text
    assert http.post("/api/tts", json={"text": "好的。"}).status_code == 200


def test_unknown_paths_and_methods_answer_in_the_same_shape(http):
    missing = http.get("/api/nothing")
    assert missing.status_code == 404 and "no such path '/api/nothing'" in missing.json()["error"]
    wrong_method = http.get("/api/tts")
    assert wrong_method.status_code == 405 and "GET is not allowed" in wrong_method.json()["error"]


def test_voices_health_and_readiness(http):
    voices = http.get("/api/voices").json()
    assert voices["default_voice"] == "zhitian_emo" and voices["sample_rate"] == 16000
    assert "happy" in voices["voices"]["zhitian_emo"]["emotions"]
    assert voices["voices"]["zhitian_emo"]["speakers"] == ["F7"]
    assert voices["speed"] == {"min": 0.5, "max": 2.0, "default": 1.0}
    assert voices["formats"] == ["wav", "flac", "mp3", "opus", "pcm"]
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["models"] == {"tts": True, "frontend": True, "tts_stream": True}


def read_stream(http, path: str, body: dict) -> tuple[httpx.Response, list[tuple[float, bytes]], float]:
    """(response, [(arrival time, bytes)], end time), times from the request."""
    start = time.perf_counter()
    pieces = []
    with http.stream("POST", path, json=body) as response:
        for piece in response.iter_raw():
            pieces.append((time.perf_counter() - start, piece))
        end = time.perf_counter() - start
    return response, pieces, end


def first_audio_at(pieces: list[tuple[float, bytes]], header_bytes: int) -> float:
    received = 0
    for arrival, piece in pieces:
        received += len(piece)
        if received > header_bytes:
            return arrival
    raise AssertionError("the stream had no audio")


def test_stream_sends_audio_before_the_end_from_the_streaming_model(http, triton_client):
    response, pieces, end = read_stream(http, "/api/tts/stream", {"text": TEXT})
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    # The stand-in waits CHUNK_DELAY_S between its chunks: the first audio arrives long before the last
    # (a stream cut from `tts` would arrive all at once).
    assert end - first_audio_at(pieces, header_bytes=44) >= (CHUNKS - 2) * CHUNK_DELAY_S
    body = b"".join(piece for _, piece in pieces)
    assert body[:4] == b"RIFF" and struct.unpack("<I", body[4:8])[0] == 0xFFFFFFFF
    assert body[36:40] == b"data" and struct.unpack("<I", body[40:44])[0] == 0xFFFFFFFF
    assert np.array_equal(np.frombuffer(body[44:], dtype="<i2"), direct_pcm(triton_client))


def test_stream_as_raw_pcm(http, triton_client):
    response, pieces, _ = read_stream(http, "/api/tts/stream", {"text": TEXT, "format": "pcm", "speed": 0.8})
    assert response.headers["x-sample-rate"] == "16000"
    body = b"".join(piece for _, piece in pieces)
    assert np.array_equal(np.frombuffer(body, dtype="<i2"), direct_pcm(triton_client, speed=0.8))


def test_stream_errors_before_audio_get_a_status(http):
    response = http.post("/api/tts/stream", json={"text": '<speak><break time="soon"/></speak>'})
    assert response.status_code == 400 and "invalid SSML" in response.json()["error"]


def test_stream_falls_back_to_tts_when_the_streaming_model_is_not_loaded(http, gateway_triton, triton_client):
    triton_model_control(gateway_triton, "tts_stream", "unload")
    try:
        assert http.get("/readyz").json()["models"]["tts_stream"] is False
        response, pieces, _ = read_stream(http, "/api/tts/stream", {"text": TEXT})
        assert response.status_code == 200
        body = b"".join(piece for _, piece in pieces)
        assert np.array_equal(np.frombuffer(body[44:], dtype="<i2"), direct_pcm(triton_client))
    finally:
        triton_model_control(gateway_triton, "tts_stream", "load")


def test_the_stream_route_takes_long_texts_while_the_streaming_model_serves(http, gateway_triton):
    """/api/tts refuses a text past 2000 characters; /api/tts/stream passes it on to the streaming model
    (which reads up to 100,000; this stand-in answers what `tts` says) and takes a body far past 64 KiB,
    but keeps the 2000-character bound when it would have to cut the stream from one `tts` result."""
    long_text = "今天天气很好，我们去公园散步吧。" * 200  # 3200 characters
    whole = http.post("/api/tts", json={"text": long_text})
    assert whole.status_code == 400 and "at most 2000 are accepted" in whole.json()["error"]
    assert http.post("/api/tts", json={"text": "好" * 30_000}).status_code == 413
    streamed = http.post("/api/tts/stream", json={"text": long_text})
    assert "are accepted" not in streamed.text  # past the gateway: the stand-in's `tts` answers
    assert http.post("/api/tts/stream", json={"text": "好" * 30_000}).status_code != 413
    assert http.get("/api/voices").json()["max_stream_text_chars"] == 100_000
    triton_model_control(gateway_triton, "tts_stream", "unload")
    try:
        cut = http.post("/api/tts/stream", json={"text": long_text})
        assert cut.status_code == 400 and "at most 2000 are accepted" in cut.json()["error"]
    finally:
        triton_model_control(gateway_triton, "tts_stream", "load")


def test_triton_model_not_loaded_is_a_503_with_a_message(http, gateway_triton):
    triton_model_control(gateway_triton, "tts", "unload")
    try:
        ready = http.get("/readyz")
        assert ready.status_code == 503 and "model tts is not loaded" in ready.json()["error"]
        response = http.post("/api/tts", json={"text": TEXT})
        assert response.status_code == 503 and "unavailable" in response.json()["error"]
    finally:
        triton_model_control(gateway_triton, "tts", "load")
    assert http.post("/api/tts", json={"text": TEXT}).status_code == 200


def poll(http, task_id: str, limit_s: float = 60) -> httpx.Response:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        response = http.get(f"/api/tts/result/{task_id}")
        if response.status_code != 202:
            return response
        assert response.json() == {"task_id": task_id, "status": "running"}
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} still running after {limit_s} s")


def test_async_task_lifecycle(http, triton_client):
    submitted = http.post("/api/tts/async", json={"text": TEXT, "format": "flac"})
    assert submitted.status_code == 202
    task_id = submitted.json()["task_id"]
    assert submitted.headers["location"] == submitted.json()["result_url"] == f"/api/tts/result/{task_id}"
    done = poll(http, task_id)
    assert done.status_code == 200 and done.headers["content-type"] == "audio/flac"
    samples, _ = wav_samples(done.content)
    assert np.array_equal(samples, direct_pcm(triton_client))
    assert http.get(f"/api/tts/result/{task_id}").status_code == 200  # kept until it expires


def test_async_task_seen_running_then_done(http):
    # A long text keeps the task busy for a while, so the first poll finds it running.
    long_text = "我们明天早上八点出发，请大家准时集合，不要迟到了。" * 60  # 1440 characters, 60 sentences
    task_id = http.post("/api/tts/async", json={"text": long_text}).json()["task_id"]
    first = http.get(f"/api/tts/result/{task_id}")
    assert first.status_code == 202 and first.headers["retry-after"] == "1"
    assert poll(http, task_id).status_code == 200


def test_async_task_failure_and_unknown_ids(http):
    submitted = http.post("/api/tts/async", json={"text": '<speak><break time="soon"/></speak>'})
    assert submitted.status_code == 202  # the SSML is checked by Triton, after the task started
    failed = poll(http, submitted.json()["task_id"])
    assert failed.status_code == 400
    assert f"task {submitted.json()['task_id']} failed" in failed.json()["error"]
    assert "invalid SSML" in failed.json()["error"]
    assert http.get("/api/tts/result/0123abcd").status_code == 404
    # Mistakes the gateway can see are refused at once, not turned into failed tasks.
    assert http.post("/api/tts/async", json={"text": "你好", "voice": "nobody"}).status_code == 400


def test_openai_speech_defaults_to_mp3_and_maps_voices(http):
    response = http.post("/v1/audio/speech", json={"model": "tts-1", "input": TEXT, "voice": "alloy"})
    assert response.status_code == 200 and response.headers["content-type"] == "audio/mpeg"
    assert response.headers["x-voice"] == "zhitian_emo"
    assert sf.info(io.BytesIO(response.content)).format == "MP3"
    # onyx maps to zhizhe_emo, which this (one-voice) repository lacks: the default voice speaks.
    onyx = http.post("/v1/audio/speech", json={"model": "tts-1", "input": TEXT, "voice": "onyx"})
    assert onyx.status_code == 200 and onyx.headers["x-voice"] == "zhitian_emo"


def test_openai_speech_wav_equals_ours(http, triton_client):
    response = http.post("/v1/audio/speech", json={"model": "tts-1-hd", "input": TEXT, "voice": "zhitian_emo",
                                                   "response_format": "wav", "speed": 1.2, "emotion": "sad",
                                                   "instructions": "Speak warmly."})
    assert response.status_code == 200
    samples, _ = wav_samples(response.content)
    assert np.array_equal(samples, direct_pcm(triton_client, speed=1.2, emotion="sad"))
    assert sf.info(io.BytesIO(response.content)).frames == len(samples)  # a file with exact sizes


@pytest.mark.parametrize("body,message", [
    ({"model": "tts-1", "input": TEXT, "voice": "darth"}, "unknown voice 'darth': use an OpenAI voice"),
    ({"model": "tts-1", "input": TEXT, "voice": "alloy", "response_format": "aac"}, "aac is not offered"),
    ({"model": "tts-1", "input": TEXT, "voice": "alloy", "speed": 4.0}, "out of range: use 0.5 to 2"),
    ({"model": "tts-1", "input": TEXT, "voice": "alloy", "stream_format": "chunks"}, "'stream_format'"),
    ({"model": "tts-1", "input": "", "voice": "alloy"}, "'input' is empty"),
    ({"model": "tts-1", "voice": "alloy"}, "'input' is required"),
    ({"input": TEXT, "voice": "alloy"}, "'model' is required"),
])
def test_openai_speech_mistakes(http, body, message):
    response = http.post("/v1/audio/speech", json=body)
    assert response.status_code == 400 and message in response.json()["error"]


def test_openai_speech_streams_pcm_and_server_sent_events(http, triton_client):
    expected = direct_pcm(triton_client)
    response, pieces, _ = read_stream(http, "/v1/audio/speech", {"model": "tts-1", "input": TEXT, "voice": "alloy",
                                                                 "response_format": "pcm"})
    assert len(pieces) > 1
    assert np.array_equal(np.frombuffer(b"".join(p for _, p in pieces), dtype="<i2"), expected)

    response, pieces, _ = read_stream(http, "/v1/audio/speech", {"model": "gpt-4o-mini-tts", "input": TEXT,
                                                                 "voice": "alloy", "response_format": "pcm",
                                                                 "stream_format": "sse"})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[len("data: "):]) for line in b"".join(p for _, p in pieces).decode().splitlines()
              if line.startswith("data: ")]
    assert [e["type"] for e in events] == ["speech.audio.delta"] * (len(events) - 1) + ["speech.audio.done"]
    assert len(events) > 2  # the audio came in several deltas
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert np.array_equal(np.frombuffer(audio, dtype="<i2"), expected)
    assert events[-1]["usage"]["input_tokens"] == len(TEXT)


def metric(exposition: str, name: str, **labels) -> float:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_metrics_count_requests_latency_audio_and_in_flight(http):
    before = http.get("/metrics").text
    ok = http.post("/api/tts", json={"text": TEXT})
    http.post("/api/tts", json={"text": ""})
    http.get("/api/tts/result/0123abcd")
    with http.stream("POST", "/api/tts/stream", json={"text": TEXT}) as streaming:
        pieces = streaming.iter_raw()
        next(pieces)
        during = http.get("/metrics").text
        for _ in pieces:
            pass
    after = http.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text

    def grew(name, **labels):
        return metric(text, name, **labels) - metric(before, name, **labels)

    assert grew("gateway_requests_total", route="/api/tts", status="200") == 1
    assert grew("gateway_requests_total", route="/api/tts", status="400") == 1
    assert grew("gateway_requests_total", route="/api/tts/result/{task_id}", status="404") == 1
    assert grew("gateway_requests_total", route="/api/tts/stream", status="200") == 1
    assert grew("gateway_request_duration_seconds_count", route="/api/tts") == 2
    assert grew("gateway_audio_seconds_total", route="/api/tts") == pytest.approx(
        float(ok.headers["x-audio-duration"]), abs=1e-3)
    assert grew("gateway_audio_seconds_total", route="/api/tts/stream") == pytest.approx(
        float(ok.headers["x-audio-duration"]), abs=1e-3)
    assert metric(during, "gateway_requests_in_flight") >= 2  # the stream and the scrape itself
