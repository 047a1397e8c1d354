"""Random-weight model directories in exactly the layout of ModelScope's Sambert-HifiGan downloads.

The real `iic/speech_sambert-hifigan_tts_zh-cn_16k` cannot be downloaded here, so tests build a
directory with the same files, the same config sections (as KAN-TTS's `sambert_16k.yaml`,
`hifigan_v1_16k.yaml` and `audio_config_16k.yaml` write them, parts the loader ignores included)
and checkpoints shaped like KAN-TTS's trainer saves them, then load it through the same code as a
real directory (`models.model_dir`, `models.loader`).

    python -m models.fixtures OUT_DIR [--size full|tiny] [--seed N]

"full" has the real 16 kHz hyper-parameters; "tiny" keeps the structure, vocabularies and audio
config but shrinks layer counts and widths so tests run fast.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch
import yaml

from models.hifigan import KanHifiGanGenerator
from models.model_dir import (
    CONFIGURATION_FILE,
    MODEL_TYPE,
    VOICES_FILE,
    read_audio_settings,
)
from models.sambert import KanTtsSambert, init_for_fixture
from serving.contract import AudioSettings
from serving.symbols import Vocabulary

DEFAULT_VOICES = ("zhitian_emo", "zhiyan_emo")
SIZES = ("full", "tiny")
SPEAKER_LIST = "F7"  # ttsfrd always emits speaker F7 for the zh-cn_16k voices

AUDIO_CONFIG_16K = {
    "audio_config": {
        "wav_normalize": True,
        "trim_silence": True,
        "trim_silence_threshold_db": 60,
        "preemphasize": False,
        "sampling_rate": 16000,
        "hop_length": 200,
        "win_length": 1000,
        "n_fft": 2048,
        "n_mels": 80,
        "fmin": 0.0,
        "fmax": 8000.0,
        "phone_level_feature": True,
        "norm_type": "mean_std",
        "max_norm": 1.0,
        "symmetric": False,
        "min_level_db": -100.0,
        "ref_level_db": 20,
        "num_workers": 16,
    }
}

AUDIO_16K: AudioSettings = read_audio_settings(AUDIO_CONFIG_16K, Path("audio_config.yaml"))

SAMBERT_16K = {
    "model_type": "sambert",
    "Model": {
        "KanTtsSAMBERT": {
            "params": {
                "max_len": 800,
                "embedding_dim": 512,
                "encoder_num_layers": 8,
                "encoder_num_heads": 8,
                "encoder_num_units": 128,
                "encoder_ffn_inner_dim": 1024,
                "encoder_dropout": 0.1,
                "encoder_attention_dropout": 0.1,
                "encoder_relu_dropout": 0.1,
                "encoder_projection_units": 32,
                "speaker_units": 32,
                "emotion_units": 32,
                "predictor_filter_size": 41,
                "predictor_fsmn_num_layers": 3,
                "predictor_num_memory_units": 128,
                "predictor_ffn_inner_dim": 256,
                "predictor_dropout": 0.1,
                "predictor_shift": 0,
                "predictor_lstm_units": 128,
                "dur_pred_prenet_units": [128, 128],
                "dur_pred_lstm_units": 128,
                "decoder_prenet_units": [256, 256],
                "decoder_num_layers": 12,
                "decoder_num_heads": 8,
                "decoder_num_units": 128,
                "decoder_ffn_inner_dim": 1024,
                "decoder_dropout": 0.1,
                "decoder_attention_dropout": 0.1,
                "decoder_relu_dropout": 0.1,
                "outputs_per_step": 3,
                "num_mels": 80,
                "postnet_filter_size": 41,
                "postnet_fsmn_num_layers": 4,
                "postnet_num_memory_units": 256,
                "postnet_ffn_inner_dim": 512,
                "postnet_dropout": 0.1,
                "postnet_shift": 17,
                "postnet_lstm_units": 128,
                "MAS": False,
            },
            "optimizer": {
                "type": "Adam",
                "params": {"lr": 0.001, "betas": [0.9, 0.98], "eps": 1.0e-9, "weight_decay": 0.0},
            },
            "scheduler": {"type": "NoamLR", "params": {"warmup_steps": 4000}},
        }
    },
    "linguistic_unit": {
        "cleaners": "english_cleaners",
        "lfeat_type_list": "sy,tone,syllable_flag,word_segment,emo_category,speaker_category",
        "speaker_list": SPEAKER_LIST,
    },
    "Loss": {
        "MelReconLoss": {"enable": True, "params": {"loss_type": "mae"}},
        "ProsodyReconLoss": {"enable": True, "params": {"loss_type": "mae"}},
    },
    "batch_size": 32,
    "pin_memory": False,
    "num_workers": 4,
    "remove_short_samples": False,
    "allow_cache": True,
    "grad_norm": 1.0,
    "train_max_steps": 1000000,
    "save_interval_steps": 20000,
    "eval_interval_steps": 10000,
    "log_interval_steps": 1000,
    "num_save_intermediate_results": 4,
}

_GAN_OPTIMIZER = {
    "optimizer": {"type": "Adam", "params": {"lr": 2.0e-4, "betas": [0.5, 0.9], "weight_decay": 0.0}},
    "scheduler": {"type": "MultiStepLR", "params": {"gamma": 0.5, "milestones": [200000, 400000, 600000, 800000]}},
}

HIFIGAN_16K = {
    "model_type": "hifigan",
    "Model": {
        "Generator": {
            "params": {
                "in_channels": 80,
                "out_channels": 1,
                "channels": 256,
                "kernel_size": 7,
                "upsample_scales": [10, 5, 2, 2],
                "upsample_kernal_sizes": [20, 10, 4, 4],
                "resblock_kernel_sizes": [3, 7, 11],
                "resblock_dilations": [[1, 3, 5, 7], [1, 3, 5, 7], [1, 3, 5, 7]],
                "bias": True,
                "causal": True,
                "nonlinear_activation": "LeakyReLU",
                "nonlinear_activation_params": {"negative_slope": 0.1},
                "use_weight_norm": True,
            },
            **_GAN_OPTIMIZER,
        },
        "MultiScaleDiscriminator": {
            "params": {
                "scales": 3,
                "downsample_pooling": "DWT",
                "downsample_pooling_params": {"kernel_size": 4, "stride": 2, "padding": 2},
                "discriminator_params": {
                    "in_channels": 1,
                    "out_channels": 1,
                    "kernel_sizes": [15, 41, 5, 3],
                    "channels": 128,
                    "max_downsample_channels": 1024,
                    "max_groups": 16,
                    "bias": True,
                    "downsample_scales": [4, 4, 4, 4, 1],
                    "nonlinear_activation": "LeakyReLU",
                    "nonlinear_activation_params": {"negative_slope": 0.1},
                },
                "follow_official_norm": True,
            },
            **_GAN_OPTIMIZER,
        },
        "MultiPeriodDiscriminator": {
            "params": {
                "periods": [2, 3, 5, 7, 11],
                "discriminator_params": {
                    "in_channels": 1,
                    "out_channels": 1,
                    "kernel_sizes": [5, 3],
                    "channels": 32,
                    "downsample_scales": [3, 3, 3, 3, 1],
                    "max_downsample_channels": 1024,
                    "bias": True,
                    "nonlinear_activation": "LeakyReLU",
                    "nonlinear_activation_params": {"negative_slope": 0.1},
                    "use_spectral_norm": False,
                },
            },
            **_GAN_OPTIMIZER,
        },
    },
    "Loss": {
        "generator_adv_loss": {"enable": True, "params": {"average_by_discriminators": False}, "weights": 1.0},
        "discriminator_adv_loss": {"enable": True, "params": {"average_by_discriminators": False}, "weights": 1.0},
        "stft_loss": {"enable": False},
        "mel_loss": {
            "enable": True,
            "params": {
                "fs": 16000, "fft_size": 2048, "hop_size": 200, "win_length": 1000, "window": "hann",
                "num_mels": 80, "fmin": 0, "fmax": 8000, "log_base": None,
            },
            "weights": 45.0,
        },
        "subband_stft_loss": {
            "enable": False,
            "params": {
                "fft_sizes": [384, 683, 171], "hop_sizes": [35, 75, 15], "win_lengths": [150, 300, 60],
                "window": "hann_window",
            },
        },
        "feat_match_loss": {
            "enable": True,
            "params": {"average_by_discriminators": False, "average_by_layers": False},
            "weights": 2.0,
        },
    },
    "batch_size": 16,
    "batch_max_steps": 9600,
    "pin_memory": True,
    "num_workers": 2,
    "remove_short_samples": False,
    "allow_cache": True,
    "generator_grad_norm": -1,
    "discriminator_grad_norm": -1,
    "generator_train_start_steps": 1,
    "discriminator_train_start_steps": 0,
    "train_max_steps": 2500000,
    "save_interval_steps": 20000,
    "eval_interval_steps": 10000,
    "log_interval_steps": 1000,
    "num_save_intermediate_results": 4,
}

# hifigan_noncausal_v1_16k.yaml differs from the causal one only here.
NONCAUSAL_UPSAMPLE_KERNEL_SIZES = [20, 11, 4, 4]

# "tiny": same structure, fewer layers and narrower widths. The mel size, frames per step and
# upsampling scales stay, because they are fixed by the audio config shared with the real models.
TINY_AM_PARAMS = {
    "embedding_dim": 32,
    "encoder_num_layers": 2,
    "encoder_num_heads": 2,
    "encoder_num_units": 16,
    "encoder_ffn_inner_dim": 32,
    "encoder_projection_units": 8,
    "speaker_units": 8,
    "emotion_units": 8,
    "predictor_filter_size": 9,
    "predictor_fsmn_num_layers": 2,
    "predictor_num_memory_units": 16,
    "predictor_ffn_inner_dim": 32,
    "predictor_lstm_units": 16,
    "dur_pred_prenet_units": [16, 16],
    "dur_pred_lstm_units": 16,
    "decoder_prenet_units": [32, 32],
    "decoder_num_layers": 2,
    "decoder_num_heads": 2,
    "decoder_num_units": 16,
    "decoder_ffn_inner_dim": 32,
    "postnet_filter_size": 9,
    "postnet_fsmn_num_layers": 2,
    "postnet_num_memory_units": 16,
    "postnet_ffn_inner_dim": 32,
    "postnet_shift": 3,
    "postnet_lstm_units": 16,
}
TINY_VOC_PARAMS = {
    "channels": 32,
    "resblock_kernel_sizes": [3, 5],
    "resblock_dilations": [[1, 3], [1, 3]],
}


def am_config(size: str) -> dict:
    """The am/config.yaml content of a fixture voice."""
    config = copy.deepcopy(SAMBERT_16K)
    if size == "tiny":
        config["Model"]["KanTtsSAMBERT"]["params"].update(copy.deepcopy(TINY_AM_PARAMS))
    return config


def voc_config(size: str, causal: bool) -> dict:
    """The voc/config.yaml content of a fixture voice."""
    config = copy.deepcopy(HIFIGAN_16K)
    params = config["Model"]["Generator"]["params"]
    if not causal:
        params.update(causal=False, upsample_kernal_sizes=list(NONCAUSAL_UPSAMPLE_KERNEL_SIZES))
    if size == "tiny":
        params.update(copy.deepcopy(TINY_VOC_PARAMS))
    return config


def random_am_state_dict(config: dict, vocabulary: Vocabulary, seed: int) -> dict[str, torch.Tensor]:
    """Seeded random AM weights whose durations come out a few frames per phone."""
    am = KanTtsSambert(config["Model"]["KanTtsSAMBERT"]["params"], vocabulary.sizes())
    return init_for_fixture(am, seed).state_dict()


def random_generator_state_dict(config: dict, seed: int) -> dict[str, torch.Tensor]:
    """Seeded random HiFi-GAN generator weights, with the legacy weight-norm keys of the real files."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return KanHifiGanGenerator(**config["Model"]["Generator"]["params"]).state_dict()


def make_model_dir(
    out_dir: str | Path,
    size: str = "full",
    voices: tuple[str, ...] = DEFAULT_VOICES,
    seed: int = 0,
    causal_vocoder: bool = True,
    has_mask: bool = True,
) -> Path:
    """Write a complete ModelScope sambert-hifigan model directory with seeded random weights into
    `out_dir` (created if needed, must be empty).

    Every voice gets its own weights (seeded from `seed` and its position). With `has_mask=False`
    the directory is a legacy one: configuration.json says so and every embedding table has one
    row fewer. Returns the directory.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, not {size!r}")
    if not voices:
        raise ValueError("a model directory needs at least one voice")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        # Left-over checkpoints (a higher step) would be loaded instead of the new ones.
        raise FileExistsError(f"{out} is not empty: give a new or empty directory")
    out.mkdir(parents=True, exist_ok=True)
    sample_rate = AUDIO_CONFIG_16K["audio_config"]["sampling_rate"]
    model: dict = {"type": MODEL_TYPE, "lang_type": "zhcn", "sample_rate": sample_rate}
    if not has_mask:
        model["am"] = {"linguistic_unit": {"has_mask": False}}
    configuration = {
        "framework": "pytorch",
        "task": "text-to-speech",
        "model": model,
        "pipeline": {"type": "sambert-hifigan-tts"},
    }
    _write_json(out / CONFIGURATION_FILE, configuration)
    _write_json(out / VOICES_FILE, {"voices": list(voices)})

    for index, name in enumerate(voices):
        voice_dir = out / "voices" / name
        am = am_config(size)
        voc = voc_config(size, causal_vocoder)
        _write_yaml(voice_dir / "audio_config.yaml", AUDIO_CONFIG_16K)
        _write_yaml(voice_dir / "am" / "config.yaml", am)
        _write_yaml(voice_dir / "voc" / "config.yaml", voc)
        voice_seed = seed * 1000 + index
        vocabulary = Vocabulary.from_am_config(am, has_mask)
        # KAN-TTS's trainer saves {"model": ..., "optimizer": ..., "scheduler": ..., "steps": ...};
        # the optimizer and scheduler states are left out to keep fixtures small.
        save_checkpoint(
            voice_dir / "am" / "ckpt" / "checkpoint_0.pth", random_am_state_dict(am, vocabulary, voice_seed)
        )
        save_checkpoint(
            voice_dir / "voc" / "ckpt" / "checkpoint_0.pth", {"generator": random_generator_state_dict(voc, voice_seed)}
        )
    return out


def save_checkpoint(path: Path, model: dict, steps: int = 0) -> None:
    """Save `model` as KAN-TTS's trainer does: under the "model" key of the checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "steps": steps}, path)


def _write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=4) + "\n", encoding="utf-8")


class _KanTtsYamlDumper(yaml.SafeDumper):
    """Block mappings with inline lists, the way KAN-TTS's config files are written."""


_KanTtsYamlDumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def _write_yaml(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.dump(content, Dumper=_KanTtsYamlDumper, sort_keys=False), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m models.fixtures",
        description="Write a random-weight ModelScope sambert-hifigan model directory.",
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noncausal-vocoder", action="store_true", help="use hifigan_noncausal_v1_16k's generator")
    parser.add_argument("--no-mask", action="store_true", help="a legacy has_mask=false directory")
    args = parser.parse_args(argv)
    try:
        out = make_model_dir(
            args.out_dir, size=args.size, seed=args.seed,
            causal_vocoder=not args.noncausal_vocoder, has_mask=not args.no_mask,
        )
    except FileExistsError as e:
        parser.error(str(e))
    print(f"wrote a {args.size} sambert-hifigan model directory to {out.resolve()}")


if __name__ == "__main__":
    main()
