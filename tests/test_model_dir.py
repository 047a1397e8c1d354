"""models.model_dir: reading a ModelScope sambert-hifigan directory, checkpoint choice, user errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from models.model_dir import ModelDir, ModelDirError, latest_checkpoint

# Facts of the real zh-cn_16k models (KAN-TTS audio_config_16k.yaml, hifigan_v1_16k.yaml and the
# vocabulary sizes computed with the KAN-TTS code, `kantts/utils/ling_unit/ling_unit.py`).
REAL_SIZES_WITH_MASK = {"sy": 147, "tone": 10, "syllable_flag": 8, "word_segment": 8, "emotion": 36, "speaker": 4}


def copy_dir(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / "model"))


def error_of(path: Path, voice: str | None = None) -> str:
    with pytest.raises(ModelDirError) as info:
        ModelDir(path).voice(voice)
    message = str(info.value)
    assert "\n" not in message
    return message


def edit_yaml(path: Path, edit) -> None:
    config = yaml.safe_load(path.read_text())
    edit(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def test_fixture_directory_reads_like_a_modelscope_download(tiny_model_dir):
    model = ModelDir(tiny_model_dir)
    assert model.voice_names == ["zhitian_emo", "zhiyan_emo"]
    assert model.default_voice == "zhitian_emo"
    # has_mask is absent from this configuration.json: the ModelScope default (True) applies.
    assert "has_mask" not in (tiny_model_dir / "configuration.json").read_text()
    assert model.has_mask is True

    voice = model.voice()
    assert voice.name == "zhitian_emo"
    assert voice.audio.sample_rate == 16000
    assert voice.audio.hop_length == 200
    assert voice.audio.n_mels == 80
    assert (voice.audio.n_fft, voice.audio.win_length, voice.audio.fmin, voice.audio.fmax) == (2048, 1000, 0.0, 8000.0)
    assert voice.am_checkpoint == tiny_model_dir / "voices/zhitian_emo/am/ckpt/checkpoint_0.pth"
    assert voice.voc_checkpoint == tiny_model_dir / "voices/zhitian_emo/voc/ckpt/checkpoint_0.pth"
    assert voice.vocabulary.sizes() == REAL_SIZES_WITH_MASK
    assert voice.vocabulary.speakers == ["F7"]
    assert voice.am_params["outputs_per_step"] == 3
    assert voice.voc_params["upsample_scales"] == [10, 5, 2, 2]
    assert [v.name for v in model.voices()] == ["zhitian_emo", "zhiyan_emo"]


def test_has_mask_false_directory_has_one_symbol_fewer_per_stream(tmp_path, tiny_model_dir):
    model_dir = copy_dir(tiny_model_dir, tmp_path)
    config_path = model_dir / "configuration.json"
    config = json.loads(config_path.read_text())
    config["model"]["am"] = {"linguistic_unit": {"has_mask": False}}
    config_path.write_text(json.dumps(config))
    model = ModelDir(model_dir)
    assert model.has_mask is False
    sizes = model.voice("zhiyan_emo").vocabulary.sizes()
    assert sizes == {stream: n - 1 for stream, n in REAL_SIZES_WITH_MASK.items()}


# File names in a checkpoint folder -> the one ModelScope 1.40.2's Voice.scan_ckpt picks, found by running
# that function (modelscope/models/audio/tts/voice.py) on folders of these empty files.
SCAN_CKPT_PICKS = [
    (["checkpoint_0.pth", "checkpoint_5000.pth", "checkpoint_20000.pth", "checkpoint_900.pth",
      "checkpoint_30000.pth.bak",  # not .pth
      "model_40000.pth",  # not checkpoint*
      "checkpoint_.pth"],  # 15 characters: skipped by length before its step is read
     "checkpoint_20000.pth"),
    (["checkpoint_2400000.pth", "checkpoint_2400200.pth"], "checkpoint_2400200.pth"),
    (["checkpoint_1.5.pth", "checkpoint_3.pth"], "checkpoint_3.pth"),  # the name is cut at its first "."
    (["checkpoint_best_7.pth", "checkpoint_6.pth"], "checkpoint_best_7.pth"),  # the integer after the last "_"
    (["checkpoint_+9.pth", "checkpoint_8.pth"], "checkpoint_+9.pth"),  # Python's int() takes a sign
    (["checkpoint_0010.pth", "checkpoint_9.pth"], "checkpoint_0010.pth"),
    (["checkpoint_1.pth", "checkpointX_99.pth"], "checkpointX_99.pth"),  # only the first 10 characters count
    (["ckpt_1000000.pth", "checkpoint_5.pth"], "checkpoint_5.pth"),
]


@pytest.mark.parametrize("names, pick", SCAN_CKPT_PICKS)
def test_checkpoint_choice_is_modelscopes_scan_ckpt(tmp_path, names, pick):
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert latest_checkpoint(tmp_path) == tmp_path / pick


def test_unreadable_step_is_a_clear_error(tmp_path):
    (tmp_path / "checkpoint_0.pth").write_bytes(b"")
    (tmp_path / "checkpoint-20000.pth").write_bytes(b"")
    with pytest.raises(ModelDirError, match=r"checkpoint-20000\.pth.*rename or remove"):
        latest_checkpoint(tmp_path)


def test_not_a_directory(tmp_path):
    assert "does not exist" in error_of(tmp_path / "nowhere")
    some_file = tmp_path / "model.zip"
    some_file.write_bytes(b"PK")
    assert "is not a directory" in error_of(some_file)


def test_not_a_modelscope_directory(tmp_path, tiny_model_dir):
    message = error_of(tmp_path)
    assert "configuration.json is missing" in message
    assert "iic/speech_sambert-hifigan_tts_zh-cn_16k" in message

    model_dir = copy_dir(tiny_model_dir, tmp_path)
    (model_dir / "voices" / "voices.json").unlink()
    message = error_of(model_dir)
    assert "voices.json is missing" in message
    assert "iic/speech_sambert-hifigan_tts_zh-cn_16k" in message

    (model_dir / "configuration.json").write_text(json.dumps({"model": {"type": "funasr"}}))
    assert "model.type 'funasr', not 'sambert-hifigan'" in error_of(model_dir)


def test_unknown_voice_lists_the_available_ones(tiny_model_dir):
    message = error_of(tiny_model_dir, "zhibei_emo")
    assert "unknown voice 'zhibei_emo'" in message
    assert "zhitian_emo, zhiyan_emo" in message


@pytest.mark.parametrize("missing", ["audio_config.yaml", "am/config.yaml", "voc/config.yaml"])
def test_missing_config_names_the_path(tmp_path, tiny_model_dir, missing):
    model_dir = copy_dir(tiny_model_dir, tmp_path)
    path = model_dir / "voices" / "zhiyan_emo" / missing
    path.unlink()
    assert f"{path} is missing" in error_of(model_dir, "zhiyan_emo")
    ModelDir(model_dir).voice("zhitian_emo")  # the other voice is untouched


@pytest.mark.parametrize("part", ["am", "voc"])
def test_missing_checkpoint_names_the_path(tmp_path, tiny_model_dir, part):
    model_dir = copy_dir(tiny_model_dir, tmp_path)
    ckpt_dir = model_dir / "voices" / "zhitian_emo" / part / "ckpt"
    (ckpt_dir / "checkpoint_0.pth").unlink()
    assert f"no checkpoint_<step>.pth file in {ckpt_dir}" in error_of(model_dir)
    ckpt_dir.rmdir()
    assert f"checkpoint directory {ckpt_dir} is missing" in error_of(model_dir)


def test_voice_listed_but_absent(tmp_path, tiny_model_dir):
    model_dir = copy_dir(tiny_model_dir, tmp_path)
    shutil.rmtree(model_dir / "voices" / "zhiyan_emo")
    assert "'zhiyan_emo' is listed" in error_of(model_dir, "zhiyan_emo")


def test_hop_must_equal_the_vocoder_upsampling(tmp_path, tiny_model_dir):
    model_dir = copy_dir(tiny_model_dir, tmp_path)
    edit_yaml(model_dir / "voices/zhitian_emo/audio_config.yaml",
              lambda c: c["audio_config"].update(hop_length=256))
    message = error_of(model_dir)
    assert "upsample_scales [10, 5, 2, 2] multiply to 200, not the hop_length 256" in message


def test_mel_bins_must_equal_the_acoustic_model_mels(tmp_path, tiny_model_dir):
    model_dir = copy_dir(tiny_model_dir, tmp_path)
    edit_yaml(model_dir / "voices/zhitian_emo/am/config.yaml",
              lambda c: c["Model"]["KanTtsSAMBERT"]["params"].update(num_mels=82))
    assert "num_mels 82 differs from n_mels 80" in error_of(model_dir)


def test_broken_config_files_are_one_line_errors(tmp_path, tiny_model_dir):
    model_dir = copy_dir(tiny_model_dir, tmp_path)
    am_config = model_dir / "voices/zhitian_emo/am/config.yaml"
    am_config.write_text("Model: [unclosed\n  - x: {")
    assert f"{am_config} is not valid YAML" in error_of(model_dir)
    (model_dir / "voices/voices.json").write_text('{"voices": []}')
    assert "at least one name" in error_of(model_dir)
    (model_dir / "configuration.json").write_text("{")
    assert "configuration.json is not valid JSON" in error_of(model_dir)


def test_model_dir_reads_without_torch(tiny_model_dir):
    # The Triton python backend imports models.model_dir; it must not pull in torch.
    code = (
        "import sys; from models.model_dir import ModelDir; "
        f"ModelDir({str(tiny_model_dir)!r}).voices(); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


@pytest.mark.parametrize("language, family", [
    ("Sichuan", "Sichuanese dialect (speech_sambert-hifigan_tts_chuangirl_Sichuan_16k)"),
    ("ZhHK", "Cantonese"), ("WuuShanghai", "Shanghainese"), ("EnUS", "American English"),
    ("Korean", "'Korean' language"),
])
def test_other_languages_name_the_family_and_what_is_missing(tmp_path, tiny_model_dir, language, family):
    model_dir = copy_dir(tiny_model_dir, tmp_path)
    edit_yaml(model_dir / "voices/zhitian_emo/am/config.yaml", lambda c: c["linguistic_unit"].update(language=language))
    message = error_of(model_dir)
    assert message.startswith(f"voice 'zhitian_emo' is a {family}")
    assert f"linguistic_unit.language {language!r}); only Mandarin (PinYin) voices are supported" in message
    assert message.endswith(f"the {language} phone set and a front end for it are missing")
