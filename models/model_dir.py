"""A ModelScope Sambert-HifiGan model directory, read exactly as ModelScope lays it out.

```
<model_dir>/configuration.json                  model.type "sambert-hifigan"; model.am.linguistic_unit.has_mask
<model_dir>/voices/voices.json                  {"voices": [...]}, the first one is the default voice
<model_dir>/voices/<voice>/audio_config.yaml    KAN-TTS audio_config (sampling rate, hop, mel bins)
<model_dir>/voices/<voice>/am/config.yaml       KAN-TTS sambert config
<model_dir>/voices/<voice>/am/ckpt/checkpoint_<step>.pth
<model_dir>/voices/<voice>/voc/config.yaml      KAN-TTS hifigan config
<model_dir>/voices/<voice>/voc/ckpt/checkpoint_<step>.pth
```

Only configs are parsed here (no torch: the Triton python backend imports this module);
`models.loader` turns a `Voice` into networks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from serving.contract import AudioSettings
from serving.symbols import Vocabulary

MODEL_TYPE = "sambert-hifigan"
CONFIGURATION_FILE = "configuration.json"
VOICES_FILE = Path("voices") / "voices.json"
DOWNLOAD_HINT = "point at the downloaded iic/speech_sambert-hifigan_tts_zh-cn_16k model directory"
SUPPORTED_LANGUAGE = "PinYin"  # the only phone set serving.symbols knows


class ModelDirError(ValueError):
    """The model directory is not a usable ModelScope sambert-hifigan directory (one-line message)."""


@dataclass(frozen=True)
class Voice:
    """One voice of a model directory: its configs, the chosen checkpoints and its vocabulary."""

    name: str
    path: Path
    am_config: dict
    voc_config: dict
    audio: AudioSettings
    am_checkpoint: Path
    voc_checkpoint: Path
    vocabulary: Vocabulary
    has_mask: bool

    @property
    def am_params(self) -> dict:
        """`Model.KanTtsSAMBERT.params` of am/config.yaml (the network hyper-parameters)."""
        return self.am_config["Model"]["KanTtsSAMBERT"]["params"]

    @property
    def voc_params(self) -> dict:
        """`Model.Generator.params` of voc/config.yaml (the HiFi-GAN generator hyper-parameters)."""
        return self.voc_config["Model"]["Generator"]["params"]


class ModelDir:
    """A validated ModelScope sambert-hifigan model directory.

    Construction checks configuration.json and voices/voices.json; `voice()` reads and checks one
    voice, `voices()` all of them.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise ModelDirError(f"model directory {self.path} does not exist: {DOWNLOAD_HINT}")
        if not self.path.is_dir():
            raise ModelDirError(f"{self.path} is not a directory: {DOWNLOAD_HINT}")
        configuration = _read_json(self.path / CONFIGURATION_FILE)
        model = configuration.get("model") if isinstance(configuration, dict) else None
        model_type = model.get("type") if isinstance(model, dict) else None
        if model_type != MODEL_TYPE:
            raise ModelDirError(
                f"{self.path / CONFIGURATION_FILE} has model.type {model_type!r}, not {MODEL_TYPE!r}: "
                f"this is not a ModelScope sambert-hifigan model; {DOWNLOAD_HINT}"
            )
        # Legacy flag: checkpoints trained without the "@[MASK]" symbol have one row fewer per table.
        has_mask = _lookup(model, ("am", "linguistic_unit", "has_mask"))
        if has_mask is not None and not isinstance(has_mask, bool):
            raise ModelDirError(
                f"{self.path / CONFIGURATION_FILE} model.am.linguistic_unit.has_mask is {has_mask!r}: "
                "it must be true or false"
            )
        self.has_mask: bool = True if has_mask is None else has_mask
        voices = _read_json(self.path / VOICES_FILE)
        names = voices.get("voices") if isinstance(voices, dict) else None
        if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
            raise ModelDirError(
                f"{self.path / VOICES_FILE} must hold {{\"voices\": [<voice name>, ...]}} with at least one name: "
                "restore the file from the model download"
            )
        self.voice_names: list[str] = names

    @property
    def default_voice(self) -> str:
        return self.voice_names[0]

    def voice(self, name: str | None = None) -> Voice:
        """The voice called `name` (the default voice when None), with its configs checked."""
        name = self.default_voice if name is None else name
        if name not in self.voice_names:
            raise ModelDirError(
                f"unknown voice {name!r}: this model has {', '.join(self.voice_names)}; pick one of those"
            )
        voice_path = self.path / "voices" / name
        if not voice_path.is_dir():
            raise ModelDirError(
                f"voice {name!r} is listed in {VOICES_FILE} but {voice_path} is missing: download the model again"
            )
        audio_path = voice_path / "audio_config.yaml"
        am_path = voice_path / "am" / "config.yaml"
        voc_path = voice_path / "voc" / "config.yaml"
        audio = read_audio_settings(_read_yaml(audio_path), audio_path)
        am_config = _read_yaml(am_path)
        voc_config = _read_yaml(voc_path)
        am_params = _section(am_config, ("Model", "KanTtsSAMBERT", "params"), am_path)
        voc_params = _section(voc_config, ("Model", "Generator", "params"), voc_path)
        _check_language(am_config, am_path)
        _check_audio_agrees(audio, am_params, voc_params, audio_path, am_path, voc_path)
        try:
            vocabulary = Vocabulary.from_am_config(am_config, self.has_mask)
        except KeyError:
            raise ModelDirError(
                f"{am_path} has no linguistic_unit.speaker_list: restore the file from the model download"
            ) from None
        return Voice(
            name=name,
            path=voice_path,
            am_config=am_config,
            voc_config=voc_config,
            audio=audio,
            am_checkpoint=latest_checkpoint(voice_path / "am" / "ckpt"),
            voc_checkpoint=latest_checkpoint(voice_path / "voc" / "ckpt"),
            vocabulary=vocabulary,
            has_mask=self.has_mask,
        )

    def voices(self) -> list[Voice]:
        """Every voice of voices.json, in its order (the whole directory checked)."""
        return [self.voice(name) for name in self.voice_names]


# audio_config.yaml key -> (AudioSettings field, type)
AUDIO_CONFIG_KEYS = {"sampling_rate": ("sample_rate", int), "hop_length": ("hop_length", int),
                     "win_length": ("win_length", int), "n_fft": ("n_fft", int), "n_mels": ("n_mels", int),
                     "fmin": ("fmin", float), "fmax": ("fmax", float)}


def read_audio_settings(config: dict, path: Path) -> AudioSettings:
    """The `audio_config` section of a voice's audio_config.yaml (the mel front end both networks share)."""
    section = config.get("audio_config") if isinstance(config, dict) else None
    if not isinstance(section, dict):
        raise ModelDirError(f"{path} has no 'audio_config' section: restore the file from the model download")
    values = {}
    for key, (name, kind) in AUDIO_CONFIG_KEYS.items():
        if key not in section:
            raise ModelDirError(f"{path} has no audio_config.{key}: restore the file from the model download")
        values[name] = kind(section[key])
    return AudioSettings(**values)


def latest_checkpoint(ckpt_dir: Path) -> Path:
    """The checkpoint ModelScope's `Voice.scan_ckpt` picks: the highest step among `checkpoint*.pth`.

    As in ModelScope, names of 15 characters or fewer are skipped and the step is the integer after
    the last "_" of the name cut at its first ".".
    """
    if not ckpt_dir.is_dir():
        raise ModelDirError(f"checkpoint directory {ckpt_dir} is missing: download the model again")
    steps: dict[int, Path] = {}
    for path in sorted(ckpt_dir.iterdir()):
        name = path.name
        if len(name) <= 15 or not (name.startswith("checkpoint") and name.endswith(".pth")):
            continue
        step = name.split(".")[0].split("_")[-1]
        if not step.isdigit():
            raise ModelDirError(
                f"cannot read a training step from {path} (ModelScope expects checkpoint_<step>.pth): "
                "rename or remove that file"
            )
        steps[int(step)] = path
    if not steps:
        raise ModelDirError(f"no checkpoint_<step>.pth file in {ckpt_dir}: download the model again")
    return steps[max(steps)]


def _check_language(am_config: dict, am_path: Path) -> None:
    """serving.symbols holds the Mandarin (PinYin) phone set only; other KAN-TTS languages have other symbols."""
    language = _lookup(am_config, ("linguistic_unit", "language")) or SUPPORTED_LANGUAGE
    if language != SUPPORTED_LANGUAGE:
        raise ModelDirError(
            f"{am_path} uses linguistic_unit.language {language!r}; only {SUPPORTED_LANGUAGE!r} "
            "(Mandarin) voices are supported"
        )


def _check_audio_agrees(audio: AudioSettings, am_params: dict, voc_params: dict,
                        audio_path: Path, am_path: Path, voc_path: Path) -> None:
    """The AM's mel frames must be the vocoder's input frames: same mel bins, vocoder hop = audio hop."""
    for key, params, path in (("num_mels", am_params, am_path), ("in_channels", voc_params, voc_path),
                              ("upsample_scales", voc_params, voc_path)):
        if key not in params:
            raise ModelDirError(f"{path} has no {key} in its model params: restore the file from the model download")
    if am_params["num_mels"] != audio.n_mels:
        raise ModelDirError(
            f"{am_path} num_mels {am_params['num_mels']} differs from n_mels {audio.n_mels} in {audio_path}: "
            "the acoustic model and audio config are from different models (NSF voices are not supported)"
        )
    if voc_params["in_channels"] != audio.n_mels:
        raise ModelDirError(
            f"{voc_path} in_channels {voc_params['in_channels']} differs from n_mels {audio.n_mels} in "
            f"{audio_path}: the vocoder and audio config are from different models"
        )
    upsampling = math.prod(voc_params["upsample_scales"])
    if upsampling != audio.hop_length:
        raise ModelDirError(
            f"{voc_path} upsample_scales {voc_params['upsample_scales']} multiply to {upsampling}, not the "
            f"hop_length {audio.hop_length} of {audio_path}: the vocoder and audio config are from different models"
        )


def _read_json(path: Path) -> object:
    if not path.is_file():
        raise ModelDirError(f"{path} is missing, so this is not a ModelScope sambert-hifigan directory: {DOWNLOAD_HINT}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelDirError(f"{path} is not valid JSON ({e}): restore the file from the model download") from None


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ModelDirError(f"{path} is missing: download the model again")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        reason = " ".join(str(e).split())
        raise ModelDirError(f"{path} is not valid YAML ({reason}): restore the file from the model download") from None
    if not isinstance(config, dict):
        raise ModelDirError(f"{path} does not hold a YAML mapping: restore the file from the model download")
    return config


def _lookup(node: object, keys: tuple[str, ...]) -> object:
    """The value at a nested key path of parsed JSON/YAML, or None where any level is absent."""
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _section(config: dict, keys: tuple[str, ...], path: Path) -> dict:
    node = _lookup(config, keys)
    if not isinstance(node, dict):
        raise ModelDirError(f"{path} has no {'.'.join(keys)} section: restore the file from the model download")
    return node
