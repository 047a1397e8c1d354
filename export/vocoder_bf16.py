"""The BF16 CPU vocoder: convolutions in BF16, everything between them in FP32, saved by torch.export.

Where oneDNN finds AVX512-BF16 (or AMX) it runs a BF16 convolution several times faster than FP32 and
accumulates in FP32. Only the convolutions' inputs and weights are rounded to BF16; their outputs go
back to FP32, so the residual sums, sin, leaky ReLU and tanh keep FP32. On the universal HiFi-GAN V1
and real speech that is both faster and closer to FP32 than casting the whole network to BF16
(results/precision.md).

The file is `<voice>/vocoder.bf16.pt2` (serving.contract.VOCODER_BF16), run by
serving.runtime.vocoder_torch; its quality record is checked here against the FP32 ONNX vocoder on the
voice's own acoustic-model mels (serving.contract.BF16Check).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from export.onnx_vocoder import VocoderMeta
from models.mel import log_mel_l1, log_mel_spectrogram
from serving.contract import AudioSettings, BF16Check
from serving.runtime.vocoder import VocoderRuntime
from serving.runtime.vocoder_torch import META_FILE, TorchVocoderRuntime

# Sentences whose acoustic-model mels drive the per-voice quality record (different lengths and tones).
CHECK_SENTENCES = (
    "欢迎使用语音合成服务，今天天气很好。",
    "我们明天早上八点出发，请大家准时集合。",
    "春眠不觉晓，处处闻啼鸟。",
)
SAVED_TOLERANCE = 1e-6  # max abs difference of the loaded program vs the module it was exported from


class BF16Conv(nn.Module):
    """A Conv1d / ConvTranspose1d with BF16 weights: FP32 in, BF16 arithmetic, FP32 out."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = copy.deepcopy(conv).to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.to(torch.bfloat16)).float()


def bf16_convolutions(vocoder: nn.Module) -> nn.Module:
    """A copy of `vocoder` (weight norm folded) whose every Conv1d and ConvTranspose1d is a BF16Conv."""
    if any(name.endswith(("weight_g", "weight_v")) for name, _ in vocoder.named_parameters()):
        raise ValueError("the vocoder still has weight norm: call remove_weight_norm() first")
    converted = copy.deepcopy(vocoder).eval()
    for module in list(converted.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, (nn.Conv1d, nn.ConvTranspose1d)):
                setattr(module, name, BF16Conv(child))
    return converted


@torch.no_grad()
def export_vocoder_bf16(vocoder: nn.Module, path: str | Path, meta: VocoderMeta) -> Path:
    """Export the BF16 version of `vocoder` (dynamic batch and frames) and save it with `meta`.

    Checks the saved program against the module on other sizes, a single frame included."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    converted = bf16_convolutions(vocoder)
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(3, meta.n_mels, 37, generator=generator)  # odd sizes: no size passes for a constant
    dynamic = {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("frames", min=1)}
    program = torch.export.export(converted, (example,), dynamic_shapes=(dynamic,))
    torch.export.save(program, str(path), extra_files={META_FILE: json.dumps(meta.as_props())})
    saved = TorchVocoderRuntime(path).module
    for batch, frames in ((2, 61), (1, 1)):
        other = torch.randn(batch, meta.n_mels, frames, generator=generator)
        diff = float((saved(other) - converted(other)).abs().max())
        if diff > SAVED_TOLERANCE:
            raise ValueError(f"{path}: the saved BF16 vocoder differs from the module by {diff:.1e} at "
                             f"{batch} x {frames} frames")
    return path


def bf16_check(fp32_onnx: Path, bf16_file: Path, mels: list[np.ndarray], analysis: AudioSettings,
               sentences: list[str]) -> BF16Check:
    """Vocode `mels` ([frames, n_mels] each) with both files and compare the re-analysed outputs."""
    fp32_audio = VocoderRuntime(fp32_onnx).vocode(mels)
    bf16_audio = TorchVocoderRuntime(bf16_file).vocode(mels)
    l1 = [log_mel_l1(log_mel_spectrogram(low, analysis), log_mel_spectrogram(ref, analysis))
          for low, ref in zip(bf16_audio, fp32_audio)]
    return BF16Check(sentences=list(sentences), l1_vs_fp32=[round(x, 5) for x in l1])
