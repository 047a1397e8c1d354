"""Resident memory of a server's whole process tree (Triton's python-backend stubs are child processes)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024
STUB = "triton_python_backend_stub"


def process_tree(root: int) -> list[int]:
    """`root` and every process descended from it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()  # the command name may hold spaces
        except OSError:  # the process ended while we looked
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def model_stub(root: int, model: str) -> tuple[int, str]:
    """(pid, shared-memory region) of the running python-backend stub of `model` under tritonserver `root`.
    The stub's command line is: stub, <repository>/<model>/1/model.py, <region>, ..."""
    for pid in process_tree(root):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if argv[0].endswith(STUB) and argv[1].endswith(f"/{model}/1/model.py") and state != "Z":
            return pid, argv[2]
    raise LookupError(f"no running stub of {model!r} under tritonserver {root}")


def rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE / MIB


@dataclass(frozen=True)
class TreeMemory:
    processes: int
    rss_mib: float  # sum of resident set sizes (pages shared between the processes count once per process)
    pss_mib: float  # sum of proportional set sizes (shared pages split between the processes that map them)


def tree_memory(root: int) -> TreeMemory:
    rss = pss = count = 0
    for pid in process_tree(root):
        try:
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
                    break
            count += 1
        except (OSError, ValueError):  # ended meanwhile
            continue
    return TreeMemory(count, rss / MIB, pss / MIB)


class PeakMemory:
    """Samples a process tree's memory in the background while in a `with` block; keeps the peak RSS."""

    def __init__(self, root: int, interval_s: float = 0.5):
        self.root, self.interval_s = root, interval_s
        self.peak: TreeMemory = tree_memory(root)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            now = tree_memory(self.root)
            if now.rss_mib > self.peak.rss_mib:
                self.peak = now

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
