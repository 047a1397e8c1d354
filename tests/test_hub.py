"""Downloading the real model from the ModelScope hub: what happens when the hub cannot be reached.

The download itself cannot run here (no hub); the hub is pointed (MODELSCOPE_ENDPOINT) at local addresses
that refuse or never answer, and the commands must say so in one line within the timeout, with the exit
status scripts/demo.sh falls back on.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.launcher import free_port
from models.hub import EXIT_UNREACHABLE

ROOT = Path(__file__).resolve().parent.parent
MODEL_ID = "iic/speech_sambert-hifigan_tts_zh-cn_16k"


def run(command: list[str], endpoint: str) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, MODELSCOPE_ENDPOINT=endpoint)
    start = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return result, time.monotonic() - start


@pytest.fixture
def silent_endpoint():
    """An address that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_refused_hub_is_one_line_and_the_unreachable_status():
    endpoint = f"http://127.0.0.1:{free_port()}"
    result, _ = run([sys.executable, "-m", "models.hub", MODEL_ID, "--timeout-s", "5"], endpoint)
    assert result.returncode == EXIT_UNREACHABLE
    assert result.stdout == ""
    refused = f"error: cannot reach the ModelScope hub at {endpoint}: [Errno 111] Connection refused"
    assert result.stderr.strip() == refused


def test_silent_hub_gives_up_after_the_timeout(silent_endpoint):
    result, elapsed = run([sys.executable, "-m", "models.hub", MODEL_ID, "--timeout-s", "1"], silent_endpoint)
    assert result.returncode == EXIT_UNREACHABLE
    assert result.stderr.strip() == f"error: cannot reach the ModelScope hub at {silent_endpoint}: no answer within 1 s"
    assert elapsed < 60  # the library's own retries would take minutes


def test_serve_with_a_hub_model_fails_in_one_line_before_any_work():
    endpoint = f"http://127.0.0.1:{free_port()}"
    result, _ = run(["scripts/serve.sh", "--model", MODEL_ID], endpoint)
    assert result.returncode == EXIT_UNREACHABLE
    assert result.stderr.strip().splitlines() == [
        f"error: cannot reach the ModelScope hub at {endpoint}: [Errno 111] Connection refused"]
    assert "tritonserver" not in result.stdout
