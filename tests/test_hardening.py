"""Safe by default: each attack or overload a network client could send, answered.

Every test sends the attack first (as an operator tried it on an unprotected server) and then checks the
answer: the admin APIs need the key, internal models refuse out-of-range inputs without failing their
batch, the work one request may ask for is bounded, overload is shed, a reload never serves stale cache,
and a dying tritonserver is reported with a non-zero exit.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from bench.memory import process_tree
from deploy.launcher import Ports, TritonServer
from deploy.repository import TargetSettings, generate
from models.fixtures import DEFAULT_VOICES, make_model_dir
from serving.limits import MAX_AUDIO_S, MAX_BREAK_S
from tts_client import TTSClient, TTSError

pytestmark = pytest.mark.server
ROOT = Path(__file__).resolve().parent.parent
TEXT = "今天天气很好，我们去公园散步吧。"


def post(url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, str]:
    data = json.dumps(body or {}).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json",
                                                                               **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope="module")
def repository(tiny_repository, tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("hardening") / "model_repository"
    shutil.copytree(tiny_repository, copy)
    return copy


@pytest.fixture(scope="module")
def server(repository):
    with TritonServer(repository, extra_args=["--model-control-mode=explicit", "--load-model=tts"]) as running:
        yield running


def infer_acoustic(client, voice_index: int, duration_scale: float):
    def tensor(name, array, datatype):
        t = grpcclient.InferInput(name, list(array.shape), datatype)
        t.set_data_from_numpy(array)
        return t

    ids = np.zeros((1, 6, 6), dtype=np.int64)
    return client.infer("acoustic", [
        tensor("IDS", ids, "INT64"), tensor("TOKENS", np.array([[6]], np.int32), "INT32"),
        tensor("VOICE_INDEX", np.array([[voice_index]], np.int32), "INT32"),
        tensor("DURATION_SCALE", np.array([[duration_scale]], np.float32), "FP32"),
        tensor("PAUSE", np.array([[0.0]], np.float32), "FP32")])


def test_admin_apis_refuse_requests_without_the_key(server, tmp_path):
    base = f"http://{server.http_url}/v2"
    marker = tmp_path / "ran"
    payload = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\nclass TritonPythonModel:\n    pass\n"
    attack = {"parameters": {"config": json.dumps({"backend": "python"}),
                             "file:1/model.py": base64.b64encode(payload.encode()).decode()}}
    assert post(f"{base}/repository/models/evil/load", attack)[0] == 403
    assert post(f"{base}/repository/models/tts/unload")[0] == 403
    status, body = post(f"{base}/systemsharedmemory/region/x/register", {"key": "/x", "offset": 0, "byte_size": 64})
    assert status == 403 and "admin-key" in body
    assert not marker.exists()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException, match="restricted"):
        client.unload_model("vocoder")
    with pytest.raises(InferenceServerException, match="restricted"):
        client.register_system_shared_memory("x", "/x", 64)
    # With the key the repository API works (and the models keep serving).
    client.unload_model("join", headers=server.admin_headers("grpc"))
    assert post(f"{base}/repository/models/join/load", headers=server.admin_headers())[0] == 200
    assert client.is_model_ready("tts")
    with TTSClient(server.grpc_url) as tts:
        assert tts.synthesize(TEXT).duration_s > 0.5


def test_internal_models_refuse_out_of_range_inputs_each_on_its_own(server):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException, match="DURATION_SCALE must be 0.5 to 2") as error:
        infer_acoustic(client, voice_index=0, duration_scale=20.0)
    assert "Traceback" not in str(error.value)

    def bad(_):
        try:
            infer_acoustic(grpcclient.InferenceServerClient(server.grpc_url), voice_index=7, duration_scale=1.0)
        except InferenceServerException as e:
            return str(e)
        return "answered"

    def good(_):
        with TTSClient(server.grpc_url, retries=0, timeout_s=300) as tts:
            return tts.synthesize(TEXT).duration_s

    with ThreadPoolExecutor(23) as pool:
        bad_results = [pool.submit(bad, i) for i in range(3)]
        good_results = [pool.submit(good, i) for i in range(20)]
        durations = [f.result() for f in good_results]  # any failure raises here
        errors = [f.result() for f in bad_results]
    assert len(set(durations)) == 1
    assert all("VOICE_INDEX must be 0 to 0" in e and "Traceback" not in e for e in errors)


@pytest.mark.parametrize("request_args,message", [
    (dict(text="<speak>" + "你好。" + f'<break time="{MAX_BREAK_S:g}s"/>' * 104 + "再见。</speak>"),
     f"pauses, more than the {MAX_AUDIO_S:g} s of audio"),
    (dict(text="今天天气很好，我们一起去公园散步吧，" * 110, speed=0.5), f"more than {MAX_AUDIO_S:g} s: split it"),
])
def test_the_audio_a_request_may_ask_for_is_bounded(server, request_args, message):
    with TTSClient(server.grpc_url, retries=0, timeout_s=300) as tts:
        started = time.monotonic()
        with pytest.raises(TTSError, match=message):
            tts.synthesize(**request_args)
        assert time.monotonic() - started < 30  # refused before the decoder, not after minutes of work
        assert tts.synthesize(TEXT).duration_s > 0.5


def test_overload_is_shed_with_a_clear_error(tiny_repository, tmp_path):
    settings = TargetSettings.read("cpu")
    tight = {name: replace(model, max_queue_size=1) for name, model in settings.models.items()}
    export_dir = tmp_path / "export"
    shutil.copytree(tiny_repository / "acoustic" / "1", export_dir)
    for voice_dir in (tiny_repository / "vocoder" / "1").iterdir():
        if voice_dir.is_dir():
            shutil.copytree(voice_dir, export_dir / voice_dir.name, dirs_exist_ok=True)
    repository = generate(export_dir, tmp_path / "repo", "cpu", settings=replace(settings, models=tight))

    def send(_):
        with TTSClient(server.grpc_url, retries=0, timeout_s=300) as tts:
            try:
                tts.synthesize(TEXT * 4)
                return "ok"
            except TTSError as e:
                return str(e)

    with TritonServer(repository) as server:
        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(send, range(16)))
        assert "ok" in outcomes
        refused = [o for o in outcomes if o != "ok"]
        assert refused and all("Exceeds maximum queue size" in o for o in refused)
        assert send(0) == "ok"  # and it keeps serving


def test_a_reload_never_serves_audio_cached_from_the_models_it_replaced(tmp_path):
    def export(seed: int) -> Path:
        model_dir = make_model_dir(tmp_path / f"model{seed}", size="tiny", voices=DEFAULT_VOICES[:1], seed=seed)
        subprocess.run([sys.executable, "-m", "export", str(model_dir), "--out", str(tmp_path / f"export{seed}")],
                       check=True, capture_output=True)
        return tmp_path / f"export{seed}"

    first, second = export(1), export(2)
    repository = generate(first, tmp_path / "repo", "cpu")
    args = ["--model-control-mode=explicit", "--load-model=tts", "--cache-config=local,size=16777216"]
    with TritonServer(repository, extra_args=args) as server, TTSClient(server.grpc_url) as tts:
        before = tts.synthesize(TEXT).audio
        np.testing.assert_array_equal(tts.synthesize(TEXT).audio, before)  # a cache hit
        generate(second, repository, "cpu")  # swap the model: regenerate in place and reload
        status, _ = post(f"http://{server.http_url}/v2/repository/models/tts/load", headers=server.admin_headers())
        assert status == 200
        after = tts.synthesize(TEXT).audio
    assert not np.array_equal(after, before)
    with TritonServer(repository) as fresh, TTSClient(fresh.grpc_url) as tts:
        np.testing.assert_allclose(tts.synthesize(TEXT).audio, after, atol=1e-4)


def launcher(repository: Path, work: Path) -> tuple[subprocess.Popen, Ports]:
    ports = Ports.free()
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.launcher", str(repository), "--http-port", str(ports.http), "--grpc-port",
         str(ports.grpc), "--metrics-port", str(ports.metrics), "--log", str(work / "tritonserver.log"),
         "--admin-key-file", str(work / "admin.key")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if "tritonserver ready" in line:
            return process, ports
    raise AssertionError(f"the launcher did not start: {process.stderr.read()}")


def tritonserver_pid(launcher_pid: int) -> int:
    return next(pid for pid in process_tree(launcher_pid)
                if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"/tritonserver"))


def test_the_launcher_says_when_tritonserver_dies_and_exits_non_zero(repository, tmp_path):
    process, _ = launcher(repository, tmp_path)
    key = (tmp_path / "admin.key").read_text().strip()
    assert len(key) >= 24 and (tmp_path / "admin.key").stat().st_mode & 0o077 == 0
    os.kill(tritonserver_pid(process.pid), signal.SIGSEGV)
    assert process.wait(timeout=60) == 128 + signal.SIGSEGV
    stderr = process.stderr.read()
    assert "tritonserver was killed by SIGSEGV on its own" in stderr and "tritonserver.log" in stderr
    # A stop asked for is a clean exit, and the key is kept for the next start.
    process, ports = launcher(repository, tmp_path)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0
    assert (tmp_path / "admin.key").read_text().strip() == key


def test_two_instances_of_serve_sh_keep_their_own_work_directories(tiny_model_dir):
    offsets = [int.from_bytes(os.urandom(2), "big") % 20000 + 20000 + 10 * i for i in range(2)]
    processes = [subprocess.Popen([str(ROOT / "scripts" / "serve.sh"), "--model-dir", str(tiny_model_dir),
                                   "--voice", DEFAULT_VOICES[0], "--port-offset", str(offset)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for offset in offsets]
    try:
        for process, offset in zip(processes, offsets):
            for line in process.stdout:
                if "tritonserver ready" in line:
                    break
            else:
                raise AssertionError(f"serve.sh --port-offset {offset} did not start")
            with TTSClient(f"127.0.0.1:{8001 + offset}") as tts:
                assert tts.synthesize(TEXT).duration_s > 0.5
        works = [ROOT / "build" / f"serve-{offset}" for offset in offsets]
        for work in works:
            assert {p.name for p in work.iterdir()} >= {"export", "model_repository", "tritonserver.log", "admin.key"}
        assert works[0].joinpath("admin.key").read_text() != works[1].joinpath("admin.key").read_text()
        # A tritonserver that dies takes its serve.sh down with a non-zero exit; the other keeps serving.
        os.kill(tritonserver_pid(processes[0].pid), signal.SIGKILL)
        assert processes[0].wait(timeout=60) == 128 + signal.SIGKILL
        with TTSClient(f"127.0.0.1:{8001 + offsets[1]}") as tts:
            assert tts.synthesize(TEXT).duration_s > 0.5
        processes[1].send_signal(signal.SIGTERM)
        assert processes[1].wait(timeout=120) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        for offset in offsets:
            shutil.rmtree(ROOT / "build" / f"serve-{offset}", ignore_errors=True)
