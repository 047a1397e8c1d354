"""The two systems under test, each started as a real server and spoken to as a client would."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import wave
from pathlib import Path

from deploy.launcher import TritonServer, free_port
from tts_client import TTSClient
from tts_client.client import MODEL as ENSEMBLE

ROOT = Path(__file__).resolve().parent.parent
REQUEST_TIMEOUT_S = 1800.0  # at concurrency 16 a baseline request waits behind 15 others


class BenchError(RuntimeError):
    """The benchmark cannot go on (a server did not start, a required file is missing); one line says why."""


class BaselineSystem:
    """bench.baseline_server in its own process on a free port."""

    name = "baseline"

    def __init__(self, model_dir: Path, log_path: Path, threads: int | None = None, ready_timeout_s: float = 600.0):
        self.model_dir, self.log_path, self.threads = model_dir, log_path, threads
        self.ready_timeout_s = ready_timeout_s
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.settings: dict = {}  # as its /health reports them

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> "BaselineSystem":
        command = [sys.executable, "-m", "bench.baseline_server", "--model-dir", str(self.model_dir),
                   "--port", str(self.port)]
        if self.threads:
            command += ["--threads", str(self.threads)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/baseline_server.py; an explicit setting wins
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"the baseline server exited with code {self.process.returncode}; "
                                 f"see {self.log_path}:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    self.settings = json.load(r)["settings"]
                    return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise BenchError(f"the baseline server was not ready after {self.ready_timeout_s:.0f} s; see {self.log_path}")

    def send(self, text: str) -> float:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S)
        try:
            connection.request("POST", "/synthesize", json.dumps({"text": text}, ensure_ascii=False).encode(),
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise BenchError(f"HTTP {response.status}: {body[:300].decode(errors='replace')}")
        with wave.open(io.BytesIO(body)) as w:
            return w.getnframes() / w.getframerate()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # the server closes its socket and exits
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class TritonSystem:
    """A tritonserver on the generated repository, without the response cache, and the project's client."""

    name = "ours"

    def __init__(self, repository: Path, log_path: Path, protocol: str = "grpc"):
        self.log_path = log_path
        self.server = TritonServer(repository, log_path=log_path)  # no --cache-config: no response cache
        self.protocol = protocol
        self.client: TTSClient | None = None

    @property
    def pid(self) -> int:
        return self.server.process.pid

    def start(self) -> "TritonSystem":
        self.server.start()
        url = self.server.grpc_url if self.protocol == "grpc" else self.server.http_url
        self.client = TTSClient(url, protocol=self.protocol, timeout_s=REQUEST_TIMEOUT_S)
        return self

    def send(self, text: str) -> float:
        return self.client.synthesize(text).duration_s

    def version(self) -> str:
        with urllib.request.urlopen(f"http://{self.server.http_url}/v2", timeout=5) as r:
            return json.load(r).get("version", "unknown")

    def model_stats(self, answered: int, timeout_s: float = 10.0) -> dict[str, dict]:
        """Triton's statistics of every model, by name (cumulative since the server started), once they
        count all `answered` requests: a client gets its answer a moment before the server records it."""
        deadline = time.monotonic() + timeout_s
        while True:
            with urllib.request.urlopen(f"http://{self.server.http_url}/v2/models/stats", timeout=10) as r:
                stats = {m["name"]: m for m in json.load(r)["model_stats"]}
            tts = stats[ENSEMBLE]["inference_stats"]
            if tts["success"]["count"] + tts["fail"]["count"] >= answered or time.monotonic() > deadline:
                return stats
            time.sleep(0.05)

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        self.server.stop()
