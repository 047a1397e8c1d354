"""The gateway's guards and failure answers over real HTTP: API keys, CORS, the per-client cap, the body cap,
Triton down or too slow, and the async task store's retention, each with a gateway process set up for it."""

from __future__ import annotations

import time

import httpx
import pytest

from deploy.launcher import free_port
from gateway.launcher import GatewayProcess

pytestmark = pytest.mark.server

TEXT = "今天天气很好。"
ALLOWED_ORIGIN = "https://tts.example.com"


@pytest.fixture
def start_gateway(gateway_triton, tmp_path):
    """start_gateway(*flags, env=..., triton_url=...) -> a running GatewayProcess, stopped after the test."""
    started = []

    def start(*flags: str, env: dict[str, str] | None = None, triton_url: str | None = None) -> GatewayProcess:
        gateway = GatewayProcess(triton_url or gateway_triton.grpc_url, tmp_path / f"gateway{len(started)}.log",
                                 *flags, env=env)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


def test_api_keys_from_the_environment_and_a_file(start_gateway, tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text("file-key\n\n")
    gateway = start_gateway("--api-keys-file", str(keys_file), env={"TTS_GATEWAY_API_KEYS": "env-key, other"})
    with httpx.Client(base_url=gateway.url, timeout=60) as http:
        missing = http.post("/api/tts", json={"text": TEXT})
        assert missing.status_code == 401 and "Authorization: Bearer KEY" in missing.json()["error"]
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = http.post("/api/tts", json={"text": TEXT}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "the API key is not valid"
        bearer = {"Authorization": "Bearer env-key"}
        assert http.post("/api/tts", json={"text": TEXT}, headers=bearer).status_code == 200
        assert http.post("/api/tts", json={"text": TEXT}, headers={"X-API-Key": "file-key"}).status_code == 200
        assert http.get("/api/voices", headers={"X-API-Key": "other"}).status_code == 200
        assert http.get("/api/voices").status_code == 401
        openai_body = {"model": "tts-1", "input": TEXT, "voice": "alloy"}
        assert http.post("/v1/audio/speech", json=openai_body).status_code == 401
        # Probes, scrapers and the page itself need no key.
        for path in ("/", "/healthz", "/readyz", "/metrics"):
            assert http.get(path).status_code == 200, path


def test_cors_allows_only_the_listed_origins(start_gateway, gateway_process):
    gateway = start_gateway("--cors-origins", ALLOWED_ORIGIN)
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,authorization"}
    with httpx.Client(base_url=gateway.url, timeout=60) as http:
        allowed = http.options("/api/tts", headers={"Origin": ALLOWED_ORIGIN, **preflight})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        refused = http.options("/api/tts", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in refused.headers
        response = http.post("/api/tts", json={"text": TEXT}, headers={"Origin": ALLOWED_ORIGIN})
        assert response.status_code == 200 and response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert "X-Sample-Rate" in response.headers["access-control-expose-headers"]
        error = http.post("/api/tts", json={"text": ""}, headers={"Origin": ALLOWED_ORIGIN})
        assert error.status_code == 400 and error.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    # The default is no origin at all.
    with httpx.Client(base_url=gateway_process.url, timeout=60) as http:
        response = http.post("/api/tts", json={"text": TEXT}, headers={"Origin": ALLOWED_ORIGIN})
        assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


def test_per_client_cap_answers_429_while_the_client_has_too_many_in_flight(start_gateway):
    gateway = start_gateway("--max-requests-per-client", "1", env={"TTS_GATEWAY_API_KEYS": "alice,bob"})
    alice, bob = {"X-API-Key": "alice"}, {"X-API-Key": "bob"}
    with httpx.Client(base_url=gateway.url, timeout=60) as http:
        # The stand-in streaming model takes over a second per stream: alice has one in flight meanwhile.
        with http.stream("POST", "/api/tts/stream", json={"text": TEXT}, headers=alice) as stream:
            pieces = stream.iter_raw()  # kept: dropping the iterator would close the stream
            next(pieces)
            busy = http.post("/api/tts", json={"text": TEXT}, headers=alice)
            assert busy.status_code == 429 and "at most 1" in busy.json()["error"]
            assert busy.headers["retry-after"] == "1"
            assert http.post("/api/tts", json={"text": TEXT}, headers=bob).status_code == 200  # another client
            assert http.get("/healthz", headers=alice).status_code == 200  # probes are not capped
            assert sum(len(piece) for piece in pieces) > 0
        assert http.post("/api/tts", json={"text": TEXT}, headers=alice).status_code == 200


def test_body_cap_by_length_and_while_reading_a_chunked_body(start_gateway):
    gateway = start_gateway("--max-body-bytes", "1000")
    big = ('{"text": "' + "好" * 400 + '"}').encode()  # 1214 bytes
    with httpx.Client(base_url=gateway.url, timeout=60) as http:
        declared = http.post("/api/tts", content=big, headers={"Content-Type": "application/json"})
        assert declared.status_code == 413 and "larger than 1000 bytes" in declared.json()["error"]
        chunked = http.post("/api/tts", content=iter([big[:600], big[600:]]))  # no Content-Length
        assert chunked.status_code == 413 and "larger than 1000 bytes" in chunked.json()["error"]
        assert http.post("/api/tts", json={"text": TEXT}).status_code == 200


def test_triton_down_is_a_503_and_the_gateway_stays_up(start_gateway):
    gateway = start_gateway(triton_url=f"127.0.0.1:{free_port()}")  # nothing listens there
    with httpx.Client(base_url=gateway.url, timeout=60) as http:
        assert http.get("/healthz").status_code == 200
        ready = http.get("/readyz")
        assert ready.status_code == 503 and "not reachable" in ready.json()["error"]
        for response in (http.post("/api/tts", json={"text": TEXT}), http.get("/api/voices"),
                         http.post("/api/tts/stream", json={"text": TEXT})):
            assert response.status_code == 503
            assert "unavailable" in response.json()["error"] and "try again" in response.json()["error"]


def test_triton_too_slow_is_a_504(start_gateway):
    gateway = start_gateway("--triton-timeout-s", "0.001", "--catalogue-ttl-s", "3600")
    with httpx.Client(base_url=gateway.url, timeout=60) as http:
        response = http.post("/api/tts", json={"text": TEXT})
        assert response.status_code == 504 and "did not finish in time" in response.json()["error"]


def wait_done(http: httpx.Client, task_id: str) -> httpx.Response:
    deadline = time.monotonic() + 60
    while (response := http.get(f"/api/tts/result/{task_id}")).status_code == 202:
        assert time.monotonic() < deadline, f"task {task_id} still running"
        time.sleep(0.05)
    return response


def test_async_results_expire_by_age_and_by_count(start_gateway):
    gateway = start_gateway("--task-retention-s", "1", "--max-tasks", "2")
    with httpx.Client(base_url=gateway.url, timeout=60) as http:
        first = http.post("/api/tts/async", json={"text": TEXT}).json()["task_id"]
        assert wait_done(http, first).status_code == 200
        time.sleep(1.5)
        expired = http.get(f"/api/tts/result/{first}")
        assert expired.status_code == 404 and "expired" in expired.json()["error"]

        ids = []
        for _ in range(3):
            ids.append(http.post("/api/tts/async", json={"text": TEXT}).json()["task_id"])
            assert wait_done(http, ids[-1]).status_code == 200
        # Room for two: the third task dropped the oldest finished one.
        assert [http.get(f"/api/tts/result/{task_id}").status_code for task_id in ids] == [404, 200, 200]
