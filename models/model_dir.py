"""A ModelScope Sambert-HifiGan model directory, read exactly as ModelScope lays it out.

The layout of a download (every family: the 16 kHz emotional voices, the 24 kHz multi-speaker
pretrain, the NSF voices, the personal-voice pretrain):

```
<model_dir>/configuration.json                  model.type "sambert-hifigan"; model.sample_rate (the WAV
                                                rate, 16000 when absent); model.am.linguistic_unit.has_mask
<model_dir>/voices/voices.json                  {"voices": [...]}, the first one is the default voice
<model_dir>/voices/<voice>/audio_config.yaml    KAN-TTS audio_config (sampling rate, hop, mel bins)
<model_dir>/voices/<voice>/am/config.yaml       KAN-TTS sambert config
<model_dir>/voices/<voice>/am/ckpt/checkpoint_<step>.pth
<model_dir>/voices/<voice>/am/mvn.npy           NSF voices with nsf_norm_type mean_std: f0 mean and std
<model_dir>/voices/<voice>/am/se.npy            personal (SE) voices: the speaker embedding (1, 192)
<model_dir>/voices/<voice>/voc/config.yaml      KAN-TTS hifigan config
<model_dir>/voices/<voice>/voc/ckpt/checkpoint_<step>.pth
```

and the work directory of a personal-voice fine-tuning run (ModelScope's KanttsTrainer), served as
ModelScope's personal-TTS recipe serves it (its `custom_ckpt` paths), as one voice named after the
directory:

```
<work_dir>/tmp_am/config.yaml, tmp_am/ckpt/checkpoint_<step>.pth     the fine-tuned acoustic model
<work_dir>/orig_model/basemodel_16k/hifigan/{config.yaml, ckpt/}     the pretrained vocoder
<work_dir>/data/audio_config.yaml, data/se/se.npy                    audio config, speaker embedding
<work_dir>/orig_model/                                               the pretrained model directory
```

ModelScope builds a work directory's voice without reading configuration.json: its WAV rate is 16000
and has_mask true. Only configs are parsed here (no torch: the Triton python backend imports this
module); `models.loader` turns a `Voice` into networks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from serving.contract import AudioSettings, F0Norm
from serving.symbols import Vocabulary

MODEL_TYPE = "sambert-hifigan"
CONFIGURATION_FILE = "configuration.json"
VOICES_FILE = Path("voices") / "voices.json"
DOWNLOAD_HINT = "point at a downloaded ModelScope Sambert-HifiGan model directory (e.g. iic/speech_sambert-hifigan_tts_zh-cn_16k)"
SUPPORTED_LANGUAGE = "PinYin"  # the only phone set serving.symbols knows
DEFAULT_WAV_RATE = 16000  # ModelScope's SambertHifigan sample_rate when configuration.json has none
# KAN-TTS languages with their own phone sets, and the ModelScope voices that use them.
OTHER_LANGUAGES = {
    "Sichuan": "Sichuanese dialect (speech_sambert-hifigan_tts_chuangirl_Sichuan_16k)",
    "ZhHK": "Cantonese (speech_sambert-hifigan_tts_jiajia_Cantonese_16k)",
    "WuuShanghai": "Shanghainese (speech_sambert-hifigan_tts_xiaoda_WuuShanghai_16k)",
    "WuuShangHai": "Shanghainese (speech_sambert-hifigan_tts_xiaoda_WuuShanghai_16k)",
    "EnGB": "British English (speech_sambert-hifigan_tts_*_en-gb_16k)",
    "EnUS": "American English (speech_sambert-hifigan_tts_*_en-us_16k, speech_sambert-hifigan_nsf_tts_cally_en-us_24k)",
}
# ModelScope's f0 de-normalisation defaults (voice.py), used where the am config leaves them out.
DEFAULT_NSF_NORM = "mean_std"
DEFAULT_F0_RANGE = (30.0, 730.0)

# A fine-tuning work directory (ModelScope's personal-TTS recipe): where its voice's files are.
WORK_AM = Path("tmp_am")
WORK_VOCODER = Path("orig_model") / "basemodel_16k" / "hifigan"
WORK_AUDIO_CONFIG = Path("data") / "audio_config.yaml"
WORK_SPEAKER_EMBEDDING = Path("data") / "se" / "se.npy"
WORK_MODEL_DIR = Path("orig_model")


class ModelDirError(ValueError):
    """The model directory is not a usable ModelScope sambert-hifigan directory (one-line message)."""


@dataclass(frozen=True)
class VoicePaths:
    """Where one voice's files are (the voices/ layout or a work directory's)."""

    audio_config: Path
    am_config: Path
    am_checkpoints: Path
    voc_config: Path
    voc_checkpoints: Path
    mvn: Path  # f0 mean and std (NSF voices with nsf_norm_type mean_std)
    speaker_embedding: Path  # se.npy (SE voices)

    @classmethod
    def of_voice(cls, voice_dir: Path) -> "VoicePaths":
        return cls(voice_dir / "audio_config.yaml", voice_dir / "am" / "config.yaml", voice_dir / "am" / "ckpt",
                   voice_dir / "voc" / "config.yaml", voice_dir / "voc" / "ckpt", voice_dir / "am" / "mvn.npy",
                   voice_dir / "am" / "se.npy")

    @classmethod
    def of_work_dir(cls, work_dir: Path) -> "VoicePaths":
        # ModelScope's custom_ckpt: mvn_file defaults to mvn.npy in the model directory it is given.
        return cls(work_dir / WORK_AUDIO_CONFIG, work_dir / WORK_AM / "config.yaml", work_dir / WORK_AM / "ckpt",
                   work_dir / WORK_VOCODER / "config.yaml", work_dir / WORK_VOCODER / "ckpt",
                   work_dir / WORK_MODEL_DIR / "mvn.npy", work_dir / WORK_SPEAKER_EMBEDDING)


@dataclass(frozen=True)
class Voice:
    """One voice of a model directory: its configs, the chosen checkpoints and its vocabulary."""

    name: str
    path: Path  # the voice's folder (a work directory's root)
    paths: VoicePaths
    am_config: dict
    voc_config: dict
    audio: AudioSettings  # sample_rate: the WAV rate, equal to the audio config's (checked)
    am_checkpoint: Path
    voc_checkpoint: Path
    vocabulary: Vocabulary
    has_mask: bool
    f0_norm: F0Norm | None  # NSF voices: how the acoustic model's f0 output turns into Hz

    @property
    def am_params(self) -> dict:
        """`Model.KanTtsSAMBERT.params` of am/config.yaml (the network hyper-parameters)."""
        return self.am_config["Model"]["KanTtsSAMBERT"]["params"]

    @property
    def voc_params(self) -> dict:
        """`Model.Generator.params` of voc/config.yaml (the HiFi-GAN generator hyper-parameters)."""
        return self.voc_config["Model"]["Generator"]["params"]

    @property
    def nsf(self) -> bool:
        return self.f0_norm is not None

    @property
    def speaker_embedding(self) -> bool:
        """A personal voice: a speaker embedding (se.npy) instead of a speaker table."""
        return bool(self.am_params.get("SE", False))


class ModelDir:
    """A validated ModelScope sambert-hifigan model directory, or a personal-voice fine-tuning work directory.

    Construction checks configuration.json and voices/voices.json (a work directory: its tmp_am and
    orig_model folders); `voice()` reads and checks one voice, `voices()` all of them.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise ModelDirError(f"model directory {self.path} does not exist: {DOWNLOAD_HINT}")
        if not self.path.is_dir():
            raise ModelDirError(f"{self.path} is not a directory: {DOWNLOAD_HINT}")
        self.work_dir = (self.path / WORK_AM).is_dir()
        if self.work_dir:
            if not (self.path / WORK_MODEL_DIR / CONFIGURATION_FILE).is_file():
                raise ModelDirError(
                    f"{self.path} has {WORK_AM}/ but no {WORK_MODEL_DIR / CONFIGURATION_FILE}, so it is not the work "
                    "directory of a ModelScope personal-voice fine-tuning run: give the run's work_dir"
                )
            # ModelScope serves a work directory's voice (custom_ckpt) without reading configuration.json.
            self.wav_rate, self.wav_rate_source, self.has_mask = DEFAULT_WAV_RATE, "", True
            self.voice_names: list[str] = [self.path.resolve().name]
            return
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
        # ModelScope writes its WAV header with this rate, whatever the voice's audio config says.
        wav_rate = model.get("sample_rate", DEFAULT_WAV_RATE)
        if not (isinstance(wav_rate, int) and not isinstance(wav_rate, bool) and wav_rate > 0):
            raise ModelDirError(f"{self.path / CONFIGURATION_FILE} model.sample_rate is {wav_rate!r}: it must be "
                                "a positive whole number of samples per second")
        self.wav_rate: int = wav_rate
        self.wav_rate_source = f"{self.path / CONFIGURATION_FILE} model.sample_rate" + (
            "" if "sample_rate" in model else f" (absent, so ModelScope's default {DEFAULT_WAV_RATE})")
        voices = _read_json(self.path / VOICES_FILE)
        names = voices.get("voices") if isinstance(voices, dict) else None
        if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
            raise ModelDirError(
                f"{self.path / VOICES_FILE} must hold {{\"voices\": [<voice name>, ...]}} with at least one name: "
                "restore the file from the model download"
            )
        self.voice_names = names

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
        if self.work_dir:
            return self._read_voice(name, self.path, VoicePaths.of_work_dir(self.path))
        voice_path = self.path / "voices" / name
        if not voice_path.is_dir():
            raise ModelDirError(
                f"voice {name!r} is listed in {VOICES_FILE} but {voice_path} is missing: download the model again"
            )
        return self._read_voice(name, voice_path, VoicePaths.of_voice(voice_path))

    def _read_voice(self, name: str, voice_path: Path, paths: VoicePaths) -> Voice:
        audio = read_audio_settings(_read_yaml(paths.audio_config), paths.audio_config)
        am_config = _read_yaml(paths.am_config)
        voc_config = _read_yaml(paths.voc_config)
        am_params = _section(am_config, ("Model", "KanTtsSAMBERT", "params"), paths.am_config)
        voc_params = _section(voc_config, ("Model", "Generator", "params"), paths.voc_config)
        _check_language(name, am_config, paths.am_config)
        _check_audio_agrees(audio, am_params, voc_params, paths)
        self._check_wav_rate(audio, paths.audio_config)
        try:
            vocabulary = Vocabulary.from_am_config(am_config, self.has_mask)
        except KeyError:
            raise ModelDirError(
                f"{paths.am_config} has no linguistic_unit.speaker_list: restore the file from the model download"
            ) from None
        f0_norm = read_f0_norm(am_params, paths) if am_params.get("NSF", False) else None
        if am_params.get("SE", False) and not paths.speaker_embedding.is_file():
            raise ModelDirError(f"{paths.am_config} enables SE (a personal voice) but its speaker embedding "
                                f"{paths.speaker_embedding} is missing: copy se.npy from the fine-tuning run")
        return Voice(
            name=name,
            path=voice_path,
            paths=paths,
            am_config=am_config,
            voc_config=voc_config,
            audio=audio,
            am_checkpoint=latest_checkpoint(paths.am_checkpoints),
            voc_checkpoint=latest_checkpoint(paths.voc_checkpoints),
            vocabulary=vocabulary,
            has_mask=self.has_mask,
            f0_norm=f0_norm,
        )

    def _check_wav_rate(self, audio: AudioSettings, audio_path: Path) -> None:
        if self.wav_rate == audio.sample_rate:
            return
        if self.work_dir:
            raise ModelDirError(
                f"{audio_path} has sampling_rate {audio.sample_rate}, but ModelScope serves a fine-tuning run's voice "
                f"as {DEFAULT_WAV_RATE} Hz audio: only 16 kHz personal voices are supported"
            )
        raise ModelDirError(
            f"{self.wav_rate_source} is {self.wav_rate} Hz, but {audio_path} makes "
            f"{audio.sample_rate} Hz audio (ModelScope would label the audio with the wrong rate): set "
            f"\"sample_rate\": {audio.sample_rate} in the model section of configuration.json"
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

    As in ModelScope, names of 15 characters or fewer are skipped and the step is the integer (Python's
    int()) after the last "_" of the name cut at its first "."; of two names with one step, the one
    listed later wins (ModelScope keeps the last in directory order; here, in name order).
    """
    if not ckpt_dir.is_dir():
        raise ModelDirError(f"checkpoint directory {ckpt_dir} is missing: download the model again")
    steps: dict[int, Path] = {}
    for path in sorted(ckpt_dir.iterdir()):
        name = path.name
        if len(name) <= 15 or not (name.startswith("checkpoint") and name.endswith(".pth")):
            continue
        try:
            steps[int(name.split(".")[0].split("_")[-1])] = path
        except ValueError:
            raise ModelDirError(
                f"cannot read a training step from {path} (ModelScope expects checkpoint_<step>.pth): "
                "rename or remove that file"
            ) from None
    if not steps:
        raise ModelDirError(f"no checkpoint_<step>.pth file in {ckpt_dir}: download the model again")
    return steps[max(steps)]


def read_f0_norm(am_params: dict, paths: VoicePaths) -> F0Norm:
    """An NSF voice's f0 de-normalisation, as ModelScope's voice.py reads it (nsf_norm_type, default mean_std)."""
    kind = am_params.get("nsf_norm_type", DEFAULT_NSF_NORM)
    if kind == "mean_std":
        if not paths.mvn.is_file():
            raise ModelDirError(f"{paths.am_config} normalises f0 by mean and std (nsf_norm_type mean_std) but "
                                f"{paths.mvn} is missing: restore it from the model download")
        try:
            mvn = np.load(paths.mvn, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise ModelDirError(f"{paths.mvn} is not a numpy array file ({e}): restore it from the model download") from None
        if mvn.shape != (2, 1) or mvn.dtype not in (np.float32, np.float64):
            raise ModelDirError(f"{paths.mvn} holds {mvn.dtype} {list(mvn.shape)}; ModelScope needs float [2, 1] "
                                "(the f0 mean, then its std): restore it from the model download")
        return F0Norm(scale=float(mvn[1, 0]), shift=float(mvn[0, 0]), dtype=str(mvn.dtype))
    if kind == "global":
        low = am_params.get("nsf_f0_global_minimum", DEFAULT_F0_RANGE[0])
        high = am_params.get("nsf_f0_global_maximum", DEFAULT_F0_RANGE[1])
        return F0Norm(scale=float(high) - float(low), shift=float(low), dtype="float32")
    raise ModelDirError(f"{paths.am_config} has nsf_norm_type {kind!r}: ModelScope knows mean_std and global")


def _check_language(voice: str, am_config: dict, am_path: Path) -> None:
    """serving.symbols holds the Mandarin (PinYin) phone set only; other KAN-TTS languages have other symbols."""
    language = _lookup(am_config, ("linguistic_unit", "language")) or SUPPORTED_LANGUAGE
    if language != SUPPORTED_LANGUAGE:
        family = OTHER_LANGUAGES.get(language, f"{language!r} language")
        raise ModelDirError(
            f"voice {voice!r} is a {family} voice ({am_path} linguistic_unit.language {language!r}); only Mandarin "
            f"({SUPPORTED_LANGUAGE}) voices are supported: the {language} phone set and a front end for it are missing"
        )


def _check_audio_agrees(audio: AudioSettings, am_params: dict, voc_params: dict, paths: VoicePaths) -> None:
    """The AM's frames must be the vocoder's input frames: same mel bins (+ f0 and voicing for NSF), vocoder hop =
    audio hop, an NSF acoustic model with an NSF vocoder that makes audio at the audio config's rate."""
    am_path, voc_path, audio_path = paths.am_config, paths.voc_config, paths.audio_config
    for key, params, path in (("num_mels", am_params, am_path), ("in_channels", voc_params, voc_path),
                              ("upsample_scales", voc_params, voc_path)):
        if key not in params:
            raise ModelDirError(f"{path} has no {key} in its model params: restore the file from the model download")
    nsf = bool(am_params.get("NSF", False))
    nsf_params = voc_params.get("nsf_params")
    if nsf != (nsf_params is not None):
        raise ModelDirError(
            f"{am_path} has NSF {str(nsf).lower()} but {voc_path} {'has' if nsf_params else 'has no'} nsf_params: "
            "the acoustic model and the vocoder are from different models"
        )
    extra = 2 if nsf else 0  # an NSF acoustic model's frames end with f0 and the voicing
    if am_params["num_mels"] != audio.n_mels + extra:
        raise ModelDirError(
            f"{am_path} num_mels {am_params['num_mels']} differs from n_mels {audio.n_mels}"
            f"{' + 2 (f0, voicing)' if nsf else ''} in {audio_path}: the acoustic model and audio config are from "
            f"different models{'' if nsf else ' (an NSF voice would say NSF: true)'}"
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
    if nsf and nsf_params.get("sampling_rate") != audio.sample_rate:
        raise ModelDirError(
            f"{voc_path} nsf_params.sampling_rate {nsf_params.get('sampling_rate')} differs from sampling_rate "
            f"{audio.sample_rate} in {audio_path}: the vocoder and audio config are from different models"
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
