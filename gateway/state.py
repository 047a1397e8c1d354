"""What the routes share for the life of the process: settings, the Triton client, the task store, metrics."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.synthesis import EncodedAudio
from gateway.tasks import TaskStore
from gateway.triton import Triton


@dataclass
class GatewayState:
    settings: Settings
    triton: Triton
    tasks: TaskStore[EncodedAudio]
    metrics: Metrics


def of(request: Request) -> GatewayState:
    return request.app.state.gateway
