"""Our eager models against KAN-TTS's and ModelScope's own code, every family (tests/data/kantts/README.md).

The fixture maker writes each family's tiny directory (conftest.FAMILY_DIRS); KAN-TTS's networks run by
ModelScope's voice.py read the same directory once, and their outputs are committed. Deterministic parts
must agree to 1e-4: the symbol ids, the acoustic model, f0 de-normalisation, the vocoder given ModelScope's
own vocoder input (an NSF vocoder with its noise off, or with the same noise). End to end an NSF voice may
differ more (2e-3): its phase adds up the f0 of every earlier sample, so the acoustic model's float noise grows.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from models.loader import load_voice
from models.reference import synthesize, vocode, vocoder_input
from models.sambert import predict_log_durations
from serving.frontend import FrontEnd
from serving.runtime.nsf import SourceNoise, sentence_seed
from serving.symbols import STREAMS

DATA = Path(__file__).parent / "data" / "kantts"
TEXT = "欢迎使用语音合成。"  # read by our front end into the symbol line the references were made from
NOISE_SEED = 7  # the references *_noise7.npz: KAN-TTS given the noise of a request with SEED 7 (its sentence 0)
TOLERANCE = 1e-4
NSF_END_TO_END_TOLERANCE = 2e-3
FAMILIES = ["emo16k", "multisp24k", "nsf24k", "nsf16k", "personal16k", "workdir"]
NOISY = ["nsf24k", "nsf16k", "personal16k", "workdir"]

torch.set_num_threads(2)


def reference(name: str) -> dict[str, np.ndarray]:
    return dict(np.load(DATA / f"{name}.npz"))


def kantts_ids(ref: dict[str, np.ndarray]) -> np.ndarray:
    """The ids ModelScope encoded, in our column order, without the trailing "~"."""
    return np.stack([ref[f"{stream}_ids"][:-1] for stream in STREAMS], axis=-1).astype(np.int64)


@pytest.fixture(scope="module")
def voices(family_dir):
    return {name: load_voice(family_dir(name)) for name in FAMILIES}


def eager(voice, ids: np.ndarray):
    batch = torch.from_numpy(ids)[None]
    return synthesize(voice.am, batch[..., :4], batch[..., 4], batch[..., 5], [len(ids)])[0]


@pytest.mark.parametrize("name", FAMILIES)
def test_front_end_ids_are_modelscopes_including_the_default_speaker(voices, name):
    ref = reference(name)
    sentence = FrontEnd(voices[name].vocabulary)(TEXT)[0]
    assert " ".join(sentence.symbols) == str(ref["symbols"])
    assert np.array_equal(sentence.ids, kantts_ids(ref))
    if name == "multisp24k":  # speaker list M7,xiaoyu,F7: ModelScope looks F7 up, it is not the first entry
        assert set(sentence.ids[:, STREAMS.index("speaker")]) == {2}


@pytest.mark.parametrize("name", FAMILIES)
def test_acoustic_model(voices, name):
    ref = reference(name)
    result = eager(voices[name], kantts_ids(ref))
    assert np.array_equal(result.frames_per_phone, ref["durations"])
    for ours, key in ((result.log_durations, "log_durations"), (result.pitch, "pitch"), (result.energy, "energy"),
                      (result.mel, "mel_post")):
        np.testing.assert_allclose(ours, ref[key], rtol=0, atol=TOLERANCE, err_msg=key)


@pytest.mark.parametrize("name", FAMILIES)
def test_vocoder_input_is_modelscopes(voices, name):
    ref = reference(name)
    assert np.array_equal(vocoder_input(voices[name], ref["mel_post"]), ref["voc_in"])


@pytest.mark.parametrize("name", FAMILIES)
def test_vocoder_given_modelscopes_input(voices, name):
    ref = reference(name)
    wav = vocode_frames(voices[name], ref["voc_in"], SourceNoise(enabled=False))
    np.testing.assert_allclose(wav, ref["wav"], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("name", NOISY)
def test_nsf_vocoder_with_the_same_noise(voices, name):
    wav = vocode_frames(voices[name], reference(name)["voc_in"], noise())
    expected = reference(f"{name}_noise{NOISE_SEED}")["wav"]
    np.testing.assert_allclose(wav, expected, rtol=0, atol=TOLERANCE)
    # The noise matters: without it the same input gives another waveform.
    assert np.abs(vocode_frames(voices[name], reference(name)["voc_in"], SourceNoise(enabled=False)) - expected).max() > 0.01


@pytest.mark.parametrize("name", FAMILIES)
def test_end_to_end(voices, name):
    ref = reference(name)
    voice = voices[name]
    mel = eager(voice, kantts_ids(ref)).mel
    tolerance = NSF_END_TO_END_TOLERANCE if voice.voice.nsf else TOLERANCE
    np.testing.assert_allclose(vocode(voice, mel, SourceNoise(enabled=False)), ref["wav"], rtol=0, atol=tolerance)
    if name in NOISY:
        np.testing.assert_allclose(vocode(voice, mel, noise()),
                                   reference(f"{name}_noise{NOISE_SEED}")["wav"], rtol=0, atol=tolerance)
    assert int(ref["sample_rate"]) == voice.audio.sample_rate  # the rate ModelScope labels its WAV with


def test_sentence_longer_than_max_len_reads_as_kantts_regrown_table(voices):
    ref = reference("emo16k_long841")
    tokens = [tuple(token.strip("{}").split("$")) for token in str(ref["symbols"]).split()]
    voice = voices["emo16k"]
    ids = voice.vocabulary.encode(tokens)
    assert len(ids) > voice.am.max_len
    batch = torch.from_numpy(ids)[None]
    with torch.no_grad():
        _, duration_cond, _, _, pitch, energy = voice.am.encode(batch[..., :4], batch[..., 4], batch[..., 5],
                                                                 torch.tensor([len(ids)]))
        log_durations = predict_log_durations(voice.am, duration_cond, torch.tensor([len(ids)]))[0]
    np.testing.assert_allclose(pitch[0].numpy(), ref["pitch"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(energy[0].numpy(), ref["energy"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(log_durations.numpy(), ref["log_durations"], rtol=0, atol=TOLERANCE)


def noise() -> SourceNoise:
    return SourceNoise(sentence_seed(NOISE_SEED, 0))


def vocode_frames(voice, frames: np.ndarray, noise: SourceNoise) -> np.ndarray:
    """The vocoder alone on frames that are already its input (ModelScope's voc_in)."""
    with torch.no_grad():
        return voice.vocoder(torch.from_numpy(np.ascontiguousarray(frames.T[None])), [noise])[0, 0].numpy()
