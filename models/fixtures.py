"""Random-weight model directories in exactly the layout of ModelScope's Sambert-HifiGan downloads.

No model can be downloaded here, so tests build directories with the same files, the same config
sections (as KAN-TTS's configs write them, parts the loader ignores included) and checkpoints shaped
like KAN-TTS's trainers save them, then load them through the same code as a real directory
(`models.model_dir`, `models.loader`). One per family (FAMILIES; the KAN-TTS configs each is made of):

    emo16k       speech_sambert-hifigan_tts_zh-cn_16k: audio_config_16k, sambert_16k, hifigan_v1_16k
    multisp24k   speech_sambert-hifigan_tts_zh-cn_multisp_pretrain_24k: audio_config_24k, sambert_24k, hifigan_v1_24k
    nsf24k       audio_config_24k, sambert_nsf_24k, hifigan_v1_nsf_24k (+ am/mvn.npy)
    nsf16k       audio_config_16k, sambert_nsf_16k, hifigan_noncausal_nsf_v1_16k (+ am/mvn.npy)
    personal16k  speech_personal_sambert-hifigan_nsf_tts_zh-cn_pretrain_16k: audio_config_se_16k,
                 sambert_se_nsf_global_16k, hifigan_noncausal_nsf_global_v1_16k (+ am/se.npy)

and, with --work-dir, the work directory of a personal-voice fine-tuning run of personal16k.

    python -m models.fixtures OUT_DIR [--family F] [--size full|tiny] [--seed N] [--work-dir]

"full" has the real hyper-parameters; "tiny" keeps the structure, vocabularies and audio config but
shrinks layer counts and widths so tests run fast.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from models.hifigan import KanHifiGanGenerator
from models.model_dir import (
    CONFIGURATION_FILE,
    MODEL_TYPE,
    VOICES_FILE,
    WORK_AM,
    WORK_AUDIO_CONFIG,
    WORK_MODEL_DIR,
    WORK_SPEAKER_EMBEDDING,
    WORK_VOCODER,
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

# The 24 kHz configs differ from the 16 kHz ones only here (audio_config_24k.yaml, hifigan_v1_24k.yaml;
# sambert_24k.yaml is sambert_16k.yaml).
AUDIO_24K_CHANGES = {"sampling_rate": 24000, "hop_length": 240, "win_length": 1024, "n_fft": 1024, "fmin": 50.0}
HIFIGAN_24K_CHANGES = {
    "channels": 512,
    "upsample_scales": [8, 5, 3, 2],
    "upsample_kernal_sizes": [16, 10, 6, 4],
    "resblock_dilations": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
}
MEL_LOSS_24K_CHANGES = {"fs": 24000, "fft_size": 1024, "hop_size": 240, "win_length": 1024}
NSF_HARMONICS = 7  # nsf_params.nb_harmonics of every KAN-TTS NSF vocoder config
# am/mvn.npy of a mean_std NSF voice: f0 mean and std in Hz, float64 [2, 1] (the real values are the
# training corpus's; these are a typical voice's).
FIXTURE_F0_MEAN_STD = (200.0, 50.0)
# The speaker list of KAN-TTS's sambert_nsf_16k.yaml, the one six-speaker list ModelScope's docs show.
SIX_SPEAKERS = "F7,F74,FBYN,FRXL,M7,xiaoyu"
WORK_DIR_STEPS = (2400000, 2400200)  # checkpoint steps in a fixture work dir: the pretrain's and the fine-tuned


@dataclass(frozen=True)
class Family:
    """How a family's KAN-TTS configs differ from the 16 kHz emotional voices' ones."""

    audio: dict = field(default_factory=dict)  # audio_config changes
    am: dict = field(default_factory=dict)  # Model.KanTtsSAMBERT.params changes
    voc: dict = field(default_factory=dict)  # Model.Generator.params changes
    mel_loss: dict = field(default_factory=dict)  # the vocoder config's Loss.mel_loss.params changes
    speaker_list: str = SPEAKER_LIST
    voices: tuple[str, ...] = ("F7",)


FAMILIES = {
    "emo16k": Family(voices=DEFAULT_VOICES),
    "multisp24k": Family(audio=AUDIO_24K_CHANGES, voc=HIFIGAN_24K_CHANGES, mel_loss=MEL_LOSS_24K_CHANGES,
                         speaker_list=SIX_SPEAKERS),
    "nsf24k": Family(audio=AUDIO_24K_CHANGES, am={"num_mels": 82, "NSF": True},
                     voc={**HIFIGAN_24K_CHANGES, "nsf_params": {"nb_harmonics": NSF_HARMONICS, "sampling_rate": 24000}},
                     mel_loss=MEL_LOSS_24K_CHANGES),
    "nsf16k": Family(am={"num_mels": 82, "NSF": True},
                     voc={"causal": False, "upsample_kernal_sizes": NONCAUSAL_UPSAMPLE_KERNEL_SIZES,
                          "nsf_params": {"nb_harmonics": NSF_HARMONICS, "sampling_rate": 16000}},
                     speaker_list=SIX_SPEAKERS),
    "personal16k": Family(audio={"se_feature": True},
                          am={"num_mels": 82, "NSF": True, "SE": True, "speaker_units": 192, "nsf_norm_type": "global",
                              "nsf_f0_global_minimum": 30.0, "nsf_f0_global_maximum": 730.0},
                          voc={"causal": False, "upsample_kernal_sizes": NONCAUSAL_UPSAMPLE_KERNEL_SIZES,
                               "nsf_params": {"nb_harmonics": NSF_HARMONICS, "sampling_rate": 16000,
                                              "nsf_norm_type": "global", "nsf_f0_global_minimum": 30.0,
                                              "nsf_f0_global_maximum": 730.0}}),
}

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


def _family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {name!r}")
    return FAMILIES[name]


def audio_config(family: str = "emo16k") -> dict:
    """The audio_config.yaml content of a family's voices."""
    config = copy.deepcopy(AUDIO_CONFIG_16K)
    config["audio_config"].update(_family(family).audio)
    return config


def am_config(size: str, family: str = "emo16k", speaker_list: str | None = None) -> dict:
    """The am/config.yaml content of a fixture voice."""
    config = copy.deepcopy(SAMBERT_16K)
    spec = _family(family)
    params = config["Model"]["KanTtsSAMBERT"]["params"]
    params.update(copy.deepcopy(spec.am))
    if size == "tiny":
        # A speaker embedding's width is fixed by se.npy, not a layer width.
        params.update({k: v for k, v in TINY_AM_PARAMS.items() if not (k == "speaker_units" and params.get("SE"))})
    config["linguistic_unit"]["speaker_list"] = speaker_list or spec.speaker_list
    return config


def voc_config(size: str, causal: bool | None = None, family: str = "emo16k") -> dict:
    """The voc/config.yaml content of a fixture voice (causal False: emo16k with hifigan_noncausal_v1_16k)."""
    config = copy.deepcopy(HIFIGAN_16K)
    spec = _family(family)
    params = config["Model"]["Generator"]["params"]
    params.update(copy.deepcopy(spec.voc))
    config["Loss"]["mel_loss"]["params"].update(spec.mel_loss)
    if causal is False and params["causal"]:
        params.update(causal=False, upsample_kernal_sizes=list(NONCAUSAL_UPSAMPLE_KERNEL_SIZES))
    if size == "tiny":
        params.update(copy.deepcopy(TINY_VOC_PARAMS))
    return config


def random_am_state_dict(config: dict, vocabulary: Vocabulary, seed: int,
                         speaker_embedding: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """Seeded random AM weights whose durations come out a few frames per phone (an SE voice's: with its
    speaker embedding)."""
    am = KanTtsSambert(config["Model"]["KanTtsSAMBERT"]["params"], vocabulary.sizes())
    if speaker_embedding is not None:
        am.set_speaker_embedding(torch.from_numpy(speaker_embedding[0]))
    return init_for_fixture(am, seed).state_dict()


def random_generator_state_dict(config: dict, seed: int) -> dict[str, torch.Tensor]:
    """Seeded random HiFi-GAN generator weights, with the legacy weight-norm keys of the real files."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return KanHifiGanGenerator(**config["Model"]["Generator"]["params"]).state_dict()


def random_speaker_embedding(units: int, seed: int) -> np.ndarray:
    """A personal voice's se.npy: float32 [1, units], as KAN-TTS's speaker-embedding extractor writes it."""
    return np.random.default_rng(seed).standard_normal((1, units)).astype(np.float32)


def make_model_dir(
    out_dir: str | Path,
    size: str = "full",
    voices: tuple[str, ...] | None = None,
    seed: int = 0,
    causal_vocoder: bool = True,
    has_mask: bool = True,
    family: str = "emo16k",
    speaker_list: str | None = None,
) -> Path:
    """Write a complete ModelScope sambert-hifigan model directory of `family` with seeded random weights
    into `out_dir` (created if needed, must be empty).

    Every voice gets its own weights (seeded from `seed` and its position); voices default to the
    family's. With `has_mask=False` the directory is a legacy one: configuration.json says so and every
    embedding table has one row fewer. `causal_vocoder=False` gives emo16k the non-causal vocoder.
    Returns the directory.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, not {size!r}")
    voices = _family(family).voices if voices is None else voices
    if not voices:
        raise ValueError("a model directory needs at least one voice")
    out = _empty_dir(out_dir)
    audio = audio_config(family)
    model: dict = {"type": MODEL_TYPE, "lang_type": "zhcn", "sample_rate": audio["audio_config"]["sampling_rate"]}
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
    _write_resource_zip(out / "resource.zip")

    for index, name in enumerate(voices):
        voice_dir = out / "voices" / name
        am = am_config(size, family, speaker_list)
        voc = voc_config(size, causal_vocoder, family)
        _write_yaml(voice_dir / "audio_config.yaml", audio)
        _write_yaml(voice_dir / "am" / "config.yaml", am)
        _write_yaml(voice_dir / "voc" / "config.yaml", voc)
        _write_voice_files(voice_dir / "am", voice_dir / "am" / "ckpt" / "checkpoint_0.pth",
                           voice_dir / "voc" / "ckpt" / "checkpoint_0.pth", am, voc, has_mask, seed * 1000 + index)
    return out


def make_work_dir(out_dir: str | Path, size: str = "full", seed: int = 0) -> Path:
    """Write the work directory of a personal-voice fine-tuning run (ModelScope's KanttsTrainer) into
    `out_dir` (created if needed, must be empty): the pretrained personal16k model in orig_model/ with
    its vocoder under basemodel_16k/, the fine-tuned acoustic model in tmp_am/ (a pretrain checkpoint
    and a later, different one: the later is the voice), the run's audio config and speaker embedding in
    data/. Returns the directory."""
    out = _empty_dir(out_dir)
    model_dir = make_model_dir(out / WORK_MODEL_DIR, size, seed=seed, family="personal16k")
    pretrained, tuned = WORK_DIR_STEPS
    voice_dir = model_dir / "voices" / FAMILIES["personal16k"].voices[0]
    vocoder = out / WORK_VOCODER
    (vocoder / "ckpt").mkdir(parents=True)
    (vocoder / "config.yaml").write_bytes((voice_dir / "voc" / "config.yaml").read_bytes())
    (vocoder / "ckpt" / f"checkpoint_{pretrained}.pth").write_bytes(
        (voice_dir / "voc" / "ckpt" / "checkpoint_0.pth").read_bytes())
    # ModelScope's train_sambert writes the stage's config.yaml: the audio config updated with the am config.
    am = am_config(size, "personal16k")
    _write_yaml(out / WORK_AM / "config.yaml", {**audio_config("personal16k"), **am})
    (out / WORK_AM / "ckpt").mkdir(parents=True)
    (out / WORK_AM / "ckpt" / f"checkpoint_{pretrained}.pth").write_bytes(
        (voice_dir / "am" / "ckpt" / "checkpoint_0.pth").read_bytes())
    _write_yaml(out / WORK_AUDIO_CONFIG, audio_config("personal16k"))
    _write_voice_files(out / WORK_SPEAKER_EMBEDDING.parent, out / WORK_AM / "ckpt" / f"checkpoint_{tuned}.pth",
                       None, am, None, True, seed * 1000 + 999, steps=tuned)
    (out / "tmp_voc").mkdir()
    return out


def _write_voice_files(am_dir: Path, am_checkpoint: Path, voc_checkpoint: Path | None, am: dict, voc: dict | None,
                       has_mask: bool, seed: int, steps: int = 0) -> None:
    """A voice's checkpoints and, by its am config, se.npy (SE) and mvn.npy (NSF with mean_std) into am_dir."""
    params = am["Model"]["KanTtsSAMBERT"]["params"]
    embedding = None
    if params.get("SE", False):
        embedding = random_speaker_embedding(params["speaker_units"], seed)
        am_dir.mkdir(parents=True, exist_ok=True)
        np.save(am_dir / "se.npy", embedding)
    if params.get("NSF", False) and params.get("nsf_norm_type", "mean_std") == "mean_std":
        am_dir.mkdir(parents=True, exist_ok=True)
        np.save(am_dir / "mvn.npy", np.array([[FIXTURE_F0_MEAN_STD[0]], [FIXTURE_F0_MEAN_STD[1]]], dtype=np.float64))
    vocabulary = Vocabulary.from_am_config(am, has_mask)
    # KAN-TTS's trainer saves {"model": ..., "optimizer": ..., "scheduler": ..., "steps": ...};
    # the optimizer and scheduler states are left out to keep fixtures small.
    save_checkpoint(am_checkpoint, random_am_state_dict(am, vocabulary, seed, embedding), steps)
    if voc_checkpoint is not None:
        save_checkpoint(voc_checkpoint, {"generator": random_generator_state_dict(voc, seed)}, steps)


def save_checkpoint(path: Path, model: dict, steps: int = 0) -> None:
    """Save `model` as KAN-TTS's trainer does: under the "model" key of the checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "steps": steps}, path)


def _empty_dir(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        # Left-over checkpoints (a higher step) would be loaded instead of the new ones.
        raise FileExistsError(f"{out} is not empty: give a new or empty directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=4) + "\n", encoding="utf-8")


def _write_resource_zip(path: Path) -> None:
    """ModelScope unpacks resource.zip (ttsfrd's data) at load time; our front end needs none of it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("resource/README.txt", "fixture: a real download has ttsfrd's front-end data here\n")
    path.write_bytes(buffer.getvalue())


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
    parser.add_argument("--family", choices=list(FAMILIES), default="emo16k")
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speaker-list", help="linguistic_unit.speaker_list (default: the family's)")
    parser.add_argument("--noncausal-vocoder", action="store_true", help="emo16k with hifigan_noncausal_v1_16k's generator")
    parser.add_argument("--no-mask", action="store_true", help="a legacy has_mask=false directory")
    parser.add_argument("--work-dir", action="store_true",
                        help="the work directory of a personal-voice fine-tuning run (personal16k) instead")
    args = parser.parse_args(argv)
    try:
        if args.work_dir:
            out = make_work_dir(args.out_dir, size=args.size, seed=args.seed)
        else:
            out = make_model_dir(
                args.out_dir, size=args.size, seed=args.seed, family=args.family, speaker_list=args.speaker_list,
                causal_vocoder=not args.noncausal_vocoder, has_mask=not args.no_mask,
            )
    except FileExistsError as e:
        parser.error(str(e))
    kind = "personal-voice work directory" if args.work_dir else f"{args.family} sambert-hifigan model directory"
    print(f"wrote a {args.size} {kind} to {out.resolve()}")


if __name__ == "__main__":
    main()
