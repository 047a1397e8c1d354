"""The real thing: the full-size fixture exported, served by a real tritonserver, called over HTTP and gRPC."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from bench.soak import Reference
from deploy.launcher import TritonServer
from deploy.repository import generate
from serving.contract import ExportConfig
from serving.limits import SPEED_RANGE
from tts_client.client import TTSClient, TTSError

pytestmark = pytest.mark.server  # every test here runs a real tritonserver

TEXTS = [
    "今天天气很好。", "您可以向我询问户籍的办理。", "北京欢迎你。", "我们明天早上八点出发，请大家准时集合。",
    "这本书一共有三百二十页。", "春眠不觉晓，处处闻啼鸟。", "请把门关上。", "他在2024年考上了大学。",
    "会议改到下午三点半。", "小明喜欢踢足球。", "价格是九十九元。", "银行就在路口的左边。",
    "你好。", "地铁二号线今天晚上停运检修，请乘客选择其他线路出行。", "谢谢你的帮助。", "我们一起去吃饭吧。",
]


@pytest.fixture(scope="module")
def export_dir(full_model_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export")
    subprocess.run([sys.executable, "-m", "export", str(full_model_dir), "--out", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def server(export_dir: Path, tmp_path_factory):
    repository = generate(export_dir, tmp_path_factory.mktemp("repo") / "model_repository", "cpu")
    with TritonServer(repository, extra_args=["--cache-config=local,size=67108864"]) as running:
        yield running


@pytest.fixture(params=["grpc", "http"])
def client(server, request):
    url = server.grpc_url if request.param == "grpc" else server.http_url
    with TTSClient(url, protocol=request.param, timeout_s=300) as c:
        yield c


def model_stats(server, model: str) -> dict:
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{model}/stats") as r:
        return json.load(r)["model_stats"][0]


def test_synthesis_over_both_protocols(client, export_dir):
    audio = ExportConfig.read(export_dir).audio
    result = client.synthesize("今天天气很好，我们去公园散步吧。")
    assert result.sample_rate == audio.sample_rate
    assert result.audio.dtype == np.float32 and result.audio.ndim == 1
    assert np.isfinite(result.audio).all() and np.abs(result.audio).max() <= 1.0
    assert result.duration_s > 0.3


def test_voices_and_emotions_are_listed(client, export_dir):
    voices = client.voices()
    assert list(voices) == ExportConfig.read(export_dir).voice_names()
    assert all("neutral" in emotions and "happy" in emotions for emotions in voices.values())


def test_voice_emotion_and_speed_change_the_audio(client):
    base = client.synthesize("北京欢迎你。")
    other_voice = client.synthesize("北京欢迎你。", voice=list(client.voices())[1])
    happy = client.synthesize("北京欢迎你。", emotion="happy")
    fast = client.synthesize("北京欢迎你。", speed=2.0)
    slow = client.synthesize("北京欢迎你。", speed=0.5)
    assert not np.array_equal(base.audio, other_voice.audio)
    assert not np.array_equal(base.audio, happy.audio)
    assert len(fast.audio) < len(base.audio) < len(slow.audio)


def test_long_text_is_one_response_of_all_sentences(client):
    one = client.synthesize(TEXTS[0])
    many = client.synthesize("".join(TEXTS[:6]))
    assert len(many.audio) > 4 * len(one.audio)


def test_batched_requests_equal_single_requests(server):
    """16 concurrent requests of different lengths give the same audio as each one alone (within the bound of
    the repository's vocoder precision: serving.contract.MAX_FP32_BATCH_DIFF or MAX_BF16_BATCH_L1).

    The response cache is keyed on the inputs, so the concurrent round sends SPEED=1.0 explicitly
    (the default) to miss the entries the single round left, and the statistics show it batched.
    """
    with TTSClient(server.grpc_url, protocol="grpc", timeout_s=600) as c:
        alone = [c.synthesize(text).audio for text in TEXTS]
        executions_before = model_stats(server, "acoustic")["execution_count"]
        with ThreadPoolExecutor(len(TEXTS)) as pool:
            together = list(pool.map(lambda t: c.synthesize(t, speed=1.0).audio, TEXTS))
        executions = model_stats(server, "acoustic")["execution_count"] - executions_before
    assert executions < len(TEXTS), "the acoustic model never saw more than one request at once"
    reference = Reference(server.model_repository)
    for text, a, b in zip(TEXTS, alone, together):
        difference, bound, measure = reference.difference(b, a)
        assert difference <= bound, (text, measure, difference)


def test_response_cache_returns_the_same_audio(server):
    before = model_stats(server, "tts")["inference_stats"]["cache_hit"]["count"]
    with TTSClient(server.http_url, protocol="http", timeout_s=300) as c:
        first = c.synthesize("缓存测试的句子。", emotion="sad")
        second = c.synthesize("缓存测试的句子。", emotion="sad")
    assert np.array_equal(first.audio, second.audio)
    assert model_stats(server, "tts")["inference_stats"]["cache_hit"]["count"] == before + 1


BAD_REQUESTS = [
    (dict(text=""), "empty"),
    (dict(text="   "), "empty"),
    (dict(text="你好", voice="nobody"), "unknown VOICE"),
    (dict(text="你好", emotion="furious"), "emotion"),
    (dict(text="你好", speed=SPEED_RANGE[1] + 1), "SPEED"),
    (dict(text="你好", speed=0.0), "SPEED"),
    (dict(text="好" * 20000), "more than"),
]


@pytest.mark.parametrize("kwargs,message", BAD_REQUESTS, ids=["empty", "blank", "voice", "emotion", "speed-high", "speed-zero", "too-long"])
def test_user_errors_are_clear_and_the_server_keeps_serving(client, kwargs, message):
    with pytest.raises(TTSError, match=message):
        client.synthesize(**kwargs)
    assert client.synthesize("好的。").duration_s > 0


def raw_http(server, body: dict) -> tuple[int, str]:
    request = urllib.request.Request(f"http://{server.http_url}/v2/models/tts/infer", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_curl_style_json_request(server):
    status, body = raw_http(server, {"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES",
                                                 "data": ["你好，世界。"]}]})
    assert status == 200
    outputs = {o["name"]: o for o in json.loads(body)["outputs"]}
    assert outputs["SAMPLE_RATE"]["data"] == [16000]
    assert len(outputs["AUDIO"]["data"]) > 1000


@pytest.mark.parametrize("inputs,message", [
    ([{"name": "TEXT", "shape": [1, 1], "datatype": "INT32", "data": [5]}], "data-type"),
    ([{"name": "TEXT", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}], "shape"),
    ([{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": ["你好"]},
      {"name": "SPEED", "shape": [1, 1], "datatype": "FP64", "data": [1.0]}], "data-type"),
    ([{"name": "VOICE", "shape": [1, 1], "datatype": "BYTES", "data": ["x"]}], "TEXT"),
], ids=["text-int", "text-shape", "speed-fp64", "no-text"])
def test_wrong_dtype_or_shape_over_raw_http(server, inputs, message):
    status, body = raw_http(server, {"inputs": inputs})
    assert status == 400, body
    assert message in json.loads(body)["error"]
    assert raw_http(server, {"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES",
                                         "data": ["好的。"]}]})[0] == 200


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_invalid_utf8_is_rejected(server, protocol):
    module = grpcclient if protocol == "grpc" else httpclient
    url = server.grpc_url if protocol == "grpc" else server.http_url
    client = module.InferenceServerClient(url)
    text = module.InferInput("TEXT", [1, 1], "BYTES")
    text.set_data_from_numpy(np.array([[b"\xff\xfe\xfa"]], dtype=np.object_))
    try:
        with pytest.raises(InferenceServerException, match="UTF-8"):
            client.infer("tts", [text])
    finally:
        client.close()
