"""The KAN-TTS HiFi-GAN generator (the vocoder of ModelScope's Sambert-HifiGan voices).

Built from `voc/config.yaml`'s `Model.Generator.params` as `KanHifiGanGenerator(**params)`; module
and parameter names follow KAN-TTS so its checkpoints load with `load_state_dict(strict=True)`.

Each stage i: x = sin(x) + x, then the sum of a nearest-neighbour "repeat" upsampling branch and a
transposed-conv branch (cut to the same length), then the mean of the residual blocks.

NSF variant (`nsf_params`): the input frames end with f0 in Hz and the 0/1 voicing (82 values for 80 mel
bins). A source signal made from them (`serving.runtime.nsf.HarmonicSource`: a sine per harmonic plus
noise) goes through `source_module` (1x1 conv + tanh) to an excitation, which each stage adds, brought
down to the stage's rate by its `source_downs` conv: x = repeat + excitation_i + transposed.

Causal variant: every conv sees only the past (zero left padding) and the transposed convs drop
their right overhang, so a sample never depends on later frames. In a padded batch an item's valid
samples are therefore unaffected by the padding that follows it.
Non-causal variant: symmetric padding gives each sample a right context of
`right_context_frames()` mel frames; the last that many frames of a shorter item in a padded batch
see the padding instead of the zeros a single-item run sees, so only those tail samples differ.
`context_frames()` gives both sides: a range of frames is vocoded exactly from the mel that reaches that
far around it (what streaming synthesis relies on).
"""

from math import prod

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.weight_norm import fold_weight_norm, legacy_weight_norm
from serving.runtime.nsf import HarmonicSource, SourceNoise


class VocoderConfigError(ValueError):
    """A vocoder config asks for something these generators cannot build."""


class Conv1d(nn.Module):
    """Weight-normalised 1-D conv: left-padded by its span if causal, else padded `padding` on both sides
    (default: half the span, which keeps the length at stride 1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, causal: bool,
                 stride: int = 1, padding: int | None = None):
        super().__init__()
        span = (kernel_size - 1) * dilation
        self.left_pad = span if causal else 0
        padding = 0 if causal else span // 2 if padding is None else padding
        self.conv1d = legacy_weight_norm(
            nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation, padding=padding)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.left_pad:
            x = F.pad(x, (self.left_pad, 0))
        return self.conv1d(x)


class ConvTranspose1d(nn.Module):
    """Weight-normalised transposed conv whose output is cut to `stride * frames` samples.

    Causal: no padding, so the cut drops the right overhang. Non-causal: (k - s) // 2 on each side.
    KAN-TTS cuts to the repeat branch's length; that overhang is a constant of the layer, so it is cut
    here by a fixed amount (an ONNX Slice of constants rather than one computed from shapes).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, causal: bool):
        super().__init__()
        padding = 0 if causal else (kernel_size - stride) // 2
        self.deconv = legacy_weight_norm(
            nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, padding=padding)
        )
        # Output length (T - 1) * s + k - 2 * padding = T * s + overhang.
        self.overhang = kernel_size - stride - 2 * padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.deconv(x)
        return y[:, :, : -self.overhang] if self.overhang else y


class ResidualBlock(nn.Module):
    """Per dilation d: x = x + conv2(act(conv1_d(act(x))))."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int], activation: nn.Module, causal: bool):
        super().__init__()
        self.convs1 = nn.ModuleList(Conv1d(channels, channels, kernel_size, d, causal) for d in dilations)
        self.convs2 = nn.ModuleList(Conv1d(channels, channels, kernel_size, 1, causal) for _ in dilations)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv1, conv2 in zip(self.convs1, self.convs2):
            x = x + conv2(self.activation(conv1(self.activation(x))))
        return x


class SourceModule(nn.Module):
    """KAN-TTS's SourceModule without its signal generation (HarmonicSource): source [B, H+1, L] -> excitation [B, 1, L]."""

    def __init__(self, channels: int):
        super().__init__()
        self.ffn = nn.Sequential(legacy_weight_norm(nn.Conv1d(channels, 1, 1)), nn.Tanh())

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        return self.ffn(source)


class KanHifiGanGenerator(nn.Module):
    """frames [B, in_channels (+2 if NSF), T] (the acoustic model's normalised mel; NSF: then f0 in Hz and
    the 0/1 voicing) -> audio [B, 1, T * hop_length].

    `bias` and `use_weight_norm` are accepted because KAN-TTS configs carry them; KAN-TTS itself
    ignores both (its convs always have a bias and weight norm), and so does this class.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        channels: int,
        kernel_size: int,
        upsample_scales: list[int],
        upsample_kernal_sizes: list[int],
        resblock_kernel_sizes: list[int],
        resblock_dilations: list[list[int]],
        causal: bool,
        nonlinear_activation: str,
        nonlinear_activation_params: dict,
        repeat_upsample: bool = True,
        bias: bool = True,
        use_weight_norm: bool = True,
        nsf_params: dict | None = None,
    ):
        super().__init__()
        _check_params(
            out_channels, kernel_size, upsample_scales, upsample_kernal_sizes,
            resblock_kernel_sizes, resblock_dilations, nonlinear_activation, repeat_upsample, nsf_params,
        )
        self.in_channels = in_channels
        self.causal = causal
        self.upsample_scales = list(upsample_scales)
        self.upsample_kernal_sizes = list(upsample_kernal_sizes)
        self.resblock_kernel_sizes = list(resblock_kernel_sizes)
        self.resblock_dilations = [list(d) for d in resblock_dilations]
        self.kernel_size = kernel_size
        self.hop_length = prod(upsample_scales)

        def activation() -> nn.Module:
            return getattr(nn, nonlinear_activation)(**nonlinear_activation_params)

        self.conv_pre = Conv1d(in_channels, channels, kernel_size, 1, causal)
        self.transpose_upsamples = nn.ModuleList()
        self.repeat_upsamples = nn.ModuleList()
        self.conv_blocks = nn.ModuleList()
        for i, (scale, up_kernel) in enumerate(zip(upsample_scales, upsample_kernal_sizes)):
            c_in, c_out = channels // 2**i, channels // 2 ** (i + 1)
            self.transpose_upsamples.append(
                nn.Sequential(activation(), ConvTranspose1d(c_in, c_out, up_kernel, scale, causal))
            )
            self.repeat_upsamples.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=scale, mode="nearest"),
                    activation(),
                    Conv1d(c_in, c_out, kernel_size, 1, causal),
                )
            )
            for block_kernel, dilations in zip(resblock_kernel_sizes, resblock_dilations):
                self.conv_blocks.append(ResidualBlock(c_out, block_kernel, dilations, activation(), causal))
        self.conv_post = Conv1d(channels // 2 ** len(upsample_scales), out_channels, kernel_size, 1, causal)
        self.nsf_harmonics = nsf_params["nb_harmonics"] if nsf_params else None
        if nsf_params:
            self.nsf_sample_rate = nsf_params["sampling_rate"]
            self.source_module = SourceModule(self.nsf_harmonics + 1)
            # Stage i adds the excitation at its own rate: strided down by the product of the later scales.
            self.source_downs = nn.ModuleList()
            for i in range(len(upsample_scales)):
                down = prod(upsample_scales[i + 1 :])
                c_out = channels // 2 ** (i + 1)
                if down == 1:
                    self.source_downs.append(Conv1d(1, c_out, 1, 1, causal=False))
                else:
                    self.source_downs.append(Conv1d(1, c_out, 2 * down, 1, causal, stride=down, padding=down // 2))

    @property
    def nsf(self) -> bool:
        return self.nsf_harmonics is not None

    def harmonic_source(self, noise: SourceNoise) -> HarmonicSource:
        """A new utterance's source generator (NSF only)."""
        return HarmonicSource(self.nsf_harmonics, self.nsf_sample_rate, self.hop_length, noise)

    def forward(self, frames: torch.Tensor, noise: list[SourceNoise] | None = None) -> torch.Tensor:
        """NSF: `noise` gives each item's random part (default: unseeded, as ModelScope draws it)."""
        if not self.nsf:
            return self.synthesize(frames)
        noise = noise or [SourceNoise() for _ in range(len(frames))]
        sources = [self.harmonic_source(n)(item[-2].numpy(), item[-1].numpy()) for item, n in zip(frames, noise)]
        return self.synthesize(frames[:, :-2], torch.from_numpy(np.stack(sources)))

    def synthesize(self, mel: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        """mel [B, in_channels, T] (and for NSF the source [B, H+1, T * hop]) -> audio [B, 1, T * hop]."""
        excitation = self.source_module(source) if self.nsf else None
        x = self.conv_pre(mel)
        blocks_per_stage = len(self.resblock_kernel_sizes)
        for i in range(len(self.upsample_scales)):
            x = torch.sin(x) + x
            repeated = self.repeat_upsamples[i](x)
            if excitation is not None:
                repeated = repeated + self.source_downs[i](excitation)
            x = repeated + self.transpose_upsamples[i](x)
            blocks = self.conv_blocks[i * blocks_per_stage : (i + 1) * blocks_per_stage]
            x = sum(block(x) for block in blocks) / blocks_per_stage
        # KAN-TTS uses the default slope (0.01) here, not the configured one.
        return torch.tanh(self.conv_post(F.leaky_relu(x)))

    def remove_weight_norm(self) -> None:
        """Fold weight norm into plain weights; call after loading a checkpoint, before inference or export."""
        fold_weight_norm(self)

    def context_frames(self) -> tuple[int, int]:
        """How many earlier and later mel frames the samples of one frame depend on: (left, right).

        Traced back through the layers in index arithmetic, exactly: the samples of frame 0 (0 .. hop-1)
        are followed back through conv_post, each stage's residual blocks, its two upsampling branches
        and conv_pre to the mel frames they read. A causal vocoder has no right context.
        """
        lo, hi = _conv_inputs(0, self.hop_length - 1, self.kernel_size, 1, self.causal)  # conv_post
        for scale, up_kernel in reversed(list(zip(self.upsample_scales, self.upsample_kernal_sizes))):
            block_lo, block_hi = lo, hi
            for block_kernel, dilations in zip(self.resblock_kernel_sizes, self.resblock_dilations):
                b_lo, b_hi = lo, hi
                for dilation in reversed(dilations):  # x + conv2(conv1_d(x)) reads x itself and what the convs read
                    c_lo, c_hi = _conv_inputs(b_lo, b_hi, block_kernel, 1, self.causal)
                    c_lo, c_hi = _conv_inputs(c_lo, c_hi, block_kernel, dilation, self.causal)
                    b_lo, b_hi = min(b_lo, c_lo), max(b_hi, c_hi)
                block_lo, block_hi = min(block_lo, b_lo), max(block_hi, b_hi)
            repeat = _conv_inputs(block_lo, block_hi, self.kernel_size, 1, self.causal)
            repeat = (repeat[0] // scale, repeat[1] // scale)  # nearest-neighbour upsampling
            transpose = _transposed_conv_inputs(block_lo, block_hi, up_kernel, scale, self.causal)
            lo, hi = min(repeat[0], transpose[0]), max(repeat[1], transpose[1])
        lo, hi = _conv_inputs(lo, hi, self.kernel_size, 1, self.causal)  # conv_pre
        return max(0, -lo), max(0, hi)

    def right_context_frames(self) -> int:
        """How many later mel frames can change a frame's samples (0 if causal)."""
        return self.context_frames()[1]


def _conv_inputs(lo: int, hi: int, kernel: int, dilation: int, causal: bool) -> tuple[int, int]:
    """The input positions that outputs lo..hi of a stride-1 `Conv1d` read."""
    span = (kernel - 1) * dilation
    left = span if causal else span // 2
    return lo - left, hi - left + span


def _transposed_conv_inputs(lo: int, hi: int, kernel: int, stride: int, causal: bool) -> tuple[int, int]:
    """The input positions that outputs lo..hi of a `ConvTranspose1d` read (output j is the full output's j + padding)."""
    padding = 0 if causal else (kernel - stride) // 2
    return -(-(lo + padding - kernel + 1) // stride), (hi + padding) // stride


def _check_params(
    out_channels, kernel_size, upsample_scales, upsample_kernal_sizes,
    resblock_kernel_sizes, resblock_dilations, nonlinear_activation, repeat_upsample, nsf_params,
) -> None:
    if out_channels != 1:
        raise VocoderConfigError(
            f"out_channels is {out_channels}: only single-band vocoders (out_channels 1) are supported, not PQMF multi-band"
        )
    if nsf_params is not None and not (isinstance(nsf_params, dict) and
                                       {"nb_harmonics", "sampling_rate"} <= nsf_params.keys()):
        raise VocoderConfigError("nsf_params must hold nb_harmonics and sampling_rate")
    if not repeat_upsample:
        raise VocoderConfigError("repeat_upsample is false: KAN-TTS's generator cannot run without it; remove the key")
    if len(upsample_scales) != len(upsample_kernal_sizes):
        raise VocoderConfigError("upsample_scales and upsample_kernal_sizes must have the same length")
    if len(resblock_kernel_sizes) != len(resblock_dilations):
        raise VocoderConfigError("resblock_kernel_sizes and resblock_dilations must have the same length")
    if any(k % 2 == 0 for k in [kernel_size, *resblock_kernel_sizes]):
        raise VocoderConfigError("kernel_size and resblock_kernel_sizes must be odd")
    if any(k < s for s, k in zip(upsample_scales, upsample_kernal_sizes)):
        raise VocoderConfigError("each upsample_kernal_sizes entry must be at least its upsample scale")
    if not isinstance(getattr(nn, nonlinear_activation, None), type):
        raise VocoderConfigError(f"nonlinear_activation {nonlinear_activation!r} is not a torch.nn module name")
