"""Every family exported and served, against KAN-TTS's and ModelScope's own outputs (tests/data/kantts).

The ONNX graphs on ONNX Runtime must agree with them to 1e-3 for everything deterministic: the acoustic
graphs, and the vocoder graph given ModelScope's own vocoder input with the noise off or the same noise
(the source made on the host, serving.runtime.nsf). End to end, through the same steps as the `tts`
ensemble (in-process, and for some families a real tritonserver), an NSF voice's audio may differ by
2e-3: its phase adds up the f0 of every earlier sample, which grows the acoustic graphs' float noise.
"""

from pathlib import Path

import numpy as np
import pytest

from deploy.launcher import TritonServer
from deploy.repository import generate
from serving.contract import (
    FP32,
    NSF_VOCODER_ENGINE,
    SEED,
    TEXT,
    VOCODER_ONNX,
    ExportConfig,
)
from serving.pipeline import Pipeline
from serving.runtime.acoustic import AcousticRuntime
from serving.runtime.nsf import SourceNoise, sentence_seed, vocoder_input
from serving.runtime.vocoder import WINDOW_FRAMES, VocoderRuntime
from serving.runtime.vocoder_engine import EngineCall, EngineVocoder
from serving.symbols import STREAMS
from tts_client.client import TTSClient

DATA = Path(__file__).parent / "data" / "kantts"
TEXT_READ = "欢迎使用语音合成。"  # the references' sentence (test_kantts_parity)
NOISE_SEED = 7  # the *_noise7 references: the noise of sentence 0 of a request with SEED 7
ONNX_TOLERANCE = 1e-3
NSF_END_TO_END_TOLERANCE = 2e-3
FAMILIES = ["emo16k", "multisp24k", "nsf24k", "nsf16k", "personal16k", "workdir"]
SERVED = ["multisp24k", "nsf24k", "workdir"]  # a real server for 24 kHz, NSF and a fine-tuning run's voice


def reference(name: str) -> dict[str, np.ndarray]:
    return dict(np.load(DATA / f"{name}.npz"))


def expected_audio(name: str, config: ExportConfig) -> np.ndarray:
    """What ModelScope made of TEXT_READ: with the noise of SEED 7's first sentence for an NSF voice."""
    return reference(f"{name}_noise{NOISE_SEED}" if config.nsf else name)["wav"]


def kantts_ids(ref: dict[str, np.ndarray]) -> np.ndarray:
    return np.stack([ref[f"{stream}_ids"][:-1] for stream in STREAMS], axis=-1).astype(np.int64)


def voice_dir(export_dir: Path) -> tuple[ExportConfig, Path]:
    config = ExportConfig.read(export_dir)
    return config, export_dir / config.default_voice


@pytest.mark.parametrize("name", FAMILIES)
def test_acoustic_graphs(family_export, name):
    ref = reference(name)
    _, directory = voice_dir(family_export(name))
    runtime = AcousticRuntime(directory)
    durations = runtime.predict_durations([kantts_ids(ref)], [1.0])
    assert np.array_equal(durations.frames_per_phone[0], ref["durations"])
    (mel,) = runtime.decode(durations)
    np.testing.assert_allclose(mel, ref["mel_post"], rtol=0, atol=ONNX_TOLERANCE)


@pytest.mark.parametrize("name", FAMILIES)
def test_vocoder_graph_given_modelscopes_input(family_export, name):
    ref = reference(name)
    config, directory = voice_dir(family_export(name))
    runtime = VocoderRuntime(directory / VOCODER_ONNX)
    nsf = config.voices[config.default_voice].nsf
    hop = config.audio.hop_length
    if not nsf:
        (wav,) = runtime.vocode([ref["voc_in"]])
        np.testing.assert_allclose(wav, ref["wav"], rtol=0, atol=ONNX_TOLERANCE)
        return
    # voc_in is the vocoder's input after de-normalisation; vocoder_input de-normalises the acoustic frames.
    for noise, expected in ((SourceNoise(enabled=False), ref["wav"]),
                            (SourceNoise(sentence_seed(NOISE_SEED, 0)), expected_audio(name, config))):
        mel, source = vocoder_input(ref["mel_post"], nsf, hop, noise)
        np.testing.assert_array_equal(mel, ref["voc_in"][:, :-2])
        (wav,) = runtime.vocode([mel], [source])
        np.testing.assert_allclose(wav, expected, rtol=0, atol=ONNX_TOLERANCE)


def test_long_sentence_reads_the_regrown_position_table(family_export):
    ref = reference("emo16k_long841")
    config, directory = voice_dir(family_export("emo16k"))
    assert config.voices[config.default_voice].max_len > len(ref["pitch"]) > 800
    tokens = [tuple(token.strip("{}").split("$")) for token in str(ref["symbols"]).split()]
    ids = config.voices[config.default_voice].vocabulary().encode(tokens)
    durations = AcousticRuntime(directory).predict_durations([ids], [1.0])
    assert np.array_equal(durations.frames_per_phone[0], ref["durations"])


@pytest.mark.parametrize("name", FAMILIES)
def test_in_process_pipeline_end_to_end(family_export, name):
    """The steps of the `tts` ensemble, in this process."""
    export_dir = family_export(name)
    config = ExportConfig.read(export_dir)
    pipeline = Pipeline.load(config, export_dir, export_dir)
    request = {TEXT.name: np.array([[TEXT_READ.encode()]], dtype=object),
               SEED.name: np.array([[NOISE_SEED]], dtype=np.int64)}
    (result,) = pipeline.process([request])
    tolerance = NSF_END_TO_END_TOLERANCE if config.nsf else ONNX_TOLERANCE
    np.testing.assert_allclose(result["AUDIO"][0], expected_audio(name, config), rtol=0, atol=tolerance)
    assert int(result["SAMPLE_RATE"][0, 0]) == int(reference(name)["sample_rate"])


def test_seed_fixes_the_noise_and_each_sentence_has_its_own(family_export):
    export_dir = family_export("nsf24k")
    pipeline = Pipeline.load(ExportConfig.read(export_dir), export_dir, export_dir)

    def speak(seed: int | None) -> np.ndarray:
        request = {TEXT.name: np.array([[f"{TEXT_READ}{TEXT_READ}".encode()]], dtype=object)}
        if seed is not None:
            request[SEED.name] = np.array([[seed]], dtype=np.int64)
        return pipeline.process([request])[0]["AUDIO"][0]

    seeded, again, unseeded = speak(NOISE_SEED), speak(NOISE_SEED), speak(None)
    np.testing.assert_array_equal(seeded, again)
    assert np.abs(seeded - unseeded).max() > 1e-2  # unseeded: other noise, as ModelScope draws it
    # The same sentence twice: the first has the noise of the references, the second its own.
    sentence = len(expected_audio("nsf24k", ExportConfig.read(export_dir)))
    first, second = seeded[:sentence], seeded[-sentence:]
    np.testing.assert_allclose(first, expected_audio("nsf24k", ExportConfig.read(export_dir)), rtol=0,
                               atol=NSF_END_TO_END_TOLERANCE)
    assert np.abs(first - second).max() > 1e-2


def test_nsf_engine_gets_the_source_through_the_vocoder_model(family_export):
    """The GPU path on this machine: the engine model stood in for by an ONNX Runtime session of the same graph.
    A causal vocoder's padded batch gives every item exactly its own audio."""
    config, directory = voice_dir(family_export("nsf24k"))
    runtime = VocoderRuntime(directory / VOCODER_ONNX)
    calls = []

    def infer(mel: np.ndarray, source: np.ndarray | None) -> np.ndarray:
        calls.append((mel.shape, None if source is None else source.shape))
        return runtime.graph.run({"MEL": mel, "SOURCE": source})[0]

    engine = EngineVocoder(EngineCall(infer, max_batch_size=2), config.audio.hop_length, config.audio.n_mels,
                           bucket_frames=64, source_channels=config.sizes()["source_channels"])
    nsf, hop = config.voices[config.default_voice].nsf, config.audio.hop_length
    frames = reference("nsf24k")["mel_post"]
    items = [vocoder_input(frames[:n], nsf, hop, SourceNoise(n)) for n in (118, 60, 31)]
    mels, sources = [m for m, _ in items], [s for _, s in items]
    for got, alone in zip(engine.vocode(mels, sources), runtime.vocode(mels, sources)):
        np.testing.assert_allclose(got, alone, rtol=0, atol=1e-6)
    assert calls == [((2, 80, 64), (2, 8, 64 * hop)), ((1, 80, 128), (1, 8, 128 * hop))]  # padded to buckets


@pytest.mark.parametrize("name", ["nsf24k", "personal16k"])
def test_nsf_vocoder_runs_long_sentences_in_windows_with_the_same_samples(family_export, name):
    """The windows of a long sentence (serving.runtime.vocoder.WINDOW_FRAMES) cut the source like the mel: the
    source path reaches no further than the vocoder's context, so the samples are the whole sentence's."""
    config, directory = voice_dir(family_export(name))
    spec = config.voices[config.default_voice]
    frames = reference(name)["mel_post"]
    frames = np.concatenate([frames] * (3 * WINDOW_FRAMES // len(frames) + 1))[: 2 * WINDOW_FRAMES + 41]
    mel, source = vocoder_input(frames, spec.nsf, config.audio.hop_length, SourceNoise(7))
    whole = VocoderRuntime(directory / VOCODER_ONNX)
    windowed = VocoderRuntime(directory / VOCODER_ONNX, context=tuple(spec.vocoder_context_frames))
    (expected,), (got,) = whole.vocode([mel], [source]), windowed.vocode([mel], [source])
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-4


def test_gpu_repository_declares_the_nsf_engines_source(family_export, tmp_path):
    import json
    import shutil

    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from serving.contract import VOCODER_PLAN, plan_metadata_path

    export_dir = tmp_path / "export"
    shutil.copytree(family_export("nsf24k"), export_dir)
    config = ExportConfig.read(export_dir)
    for voice in config.voice_names():
        (export_dir / voice / VOCODER_PLAN).write_bytes(b"an engine")
        plan_metadata_path(export_dir / voice / VOCODER_PLAN).write_text(json.dumps({"max_batch_size": 8, "max_frames": 900}))
    repository = generate(export_dir, tmp_path / "gpu", "gpu")
    engine = text_format.Parse((repository / "vocoder_engine" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    sizes = config.sizes()
    assert [(t.name, list(t.dims)) for t in engine.input] == [
        (t.name, [sizes.get(d, d) for d in t.dims]) for t in NSF_VOCODER_ENGINE.inputs]
    assert [t.name for t in engine.input] == ["MEL", "SOURCE"] and list(engine.input[1].dims) == [8, -1]


@pytest.mark.server
@pytest.mark.parametrize("name", SERVED)
def test_served(family_export, tmp_path, name):
    export_dir = family_export(name)
    config = ExportConfig.read(export_dir)
    # FP32: KAN-TTS's outputs are FP32 (BF16 holds its own quality bound: tests/test_vocoder_precision.py)
    repository = generate(export_dir, tmp_path / "model_repository", "cpu", FP32, log=lambda _: None)
    tolerance = NSF_END_TO_END_TOLERANCE if config.nsf else ONNX_TOLERANCE
    with TritonServer(repository) as server, TTSClient(server.grpc_url, timeout_s=120) as client:
        speech = client.synthesize(TEXT_READ, seed=NOISE_SEED)
        assert speech.sample_rate == int(reference(name)["sample_rate"])
        np.testing.assert_allclose(speech.audio, expected_audio(name, config), rtol=0, atol=tolerance)
        if name == "multisp24k":  # another speaker of the list (M7,xiaoyu,F7) speaks otherwise
            other = client.synthesize(TEXT_READ, speaker="M7")
            assert other.audio.shape != speech.audio.shape or np.abs(other.audio - speech.audio).max() > 1e-3
        if config.nsf:
            assert np.array_equal(client.synthesize(TEXT_READ, seed=NOISE_SEED).audio, speech.audio)
