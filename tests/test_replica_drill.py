"""The replica drill for one minute on the tiny fixture: two replicas behind HAProxy, the gateway in front,
one replica killed under load and restarted; no request may fail and every answer must be exactly as long
as its text's frames say (the same code and checks as scripts/replica_drill.sh)."""

from __future__ import annotations

import json

import pytest

from bench.replica_drill import run_drill, write_outputs

pytestmark = pytest.mark.server


def test_one_minute_drill_loses_no_request(tiny_repository, tmp_path):
    report = run_drill(tiny_repository, duration_s=60, replicas=2, concurrency=16, work=tmp_path / "work")
    e = report.events
    assert 0 < e.kill_s < e.down_s < e.restart_s < e.ready_s <= e.up_s < e.end_s
    assert e.down_s - e.kill_s < 10  # two failed checks a second apart, and the poll
    assert len(report.requests) > 50
    assert not report.failed, report.failed[:3]
    assert len(report.exact) == len(report.answered)
    paths = write_outputs(report, tmp_path / "out")
    data = json.loads(paths[0].read_text())
    assert data["line"].startswith(f"drill: {len(report.requests)} sent, {len(report.requests)} answered, 0 failed")
    assert all(rate > 0 for rate in data["throughput_audio_s_per_s"].values())
