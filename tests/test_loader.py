"""models.loader and models.fixtures: strict loading of ModelScope-layout directories, every load error."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from models.fixtures import main as fixtures_cli
from models.fixtures import (
    make_model_dir,
    random_am_state_dict,
    random_generator_state_dict,
    save_checkpoint,
)
from models.loader import (
    CheckpointError,
    CheckpointMismatchError,
    VocabularyMismatchError,
    load_voice,
)
from models.model_dir import ModelDir, ModelDirError
from models.reference import synthesize

# The KAN-TTS zh-cn 16k manifest (a state_dict dump of the KAN-TTS code, `kantts/models/sambert` and `kantts/models/hifigan`).
AM_TENSORS, AM_NUMBERS = 395, 12_706_787
VOCODER_TENSORS, VOCODER_NUMBERS = 318, 4_864_546
MANIFEST_SHAPES = {
    "am": {
        "text_encoder.sy_emb.weight": [147, 512],
        "text_encoder.tone_emb.weight": [10, 512],
        "text_encoder.syllable_flag_emb.weight": [8, 512],
        "text_encoder.ws_emb.weight": [8, 512],
        "emo_tokenizer.weight": [36, 32],
        "spk_tokenizer.weight": [4, 32],  # speaker_list F7 + "_", "~", "@[MASK]"
        "text_encoder.ling_enc.fft.0.slf_attn.w_qkv.weight": [384, 512],
        "text_encoder.ling_enc.fft.7.pos_ffn.w_1.weight": [1024, 128, 3],
        "text_encoder.ling_enc.position_enc.position_enc": [1, 800, 512],
        "text_encoder.ling_proj.weight": [32, 128],
        "variance_adaptor.duration_predictor.lstm.weight_ih_l0": [512, 224],
        "variance_adaptor.pitch_predictor.fsmn.memory_block_lst.2.conv_dw.weight": [128, 1, 41],
        "variance_adaptor.dur_position_encoder.inv_timescales": [32],
        "mel_decoder.mel_dec.dec_in_proj.weight": [128, 288],
        "mel_decoder.mel_dec.pnca.11.pnca_attn.w_h_kv.weight": [256, 160],
        "mel_decoder.mel_dec.dec_out_proj.weight": [240, 128],
        "mel_postnet.lstm.weight_ih_l0": [512, 256],
        "mel_postnet.fc.weight": [80, 128],
    },
    "voc": {
        "conv_pre.conv1d.weight_g": [256, 1, 1],
        "conv_pre.conv1d.weight_v": [256, 80, 7],
        "transpose_upsamples.1.1.deconv.weight_v": [128, 64, 10],  # causal: kernel 10
        "transpose_upsamples.1.1.deconv.weight_g": [128, 1, 1],
        "repeat_upsamples.3.2.conv1d.weight_v": [16, 32, 7],
        "conv_blocks.11.convs1.3.conv1d.weight_v": [16, 16, 11],
        "conv_post.conv1d.weight_v": [1, 16, 7],
    },
}


def checkpoint_state(path: Path, *keys: str) -> dict[str, torch.Tensor]:
    node = torch.load(path, map_location="cpu", weights_only=False)
    for key in keys:
        node = node[key]
    return node


def am_ckpt(model_dir: Path, voice: str = "zhitian_emo") -> Path:
    return model_dir / "voices" / voice / "am" / "ckpt" / "checkpoint_0.pth"


def voc_ckpt(model_dir: Path, voice: str = "zhitian_emo") -> Path:
    return model_dir / "voices" / voice / "voc" / "ckpt" / "checkpoint_0.pth"


def copy_dir(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / "model"))


def load_error(model_dir: Path, kind=CheckpointError) -> CheckpointError:
    with pytest.raises(kind) as info:
        load_voice(model_dir)
    assert "\n" not in str(info.value)
    return info.value


def folded_weight(weight_g: torch.Tensor, weight_v: torch.Tensor) -> torch.Tensor:
    """w = g * v / |v|, the norm taken over every dim but the first (torch weight_norm, dim=0)."""
    norm = weight_v.flatten(1).norm(dim=1).reshape(-1, *[1] * (weight_v.dim() - 1))
    return weight_g * weight_v / norm


def test_tiny_voice_loads_ready_for_inference(tiny_model_dir):
    voice = load_voice(tiny_model_dir)
    assert voice.name == "zhitian_emo"
    assert not voice.am.training and not voice.vocoder.training
    assert voice.audio.hop_length == 200
    assert voice.vocabulary.sizes() == {
        "sy": 147, "tone": 10, "syllable_flag": 8, "word_segment": 8, "emotion": 36, "speaker": 4,
    }

    am_state = checkpoint_state(am_ckpt(tiny_model_dir), "model")
    loaded = voice.am.state_dict()
    assert loaded.keys() == am_state.keys()
    assert all(torch.equal(loaded[k], am_state[k]) for k in am_state)

    # Weight norm is folded: plain weights equal g * v / |v| of the checkpoint.
    gen_state = checkpoint_state(voc_ckpt(tiny_model_dir), "model", "generator")
    vocoder_state = voice.vocoder.state_dict()
    assert not any(k.endswith(("weight_g", "weight_v")) for k in vocoder_state)
    folded = [k.removesuffix("_g") for k in gen_state if k.endswith("weight_g")]
    assert len(folded) == len(vocoder_state) // 2  # a weight and a bias per conv
    for key in folded:
        expected = folded_weight(gen_state[key + "_g"], gen_state[key + "_v"])
        torch.testing.assert_close(vocoder_state[key], expected, rtol=1e-5, atol=1e-6)

    mel = torch.randn(1, voice.audio.n_mels, 7, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        audio = voice.vocoder(mel)
    assert audio.shape == (1, 1, 7 * voice.audio.hop_length)
    assert torch.isfinite(audio).all() and audio.abs().max() < 1


def test_loaded_fixture_voice_speaks_a_few_frames_per_phone(tiny_model_dir):
    voice = load_voice(tiny_model_dir, "zhiyan_emo")
    tokens = [  # 你好 as KAN-TTS symbols
        ("n_c", "tone3", "s_begin", "word_begin", "emotion_neutral", "F7"),
        ("i_c", "tone3", "s_end", "word_end", "emotion_neutral", "F7"),
        ("h_c", "tone3", "s_begin", "word_begin", "emotion_neutral", "F7"),
        ("ao_c", "tone3", "s_end", "word_end", "emotion_neutral", "F7"),
        ("#4", "tone_none", "s_none", "word_none", "emotion_neutral", "F7"),
    ]
    ids = torch.from_numpy(voice.vocabulary.encode(tokens))[None]
    result = synthesize(voice.am, ids[..., :4], ids[..., 4], ids[..., 5], [len(tokens)])[0]
    assert ((result.frames_per_phone >= 1) & (result.frames_per_phone <= 20)).all()
    assert result.mel.shape == (result.frames_per_phone.sum(), voice.audio.n_mels)
    with torch.no_grad():
        audio = voice.vocoder(torch.from_numpy(result.mel).T[None])
    assert audio.shape == (1, 1, result.mel.shape[0] * voice.audio.hop_length)


def test_full_fixture_matches_the_kantts_manifest(full_model_dir):
    model = ModelDir(full_model_dir)
    loaded = {name: load_voice(model, name) for name in model.voice_names}
    for name, voice in loaded.items():
        am_state = checkpoint_state(am_ckpt(full_model_dir, name), "model")
        gen_state = checkpoint_state(voc_ckpt(full_model_dir, name), "model", "generator")
        assert len(am_state) == AM_TENSORS
        assert sum(t.numel() for t in am_state.values()) == AM_NUMBERS
        assert len(gen_state) == VOCODER_TENSORS
        assert sum(t.numel() for t in gen_state.values()) == VOCODER_NUMBERS
        for key, shape in MANIFEST_SHAPES["am"].items():
            assert list(am_state[key].shape) == shape, key
        for key, shape in MANIFEST_SHAPES["voc"].items():
            assert list(gen_state[key].shape) == shape, key
        assert {k: list(v.shape) for k, v in voice.am.state_dict().items()} == {
            k: list(v.shape) for k, v in am_state.items()
        }
    # Each voice has its own weights.
    a, b = (loaded[n].am.text_encoder.sy_emb.weight for n in model.voice_names)
    assert not torch.equal(a, b)


def test_noncausal_vocoder_has_the_kernel_11_upsampler(tmp_path):
    model_dir = make_model_dir(tmp_path, size="tiny", voices=("zhibei_emo",), causal_vocoder=False)
    voice = load_voice(model_dir)
    assert voice.vocoder.causal is False
    state = checkpoint_state(voc_ckpt(model_dir, "zhibei_emo"), "model", "generator")
    assert state["transpose_upsamples.1.1.deconv.weight_v"].shape[-1] == 11


def test_has_mask_false_directory_loads_with_one_row_fewer(tmp_path, tiny_model_dir):
    with_mask = ModelDir(tiny_model_dir).voice().vocabulary.sizes()
    model_dir = make_model_dir(tmp_path, size="tiny", voices=("zhitian_emo",), has_mask=False)
    voice = load_voice(model_dir)
    tables = {
        "sy": voice.am.text_encoder.sy_emb, "tone": voice.am.text_encoder.tone_emb,
        "syllable_flag": voice.am.text_encoder.syllable_flag_emb, "word_segment": voice.am.text_encoder.ws_emb,
        "emotion": voice.am.emo_tokenizer, "speaker": voice.am.spk_tokenizer,
    }
    assert {s: t.num_embeddings for s, t in tables.items()} == {s: n - 1 for s, n in with_mask.items()}
    assert voice.vocabulary.sizes() == {s: n - 1 for s, n in with_mask.items()}


def test_has_mask_flag_that_disagrees_with_the_checkpoint(tmp_path, tiny_model_dir):
    legacy = make_model_dir(tmp_path / "legacy", size="tiny", voices=("zhitian_emo",), has_mask=False)
    config_path = legacy / "configuration.json"
    config = json.loads(config_path.read_text())
    del config["model"]["am"]
    config_path.write_text(json.dumps(config))
    message = str(load_error(legacy, VocabularyMismatchError))
    assert "sy 146 rows vs 147 symbols" in message
    assert f"set model.am.linguistic_unit.has_mask to false in {config_path}" in message

    model_dir = copy_dir(tiny_model_dir, tmp_path)
    config_path = model_dir / "configuration.json"
    config = json.loads(config_path.read_text())
    config["model"]["am"] = {"linguistic_unit": {"has_mask": False}}
    config_path.write_text(json.dumps(config))
    assert "set model.am.linguistic_unit.has_mask to true" in str(load_error(model_dir, VocabularyMismatchError))


def test_speaker_list_that_disagrees_with_the_checkpoint(tmp_path, tiny_model_dir):
    model_dir = copy_dir(tiny_model_dir, tmp_path)
    am_config = model_dir / "voices/zhitian_emo/am/config.yaml"
    config = yaml.safe_load(am_config.read_text())
    config["linguistic_unit"]["speaker_list"] = "F7,F74"
    am_config.write_text(yaml.safe_dump(config))
    message = str(load_error(model_dir, VocabularyMismatchError))
    assert "(speaker 4 rows vs 5 symbols)" in message
    assert "speaker_list" in message


def test_highest_step_checkpoint_is_loaded(tmp_path, tiny_model_dir):
    model_dir = copy_dir(tiny_model_dir, tmp_path)
    spec = ModelDir(model_dir).voice()
    newer_am = random_am_state_dict(spec.am_config, spec.vocabulary, seed=12345)
    newer_gen = random_generator_state_dict(spec.voc_config, seed=12345)
    save_checkpoint(spec.path / "am/ckpt/checkpoint_20000.pth", newer_am, steps=20000)
    save_checkpoint(spec.path / "voc/ckpt/checkpoint_20000.pth", {"generator": newer_gen}, steps=20000)

    voice = load_voice(model_dir)
    assert voice.voice.am_checkpoint.name == voice.voice.voc_checkpoint.name == "checkpoint_20000.pth"
    key = "text_encoder.sy_emb.weight"
    assert torch.equal(voice.am.state_dict()[key], newer_am[key])
    assert not torch.equal(voice.am.state_dict()[key], checkpoint_state(am_ckpt(model_dir), "model")[key])
    expected = folded_weight(newer_gen["conv_pre.conv1d.weight_g"], newer_gen["conv_pre.conv1d.weight_v"])
    torch.testing.assert_close(voice.vocoder.conv_pre.conv1d.weight, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("part", ["am", "voc"])
def test_truncated_checkpoint(tmp_path, tiny_model_dir, part):
    model_dir = copy_dir(tiny_model_dir, tmp_path)
    path = (am_ckpt if part == "am" else voc_ckpt)(model_dir)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = str(load_error(model_dir))
    assert f"cannot read checkpoint {path}" in message
    assert "download the model again" in message


def test_foreign_checkpoints(tmp_path, tiny_model_dir):
    model_dir = copy_dir(tiny_model_dir, tmp_path)
    am_path, voc_path = am_ckpt(model_dir), voc_ckpt(model_dir)
    am_state = checkpoint_state(am_path, "model")
    gen_state = checkpoint_state(voc_path, "model", "generator")

    torch.save({"state_dict": am_state, "epoch": 3}, am_path)  # a Lightning-style checkpoint
    message = str(load_error(model_dir))
    assert f"checkpoint {am_path} is not a KAN-TTS training checkpoint: checkpoint has no 'model' entry" in message

    torch.save({"model": {"fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)}}, am_path)
    assert f"checkpoint {am_path} holds no KAN-TTS Sambert acoustic model weights" in str(load_error(model_dir))

    am_path.write_bytes(b"definitely not a pickle")
    assert f"cannot read checkpoint {am_path}" in str(load_error(model_dir))

    save_checkpoint(am_path, am_state)
    save_checkpoint(voc_path, gen_state)  # generator weights without the ["generator"] level
    assert "checkpoint['model'] has no 'generator' entry" in str(load_error(model_dir))

    save_checkpoint(voc_path, {"generator": am_state})  # the AM where the vocoder belongs
    assert f"checkpoint {voc_path} holds no KAN-TTS HiFi-GAN generator weights" in str(load_error(model_dir))


def test_missing_unexpected_and_misshapen_keys_in_one_error(tmp_path, tiny_model_dir):
    model_dir = copy_dir(tiny_model_dir, tmp_path)
    path = am_ckpt(model_dir)
    state = checkpoint_state(path, "model")
    del state["mel_postnet.fc.bias"]
    state["mel_postnet.fc2.weight"] = torch.zeros(3)
    shape = list(state["mel_decoder.mel_dec.dec_out_proj.weight"].shape)
    state["mel_decoder.mel_dec.dec_out_proj.weight"] = torch.zeros(shape[0] + 1, shape[1])
    save_checkpoint(path, state)

    error = load_error(model_dir, CheckpointMismatchError)
    assert error.missing == ["mel_postnet.fc.bias"]
    assert error.unexpected == ["mel_postnet.fc2.weight"]
    assert error.shape_mismatches == [
        ("mel_decoder.mel_dec.dec_out_proj.weight", (shape[0] + 1, shape[1]), tuple(shape))
    ]
    message = str(error)
    assert f"checkpoint {path} does not match the KAN-TTS Sambert acoustic model" in message
    assert "1 missing key(s): mel_postnet.fc.bias" in message
    assert "1 unexpected key(s): mel_postnet.fc2.weight" in message
    assert f"mel_decoder.mel_dec.dec_out_proj.weight [{shape[0] + 1}, {shape[1]}] vs {shape} expected" in message


def test_long_key_lists_are_cut_in_the_message(tmp_path, tiny_model_dir):
    model_dir = copy_dir(tiny_model_dir, tmp_path)
    path = voc_ckpt(model_dir)
    state = checkpoint_state(path, "model", "generator")
    removed = sorted(k for k in state if k.startswith("conv_blocks."))
    for key in removed:
        del state[key]
    save_checkpoint(path, {"generator": state})
    error = load_error(model_dir, CheckpointMismatchError)
    assert sorted(error.missing) == removed
    assert f"{len(removed)} missing key(s): " in str(error)
    assert f", ... and {len(removed) - 8} more" in str(error)
    assert not error.unexpected and not error.shape_mismatches


def test_fixture_is_deterministic(tmp_path):
    first = make_model_dir(tmp_path / "a", size="tiny", seed=3)
    second = make_model_dir(tmp_path / "b", size="tiny", seed=3)
    other_seed = make_model_dir(tmp_path / "c", size="tiny", seed=4, voices=("zhitian_emo",))

    def tensor_bytes(model_dir: Path, voice: str) -> dict[str, bytes]:
        am = checkpoint_state(am_ckpt(model_dir, voice), "model")
        gen = checkpoint_state(voc_ckpt(model_dir, voice), "model", "generator")
        return {k: t.numpy().tobytes() for k, t in [*am.items(), *(("voc." + k, t) for k, t in gen.items())]}

    for voice in ("zhitian_emo", "zhiyan_emo"):
        assert tensor_bytes(first, voice) == tensor_bytes(second, voice)
        for config in ("audio_config.yaml", "am/config.yaml", "voc/config.yaml"):
            assert (first / "voices" / voice / config).read_bytes() == (second / "voices" / voice / config).read_bytes()
    seed3, seed4 = tensor_bytes(first, "zhitian_emo"), tensor_bytes(other_seed, "zhitian_emo")
    assert seed3["text_encoder.sy_emb.weight"] != seed4["text_encoder.sy_emb.weight"]
    assert seed3["voc.conv_pre.conv1d.weight_v"] != seed4["voc.conv_pre.conv1d.weight_v"]
    zhiyan = tensor_bytes(first, "zhiyan_emo")
    assert seed3["text_encoder.sy_emb.weight"] != zhiyan["text_encoder.sy_emb.weight"]


def test_fixture_cli_writes_a_loadable_directory(tmp_path, capsys):
    fixtures_cli([str(tmp_path / "cli"), "--size", "tiny", "--seed", "1"])
    assert str((tmp_path / "cli").resolve()) in capsys.readouterr().out
    assert load_voice(tmp_path / "cli", "zhiyan_emo").name == "zhiyan_emo"
    with pytest.raises(FileExistsError, match="is not empty"):
        make_model_dir(tmp_path / "cli", size="tiny")


def test_unsupported_network_configs_name_the_config_file(tmp_path, tiny_model_dir):
    model_dir = copy_dir(tiny_model_dir, tmp_path)
    voice_dir = model_dir / "voices" / "zhitian_emo"

    def edit(path: Path, section: str, **changes) -> None:
        config = yaml.safe_load(path.read_text())
        config["Model"][section]["params"].update(changes)
        path.write_text(yaml.safe_dump(config))

    edit(voice_dir / "voc/config.yaml", "Generator", out_channels=4)  # a PQMF multi-band vocoder
    with pytest.raises(ModelDirError, match=rf"^{voice_dir / 'voc/config.yaml'}: out_channels is 4"):
        load_voice(model_dir)
    edit(voice_dir / "am/config.yaml", "KanTtsSAMBERT", FP=True)  # KAN-TTS's 8 kHz FP variant
    with pytest.raises(ModelDirError, match=rf"^{voice_dir / 'am/config.yaml'}: am config enables FP"):
        load_voice(model_dir)
