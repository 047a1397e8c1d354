"""Export a HiFi-GAN vocoder (weight norm folded) to ONNX: MEL [batch, n_mels, frames] -> WAV [batch, 1, frames*hop].

An NSF vocoder's graph takes its source as a second input, SOURCE [batch, harmonics + 1, frames*hop]: the
phase that source carries adds up every earlier sample's f0 in float64 (serving.runtime.nsf makes it), which
no engine precision could redo, so the graph starts at the source module's 1x1 conv.

    python -m export.onnx_vocoder MODEL_DIR --out DIR [--voice NAME ...] [--verify]

writes DIR/<voice>/vocoder.onnx for each voice (all voices by default). Steps:

1. trace with the legacy exporter (opset 17; TensorRT 10 and 11 parse it). The dynamo exporter
   needs the extra `onnxscript` package and gains nothing for a graph of plain convolutions.
   Each nearest-neighbour `nn.Upsample` (KAN-TTS's "repeat" branch) is traced as Unsqueeze ->
   Expand -> Reshape with constant shapes instead of a `Resize` (`RepeatUpsample`, no weights, so the
   state_dict is unchanged): OpenVINO's BF16 CPU plugin returns an empty tensor for that `Resize`,
   and a repeat is what it is.
2. fold constants with ONNX Runtime's *basic* optimisations, which only rewrite into standard ONNX
   ops: the legacy exporter spells each `F.pad` as a 10-node shape computation.
3. fold each zero `Pad` in front of a `Conv` (the causal convs' left padding) into the Conv's own
   begin/end `pads`, which is the same arithmetic: one node per conv for every runtime, TensorRT
   included. The full-size causal vocoder is then ~300 nodes: Conv, ConvTranspose, LeakyRelu, Add, ...
4. store what a runtime needs to cut a batch back into items as metadata (hop, mel bins, right context).
5. `onnx.checker.check_model(full_check=True)` and strict shape inference.

`--verify` also compares the served CPU runtime (OpenVINO, FP32) with the PyTorch vocoder on items of
unequal lengths and prints the CPU real-time factor of both.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

from serving.contract import (
    META_ACTIVATION_PER_FRAME,
    META_HOP,
    META_N_MELS,
    META_RIGHT_CONTEXT,
    META_SOURCE_CHANNELS,
    SOURCE,
    VOCODER_MEL,
    VOCODER_ONNX,
    WAV,
)
from serving.runtime.vocoder import VocoderRuntime

OPSET = 17


class _Repeat(torch.autograd.Function):
    """x [B, C, T] -> [B, C, T * scale], each frame repeated; traced as Unsqueeze -> Expand -> Reshape."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: int) -> torch.Tensor:
        return x.unsqueeze(-1).expand(-1, -1, -1, scale).flatten(2)

    @staticmethod
    def symbolic(g, x, scale: int):
        def const(values):
            return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))

        expanded = g.op("Expand", g.op("Unsqueeze", x, const([3])), const([1, 1, 1, scale]))
        return g.op("Reshape", expanded, const([0, 0, -1]))  # 0: keep batch and channels as they are


class RepeatUpsample(nn.Module):
    """Nearest-neighbour upsampling by an integer factor, spelled as a repeat for the ONNX graph."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Repeat.apply(x, self.scale)


def with_repeat_upsampling(vocoder: nn.Module) -> nn.Module:
    """A copy of `vocoder` whose nearest-neighbour nn.Upsample modules (integer factors) are RepeatUpsample."""
    vocoder = copy.deepcopy(vocoder)
    for module in list(vocoder.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Upsample) and child.mode == "nearest":
                scale = child.scale_factor
                if child.size is not None or scale is None or float(scale) != int(scale):
                    raise ValueError(f"{name}: only nearest upsampling by an integer factor can be exported")
                setattr(module, name, RepeatUpsample(int(scale)))
    return vocoder


def fold_pads_into_convs(model: onnx.ModelProto) -> int:
    """Fold every zero-constant `Pad` of the spatial axes whose only consumer is a Conv's input into that
    Conv's `pads` (in place); returns how many were folded. Zero padding is what Conv's own pads do."""
    graph = model.graph
    initializers = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    folded = set()
    for pad in graph.node:
        if pad.op_type != "Pad" or pad.input[1] not in initializers:
            continue
        mode = next((a.s.decode() for a in pad.attribute if a.name == "mode"), "constant")
        value = pad.input[2] if len(pad.input) > 2 else ""
        users = consumers.get(pad.output[0], [])
        if (mode != "constant" or (value and (value not in initializers or initializers[value].any()))
                or len(pad.input) > 3 or len(users) != 1 or users[0].op_type != "Conv"
                or users[0].input[0] != pad.output[0]):
            continue
        pads = initializers[pad.input[1]].astype(int).tolist()
        rank = len(pads) // 2
        begin, end = pads[:rank], pads[rank:]
        conv = users[0]
        attributes = {a.name: a for a in conv.attribute}
        if begin[:2] != [0, 0] or end[:2] != [0, 0] or min(pads) < 0 or (
                "auto_pad" in attributes and attributes["auto_pad"].s not in (b"", b"NOTSET")):
            continue
        own = list(attributes["pads"].ints) if "pads" in attributes else [0] * (2 * (rank - 2))
        spatial = rank - 2
        merged = ([own[i] + begin[2 + i] for i in range(spatial)]
                  + [own[spatial + i] + end[2 + i] for i in range(spatial)])
        if "pads" in attributes:
            conv.attribute.remove(attributes["pads"])
        conv.attribute.append(onnx.helper.make_attribute("pads", merged))
        conv.input[0] = pad.input[0]
        folded.add(pad.output[0])
    kept = [node for node in graph.node if not (node.op_type == "Pad" and node.output[0] in folded)]
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in kept for name in node.input}
    initializers_kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers_kept)
    return len(folded)


@dataclass(frozen=True)
class VocoderMeta:
    """What a runtime needs besides the graph: sizes, and how far padding after an item reaches back into it."""

    n_mels: int
    hop_length: int
    right_context_frames: int  # 0 for a causal vocoder
    source_channels: int = 0  # an NSF vocoder's SOURCE input: harmonics + 1

    def as_props(self) -> dict[str, str]:
        return {META_N_MELS: str(self.n_mels), META_HOP: str(self.hop_length),
                META_RIGHT_CONTEXT: str(self.right_context_frames), META_SOURCE_CHANNELS: str(self.source_channels)}

    def example(self, batch: int, frames: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """Random graph inputs: MEL, and an NSF vocoder's SOURCE."""
        mel = torch.randn(batch, self.n_mels, frames, generator=generator)
        if not self.source_channels:
            return (mel,)
        return mel, 0.1 * torch.randn(batch, self.source_channels, frames * self.hop_length, generator=generator)


def kan_vocoder_meta(vocoder) -> VocoderMeta:
    """The metadata of an `models.hifigan.KanHifiGanGenerator`."""
    return VocoderMeta(vocoder.in_channels, vocoder.hop_length, vocoder.right_context_frames(),
                       vocoder.nsf_harmonics + 1 if vocoder.nsf else 0)


class GraphInputs(nn.Module):
    """A KAN-TTS generator with the graph's inputs: MEL, and an NSF vocoder's SOURCE (its `synthesize`)."""

    def __init__(self, vocoder: nn.Module):
        super().__init__()
        self.vocoder = vocoder

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.vocoder.synthesize(*inputs)


def graph_module(vocoder: nn.Module, meta: VocoderMeta) -> nn.Module:
    """What the graph runs: an NSF generator from its source on (other vocoders take the mel as their input)."""
    return GraphInputs(vocoder) if meta.source_channels else vocoder


@torch.no_grad()
def measure_right_context_frames(vocoder: nn.Module, n_mels: int, hop_length: int, frames: int = 64) -> int:
    """How many frames before the last one change when only the last frame changes (a measured right context).

    For vocoders without an analytic bound (HiFi-GAN V1). Any change counts, however small.
    """
    generator = torch.Generator().manual_seed(0)
    mel = torch.randn(1, n_mels, frames, generator=generator)
    changed = mel.clone()
    changed[:, :, -1] += 10.0 * torch.randn(n_mels, generator=generator)
    diff = (vocoder(mel) - vocoder(changed)).abs()[0, 0]
    first_changed_sample = int(torch.nonzero(diff > 0)[0])
    return frames - 1 - first_changed_sample // hop_length


@torch.no_grad()
def widest_activation_per_frame(vocoder: nn.Module, meta: VocoderMeta, frames: int = 16) -> int:
    """The values per mel frame of the vocoder's widest intermediate tensor (what sizes an engine's activations)."""
    widest = [0]

    def record(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            widest[0] = max(widest[0], output[0].numel())

    module = graph_module(vocoder, meta)
    hooks = [layer.register_forward_hook(record) for layer in module.modules()]
    try:
        module(*(torch.zeros_like(x) for x in meta.example(1, frames)))
    finally:
        for hook in hooks:
            hook.remove()
    return -(-widest[0] // frames)


def export_vocoder(vocoder: nn.Module, path: str | Path, meta: VocoderMeta, log=print) -> Path:
    """Write `vocoder` (weight norm already folded, eval mode) as a validated ONNX file at `path`."""
    if any(name.endswith(("weight_g", "weight_v")) for name, _ in vocoder.named_parameters()):
        raise ValueError("the vocoder still has weight norm: call remove_weight_norm() before export")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # An odd batch and length, so that no size can pass for a constant in the trace.
    example = meta.example(3, 37)
    inputs = [VOCODER_MEL.name] + ([SOURCE.name] if meta.source_channels else [])
    axes = {VOCODER_MEL.name: {0: "batch", 2: "frames"}, SOURCE.name: {0: "batch", 2: "samples"},
            WAV.name: {0: "batch", 2: "samples"}}
    with tempfile.TemporaryDirectory() as tmp:
        traced = Path(tmp) / "traced.onnx"
        log(f"[onnx_vocoder] tracing to ONNX opset {OPSET} (dynamic batch and frames)")
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
            torch.onnx.export(
                graph_module(with_repeat_upsampling(vocoder), meta).eval(), example, str(traced), input_names=inputs,
                output_names=[WAV.name], dynamic_axes={name: axes[name] for name in inputs + [WAV.name]},
                opset_version=OPSET, do_constant_folding=True, dynamo=False,
            )
        log("[onnx_vocoder] folding constants (ONNX Runtime basic optimisations)")
        model = _fold_constants(traced, Path(tmp) / "folded.onnx")
    pads = fold_pads_into_convs(model)
    log(f"[onnx_vocoder] folded {pads} zero Pad node(s) into their convolutions' padding")
    onnx.helper.set_model_props(model, {**meta.as_props(), META_ACTIVATION_PER_FRAME: str(
        widest_activation_per_frame(vocoder, meta))})
    model.producer_name = "sambert-triton export.onnx_vocoder"
    onnx.save(model, str(path))
    log("[onnx_vocoder] checking the model (onnx.checker full check, strict shape inference)")
    check_vocoder_onnx(path)
    ops = sorted({node.op_type for node in model.graph.node})
    log(f"[onnx_vocoder] wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {len(model.graph.node)} nodes: {', '.join(ops)})")
    return path


def _fold_constants(traced: Path, folded: Path) -> onnx.ModelProto:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    ort.InferenceSession(str(traced), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(folded))
    # ONNX Runtime declares all of its own op domains; keep only the ones the graph uses.
    used = {node.domain for node in model.graph.node}
    kept = [opset for opset in model.opset_import if opset.domain in used or opset.domain in ("", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return model


def check_vocoder_onnx(path: str | Path) -> onnx.ModelProto:
    """Run the ONNX checker and strict shape inference, and check the I/O names, types and ranks."""
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)), check_type=True, strict_mode=True)
    props = {p.key: p.value for p in model.metadata_props}
    expected = [VOCODER_MEL.name] + ([SOURCE.name] if int(props.get(META_SOURCE_CHANNELS, 0)) else [])
    if [value.name for value in model.graph.input] != expected or len(model.graph.output) != 1:
        raise ValueError(f"{path}: expected the inputs {expected} and one output, found "
                         f"{[value.name for value in model.graph.input]}")
    for value, name, rank in (*zip(model.graph.input, expected, (3, 3)), (model.graph.output[0], WAV.name, 3)):
        tensor = value.type.tensor_type
        if value.name != name or tensor.elem_type != onnx.TensorProto.FLOAT or len(tensor.shape.dim) != rank:
            raise ValueError(f"{path}: expected a float32 rank-{rank} tensor {name!r}, found {value.name!r}")
    return model


@torch.no_grad()
def verify(vocoder: nn.Module, path: Path, frames: list[int], sample_rate: int, log=print) -> float:
    """Max abs difference between ONNX Runtime and PyTorch, item by item (an NSF vocoder with random sources);
    prints both RTFs."""
    runtime = VocoderRuntime(path)
    meta = kan_vocoder_meta(vocoder)
    module = graph_module(vocoder, meta)
    generator = torch.Generator().manual_seed(0)
    inputs = [meta.example(1, n, generator) for n in frames]
    mels = [x[0][0].T.numpy() for x in inputs]
    sources = [x[1][0].numpy() for x in inputs] if meta.source_channels else None
    runtime.vocode(mels[:1], sources[:1] if sources else None)  # warm-up: first calls allocate and pick kernels
    module(*inputs[0])
    start = time.perf_counter()
    onnx_audio = runtime.vocode(mels, sources)
    onnx_seconds = time.perf_counter() - start
    start = time.perf_counter()
    torch_audio = [module(*x)[0, 0].numpy() for x in inputs]
    torch_seconds = time.perf_counter() - start
    diff = max(float(np.abs(a - b).max()) for a, b in zip(onnx_audio, torch_audio))
    audio_seconds = sum(frames) * runtime.hop_length / sample_rate
    log(f"[onnx_vocoder] parity over {len(frames)} items ({sum(frames)} frames): max abs diff {diff:.2e}; real-time "
        f"factor ONNX Runtime {onnx_seconds / audio_seconds:.3f}, torch {torch_seconds / audio_seconds:.3f}")
    return diff


VERIFY_FRAMES = [160, 97, 43, 120]  # unequal lengths


def main(argv: list[str] | None = None) -> None:
    from models.loader import load_vocoder
    from models.model_dir import ModelDir

    parser = argparse.ArgumentParser(prog="python -m export.onnx_vocoder", description=__doc__.split("\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="export directory (writes OUT/<voice>/vocoder.onnx)")
    parser.add_argument("--voice", action="append", help="voice to export (repeatable; default: every voice)")
    parser.add_argument("--verify", action="store_true", help="compare with PyTorch and print real-time factors")
    args = parser.parse_args(argv)
    model_dir = ModelDir(args.model_dir)
    for voice in args.voice or model_dir.voice_names:
        spec = model_dir.voice(voice)
        print(f"[onnx_vocoder] {voice}: loading {spec.voc_checkpoint}")
        vocoder = load_vocoder(spec)
        path = export_vocoder(vocoder, args.out / voice / VOCODER_ONNX, kan_vocoder_meta(vocoder))
        if args.verify:
            verify(vocoder, path, VERIFY_FRAMES, spec.audio.sample_rate)


if __name__ == "__main__":
    main()
