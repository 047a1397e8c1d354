"""The client package (client/tts_client) against a real tritonserver.

The server runs a stand-in model repository written here: a python-backend `frontend` that carries the voice
catalogue in its config, and a python-backend `tts` with the contract's inputs and outputs that answers a tone
whose pitch and length follow TEXT, VOICE, EMOTION and SPEED (the real ensemble has its own tests).
"""

from __future__ import annotations

import inspect
import json
import queue
import socket
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deploy.launcher import Ports, TritonServer, free_port
from tts_client import Synthesis, TTSClient, TTSConnectionError, TTSError

CATALOGUE = {
    "default_voice": "zhitian_emo",
    "sample_rate": 16000,
    "voices": {
        "zhitian_emo": {"emotions": ["neutral", "happy", "angry"], "default_emotion": "neutral",
                        "speakers": ["F7"], "default_speaker": "F7"},
        "zhiyan_emo": {"emotions": ["neutral", "sad"], "default_emotion": "neutral",
                       "speakers": ["M7", "F7"], "default_speaker": "F7"},
    },
}
PROTOCOLS = ["grpc", "http"]


def stand_in_audio(catalogue: dict, text: str, voice: str, emotion: str, speed: float, speaker: str) -> np.ndarray:
    """What the stand-in `tts` answers (its source is copied into the model): a tone that depends on every input."""
    voices = list(catalogue["voices"])
    emotions = catalogue["voices"][voice]["emotions"]
    speakers = catalogue["voices"][voice]["speakers"]
    sample_rate = catalogue["sample_rate"]
    n = int(round(len(text) * 0.02 * sample_rate / speed))
    frequency = (100.0 * (1 + voices.index(voice)) + 20.0 * emotions.index(emotion) + 7.0 * speakers.index(speaker)
                 + sum(map(ord, text)) % 97)
    t = np.arange(n) / sample_rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


TTS_MODEL = '''
import json

import numpy as np
import triton_python_backend_utils as pb_utils

{stand_in_audio}

def invalid(message):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.catalogue = json.loads(config["parameters"]["voices"]["string_value"])
        self.request_log = config["parameters"]["request_log"]["string_value"]

    def execute(self, requests):
        return [self.respond(request) for request in requests]

    def respond(self, request):
        with open(self.request_log, "a") as log:
            log.write("request\\n")

        def value(name):
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            return None if tensor is None else tensor.as_numpy().flat[0]

        text = value("TEXT").decode("utf-8")
        voice = value("VOICE")
        voice = self.catalogue["default_voice"] if voice is None else voice.decode("utf-8")
        speed = value("SPEED")
        speed = 1.0 if speed is None else float(speed)
        if not text.strip():
            return invalid("TEXT is empty: give some text to speak")
        if voice not in self.catalogue["voices"]:
            return invalid(f"unknown voice '{{voice}}': choose one of {{', '.join(self.catalogue['voices'])}}")
        emotion = value("EMOTION")
        emotion = self.catalogue["voices"][voice]["default_emotion"] if emotion is None else emotion.decode("utf-8")
        if emotion not in self.catalogue["voices"][voice]["emotions"]:
            return invalid(f"voice '{{voice}}' has no emotion '{{emotion}}'")
        if not 0.5 <= speed <= 2.0:
            return invalid(f"SPEED {{speed:g}} is out of range: use 0.5 to 2.0")
        speaker = value("SPEAKER")
        speaker = self.catalogue["voices"][voice]["default_speaker"] if speaker is None else speaker.decode("utf-8")
        if speaker not in self.catalogue["voices"][voice]["speakers"]:
            return invalid(f"voice '{{voice}}' has no speaker '{{speaker}}'")
        audio = stand_in_audio(self.catalogue, text, voice, emotion, speed, speaker)
        return pb_utils.InferenceResponse([
            pb_utils.Tensor("AUDIO", audio[None, :]),
            pb_utils.Tensor("SAMPLE_RATE", np.array([[self.catalogue["sample_rate"]]], dtype=np.int32)),
        ])
'''

TTS_CONFIG = '''
name: "tts"
backend: "python"
max_batch_size: 8
input [
  {{ name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "VOICE" data_type: TYPE_STRING dims: [ 1 ] optional: true }},
  {{ name: "EMOTION" data_type: TYPE_STRING dims: [ 1 ] optional: true }},
  {{ name: "SPEED" data_type: TYPE_FP32 dims: [ 1 ] optional: true }},
  {{ name: "SPEAKER" data_type: TYPE_STRING dims: [ 1 ] optional: true }}
]
output [
  {{ name: "AUDIO" data_type: TYPE_FP32 dims: [ -1 ] }},
  {{ name: "SAMPLE_RATE" data_type: TYPE_INT32 dims: [ 1 ] }}
]
dynamic_batching {{ max_queue_delay_microseconds: 2000 }}
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
parameters {{ key: "voices" value {{ string_value: {voices} }} }}
parameters {{ key: "request_log" value {{ string_value: {request_log} }} }}
'''

FRONTEND_MODEL = '''
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("ECHO", pb_utils.get_input_tensor_by_name(r, "TEXT")
                                                            .as_numpy())]) for r in requests]
'''

FRONTEND_CONFIG = '''
name: "frontend"
backend: "python"
max_batch_size: 8
input [ {{ name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] }} ]
output [ {{ name: "ECHO" data_type: TYPE_STRING dims: [ 1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
parameters {{ key: "voices" value {{ string_value: {voices} }} }}
'''


def pbtxt_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def request_log(repository: Path) -> Path:
    return repository.parent / "tts_requests.log"


def write_stand_in_repository(root: Path) -> Path:
    voices = pbtxt_string(json.dumps(CATALOGUE))
    tts_config = TTS_CONFIG.format(voices=voices, request_log=pbtxt_string(str(request_log(root))))
    models = {
        "tts": (TTS_MODEL.format(stand_in_audio=inspect.getsource(stand_in_audio)), tts_config),
        "frontend": (FRONTEND_MODEL, FRONTEND_CONFIG.format(voices=voices)),
    }
    for name, (model_py, config) in models.items():
        (root / name / "1").mkdir(parents=True)
        (root / name / "1" / "model.py").write_text(textwrap.dedent(model_py))
        (root / name / "config.pbtxt").write_text(config)
    return root


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_stand_in_repository(tmp_path_factory.mktemp("client_repo") / "models")


@pytest.fixture(scope="module")
def server(repository: Path):
    with TritonServer(repository, ports=Ports.free(), ready_timeout_s=120) as server:
        yield server


def url_of(server: TritonServer, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


def expected(text: str, voice: str | None = None, emotion: str | None = None, speed: float = 1.0,
             speaker: str | None = None) -> np.ndarray:
    voice = voice or CATALOGUE["default_voice"]
    emotion = emotion or CATALOGUE["voices"][voice]["default_emotion"]
    speaker = speaker or CATALOGUE["voices"][voice]["default_speaker"]
    return stand_in_audio(CATALOGUE, text, voice, emotion, float(np.float32(speed)), speaker)


def requests_received(repository: Path) -> int:
    """How many requests the stand-in `tts` has received (it logs each before answering)."""
    log = request_log(repository)
    return len(log.read_text().splitlines()) if log.exists() else 0


def run_in_threads(function, jobs: list, threads: int, limit_s: float = 120.0) -> list:
    """function(job) for every job, from `threads` daemon threads; fails (instead of hanging) on a deadlock."""
    pending = queue.Queue()
    for index, job in enumerate(jobs):
        pending.put((index, job))
    results, errors = [None] * len(jobs), []

    def work() -> None:
        while True:
            try:
                index, job = pending.get_nowait()
            except queue.Empty:
                return
            try:
                results[index] = function(job)
            except Exception as exc:  # reported below, with the job
                errors.append((job, exc))

    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + limit_s
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    assert not any(worker.is_alive() for worker in workers), f"threads still running after {limit_s} s"
    assert not errors, errors[:3]
    return results


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tts_client.cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=120)


def assert_wav_holds(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    written, written_rate = sf.read(path, dtype="float32")
    assert sf.info(path).subtype == "PCM_16"
    assert written_rate == sample_rate
    assert written.shape == audio.shape
    np.testing.assert_allclose(written, audio, atol=1.0 / 32767)  # 16-bit quantization


# --- the Python API -------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.server
def test_synthesize_returns_the_servers_audio(server, protocol):
    with TTSClient(url_of(server, protocol), protocol) as client:
        assert client.is_ready()
        default = client.synthesize("今天天气很好。")
        chosen = client.synthesize("Hello, 世界", voice="zhiyan_emo", emotion="sad", speed=1.5, speaker="M7")

    assert default.audio.dtype == np.float32 and chosen.audio.dtype == np.float32
    assert default.audio.flags.writeable
    np.testing.assert_allclose(default.audio, expected("今天天气很好。"), atol=1e-7)
    np.testing.assert_allclose(chosen.audio, expected("Hello, 世界", "zhiyan_emo", "sad", 1.5, "M7"), atol=1e-7)
    assert default.sample_rate == chosen.sample_rate == CATALOGUE["sample_rate"]
    assert default.duration_s == pytest.approx(len(expected("今天天气很好。")) / CATALOGUE["sample_rate"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.server
def test_voices_come_from_the_frontend_config(server, protocol):
    with TTSClient(url_of(server, protocol), protocol) as client:
        assert client.voices() == {name: voice["emotions"] for name, voice in CATALOGUE["voices"].items()}
        assert client.default_voice == CATALOGUE["default_voice"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("request_args, server_message", [
    (dict(text=" "), "TEXT is empty: give some text to speak"),
    (dict(text="你好", voice="nobody"), "unknown voice 'nobody': choose one of zhitian_emo, zhiyan_emo"),
    (dict(text="你好", emotion="sad"), "voice 'zhitian_emo' has no emotion 'sad'"),
    (dict(text="你好", speed=2.5), "SPEED 2.5 is out of range: use 0.5 to 2.0"),
])
@pytest.mark.server
def test_user_errors_carry_the_servers_message_and_are_not_retried(repository, server, protocol, request_args,
                                                                   server_message):
    requests_before = requests_received(repository)
    with TTSClient(url_of(server, protocol), protocol, retries=3) as client:
        with pytest.raises(TTSError) as raised:
            client.synthesize(**request_args)
    assert not isinstance(raised.value, TTSConnectionError)
    assert str(raised.value) == server_message
    assert requests_received(repository) == requests_before + 1


def test_arguments_that_are_not_text_or_numbers_are_rejected_before_sending():
    client = TTSClient("127.0.0.1:9", "grpc", retries=0)  # nothing listens there: no request may be made
    with pytest.raises(TTSError, match="speed must be a number"):
        client.synthesize("你好", speed="fast")
    with pytest.raises(TTSError, match="text must be a str"):
        client.synthesize(b"\xe4\xbd\xa0")
    with pytest.raises(TTSError, match="voice must be a str"):
        client.synthesize("你好", voice=1)
    with pytest.raises(TTSError, match="unknown protocol"):
        TTSClient(protocol="websocket")
    with pytest.raises(TTSError, match="retries must be 0 or more"):
        TTSClient(retries=-1)


def test_wav_is_16_bit_pcm_and_clips_out_of_range_samples(tmp_path):
    audio = np.array([0.0, 0.25, -0.5, 1.0, -1.0, 1.5, -3.0], dtype=np.float32)
    synthesis = Synthesis(audio=audio, sample_rate=22050)
    synthesis.to_wav(tmp_path / "a.wav")
    assert (tmp_path / "a.wav").read_bytes() == synthesis.wav_bytes()
    assert_wav_holds(tmp_path / "a.wav", np.clip(audio, -1, 1), 22050)
    assert synthesis.duration_s == pytest.approx(7 / 22050)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unreachable_server_gives_a_connection_error_after_the_retries(protocol):
    url = f"127.0.0.1:{free_port()}"
    with TTSClient(url, protocol, timeout_s=2, retries=2, backoff_s=0.01) as client:
        assert not client.is_ready()
        with pytest.raises(TTSConnectionError) as raised:
            client.synthesize("你好")
        message = str(raised.value)
        with pytest.raises(TTSConnectionError):
            client.voices()
    assert f"cannot reach the TTS server at {url} over {protocol} after 3 attempts" in message
    assert "check that the server is running" in message


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_server_that_does_not_answer_in_time_gives_a_timeout_error(protocol):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        url = f"127.0.0.1:{silent.getsockname()[1]}"
        with TTSClient(url, protocol, timeout_s=0.5, retries=2, backoff_s=0.01) as client:
            with pytest.raises(TTSError) as raised:
                client.synthesize("你好")
    assert not isinstance(raised.value, TTSConnectionError)
    assert str(raised.value).startswith(f"no answer from the TTS server at {url} within 0.5 s")


@pytest.mark.server
def test_retries_carry_requests_through_a_server_that_comes_up_late(repository, tmp_path):
    late = TritonServer(repository, ports=Ports.free(), log_path=tmp_path / "late.log", ready_timeout_s=120)
    clients = {protocol: TTSClient(url_of(late, protocol), protocol, retries=10, backoff_s=0.5)
               for protocol in PROTOCOLS}
    assert not any(client.is_ready() for client in clients.values())

    def start_late() -> None:
        time.sleep(1.0)
        late.start()

    starter = threading.Thread(target=start_late)
    starter.start()
    try:
        with ThreadPoolExecutor(len(PROTOCOLS)) as pool:
            pending = {p: pool.submit(c.synthesize, "迟到的服务器", voice="zhiyan_emo") for p, c in clients.items()}
            audio = {protocol: answer.result().audio for protocol, answer in pending.items()}
    finally:
        starter.join()
        for client in clients.values():  # first: an open HTTP connection holds the server's exit for 30 s
            client.close()
        late.stop()
    for protocol in PROTOCOLS:
        np.testing.assert_allclose(audio[protocol], expected("迟到的服务器", "zhiyan_emo"), atol=1e-7)


@pytest.mark.server
def test_one_client_per_protocol_serves_16_threads(server):
    voices = [(voice, emotion) for voice, spec in CATALOGUE["voices"].items() for emotion in spec["emotions"]]
    jobs = [(protocol, f"第{i}句话，编号{i * 7}。", *voices[i % len(voices)], [0.5, 1.0, 1.25, 2.0][i % 4])
            for i in range(48) for protocol in PROTOCOLS]
    clients = {protocol: TTSClient(url_of(server, protocol), protocol) for protocol in PROTOCOLS}
    try:
        answers = run_in_threads(lambda job: clients[job[0]].synthesize(*job[1:]), jobs, threads=16)
    finally:
        for client in clients.values():
            client.close()
    for (protocol, text, voice, emotion, speed), answer in zip(jobs, answers):
        np.testing.assert_allclose(answer.audio, expected(text, voice, emotion, speed), atol=1e-7,
                                   err_msg=f"{protocol} {text} {voice} {emotion} {speed}")


# --- the command line -----------------------------------------------------------------------------


@pytest.mark.server
def test_cli_writes_the_wav_and_one_summary_line(server, tmp_path):
    out = tmp_path / "out.wav"
    done = run_cli("你好，世界", "-o", str(out), "--voice", "zhitian_emo", "--emotion", "happy", "--speed", "0.5",
                   "--url", server.grpc_url)
    assert done.returncode == 0, done.stderr
    summary = done.stdout.strip()
    audio = expected("你好，世界", "zhitian_emo", "happy", 0.5)
    assert "\n" not in summary and str(out) in summary and f"{CATALOGUE['sample_rate']} Hz" in summary
    assert f"{len(audio) / CATALOGUE['sample_rate']:.2f} s of audio" in summary
    assert_wav_holds(out, audio, CATALOGUE["sample_rate"])


@pytest.mark.server
def test_cli_reads_the_text_from_a_file_over_http(server, tmp_path):
    (tmp_path / "story.txt").write_text("从前有座山。\n", encoding="utf-8")
    done = run_cli("-f", str(tmp_path / "story.txt"), "-o", str(tmp_path / "story.wav"), "--protocol", "http",
                   "--url", server.http_url)
    assert done.returncode == 0, done.stderr
    assert_wav_holds(tmp_path / "story.wav", expected("从前有座山。"), CATALOGUE["sample_rate"])


@pytest.mark.parametrize("dash", [True, False])
@pytest.mark.server
def test_cli_reads_the_text_from_stdin(server, tmp_path, dash):
    done = run_cli(*(["-"] if dash else []), "-o", str(tmp_path / "in.wav"), "--url", server.grpc_url,
                   stdin="山里有座庙\n")
    assert done.returncode == 0, done.stderr
    assert_wav_holds(tmp_path / "in.wav", expected("山里有座庙"), CATALOGUE["sample_rate"])


@pytest.mark.server
def test_cli_lists_voices_and_emotions(server):
    done = run_cli("--list-voices", "--protocol", "http", "--url", server.http_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["zhitian_emo (default): neutral, happy, angry; speakers F7",
                                        "zhiyan_emo: neutral, sad; speakers M7, F7"]


@pytest.mark.server
def test_cli_errors_are_one_line_without_a_traceback(server, tmp_path):
    out = tmp_path / "never.wav"
    cases = {
        "user error": (["你好", "--voice", "nobody", "-o", str(out), "--url", server.grpc_url],
                       "error: unknown voice 'nobody': choose one of zhitian_emo, zhiyan_emo"),
        "server down": (["你好", "-o", str(out), "--protocol", "http", "--url", f"127.0.0.1:{free_port()}",
                         "--retries", "1"], "error: cannot reach the TTS server at 127.0.0.1:"),
        "bad speed": (["你好", "--speed", "fast"], "error: argument --speed: invalid float value: 'fast'"),
        "two texts": (["你好", "-f", str(tmp_path / "x.txt")], "error: give the text either as TEXT or with --file"),
        "missing file": (["-f", str(tmp_path / "missing.txt"), "--url", server.grpc_url],
                         "error: No such file or directory: "),
    }
    for name, (args, start) in cases.items():
        done = run_cli(*args)
        assert done.returncode != 0, name
        assert done.stderr.count("\n") == 1 and done.stderr.startswith(start), (name, done.stderr)
    assert not out.exists()
