"""The Triton steps' numpy code and the in-process pipeline, without a server."""

import numpy as np
import pytest

from models.fixtures import AUDIO_16K
from serving.contract import (
    AUDIO,
    IDS,
    NOISE_SEED,
    PAUSE,
    SAMPLE_RATE,
    TEXT,
    TOKENS,
    VOICE_INDEX,
    ExportConfig,
    VoiceSpec,
)
from serving.limits import MAX_BATCH_SIZE, SENTENCE_PAUSE_S
from serving.pipeline import Pipeline
from serving.runtime.acoustic import AcousticRuntime
from serving.runtime.nsf import sentence_seed
from serving.runtime.sessions import ProviderUnavailableError, RuntimeOptions
from serving.runtime.vocoder_engine import EngineCall, EngineVocoder
from serving.steps import RequestError
from serving.steps.frontend import FrontendStep
from serving.steps.join import join_sentences
from serving.symbols import STREAMS

VOICE = VoiceSpec(speakers=["F7"], has_mask=True, outputs_per_step=3, max_len=800, vocoder_context_frames=[35, 0])
MULTI_SPEAKER = VoiceSpec(speakers=["M7", "xiaoyu", "F7"], has_mask=True, outputs_per_step=3, max_len=800,
                          vocoder_context_frames=[35, 0])


def text_request(text: bytes | None = None, **optional) -> dict:
    """A request's tensors as Triton hands them to the front end: [1, 1] arrays, BYTES as objects."""
    tensors = {name.upper(): np.array([[value]], dtype=object if isinstance(value, bytes) else
                                      np.int64 if isinstance(value, np.integer) else np.float32)
               for name, value in optional.items()}
    if text is not None:
        tensors[TEXT.name] = np.array([[text]], dtype=object)
    return tensors


@pytest.fixture(scope="module")
def step() -> FrontendStep:
    config = ExportConfig(default_voice="zhitian_emo", audio=AUDIO_16K,
                          voices={"zhiyan_emo": VOICE, "zhitian_emo": VOICE, "multi": MULTI_SPEAKER})
    return FrontendStep(config)


def test_one_row_per_sentence_padded_to_the_longest(step):
    (rows,) = step.process([text_request("今天天气很好。我们去公园散步吧！好。".encode())])
    assert rows[IDS.name].shape[0] == rows[TOKENS.name].shape[0] == 3
    assert rows[IDS.name].shape[1] == rows[TOKENS.name].max()
    for row, count in zip(rows[IDS.name], rows[TOKENS.name][:, 0]):
        assert not row[count:].any()
    assert rows[VOICE_INDEX.name][:, 0].tolist() == [0, 0, 0]
    np.testing.assert_allclose(rows[PAUSE.name][:, 0], [SENTENCE_PAUSE_S, SENTENCE_PAUSE_S, 0.0])


def test_voice_and_speed(step):
    (rows,) = step.process([text_request("你好。".encode(), voice=b"zhiyan_emo", speed=2.0)])
    assert rows[VOICE_INDEX.name][0, 0] == 1  # the default voice is index 0, whatever voices.json order
    assert rows["DURATION_SCALE"][0, 0] == pytest.approx(0.5)


def test_noise_seed_of_each_sentence_from_the_request_the_deployment_or_fresh(step):
    text = "今天天气很好。我们去公园散步吧！".encode()
    seeded, again = step.process([text_request(text, seed=np.int64(7)), text_request(text, seed=np.int64(7))])
    assert seeded[NOISE_SEED.name][:, 0].tolist() == [sentence_seed(7, 0), sentence_seed(7, 1)]
    assert np.array_equal(seeded[NOISE_SEED.name], again[NOISE_SEED.name])
    first, second = step.process([text_request(text), text_request(text)])  # unseeded: a fresh seed per request
    assert not np.array_equal(first[NOISE_SEED.name], second[NOISE_SEED.name])
    deployed = FrontendStep(step.config, noise_seed=7)
    (fixed,) = deployed.process([text_request(text)])
    assert np.array_equal(fixed[NOISE_SEED.name], seeded[NOISE_SEED.name])


def test_speaker_of_a_multi_speaker_voice(step):
    default, chosen = step.process([text_request("你好。".encode(), voice=b"multi"),
                                    text_request("你好。".encode(), voice=b"multi", speaker=b"M7")])
    assert set(default[IDS.name][0, :, STREAMS.index("speaker")].tolist()) == {2}  # F7, as ModelScope reads
    assert set(chosen[IDS.name][0, :, STREAMS.index("speaker")].tolist()) == {0}


@pytest.mark.parametrize("request_tensors,message", [
    (text_request(b"\xff\xfe"), "not valid UTF-8"),
    (text_request(), "TEXT input is missing"),
    (text_request("你好".encode(), voice=b"nobody"), "unknown VOICE 'nobody'; available: zhitian_emo, zhiyan_emo"),
    (text_request("你好".encode(), speed=3.0), "SPEED 3.0 is out of range"),
    (text_request("你好".encode(), speed=float("nan")), "out of range"),
    (text_request("你好".encode(), emotion=b"furious"), "unknown emotion"),
    (text_request("你好".encode(), speaker=b"M7"), "unknown speaker 'M7': use one of F7"),
    (text_request("你好".encode(), seed=np.int64(-1)), "SEED must be a whole number from 0 to"),
    (text_request(b"  "), "empty"),
    (text_request("好。".encode() * (MAX_BATCH_SIZE + 1)), f"at most {MAX_BATCH_SIZE} fit one request"),
    ({TEXT.name: np.array([[b"a"], [b"b"]], dtype=object)}, "exactly one value per request"),
])
def test_each_user_error_answers_its_own_request(step, request_tensors, message):
    good = text_request("你好。".encode())
    results = step.process([good, request_tensors, good])
    assert isinstance(results[1], RequestError) and message in str(results[1])
    assert not isinstance(results[0], RequestError) and not isinstance(results[2], RequestError)


def test_catalog_lists_voices_default_first(step):
    catalog = step.catalog()
    assert catalog["default_voice"] == "zhitian_emo" and catalog["sample_rate"] == 16000
    assert list(catalog["voices"]) == ["zhitian_emo", "zhiyan_emo", "multi"]
    assert "happy" in catalog["voices"]["zhitian_emo"]["emotions"]
    assert catalog["voices"]["multi"]["speakers"] == ["M7", "xiaoyu", "F7"]
    assert catalog["voices"]["multi"]["default_speaker"] == "F7"


def test_join_trims_each_sentence_and_inserts_pauses():
    hop, rate = 4, 10
    wav = np.arange(2 * 1 * 12, dtype=np.float32).reshape(2, 1, 12) + 1
    audio = join_sentences(wav, np.array([[2], [3]]), np.array([[0.5], [0.7]]), hop, rate)
    expected = np.concatenate([wav[0, 0, :8], np.zeros(5), wav[1, 0, :12]])
    np.testing.assert_array_equal(audio, expected[None, :])


def test_engine_vocoder_buckets_each_item_and_cuts_every_item_back():
    """The GPU vocoder's side of the engine call: each mel padded to a multiple of the bucket, the items of a
    bucket together in batches of at most the engine's size, every waveform cut back to its own length."""
    hop, n_mels, shapes = 3, 2, []

    def engine(mel: np.ndarray, source: None) -> np.ndarray:  # a stand-in engine: each sample is its frame's first bin
        shapes.append(mel.shape)
        return np.repeat(mel[:, :1, :], hop, axis=2)

    mels = [np.full((frames, n_mels), frames, dtype=np.float32) for frames in (4, 2, 5, 3, 9)]
    audio = EngineVocoder(EngineCall(engine, max_batch_size=2), hop, n_mels, bucket_frames=4).vocode(mels)
    assert shapes == [(2, n_mels, 4), (1, n_mels, 4), (1, n_mels, 8), (1, n_mels, 12)]
    for mel, wav in zip(mels, audio):
        np.testing.assert_array_equal(wav, np.full(len(mel) * hop, len(mel), dtype=np.float32))


def test_pipeline_answers_each_request_and_keeps_a_bad_one_to_itself(tiny_repository):
    config = ExportConfig.read(tiny_repository / "acoustic" / "1")
    pipeline = Pipeline.load(config, tiny_repository / "acoustic" / "1", tiny_repository / "vocoder" / "1")
    good, bad = text_request("今天天气很好。北京欢迎你。".encode()), text_request("你好".encode(), speed=9.0)
    results = pipeline.process([good, bad, good])
    assert isinstance(results[1], RequestError) and "SPEED 9.0" in str(results[1])
    assert results[0][SAMPLE_RATE.name][0, 0] == config.audio.sample_rate
    np.testing.assert_array_equal(results[0][AUDIO.name], results[2][AUDIO.name])
    (alone,) = pipeline.process([good])
    np.testing.assert_allclose(alone[AUDIO.name], results[0][AUDIO.name], atol=1e-4)


def test_a_gpu_deployment_without_the_cuda_provider_fails_loudly(tiny_repository):
    """ONNX Runtime alone would fall back to the CPU without a word; the runtime refuses to load instead."""
    files = tiny_repository / "acoustic" / "1"
    voice_dir = files / ExportConfig.read(files).default_voice
    with pytest.raises(ProviderUnavailableError, match="could not load CUDAExecutionProvider"), \
            pytest.warns(UserWarning, match="not in available provider names"):  # all ONNX Runtime itself says
        AcousticRuntime(voice_dir, RuntimeOptions(providers=("CUDAExecutionProvider", "CPUExecutionProvider")))
