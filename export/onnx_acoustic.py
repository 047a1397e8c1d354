"""Export a voice's Sambert acoustic model as six ONNX graphs, run in turn by serving.runtime.acoustic.

Sambert is not one graph: its duration predictor and its decoder are autoregressive loops and the
length regulator has a data-dependent output size. Each piece between the loops becomes a graph
(`models.sambert` has one method per piece), and the runtime does the loops and the length
regulation on the host:

    encoder.onnx         ids, emotion, speaker, lengths -> text_aug, duration_cond, speaker_hid, emotion_hid
    duration_step.onnx   one duration-predictor step (previous log-duration, cond, LSTM state in and out)
    decoder_memory.onnx  length-regulated features -> LFR memory and every layer's memory keys/values
    decoder_step.onnx    one decoder step (r frames) with the key/value cache in and out
    postnet_fsmn.onnx    decoder frames, frame lengths -> the postnet's FSMN features
    postnet_lstm.onnx    FSMN features, decoder frames, LSTM state -> mel, LSTM state

Every batch and time axis is dynamic; graphs are traced with the legacy exporter at opset 17 (TensorRT
10 parses it) from example inputs whose sizes appear nowhere else, and `check_graph` verifies what the
runtime relies on. The numbers the runtime needs that no input shape carries (the position table's
length, r, the vocabulary sizes, the postnet's context) are stored as metadata_props of the graph they
belong to.

A personal (SE) voice's encoder has no speaker input: its speaker embedding is a constant of the graph.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from models.sambert import KanTtsSambert
from serving.contract import (
    DECODER_MEMORY,
    DECODER_STEP,
    DURATION_STEP,
    ENCODER,
    META_CONTEXT,
    META_MAX_LEN,
    META_OUTPUTS_PER_STEP,
    META_VOCABULARY_SIZES,
    POSTNET_FSMN,
    POSTNET_LSTM,
)
from serving.symbols import STREAMS

OPSET = 17

# Sizes of the example inputs the graphs are traced with; deliberately odd, so that a size the
# tracer froze into a graph shows up as a wrong shape when the graph runs at any other size.
EXAMPLE_BATCH = 3
EXAMPLE_PHONES = 7
EXAMPLE_STEPS = 5
EXAMPLE_CACHE = 2


class AcousticExportError(RuntimeError):
    """An exported graph fails a check (structure, shapes, dynamic axes)."""


@dataclass(frozen=True)
class Graph:
    """One exported piece: the model method it runs and its named inputs and outputs.

    `inputs`/`outputs` give each tensor's axes: a str is a dynamic axis name, an int a fixed size.
    """

    file: str
    method: str
    inputs: dict[str, tuple]
    outputs: dict[str, tuple]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        tensors = {**self.inputs, **self.outputs}
        return {name: {i: a for i, a in enumerate(axes) if isinstance(a, str)} for name, axes in tensors.items()}


def acoustic_graphs(model: KanTtsSambert) -> list[Graph]:
    """The six graphs of `model`, with its dimensions."""
    speaker = {} if model.speaker_embedding_input else {"speaker": ("batch", "phones")}
    p = model.params
    d_text = p["encoder_projection_units"]
    d_speaker, d_emotion = p["speaker_units"], p["emotion_units"]
    d_cond = d_text + d_speaker + d_emotion
    lstm = model.variance_adaptor.duration_predictor.lstm
    dec = model.mel_decoder.mel_dec
    layers, heads, d_head = len(dec.pnca), dec.n_heads, dec.d_model // dec.n_heads
    n_mels, r = model.num_mels, model.r
    state = (lstm.num_layers, "batch", lstm.hidden_size)
    cache = (layers, "batch", heads, "cache", d_head)
    grown = (layers, "batch", heads, "cache_out", d_head)
    memory_kv = (layers, "batch", heads, "steps", d_head)
    postnet_lstm = model.mel_postnet.lstm
    d_fsmn, postnet_state = postnet_lstm.input_size, (1, "batch", postnet_lstm.hidden_size)
    return [
        Graph(
            ENCODER,
            "encode",
            inputs={"ids": ("batch", "phones", 4), "emotion": ("batch", "phones"), **speaker, "lengths": ("batch",)},
            outputs={
                "text_aug": ("batch", "phones", d_text),
                "duration_cond": ("batch", "phones", d_cond),
                "speaker_hid": ("batch", "phones", d_speaker),
                "emotion_hid": ("batch", "phones", d_emotion),
            },
        ),
        Graph(
            DURATION_STEP,
            "duration_step",
            inputs={"previous_log_duration": ("batch",), "cond": ("batch", d_cond), "h": state, "c": state},
            outputs={"log_duration": ("batch",), "h_out": state, "c_out": state},
        ),
        Graph(
            DECODER_MEMORY,
            "decoder_memory",
            inputs={
                "lr_text": ("batch", "frames", d_text),
                "lr_speaker": ("batch", "frames", d_speaker),
                "lr_emotion": ("batch", "frames", d_emotion),
                "frame_positions": ("batch", "frames"),
            },
            outputs={"memory": ("batch", "steps", model.d_memory), "memory_keys": memory_kv, "memory_values": memory_kv},
        ),
        Graph(
            DECODER_STEP,
            "decoder_step",
            inputs={
                "previous_frame": ("batch", n_mels),
                "memory_step": ("batch", model.d_memory),
                "x_keys": cache,
                "x_values": cache,
                "memory_keys": memory_kv,
                "memory_values": memory_kv,
                "x_band": ("batch",),
                "h_band": ("batch",),
                "memory_lengths": ("batch",),
            },
            outputs={"frames": ("batch", r * n_mels), "x_keys_out": grown, "x_values_out": grown},
        ),
        Graph(
            POSTNET_FSMN,
            "postnet_fsmn",
            inputs={"decoder_frames": ("batch", "frames", n_mels), "frame_lengths": ("batch",)},
            outputs={"features": ("batch", "frames", d_fsmn)},
        ),
        Graph(
            POSTNET_LSTM,
            "postnet_lstm",
            inputs={"features": ("batch", "frames", d_fsmn), "decoder_frames": ("batch", "frames", n_mels),
                    "h": postnet_state, "c": postnet_state},
            outputs={"mel": ("batch", "frames", n_mels), "h_out": postnet_state, "c_out": postnet_state},
        ),
    ]


class GraphModule(nn.Module):
    """A model method as a module's forward, so it can be traced; keeps the graph's outputs only."""

    def __init__(self, model: KanTtsSambert, graph: Graph):
        super().__init__()
        self.model = model
        self.method = graph.method
        self.n_outputs = len(graph.outputs)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.method == "encode" and self.model.speaker_embedding_input:
            ids, emotion, lengths = inputs
            inputs = (ids, emotion, None, lengths)
        out = getattr(self.model, self.method)(*inputs)
        return (out,) if isinstance(out, torch.Tensor) else tuple(out[: self.n_outputs])


def example_inputs(
    model: KanTtsSambert,
    graph: Graph,
    vocabulary_sizes: dict[str, int],
    batch: int = EXAMPLE_BATCH,
    phones: int = EXAMPLE_PHONES,
    steps: int = EXAMPLE_STEPS,
    cache: int = EXAMPLE_CACHE,
    seed: int = 0,
) -> tuple[torch.Tensor, ...]:
    """Valid inputs of `graph` at the given sizes: real ids, random features, and per-item lengths
    that differ (the first item is full, the last has one phone or step), so padding paths are traced."""
    generator = torch.Generator().manual_seed(seed)
    sizes = {"batch": batch, "phones": phones, "frames": steps * model.r, "steps": steps, "cache": cache}

    def item_lengths(longest: int) -> torch.Tensor:
        middle = torch.randint(1, longest + 1, (max(batch - 2, 0),), generator=generator)
        return torch.cat([torch.tensor([longest]), middle, torch.tensor([1])])[:batch]

    phone_lengths = item_lengths(phones)
    frame_lengths = item_lengths(steps * model.r)
    vocabulary = vocabulary_sizes
    special = {
        "lengths": phone_lengths,
        "frame_lengths": frame_lengths,
        "memory_lengths": -(-frame_lengths // model.r),
        "x_band": torch.randint(0, 4, (batch,), generator=generator),
        "h_band": torch.randint(0, 4, (batch,), generator=generator),
    }
    tensors = []
    for name, axes in graph.inputs.items():
        shape = [sizes[a] if isinstance(a, str) else a for a in axes]
        if name in special:
            tensors.append(special[name])
        elif name == "ids":
            tables = [vocabulary[s] for s in STREAMS[:4]]
            tensors.append(torch.stack([torch.randint(0, n, shape[:2], generator=generator) for n in tables], -1))
        elif name in ("emotion", "speaker"):
            tensors.append(torch.randint(0, vocabulary[name], shape, generator=generator))
        elif name == "frame_positions":
            tensors.append(torch.randint(0, 6, shape, generator=generator).float())
        else:
            tensors.append(torch.randn(shape, generator=generator))
    return tuple(tensors)


def graph_metadata(model: KanTtsSambert, graph: Graph, vocabulary_sizes: dict[str, int]) -> dict[str, str]:
    if graph.file == ENCODER:
        sizes = {stream: vocabulary_sizes[stream] for stream in STREAMS}
        return {META_MAX_LEN: str(model.max_phones), META_VOCABULARY_SIZES: json.dumps(sizes)}
    if graph.file == DECODER_STEP:
        return {META_OUTPUTS_PER_STEP: str(model.r)}
    if graph.file == POSTNET_FSMN:
        return {META_CONTEXT: json.dumps(list(model.postnet_context_frames()))}
    return {}


def export_graph(model: KanTtsSambert, graph: Graph, path: Path, vocabulary_sizes: dict[str, int]) -> Path:
    """Trace one graph to `path`, store its metadata and check it. vocabulary_sizes: the voice's rows per
    stream (Vocabulary.sizes(): the tables' rows, and an SE voice's speaker symbols, which no table has)."""
    # eval() on the wrapper too: the exporter puts the wrapper (and so the model) back in the mode it found.
    module = GraphModule(model, graph).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every Python-level shape comparison; the checks in check_graph and
        # the runtime's parity tests at other sizes are what shows the graph follows its inputs.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example_inputs(model, graph, vocabulary_sizes),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(graph.inputs),
            output_names=list(graph.outputs),
            dynamic_axes=graph.dynamic_axes(),
            do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, graph_metadata(model, graph, vocabulary_sizes))
    onnx.save(proto, str(path))
    check_graph(path, graph)
    return path


def export_acoustic(model: KanTtsSambert, out_dir: str | Path, vocabulary_sizes: dict[str, int], log=print) -> list[Path]:
    """Write the five acoustic graphs of `model` into `out_dir` (created if needed); returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for graph in acoustic_graphs(model):
        paths.append(export_graph(model, graph, out_dir / graph.file, vocabulary_sizes))
        log(f"{graph.file}: {len(onnx.load(str(paths[-1]), load_external_data=False).graph.node)} nodes, checked")
    return paths


def check_graph(path: Path, graph: Graph) -> None:
    """onnx.checker (full), strict shape inference, opset, and the declared I/O with dynamic axes."""
    proto = onnx.load(str(path))
    try:
        onnx.checker.check_model(proto, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise AcousticExportError(f"{path}: {e}") from e
    opsets = {o.domain: o.version for o in proto.opset_import}
    if opsets.get("", opsets.get("ai.onnx")) != OPSET:
        raise AcousticExportError(f"{path}: opset {opsets}, expected {OPSET}")
    for kind, declared, values in (
        ("input", graph.inputs, inferred.graph.input),
        ("output", graph.outputs, inferred.graph.output),
    ):
        found = {v.name: v for v in values}
        if list(found) != list(declared):
            raise AcousticExportError(f"{path}: {kind}s {list(found)}, expected {list(declared)}")
        for name, axes in declared.items():
            dims = found[name].type.tensor_type.shape.dim
            got = tuple(d.dim_param if d.HasField("dim_param") else d.dim_value for d in dims)
            # A dynamic axis must not have become a number (a size the tracer froze). A fixed size
            # must be that number, except in an output that inference could only name.
            if len(got) != len(axes) or any(
                (isinstance(a, str) and isinstance(g, int) and g != 0)
                or (isinstance(a, int) and g != a and not (kind == "output" and isinstance(g, str)))
                for g, a in zip(got, axes)
            ):
                raise AcousticExportError(f"{path}: {kind} {name} has shape {got}, expected {axes}")
