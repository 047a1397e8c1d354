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

from serving.contract import Model, Tensor

Tensors = dict[str, np.ndarray]  # a request's tensors by name
NUMPY_TYPES = {"TYPE_STRING": np.object_, "TYPE_FP32": np.float32, "TYPE_INT32": np.int32, "TYPE_INT64": np.int64}


class RequestError(ValueError):
    """A user mistake; its message goes back to that client alone as INVALID_ARG (HTTP 400)."""


class ServerBusyError(RuntimeError):
    """The server is at a capacity limit; the message goes back as UNAVAILABLE (the request may be sent again)."""


class ModelFailedError(RuntimeError):
    """A model the request calls failed; its message (Triton's own words, no internals) goes back as INTERNAL."""


class Step(Protocol):
    model: Model

    def process(self, requests: list[Tensors]) -> list[Tensors | RequestError]: ...


def checked(request: Tensors, tensor: Tensor, sizes: dict[str, int], rows: int | None = None) -> np.ndarray:
    """The request's `tensor`, checked against the contract: present, its type, its dims (sizes resolves the
    named ones), at least one row, and `rows` rows where given. A RequestError says what is wrong."""
    array = request.get(tensor.name)
    if array is None:
        raise RequestError(f"{tensor.name} is missing: send it ({tensor.meaning})")
    dims = [sizes.get(d, d) for d in tensor.dims]
    shape_ok = array.ndim == len(dims) + 1 and all(d in (-1, n) for d, n in zip(dims, array.shape[1:]))
    if array.dtype != NUMPY_TYPES[tensor.dtype] or not shape_ok or len(array) == 0 or rows not in (None, len(array)):
        expected = ", ".join(["rows" if rows is None else str(rows)] + ["any" if d == -1 else str(d) for d in dims])
        raise RequestError(f"{tensor.name} must be {tensor.dtype.removeprefix('TYPE_')} [{expected}], "
                           f"got {array.dtype} {list(array.shape)}")
    return array


def rows_by_voice(requests: list[Tensors], voices: int) -> list[tuple[int, list[tuple[int, int]]]]:
    """The (request, row) pairs of every sentence row in a dynamic batch, grouped by their VOICE_INDEX,
    for each voice that has any: each voice's rows then run as one batch of that voice's model."""
    rows = [(r, s) for r, request in enumerate(requests) for s in range(len(request["VOICE_INDEX"]))]
    groups = [(v, [(r, s) for r, s in rows if int(requests[r]["VOICE_INDEX"][s, 0]) == v]) for v in range(voices)]
    return [(voice, group) for voice, group in groups if group]
