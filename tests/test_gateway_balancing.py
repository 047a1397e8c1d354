"""The gateway in front of several Triton replicas without a balancer: its gRPC channel spreads calls over every
address its Triton URL resolves to (as a Kubernetes headless Service resolves to each ready pod), and connects
afresh every --triton-refresh-s so that replicas added since get calls; a call lost in transport (its replica
went away) is sent again."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from deploy.launcher import TritonServer
from gateway.errors import ApiError
from gateway.launcher import GatewayProcess
from gateway.triton import Speech, Triton

pytestmark = pytest.mark.server  # real tritonservers

REQUESTS = 12


def tts_executions(server: TritonServer) -> int:
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/tts/stats") as response:
        return json.load(response)["model_stats"][0]["inference_stats"]["success"]["count"]


def test_calls_are_spread_over_every_replica_the_url_names(tiny_repository, tmp_path):
    with TritonServer(tiny_repository, log_path=tmp_path / "a.log") as a, \
            TritonServer(tiny_repository, log_path=tmp_path / "b.log") as b:
        url = f"ipv4:{a.grpc_url},{b.grpc_url}"  # two addresses, as a headless Service's name resolves to
        with GatewayProcess(url, tmp_path / "gateway.log") as gateway, httpx.Client(base_url=gateway.url,
                                                                                    timeout=120) as http:
            texts = [f"第{i}句，今天天气很好。" for i in range(REQUESTS)]  # distinct: no response cache hits
            with ThreadPoolExecutor(4) as pool:
                statuses = list(pool.map(lambda t: http.post("/api/tts", json={"text": t}).status_code, texts))
        assert statuses == [200] * REQUESTS
        counts = [tts_executions(a), tts_executions(b)]
        assert sum(counts) == REQUESTS and min(counts) >= REQUESTS // 4, counts


def test_the_connection_is_renewed_every_refresh_and_the_old_one_closed_after_its_calls():
    async def run():
        triton = Triton("127.0.0.1:1", timeout_s=0.2, catalogue_ttl_s=30, refresh_s=0.05)
        first = triton.client
        assert triton.client is first  # within refresh_s: the same connection
        await asyncio.sleep(0.06)
        second = triton.client
        assert second is not first and triton.client is second
        assert len(triton._retiring) == 1  # the old one closes once calls begun on it are past timeout_s
        await asyncio.sleep(0.3)
        assert not triton._retiring
        await triton.close()

    asyncio.run(run())


class FlakyClient:
    """Triton's client as the gateway uses it: `failures` calls lost in transport (or answered with an error),
    then audio."""

    def __init__(self, failures: list[str]):
        self.failures, self.calls = list(failures), 0

    async def infer(self, *args, **kwargs):
        self.calls += 1
        if self.failures:
            raise InferenceServerException(msg=self.failures.pop(0), status="StatusCode.UNAVAILABLE")
        return FakeResult()

    async def close(self) -> None:
        pass


class FakeResult:
    def as_numpy(self, name: str) -> np.ndarray:
        return np.zeros(160, np.float32) if name == "AUDIO" else np.array([16000], np.int32)


@pytest.mark.parametrize("failures,calls,status", [
    (["Stream removed (Data frame with END_STREAM flag received)"], 2, None),  # a replica killed mid-call
    (["Socket closed", "Connection reset by peer"], 3, None),
    (["Socket closed"] * 3, 3, 503),  # every try lost: the caller hears it
    (["Exceeds maximum queue size"], 1, 503),  # Triton's own answer is never sent again
])
def test_a_call_lost_in_transport_is_sent_again(failures, calls, status):
    async def run():
        triton = Triton("127.0.0.1:1", timeout_s=1, catalogue_ttl_s=30)
        await triton._client.close()
        flaky = triton._client = FlakyClient(failures)
        try:
            result = await triton.synthesize(Speech("你好", "v", "neutral", 1.0))
        except ApiError as e:
            result = e
        await triton.close()
        return flaky.calls, result

    made, result = asyncio.run(run())
    assert made == calls
    assert (result.status if status else len(result.samples)) == (status or 160)
