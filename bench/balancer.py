"""A real load balancer in front of Triton replicas on loopback: HAProxy (Debian's package), HTTP and gRPC.

Each replica is checked on its HTTP port (`GET /v2/health/ready`, every CHECK_INTERVAL_S, down after
CHECK_FALL failures): a replica that dies or is not ready yet gets no requests. A request whose replica
fails before answering (the connection refused, reset or closed without a response) is sent again to
another one (HAProxy's retry-on and redispatch), so a replica's death costs no request.
"""

from __future__ import annotations

import csv
import io
import shutil
import socket
import subprocess
import time
from pathlib import Path

from deploy.launcher import Ports, free_port

CHECK_INTERVAL_S = 1.0
CHECK_FALL = 2  # failed checks before a replica is taken out
CHECK_RISE = 2  # passed checks before it is put back
RETRIES = 3
REQUEST_TIMEOUT_S = 600  # a long text behind a full queue on a shared 2-core machine


class BalancerError(RuntimeError):
    pass


def config(replicas: list[Ports], http_port: int, grpc_port: int, stats_socket: Path) -> str:
    """haproxy.cfg: one HTTP and one gRPC (HTTP/2 cleartext) frontend over the same replicas."""
    check = (f"check inter {int(CHECK_INTERVAL_S * 1000)} fall {CHECK_FALL} rise {CHECK_RISE}")
    http_servers = "\n".join(f"    server r{i} 127.0.0.1:{p.http} {check}" for i, p in enumerate(replicas))
    # gRPC is HTTP/2; the health check goes to the replica's HTTP/1.1 port.
    grpc_servers = "\n".join(f"    server r{i} 127.0.0.1:{p.grpc} proto h2 {check} port {p.http} check-proto h1"
                             for i, p in enumerate(replicas))
    return f"""global
    stats socket {stats_socket} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client {REQUEST_TIMEOUT_S}s
    timeout server {REQUEST_TIMEOUT_S}s
    option httpchk GET /v2/health/ready
    retries {RETRIES}
    retry-on conn-failure empty-response junk-response
    option redispatch 1

frontend http
    bind 127.0.0.1:{http_port}
    default_backend triton_http

frontend grpc
    bind 127.0.0.1:{grpc_port} proto h2
    default_backend triton_grpc

backend triton_http
    balance leastconn
{http_servers}

backend triton_grpc
    balance leastconn
{grpc_servers}
"""


class Balancer:
    """HAProxy in the foreground on free loopback ports; use as a context manager."""

    def __init__(self, replicas: list[Ports], work: Path):
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(haproxy).exists():
            raise BalancerError("haproxy is not installed: apt-get install haproxy")
        self.http_port, self.grpc_port = free_port(), free_port()
        self.stats_socket = work / "haproxy.sock"
        self.config_path = work / "haproxy.cfg"
        self.config_path.write_text(config(replicas, self.http_port, self.grpc_port, self.stats_socket))
        self.log_path = work / "haproxy.log"
        self._command = [haproxy, "-f", str(self.config_path), "-db"]
        self.process: subprocess.Popen | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def start(self) -> "Balancer":
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(self._command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not self.stats_socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BalancerError(f"haproxy did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        return self

    def states(self) -> dict[str, dict[str, str]]:
        """Per backend (triton_http, triton_grpc), each replica's state as HAProxy sees it: UP, DOWN, ..."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.stats_socket))
            sock.sendall(b"show stat\n")
            data = b"".join(iter(lambda: sock.recv(65536), b""))
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        states: dict[str, dict[str, str]] = {}
        for row in rows:
            if row["svname"] not in ("FRONTEND", "BACKEND"):
                states.setdefault(row["pxname"], {})[row["svname"]] = row["status"].split()[0]
        return states

    def replica_up(self, index: int) -> bool:
        """The replica takes requests over both protocols."""
        return all(servers.get(f"r{index}") == "UP" for servers in self.states().values())

    def replica_down(self, index: int) -> bool:
        """The replica gets no requests over either protocol."""
        return all(servers.get(f"r{index}") == "DOWN" for servers in self.states().values())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)

    def __enter__(self) -> "Balancer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
