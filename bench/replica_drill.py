"""Replica drill: Triton replicas behind a real load balancer, the gateway in front, one replica killed under
load and later restarted.

    scripts/replica_drill.sh [--minutes 3] [--replicas 3] [--concurrency 16] [--model-dir DIR | --repository DIR]

Starts `--replicas` tritonservers on loopback ports (the same CPU model repository; default: the full-size
fixture), HAProxy over them for HTTP and gRPC (bench.balancer), and the gateway pointed at the balancer's
gRPC side. `--concurrency` client threads then POST /api/tts to the gateway back to back for `--minutes`:
the first third as is; then one replica is killed (SIGKILL to its whole process group: tritonserver and
its python stubs); at two thirds it is started again on the same ports. Checked and reported:

- requests sent, answered, failed (target: 0 failed), and every answer's length exact: its samples are
  sum(frames) x hop + the pauses, frames from the duration loop run in this process on the same files;
- throughput (audio seconds per second) before the kill, while a replica is missing, and after it is back;
- how long the balancer took to stop sending to the dead replica (from the kill to both backends marking
  it DOWN) and to send to it again after the restart (from its start to UP).

Writes drill.json, summary.md and drill.png to --out; the last line printed is
`drill: S sent, A answered, F failed, ...`; exits 1 if a request failed or a length was wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.balancer import Balancer, BalancerError
from bench.report import describe_machine, machine_cpu
from bench.soak import Reference, SoakError, prepare_repository
from bench.texts import KINDS, MAKERS
from deploy.launcher import LauncherError, Ports, TritonServer
from gateway.launcher import GatewayError, GatewayProcess

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.1  # how often the balancer's view of the replicas is read
TIMEOUT_S = 600.0  # one request: a long text behind a full queue on a shared 2-core machine
BYTES_PER_SAMPLE = 2  # the gateway's pcm format: 16-bit mono


class DrillError(RuntimeError):
    """The drill cannot run (no haproxy, a server that does not start); one line says why."""


@dataclass
class Request:
    thread: int
    text: str
    start_s: float
    end_s: float
    status: int = 0  # the HTTP status, 0 when no answer came
    samples: int | None = None
    error: str | None = None
    expected_samples: int | None = None


@dataclass
class Events:
    """Seconds from the start of the load."""

    kill_s: float | None = None
    down_s: float | None = None  # the balancer marked the killed replica DOWN
    restart_s: float | None = None
    ready_s: float | None = None  # the restarted replica's Triton reports ready
    up_s: float | None = None  # the balancer marked it UP again
    end_s: float | None = None


@dataclass
class DrillReport:
    config: dict
    events: Events
    requests: list[Request] = field(default_factory=list)
    loadavg: list[float] = field(default_factory=list)
    sample_rate: int = 0

    @property
    def answered(self) -> list[Request]:
        return [r for r in self.requests if r.samples is not None]

    @property
    def failed(self) -> list[Request]:
        return [r for r in self.requests if r.samples is None]

    @property
    def exact(self) -> list[Request]:
        return [r for r in self.answered if r.samples == r.expected_samples]

    def throughput(self, start_s: float, end_s: float) -> float:
        """Audio seconds per second of the answers completed in [start_s, end_s)."""
        audio = sum(r.samples for r in self.answered if start_s <= r.end_s < end_s) / self.sample_rate
        return audio / max(end_s - start_s, 1e-9)

    def phases(self) -> dict[str, tuple[float, float]]:
        e = self.events
        return {"before": (0.0, e.kill_s), "during": (e.kill_s, e.up_s), "after": (e.up_s, e.end_s)}

    @property
    def passed(self) -> bool:
        return bool(self.requests) and not self.failed and len(self.exact) == len(self.answered)

    def line(self) -> str:
        e = self.events
        rates = " / ".join(f"{self.throughput(*span):.2f}" for span in self.phases().values())
        return (f"drill: {len(self.requests)} sent, {len(self.answered)} answered, {len(self.failed)} failed, "
                f"{len(self.exact)} of {len(self.answered)} lengths exact; audio s per s before / during / after: "
                f"{rates}; the balancer stopped sending to the killed replica {e.down_s - e.kill_s:.1f} s after the "
                f"kill and sent to it again {e.up_s - e.restart_s:.1f} s after its restart")


class Load:
    """Client threads POSTing /api/tts to the gateway back to back until told to stop."""

    def __init__(self, gateway_url: str, threads: int, seed: int, t0: float):
        self.gateway_url, self.t0 = gateway_url, t0
        self.requests: list[Request] = []
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i, random.Random(f"{seed}-{i}")), daemon=True)
                         for i in range(threads)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self, index: int, rng: random.Random) -> None:
        kind = index % len(KINDS)
        while not self._stop.is_set():
            text = MAKERS[KINDS[kind]](rng)
            kind = (kind + 1) % len(KINDS)
            request = send(self.gateway_url, text, index, self.t0)
            with self._lock:
                self.requests.append(request)


def send(gateway_url: str, text: str, thread: int, t0: float) -> Request:
    request = Request(thread, text, time.monotonic() - t0, 0.0)
    body = json.dumps({"text": text, "format": "pcm"}).encode()
    http = urllib.request.Request(f"{gateway_url}/api/tts", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(http, timeout=TIMEOUT_S) as response:
            request.status, data = response.status, response.read()
            request.samples = len(data) // BYTES_PER_SAMPLE
    except urllib.error.HTTPError as e:
        request.status, request.error = e.code, e.read().decode(errors="replace")[:300]
    except OSError as e:
        request.error = f"{type(e).__name__}: {e}"
    request.end_s = time.monotonic() - t0
    return request


def kill_replica(server: TritonServer) -> None:
    """SIGKILL to tritonserver's process group: the server and its python stubs die at once."""
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise DrillError(f"{what} did not happen within {timeout_s:.0f} s")
        time.sleep(POLL_S)


def run_drill(repository: Path, duration_s: float, replicas: int = 3, concurrency: int = 16, seed: int = 0,
              work: Path | None = None, log=print) -> DrillReport:
    repository = Path(repository).resolve()
    work = Path(work or ROOT / "build" / "drill")
    work.mkdir(parents=True, exist_ok=True)
    reference = Reference(repository)  # fails early on a repository that is not a CPU one
    ports = [Ports.free() for _ in range(replicas)]
    servers = [TritonServer(repository, p, work / f"replica{i}.log") for i, p in enumerate(ports)]
    config = dict(duration_s=duration_s, replicas=replicas, concurrency=concurrency, seed=seed,
                  repository=str(repository), balancer="HAProxy, leastconn, health checks every 1 s",
                  killed_replica=0)
    events = Events()
    report = DrillReport(config, events, sample_rate=reference.sample_rate)
    try:
        for i, server in enumerate(servers):
            log(f"[drill] starting replica {i} (HTTP {server.ports.http}, gRPC {server.ports.grpc})")
            server.start()
        with Balancer(ports, work) as balancer, \
                GatewayProcess(balancer.grpc_url, work / "gateway.log") as gateway:
            wait_for(lambda: all(balancer.replica_up(i) for i in range(replicas)), 30, "every replica UP")
            log(f"[drill] warming up, then {duration_s:.0f} s of load at concurrency {concurrency} through the "
                f"gateway ({gateway.url}) and HAProxy (gRPC {balancer.grpc_url})")
            for kind in KINDS:
                send(gateway.url, MAKERS[kind](random.Random(kind)), -1, time.monotonic())
            t0 = time.monotonic()
            load = Load(gateway.url, concurrency, seed, t0)
            load.start()
            time.sleep(duration_s / 3)
            log("[drill] killing replica 0")
            events.kill_s = time.monotonic() - t0
            kill_replica(servers[0])
            wait_for(lambda: balancer.replica_down(0), 60, "the balancer taking the killed replica out")
            events.down_s = time.monotonic() - t0
            time.sleep(max(0.0, t0 + 2 * duration_s / 3 - time.monotonic()))
            log("[drill] restarting replica 0")
            events.restart_s = time.monotonic() - t0
            servers[0] = TritonServer(repository, ports[0], work / "replica0.restarted.log")
            servers[0].start()
            events.ready_s = time.monotonic() - t0
            wait_for(lambda: balancer.replica_up(0), 60, "the balancer putting the restarted replica back")
            events.up_s = time.monotonic() - t0
            time.sleep(max(0.0, t0 + duration_s - time.monotonic()))
            log("[drill] stopping the load (waiting for the requests in flight)")
            load.stop()
            events.end_s = time.monotonic() - t0
            report.requests = load.requests
    except (LauncherError, BalancerError, GatewayError) as e:
        raise DrillError(str(e)) from None
    finally:
        report.loadavg = list(os.getloadavg())
        for server in servers:
            server.stop()
    log(f"[drill] checking {len(report.answered)} answers' lengths in-process")
    for request in report.answered:
        request.expected_samples = reference.expected_samples(request.text)
    return report


def write_outputs(report: DrillReport, out: Path, note: str = "") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    e, phases = report.events, report.phases()
    data = {"config": report.config, "machine": describe_machine(), "note": note, "loadavg_at_end": report.loadavg,
            "events": asdict(e), "sent": len(report.requests), "answered": len(report.answered),
            "failed": len(report.failed), "lengths_exact": len(report.exact), "passed": report.passed,
            "throughput_audio_s_per_s": {name: report.throughput(*span) for name, span in phases.items()},
            "failures": [asdict(r) for r in report.failed][:20], "requests": [asdict(r) for r in report.requests],
            "line": report.line()}
    (out / "drill.json").write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    rows = "\n".join(f"| {name} | {start:.0f} to {end:.0f} s | {report.throughput(start, end):.2f} |"
                     for name, (start, end) in phases.items())
    (out / "summary.md").write_text(
        f"# Replica drill\n\n{note}\n\n"
        f"{report.config['replicas']} Triton replicas of `{Path(report.config['repository']).parent.name}` behind "
        f"HAProxy (HTTP and gRPC, health checks on `/v2/health/ready` every second), the gateway in front, "
        f"{report.config['concurrency']} client threads POSTing `/api/tts` for {report.config['duration_s']:.0f} s; "
        f"replica 0 killed (SIGKILL) at {e.kill_s:.0f} s and restarted at {e.restart_s:.0f} s. Machine: "
        f"{machine_cpu(data['machine'])}, {data['machine']['memory_gib']} GiB; load average at the end {report.loadavg[0]:.1f}.\n\n"
        f"| phase | span | audio s per s |\n|---|---|---|\n{rows}\n\n"
        f"- requests: {len(report.requests)} sent, {len(report.answered)} answered, {len(report.failed)} failed; "
        f"{len(report.exact)} of {len(report.answered)} answers exactly as long as their text's frames say\n"
        f"- the balancer took the killed replica out {e.down_s - e.kill_s:.1f} s after the kill; the restarted "
        f"replica was ready {e.ready_s - e.restart_s:.1f} s after its start and took requests again "
        f"{e.up_s - e.restart_s:.1f} s after it\n\n`{report.line()}`\n")
    fig, ax = plt.subplots(figsize=(9, 4))
    ends = sorted(r.end_s for r in report.answered)
    window = 10.0
    times = [t for t in range(int(window), int(e.end_s) + 1)]
    rates = [sum(1 for x in ends if t - window <= x < t) / window for t in times]
    ax.plot(times, rates, label=f"answers per second (over {window:.0f} s)")
    for at, label in ((e.kill_s, "killed"), (e.down_s, "balancer: DOWN"), (e.restart_s, "restarted"),
                      (e.up_s, "balancer: UP")):
        ax.axvline(at, linestyle="--", color="grey")
        ax.text(at, ax.get_ylim()[1] * 0.95, label, rotation=90, va="top", ha="right", fontsize=8)
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("requests answered per second")
    ax.set_title(f"Replica drill: {len(report.requests)} sent, {len(report.failed)} failed")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(out / "drill.png", dpi=110)
    plt.close(fig)
    return [out / "drill.json", out / "summary.md", out / "drill.png"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model-dir", type=Path, help="a ModelScope model directory (default: the full-size fixture)")
    source.add_argument("--repository", type=Path, help="an existing CPU model repository")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "drill")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "drill")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    if args.replicas < 2:
        sys.exit("error: --replicas must be 2 or more (one is killed)")
    try:
        repository = args.repository or prepare_repository(args.model_dir, args.work)
        report = run_drill(repository, args.minutes * 60, args.replicas, args.concurrency, work=args.work)
    except (DrillError, SoakError) as e:
        sys.exit(f"error: {e}")
    for path in write_outputs(report, args.out, args.note):
        print(f"[drill] wrote {path}")
    print(report.line())
    sys.exit(0 if report.passed else 1)


if __name__ == "__main__":
    main()
