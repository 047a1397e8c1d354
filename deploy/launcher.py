"""Start and stop a local tritonserver (the CPU build that scripts/setup.sh installs under .triton/).

Used by scripts/serve.sh, the tests and the benchmarks. The two traps of the python-backend stub are
handled here: it finds its interpreter through `python3` on PATH (so the venv's bin goes first) and
its libpython through LD_LIBRARY_PATH (so this interpreter's own LIBDIR goes first).

Triton's admin APIs (loading and unloading models, shared memory, tracing, logging settings) answer only
requests that carry the admin key: over HTTP the header `admin-key`, over gRPC the metadata
`triton-grpc-protocol-admin-key`. Without it anyone who reaches the port could unload the models, load
a model of their own (Python code run by the server) or crash it through shared-memory regions.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRITON_HOME = Path(os.environ.get("TRITON_HOME", ROOT / ".triton"))
RESTRICTED_APIS = "model-repository,shared-memory,trace,logging"  # inference, health, metadata, statistics stay open
ADMIN_KEY_HEADER = "admin-key"  # HTTP; gRPC metadata carries it as GRPC_ADMIN_KEY_HEADER
GRPC_ADMIN_KEY_HEADER = "triton-grpc-protocol-" + ADMIN_KEY_HEADER
LOOPBACK = "127.0.0.1"


class LauncherError(RuntimeError):
    pass


def triton_env() -> dict[str, str]:
    """The variables scripts/setup.sh wrote to .triton/env.sh."""
    env_file = TRITON_HOME / "env.sh"
    if not env_file.exists():
        raise LauncherError(f"{env_file} not found: run scripts/setup.sh first")
    values = {}
    for line in env_file.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            values[key] = shlex.split(value)[0]
    return values


def read_or_create_admin_key(path: Path) -> str:
    """The admin key in `path`, or a new random one written there (readable by its owner only)."""
    if path.is_file():
        key = path.read_text().strip()
        if not key:
            raise LauncherError(f"{path} is empty: put the admin key in it or delete it to have one generated")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(24)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    @classmethod
    def free(cls) -> "Ports":
        return cls(free_port(), free_port(), free_port())


class TritonServer:
    """A tritonserver process listening on `address` (127.0.0.1 unless told otherwise); use as a context manager
    or call start()/stop(). The client URLs always go through loopback."""

    def __init__(self, model_repository: Path, ports: Ports | None = None, log_path: Path | None = None,
                 extra_args: list[str] = (), ready_timeout_s: float = 300.0, admin_key: str | None = None,
                 address: str = LOOPBACK):
        """admin_key: the key of the restricted admin APIs (default: a new random one, see admin_headers)."""
        self.model_repository = Path(model_repository).resolve()  # the python backend needs it absolute
        self.ports = ports or Ports.free()
        self.admin_key = admin_key or secrets.token_urlsafe(24)
        self.address = address
        self.log_path = Path(log_path) if log_path else self.model_repository.parent / "tritonserver.log"
        self.extra_args = list(extra_args)
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    def command(self, env: dict[str, str]) -> list[str]:
        return [
            env["TRITONSERVER"], f"--model-repository={self.model_repository}",
            f"--backend-directory={env['TRITON_BACKENDS']}", f"--cache-directory={env['TRITON_CACHES']}",
            f"--http-address={self.address}", f"--grpc-address={self.address}", f"--metrics-address={self.address}",
            f"--http-port={self.ports.http}", f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            "--allow-sagemaker=false", "--allow-vertex-ai=false",
            "--pinned-memory-pool-byte-size=0", "--allow-gpu-metrics=false",
            f"--http-restricted-api={RESTRICTED_APIS}:{ADMIN_KEY_HEADER}={self.admin_key}",
            f"--grpc-restricted-protocol={RESTRICTED_APIS}:{ADMIN_KEY_HEADER}={self.admin_key}",
            *self.extra_args,
        ]

    def admin_headers(self, protocol: str = "http") -> dict[str, str]:
        """Headers that let a request through to the restricted admin APIs."""
        return {GRPC_ADMIN_KEY_HEADER if protocol == "grpc" else ADMIN_KEY_HEADER: self.admin_key}

    def process_env(self, env: dict[str, str]) -> dict[str, str]:
        penv = dict(os.environ)
        penv["PATH"] = f"{env['TRITON_VENV']}/bin:{penv.get('PATH', '')}"
        penv["LD_LIBRARY_PATH"] = ":".join(p for p in (env["TRITON_LD_LIBRARY_PATH"], penv.get("LD_LIBRARY_PATH")) if p)
        return penv

    def start(self) -> "TritonServer":
        env = triton_env()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w")
        self.process = subprocess.Popen(self.command(env), env=self.process_env(env), stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.is_ready():
                return self
            if self.process.poll() is not None:
                raise LauncherError(f"tritonserver exited with code {self.process.returncode}; see {self.log_path}:\n"
                                    + self.log_tail())
            time.sleep(0.2)
        self.stop()
        raise LauncherError(f"tritonserver not ready after {self.ready_timeout_s:.0f} s; see {self.log_path}:\n"
                            + self.log_tail())

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM and wait: the server unloads its models and its stubs exit with it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill_leftovers()
        self.process.wait()

    def kill_leftovers(self) -> None:
        """Kill what is left of tritonserver's process group: a server that died leaves its python stubs running."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def exit_status(returncode: int) -> tuple[int, str]:
    """The launcher's exit status for tritonserver's return code, and how it ended, in words."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return 128 - returncode, f"was killed by {name}"
    return returncode, f"exited with code {returncode}"


def main() -> None:
    parser = argparse.ArgumentParser(description="Run tritonserver until it stops; exits non-zero with the cause "
                                                 "when it dies.")
    parser.add_argument("model_repository", type=Path)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--address", default=LOOPBACK,
                        help=f"address to listen on (default {LOOPBACK}; 0.0.0.0 in a container behind a network policy)")
    parser.add_argument("--log", type=Path, default=None)
    parser.add_argument("--admin-key-file", type=Path, required=True,
                        help="the admin APIs' key: read from this file, or generated into it (mode 600)")
    args, extra = parser.parse_known_args()
    try:
        admin_key = read_or_create_admin_key(args.admin_key_file)
    except (LauncherError, OSError) as e:
        sys.exit(f"error: {e}")
    server = TritonServer(args.model_repository, Ports(args.http_port, args.grpc_port, args.metrics_port),
                          args.log, extra, admin_key=admin_key, address=args.address)
    stopping = []

    def forward(signum, _frame):
        # Forward only: the wait below reaps the server (a handler that waited too would deadlock on it).
        stopping.append(signum)
        if server.process is not None:
            server.process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        server.start()
    except (LauncherError, OSError) as e:
        server.stop()
        sys.exit(f"error: {e}")
    print(f"tritonserver ready on {args.address}: HTTP {server.ports.http}, gRPC {server.ports.grpc}, metrics "
          f"{server.ports.metrics} (log: {server.log_path}; admin key: {args.admin_key_file})", flush=True)
    returncode = server.process.wait()
    server.kill_leftovers()
    if returncode == 0 and stopping:
        print("tritonserver stopped", flush=True)
        return
    status, how = exit_status(returncode)
    print(f"error: tritonserver {how}{'' if stopping else ' on its own'}; the end of {server.log_path}:\n"
          f"{server.log_tail()}", file=sys.stderr, flush=True)
    sys.exit(status or 1)


if __name__ == "__main__":
    main()
