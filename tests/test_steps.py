"""The Triton steps' numpy code, without a server: request validation, sentence rows, joining audio."""

import numpy as np
import pytest

from serving.export_config import AudioSpec, ExportConfig, VoiceSpec
from serving.limits import MAX_BATCH_SIZE, SENTENCE_PAUSE_S
from serving.steps.audio import join_sentences
from serving.steps.frontend import FrontendStep, RequestError

VOICE = VoiceSpec(speakers=["F7"], has_mask=True, outputs_per_step=3, max_len=800)


@pytest.fixture(scope="module")
def step() -> FrontendStep:
    config = ExportConfig(default_voice="zhitian_emo", audio=AudioSpec(16000, 200, 80),
                          voices={"zhiyan_emo": VOICE, "zhitian_emo": VOICE})
    return FrontendStep(config)


def test_one_row_per_sentence_padded_to_the_longest(step):
    rows = step.process("今天天气很好。我们去公园散步吧！好。".encode())
    assert rows.ids.shape[0] == rows.tokens.shape[0] == 3
    assert rows.ids.shape[1] == rows.tokens.max()
    for row, count in zip(rows.ids, rows.tokens[:, 0]):
        assert not row[count:].any()
    assert rows.voice_index[:, 0].tolist() == [0, 0, 0]
    np.testing.assert_allclose(rows.pause[:, 0], [SENTENCE_PAUSE_S, SENTENCE_PAUSE_S, 0.0])


def test_voice_and_speed(step):
    rows = step.process("你好。".encode(), voice=b"zhiyan_emo", speed=np.float32(2.0))
    assert rows.voice_index[0, 0] == 1  # the default voice is index 0, whatever voices.json order
    assert rows.duration_scale[0, 0] == pytest.approx(0.5)


@pytest.mark.parametrize("kwargs,message", [
    (dict(text=b"\xff\xfe"), "not valid UTF-8"),
    (dict(text=None), "TEXT input is missing"),
    (dict(text="你好".encode(), voice=b"nobody"), "unknown VOICE 'nobody'; available: zhitian_emo, zhiyan_emo"),
    (dict(text="你好".encode(), speed=3.0), "SPEED 3.0 is out of range"),
    (dict(text="你好".encode(), speed=float("nan")), "out of range"),
    (dict(text="你好".encode(), emotion=b"furious"), "unknown emotion"),
    (dict(text=b"  "), "empty"),
    (dict(text="好。".encode() * (MAX_BATCH_SIZE + 1)), f"at most {MAX_BATCH_SIZE} fit one request"),
])
def test_user_errors(step, kwargs, message):
    with pytest.raises(RequestError, match=message):
        step.process(**kwargs)


def test_catalog_lists_voices_default_first(step):
    catalog = step.catalog()
    assert catalog["default_voice"] == "zhitian_emo" and catalog["sample_rate"] == 16000
    assert list(catalog["voices"]) == ["zhitian_emo", "zhiyan_emo"]
    assert "happy" in catalog["voices"]["zhitian_emo"]["emotions"]


def test_join_trims_each_sentence_and_inserts_pauses():
    hop, rate = 4, 10
    wav = np.arange(2 * 1 * 12, dtype=np.float32).reshape(2, 1, 12) + 1
    audio = join_sentences(wav, np.array([[2], [3]]), np.array([[0.5], [0.7]]), hop, rate)
    expected = np.concatenate([wav[0, 0, :8], np.zeros(5), wav[1, 0, :12]])
    np.testing.assert_array_equal(audio, expected[None, :])
