"""The work of each Triton model of the `tts` ensemble, as plain numpy code.

frontend -> acoustic -> vocoder -> join (serving.contract.PIPELINE). Each step has the interface of
its Triton model (`model`, a serving.contract.Model) and one method:

    process(requests) -> results

`requests` holds each request's input tensors by name, as Triton hands them over; each result is
that request's output tensors by name, or the RequestError that answers it alone. Every step after
the front end carries one row per sentence, so a long text's sentences share the acoustic and
vocoder batches with other requests. model_repository/*/1/model.py only moves tensors in and out
(serving.adapter); serving.pipeline chains the steps in-process.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from serving.contract import Model

Tensors = dict[str, np.ndarray]  # a request's tensors by name


class RequestError(ValueError):
    """A user mistake; its message goes back to that client alone as INVALID_ARG (HTTP 400)."""


class Step(Protocol):
    model: Model

    def process(self, requests: list[Tensors]) -> list[Tensors | RequestError]: ...


def rows_by_voice(requests: list[Tensors], voices: int) -> list[tuple[int, list[tuple[int, int]]]]:
    """The (request, row) pairs of every sentence row in a dynamic batch, grouped by their VOICE_INDEX,
    for each voice that has any: each voice's rows then run as one batch of that voice's model."""
    rows = [(r, s) for r, request in enumerate(requests) for s in range(len(request["VOICE_INDEX"]))]
    groups = [(v, [(r, s) for r, s in rows if int(requests[r]["VOICE_INDEX"][s, 0]) == v]) for v in range(voices)]
    return [(voice, group) for voice, group in groups if group]
