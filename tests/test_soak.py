"""The soak of bench/soak.py, shortened to about a minute on the tiny fixture (the same code and checks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.soak import run_soak, write_outputs
from deploy.repository import PYTHON_MODELS

pytestmark = pytest.mark.server  # every test here runs a real tritonserver

SOAK_S = 60.0


def test_one_minute_soak_over_both_protocols(tiny_repository: Path, tmp_path: Path):
    report = run_soak(tiny_repository, SOAK_S, grpc_threads=8, http_threads=8, sample_interval_s=1.0,
                      log_path=tmp_path / "tritonserver.log")
    failed = {name: check.detail for name, check in report.checks.items() if not check.passed}
    assert not failed, failed
    assert set(report.checks) == {"failures", "lengths", "audio", "memory"}
    # Every thread got answers, over both protocols, for all three text lengths.
    answered = [r for r in report.requests if r.samples is not None]
    assert {r.thread for r in answered} == set(range(16))
    assert {(r.protocol, r.kind) for r in answered} == {(p, k) for p in ("grpc", "http")
                                                         for k in ("short", "medium", "long")}
    assert len(report.kept_audio_diffs) == 16
    # tritonserver and a python-backend stub per model (the streaming model's too), none lost
    assert report.memory[-1].processes == 1 + len(PYTHON_MODELS)

    paths = write_outputs(report, tmp_path / "out")
    results = json.loads(paths[0].read_text())
    assert results["passed"] and results["summary"]["failed"] == 0
    assert results["summary"]["requests"] == len(report.requests)
    assert all(p.stat().st_size > 0 for p in paths)
