"""The gateway's pieces that need no server: settings, audio encoding, the task store, the CLI's errors."""

from __future__ import annotations

import argparse
import asyncio
import io
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from gateway import audio
from gateway.errors import ApiError
from gateway.settings import SettingsError, add_arguments, from_sources
from gateway.tasks import TaskStore


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_settings_defaults_follow_the_port_offset():
    settings = from_sources(parse(["--port-offset", "100"]), env={})
    assert (settings.host, settings.bind_port, settings.triton_grpc_url) == ("127.0.0.1", 8180, "127.0.0.1:8101")
    assert settings.api_keys == frozenset() and settings.cors_origin_list == []


def test_settings_flag_over_environment_over_default(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("k2\n  k3  \n")
    env = {"TTS_GATEWAY_MAX_TASKS": "7", "TTS_GATEWAY_PORT": "9000", "TTS_GATEWAY_API_KEYS": "k1,,",
           "TTS_GATEWAY_CORS_ORIGINS": "https://a.example, https://b.example"}
    settings = from_sources(parse(["--port", "9100", "--api-keys-file", str(keys)]), env=env)
    assert settings.bind_port == 9100 and settings.max_tasks == 7
    assert settings.api_keys == {"k1", "k2", "k3"}
    assert settings.cors_origin_list == ["https://a.example", "https://b.example"]


@pytest.mark.parametrize("argv,env,message", [
    (["--max-tasks", "many"], {}, "--max-tasks: 'many' is not a valid int"),
    ([], {"TTS_GATEWAY_TRITON_TIMEOUT_S": "0"}, "triton_timeout_s must be more than 0"),
    (["--api-keys-file", "/nonexistent/keys"], {}, "cannot read the API keys file /nonexistent/keys"),
])
def test_settings_mistakes_are_one_line(argv, env, message):
    with pytest.raises(SettingsError, match=message):
        from_sources(parse(argv), env=env)


def test_cli_refuses_a_bad_setting_with_one_line():
    result = subprocess.run([sys.executable, "-m", "gateway", "--stream-chunk-s", "-1"], capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.strip() == "error: stream_chunk_s must be more than 0 (got -1.0)"


def test_streaming_wav_header_reads_as_a_wav_of_unknown_length():
    samples = (0.5 * np.sin(np.arange(1600) / 5)).astype(np.float32)
    body = audio.stream_start(16000, audio.FORMATS["wav"]) + audio.to_int16(samples).tobytes()
    decoded, rate = sf.read(io.BytesIO(body), dtype="int16")
    assert rate == 16000 and np.array_equal(decoded, audio.to_int16(samples))


def test_int16_conversion_clips_instead_of_wrapping():
    assert audio.to_int16(np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0], dtype=np.float32)).tolist() == \
        [-32767, -32767, 0, 16384, 32767, 32767]


@pytest.mark.parametrize("name", ["wav", "flac", "mp3", "opus"])
def test_every_container_format_is_written_by_this_libsndfile(name):
    samples = (0.3 * np.sin(np.arange(16000) / 7)).astype(np.float32)
    info = sf.info(io.BytesIO(audio.encode(samples, 16000, audio.FORMATS[name])))
    assert info.samplerate == 16000 and info.duration == pytest.approx(1.0, abs=0.1)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_task_store_keeps_results_for_the_retention_time_and_count():
    async def scenario():
        clock = FakeClock()
        store = TaskStore(retention_s=10, max_tasks=2, clock=clock)

        async def work():
            return "audio"

        first = store.submit(work)
        await first.job
        assert store.get(first.id).result == "audio"
        clock.now = 10.5
        assert store.get(first.id) is None  # expired

        a, b = store.submit(work), store.submit(work)
        await asyncio.gather(a.job, b.job)
        clock.now = 11
        c = store.submit(work)  # full: the oldest finished task makes room
        await c.job
        assert [store.get(t.id) is not None for t in (a, b, c)] == [False, True, True]

    asyncio.run(scenario())


def test_task_store_refuses_when_every_place_is_running_and_records_failures():
    async def scenario():
        store = TaskStore(retention_s=10, max_tasks=1)
        release = asyncio.Event()

        async def slow():
            await release.wait()
            raise ApiError(400, "bad SSML")

        running = store.submit(slow)
        with pytest.raises(ApiError) as refused:
            store.submit(slow)
        assert refused.value.status == 429
        release.set()
        await running.job
        assert store.get(running.id).error.message == "bad SSML"
        await store.close()

    asyncio.run(scenario())
