"""Every Sambert-HifiGan family ModelScope publishes: its directory layout, its networks, its refusals."""

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from models.fixtures import FAMILIES, am_config, make_model_dir, voc_config
from models.hifigan import KanHifiGanGenerator
from models.loader import load_voice
from models.model_dir import ModelDir, ModelDirError
from models.sambert import KanTtsSambert, sinusoid_table
from serving.limits import MAX_SENTENCE_TOKENS
from serving.symbols import STREAMS, Vocabulary

DATA = Path(__file__).parent / "data" / "kantts"
# Every key and shape of KAN-TTS's own networks, built from its configs at full size (tests/data/kantts/README.md).
KANTTS_STATE_DICTS = json.loads(gzip.decompress((DATA / "state_dicts.json.gz").read_bytes()))
EMBEDDING_ROWS = {"sy": "text_encoder.sy_emb.weight", "tone": "text_encoder.tone_emb.weight",
                  "syllable_flag": "text_encoder.syllable_flag_emb.weight", "word_segment": "text_encoder.ws_emb.weight",
                  "emotion": "emo_tokenizer.weight", "speaker": "spk_tokenizer.weight"}

# What each family's directory says (KAN-TTS configs, ModelScope's voice.py).
FAMILY_FACTS = {
    "emo16k": dict(rate=16000, hop=200, mels=80, speakers=["F7"], f0_norm=None),
    "multisp24k": dict(rate=24000, hop=240, mels=80, speakers=["M7", "xiaoyu", "F7"], f0_norm=None),
    "nsf24k": dict(rate=24000, hop=240, mels=82, speakers=["F7"], f0_norm=(50.0, 200.0, "float64")),
    "nsf16k": dict(rate=16000, hop=200, mels=82, speakers="F7,F74,FBYN,FRXL,M7,xiaoyu".split(","),
                   f0_norm=(50.0, 200.0, "float64")),
    "personal16k": dict(rate=16000, hop=200, mels=82, speakers=["F7"], f0_norm=(700.0, 30.0, "float32")),
    "workdir": dict(rate=16000, hop=200, mels=82, speakers=["F7"], f0_norm=(700.0, 30.0, "float32")),
}


def shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {key: list(value.shape) for key, value in module.state_dict().items()}


def copy_dir(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / src.name))


def error_of(path: Path) -> str:
    with pytest.raises(ModelDirError) as info:
        ModelDir(path).voice()
    assert "\n" not in str(info.value)
    return str(info.value)


def edit_yaml(path: Path, edit) -> None:
    config = yaml.safe_load(path.read_text())
    edit(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_full_size_networks_have_kantts_keys_and_shapes(family):
    am_expected = KANTTS_STATE_DICTS[f"{family}_am"]
    params = am_config("full", family)["Model"]["KanTtsSAMBERT"]["params"]
    sizes = {stream: am_expected[key][0] for stream, key in EMBEDDING_ROWS.items() if key in am_expected}
    assert shapes(KanTtsSambert(params, sizes)) == am_expected
    generator = KanHifiGanGenerator(**voc_config("full", family=family)["Model"]["Generator"]["params"])
    assert shapes(generator) == KANTTS_STATE_DICTS[f"{family}_voc"]


@pytest.mark.parametrize("name", list(FAMILY_FACTS))
def test_each_family_reads_and_loads_like_its_download(family_dir, name):
    facts = FAMILY_FACTS[name]
    voice = ModelDir(family_dir(name)).voice()
    assert (voice.audio.sample_rate, voice.audio.hop_length, voice.am_params["num_mels"]) == (
        facts["rate"], facts["hop"], facts["mels"])
    assert voice.vocabulary.speakers == facts["speakers"]
    assert voice.vocabulary.default_speaker == "F7"
    assert voice.vocabulary.sizes()["speaker"] == len(facts["speakers"]) + 3  # "_", "~", "@[MASK]"
    norm = voice.f0_norm
    assert (norm.scale, norm.shift, norm.dtype) == facts["f0_norm"] if norm else facts["f0_norm"] is None
    loaded = load_voice(family_dir(name))
    assert loaded.vocoder.nsf == voice.nsf and loaded.vocoder.hop_length == facts["hop"]
    assert loaded.am.speaker_embedding_input == voice.speaker_embedding == (name in ("personal16k", "workdir"))
    assert loaded.am.max_phones == MAX_SENTENCE_TOKENS


def test_work_dir_is_served_as_modelscopes_personal_tts_recipe_does(family_dir):
    work_dir = family_dir("workdir")
    model = ModelDir(work_dir)
    assert model.work_dir and model.voice_names == [work_dir.name]
    voice = model.voice()
    # custom_ckpt: the fine-tuned AM (the highest step), the pretrained vocoder, the run's audio config and se.npy
    assert voice.am_checkpoint == work_dir / "tmp_am/ckpt/checkpoint_2400200.pth"
    assert voice.voc_checkpoint == work_dir / "orig_model/basemodel_16k/hifigan/ckpt/checkpoint_2400000.pth"
    assert voice.paths.audio_config == work_dir / "data/audio_config.yaml"
    assert voice.paths.speaker_embedding == work_dir / "data/se/se.npy"
    loaded = load_voice(work_dir)
    se = np.load(work_dir / "data/se/se.npy")[0]
    assert torch.equal(loaded.am.speaker_embedding, torch.from_numpy(se))
    pretrained = load_voice(work_dir / "orig_model")  # the pretrain's own voice: another AM, another se.npy
    assert not torch.equal(pretrained.am.speaker_embedding, loaded.am.speaker_embedding)


def test_a_folder_with_tmp_am_but_no_pretrained_model_is_refused(tmp_path):
    (tmp_path / "run" / "tmp_am").mkdir(parents=True)
    assert "not the work directory of a ModelScope personal-voice fine-tuning run" in error_of(tmp_path / "run")


@pytest.mark.parametrize("sample_rate, said", [(None, "absent, so ModelScope's default 16000"), (16000, "16000 Hz")])
def test_wav_rate_of_configuration_json_must_be_the_audio_configs(tmp_path, family_dir, sample_rate, said):
    model_dir = copy_dir(family_dir("multisp24k"), tmp_path)
    path = model_dir / "configuration.json"
    configuration = json.loads(path.read_text())
    configuration["model"].pop("sample_rate")
    if sample_rate:
        configuration["model"]["sample_rate"] = sample_rate
    path.write_text(json.dumps(configuration))
    message = error_of(model_dir)
    assert said in message and "makes 24000 Hz audio" in message
    assert message.endswith('set "sample_rate": 24000 in the model section of configuration.json')


def test_nsf_voice_needs_its_f0_mean_and_std(tmp_path, family_dir):
    model_dir = copy_dir(family_dir("nsf24k"), tmp_path)
    mvn = model_dir / "voices/F7/am/mvn.npy"
    np.save(mvn, np.array([[200.0, 1.0], [50.0, 1.0]]))
    assert "holds float64 [2, 2]; ModelScope needs float [2, 1]" in error_of(model_dir)
    np.save(mvn, np.array([[180.0], [40.0]], dtype=np.float32))  # float32: the arithmetic is float32 too
    assert ModelDir(model_dir).voice().f0_norm.dtype == "float32"
    mvn.unlink()
    assert f"(nsf_norm_type mean_std) but {mvn} is missing" in error_of(model_dir)


def test_nsf_acoustic_model_and_vocoder_must_agree(tmp_path, family_dir):
    model_dir = copy_dir(family_dir("nsf16k"), tmp_path)
    voc = model_dir / "voices/F7/voc/config.yaml"
    edit_yaml(voc, lambda c: c["Model"]["Generator"]["params"]["nsf_params"].update(sampling_rate=24000))
    assert "nsf_params.sampling_rate 24000 differs from sampling_rate 16000" in error_of(model_dir)
    edit_yaml(voc, lambda c: c["Model"]["Generator"]["params"].pop("nsf_params"))
    assert "has NSF true but" in error_of(model_dir) and "has no nsf_params" in error_of(model_dir)


def test_personal_voice_needs_its_speaker_embedding(tmp_path, family_dir):
    model_dir = copy_dir(family_dir("personal16k"), tmp_path)
    se = model_dir / "voices/F7/am/se.npy"
    np.save(se, np.zeros((2, 192), dtype=np.float32))
    with pytest.raises(ModelDirError, match=r"holds float32 \[2, 192\], but the acoustic model takes a float \[1, 192\]"):
        load_voice(model_dir)
    se.unlink()
    assert f"enables SE (a personal voice) but its speaker embedding {se} is missing" in error_of(model_dir)


def test_speaker_list_is_split_as_kantts_splits_it():
    vocabulary = Vocabulary.from_am_config({"linguistic_unit": {"speaker_list": " M7, F7 "}})
    assert vocabulary.speakers == ["M7", " F7"]  # no per-item strip: " F7" is not ttsfrd's F7
    assert vocabulary.default_speaker is None
    assert Vocabulary.from_am_config({"linguistic_unit": {"speaker_list": "M7,xiaoyu,F7"}}).default_speaker == "F7"


def test_position_table_grows_with_kantts_formula_past_the_checkpoints_rows(family_dir):
    loaded = load_voice(family_dir("emo16k"))
    table = loaded.am.text_encoder.ling_enc.position_enc
    checkpoint_rows = loaded.am.max_len
    assert table.position_enc.shape[1] == checkpoint_rows  # the checkpoint's own tensor, untouched
    full = table(MAX_SENTENCE_TOKENS)[0]
    assert full.shape[0] == MAX_SENTENCE_TOKENS
    # The rows past the checkpoint's are those of a table made whole at that length (what KAN-TTS regrows).
    assert torch.equal(full, sinusoid_table(MAX_SENTENCE_TOKENS, full.shape[1]))
    assert torch.equal(full[:checkpoint_rows], table.position_enc[0])


def test_fixture_cli_writes_every_family(tmp_path, capsys):
    from models.fixtures import main

    main([str(tmp_path / "nsf"), "--family", "nsf24k", "--size", "tiny"])
    main([str(tmp_path / "work"), "--work-dir", "--size", "tiny"])
    out = capsys.readouterr().out
    assert "tiny nsf24k sambert-hifigan model directory" in out and "tiny personal-voice work directory" in out
    assert load_voice(tmp_path / "nsf").vocoder.nsf and load_voice(tmp_path / "work").am.speaker_embedding_input


def test_fixture_families_are_deterministic(tmp_path):
    first = make_model_dir(tmp_path / "a", "tiny", family="personal16k", seed=5)
    second = make_model_dir(tmp_path / "b", "tiny", family="personal16k", seed=5)
    for part in ("am/ckpt/checkpoint_0.pth", "voc/ckpt/checkpoint_0.pth"):
        a = torch.load(first / "voices/F7" / part, weights_only=True)["model"]
        b = torch.load(second / "voices/F7" / part, weights_only=True)["model"]
        a, b = (state.get("generator", state) for state in (a, b))
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert (first / "voices/F7/am/se.npy").read_bytes() == (second / "voices/F7/am/se.npy").read_bytes()


def test_streams_of_an_se_voice_still_encode_the_speaker(family_dir):
    # ModelScope encodes the speaker column of an SE voice too (its ids are unused): F7 must be in its list.
    voice = ModelDir(family_dir("personal16k")).voice()
    ids = voice.vocabulary.encode([("a_c", "tone1", "s_both", "word_both", "emotion_neutral", "F7")])
    assert ids[0, STREAMS.index("speaker")] == 0
