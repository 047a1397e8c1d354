"""models.sambert / models.reference: the KAN-TTS Sambert network, its pieces and batched synthesis."""

import copy
import math

import numpy as np
import pytest
import torch

from models.fixtures import am_config
from models.reference import synthesize, synthesize_mel
from models.sambert import (
    KanTtsSambert,
    SambertInputError,
    UnsupportedSambertConfig,
    init_for_fixture,
    padding_mask,
    regulate_lengths,
    round_durations,
    set_duration_bias,
)
from serving.symbols import Vocabulary

torch.set_num_threads(1)

# KAN-TTS kantts/configs/sambert_16k.yaml, Model.KanTtsSAMBERT.params, as the fixtures write it
PARAMS_16K = am_config("full")["Model"]["KanTtsSAMBERT"]["params"]
# Same structure, small widths; odd sizes so that no two dimensions can be confused.
PARAMS_TINY = {
    **PARAMS_16K,
    "max_len": 64,
    "embedding_dim": 24,
    "encoder_num_layers": 2,
    "encoder_num_heads": 2,
    "encoder_num_units": 16,
    "encoder_ffn_inner_dim": 20,
    "encoder_projection_units": 6,
    "speaker_units": 5,
    "emotion_units": 7,
    "predictor_filter_size": 7,
    "predictor_fsmn_num_layers": 2,
    "predictor_num_memory_units": 12,
    "predictor_ffn_inner_dim": 14,
    "predictor_lstm_units": 9,
    "dur_pred_prenet_units": [10, 11],
    "dur_pred_lstm_units": 13,
    "decoder_prenet_units": [18, 17],
    "decoder_num_layers": 3,
    "decoder_num_heads": 2,
    "decoder_num_units": 16,
    "decoder_ffn_inner_dim": 22,
    "num_mels": 10,
    "postnet_filter_size": 9,
    "postnet_fsmn_num_layers": 3,
    "postnet_num_memory_units": 15,
    "postnet_ffn_inner_dim": 19,
    "postnet_shift": 3,
    "postnet_lstm_units": 8,
}
VOCAB_SIZES = Vocabulary.build(["F7", "F8"]).sizes()


def manifest_16k(vocab: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """The KAN-TTS state_dict of the 16k config (`kantts/models/sambert/kantts_sambert.py`), key -> shape."""
    m: dict[str, tuple[int, ...]] = {}
    te = "text_encoder."
    for name, stream in (("sy", "sy"), ("tone", "tone"), ("syllable_flag", "syllable_flag"), ("ws", "word_segment")):
        m[f"{te}{name}_emb.weight"] = (vocab[stream], 512)
    for i in range(8):
        b = f"{te}ling_enc.fft.{i}."
        d_in = 512 if i == 0 else 128
        m[b + "slf_attn.layer_norm.weight"] = m[b + "slf_attn.layer_norm.bias"] = (d_in,)
        m[b + "slf_attn.w_qkv.weight"], m[b + "slf_attn.w_qkv.bias"] = (384, d_in), (384,)
        m[b + "slf_attn.fc.weight"], m[b + "slf_attn.fc.bias"] = (128, 128), (128,)
        m[b + "pos_ffn.w_1.weight"], m[b + "pos_ffn.w_1.bias"] = (1024, 128, 3), (1024,)
        m[b + "pos_ffn.w_2.weight"], m[b + "pos_ffn.w_2.bias"] = (128, 1024, 1), (128,)
        m[b + "pos_ffn.layer_norm.weight"] = m[b + "pos_ffn.layer_norm.bias"] = (128,)
    m[te + "ling_enc.ln.weight"] = m[te + "ling_enc.ln.bias"] = (128,)
    m[te + "ling_enc.position_enc.position_enc"] = (1, 800, 512)
    m[te + "ling_proj.weight"] = (32, 128)
    m["spk_tokenizer.weight"] = (vocab["speaker"], 32)
    m["emo_tokenizer.weight"] = (vocab["emotion"], 32)
    va = "variance_adaptor."
    for p in ("pitch", "energy"):
        b = f"{va}{p}_predictor."
        for i in range(3):
            m[f"{b}fsmn.ffn_lst.{i}.w_1.weight"] = (256, 96 if i == 0 else 128, 1)
            m[f"{b}fsmn.ffn_lst.{i}.w_1.bias"] = (256,)
            m[f"{b}fsmn.ffn_lst.{i}.w_2.weight"] = (128, 256, 1)
            m[f"{b}fsmn.memory_block_lst.{i}.conv_dw.weight"] = (128, 1, 41)
        for suffix in ("l0", "l0_reverse"):
            m[f"{b}blstm.weight_ih_{suffix}"] = m[f"{b}blstm.weight_hh_{suffix}"] = (512, 128)
            m[f"{b}blstm.bias_ih_{suffix}"] = m[f"{b}blstm.bias_hh_{suffix}"] = (512,)
        m[b + "fc.weight"], m[b + "fc.bias"] = (1, 256), (1,)
        m[f"{va}{p}_emb.weight"], m[f"{va}{p}_emb.bias"] = (32, 1, 9), (32,)
    dp = va + "duration_predictor."
    m[dp + "prenet.fcs.0.weight"], m[dp + "prenet.fcs.0.bias"] = (128, 1), (128,)
    m[dp + "prenet.fcs.3.weight"], m[dp + "prenet.fcs.3.bias"] = (128, 128), (128,)
    for layer, d_in in (("l0", 224), ("l1", 128)):
        m[f"{dp}lstm.weight_ih_{layer}"], m[f"{dp}lstm.weight_hh_{layer}"] = (512, d_in), (512, 128)
        m[f"{dp}lstm.bias_ih_{layer}"] = m[f"{dp}lstm.bias_hh_{layer}"] = (512,)
    m[dp + "fc.weight"], m[dp + "fc.bias"] = (1, 128), (1,)
    m[va + "dur_position_encoder.inv_timescales"] = (32,)
    md = "mel_decoder.mel_dec."
    for i, (d_out, d_in) in zip((0, 3, 6), ((256, 80), (256, 256), (128, 256))):
        m[f"{md}prenet.fcs.{i}.weight"], m[f"{md}prenet.fcs.{i}.bias"] = (d_out, d_in), (d_out,)
    m[md + "dec_in_proj.weight"], m[md + "dec_in_proj.bias"] = (128, 288), (128,)
    for j in range(12):
        b = f"{md}pnca.{j}."
        m[b + "pnca_attn.layer_norm.weight"] = m[b + "pnca_attn.layer_norm.bias"] = (128,)
        m[b + "pnca_attn.w_x_qkv.weight"], m[b + "pnca_attn.w_x_qkv.bias"] = (384, 128), (384,)
        m[b + "pnca_attn.fc_x.weight"], m[b + "pnca_attn.fc_x.bias"] = (128, 128), (128,)
        m[b + "pnca_attn.w_h_kv.weight"], m[b + "pnca_attn.w_h_kv.bias"] = (256, 160), (256,)
        m[b + "pnca_attn.fc_h.weight"], m[b + "pnca_attn.fc_h.bias"] = (128, 128), (128,)
        m[b + "pos_ffn.w_1.weight"], m[b + "pos_ffn.w_1.bias"] = (1024, 128, 1), (1024,)
        m[b + "pos_ffn.w_2.weight"], m[b + "pos_ffn.w_2.bias"] = (128, 1024, 1), (128,)
        m[b + "pos_ffn.layer_norm.weight"] = m[b + "pos_ffn.layer_norm.bias"] = (128,)
    m[md + "ln.weight"] = m[md + "ln.bias"] = (128,)
    m[md + "dec_out_proj.weight"], m[md + "dec_out_proj.bias"] = (240, 128), (240,)
    pn = "mel_postnet."
    for k in range(4):
        m[f"{pn}fsmn.ffn_lst.{k}.w_1.weight"] = (512, 80 if k == 0 else 256, 1)
        m[f"{pn}fsmn.ffn_lst.{k}.w_1.bias"] = (512,)
        m[f"{pn}fsmn.ffn_lst.{k}.w_2.weight"] = (256, 512, 1)
        m[f"{pn}fsmn.memory_block_lst.{k}.conv_dw.weight"] = (256, 1, 41)
    m[pn + "lstm.weight_ih_l0"], m[pn + "lstm.weight_hh_l0"] = (512, 256), (512, 128)
    m[pn + "lstm.bias_ih_l0"] = m[pn + "lstm.bias_hh_l0"] = (512,)
    m[pn + "fc.weight"], m[pn + "fc.bias"] = (80, 128), (80,)
    return m


def random_batch(lengths: list[int], seed: int, vocab: dict[str, int] = VOCAB_SIZES):
    """Padded ids [B,T,4], emotion, speaker [B,T] of real symbols; padding holds the pad symbol."""
    g = torch.Generator().manual_seed(seed)
    batch, phones = len(lengths), max(lengths)

    def stream(name: str) -> torch.Tensor:
        n_real = vocab[name] - 3  # the last three rows are "_", "~", "@[MASK]"
        ids = torch.randint(0, n_real, (batch, phones), generator=g)
        return ids.masked_fill(padding_mask(torch.tensor(lengths), phones), n_real)

    ids = torch.stack([stream(s) for s in ("sy", "tone", "syllable_flag", "word_segment")], dim=-1)
    return ids, stream("emotion"), stream("speaker"), torch.tensor(lengths)


@pytest.fixture(scope="module")
def full_model() -> KanTtsSambert:
    return init_for_fixture(KanTtsSambert(PARAMS_16K, VOCAB_SIZES), seed=0).eval()


@pytest.fixture(scope="module")
def tiny_model() -> KanTtsSambert:
    return init_for_fixture(KanTtsSambert(PARAMS_TINY, VOCAB_SIZES), seed=1).eval()


def test_state_dict_is_the_kan_tts_16k_layout(full_model):
    vocab = Vocabulary.build(["F7"]).sizes()
    expected = manifest_16k(vocab)
    got = {k: tuple(v.shape) for k, v in KanTtsSambert(PARAMS_16K, vocab).state_dict().items()}
    assert sorted(set(got) ^ set(expected)) == []
    assert {k: v for k, v in got.items() if expected[k] != v} == {}
    assert len(got) == 395
    assert sum(math.prod(s) for s in got.values()) == 12_706_787


def test_fixed_tables_follow_the_kan_tts_formulas(full_model):
    table = full_model.text_encoder.ling_enc.position_enc.position_enc[0]
    # position p (1-based), dim j < 256: sin(p / 10000^(j / 255)); dim 256 + j: the cos of it
    for p, j in ((1, 0), (7, 3), (800, 255), (123, 100)):
        angle = p / 10000 ** (j / 255)
        assert table[p - 1, j].item() == pytest.approx(math.sin(angle), abs=1e-6)
        assert table[p - 1, 256 + j].item() == pytest.approx(math.cos(angle), abs=1e-6)
    inv = full_model.variance_adaptor.dur_position_encoder.inv_timescales
    assert inv.tolist() == pytest.approx([10000 ** (2 * (k // 2) / 32) for k in range(32)], rel=1e-6)
    # A frame's position code: sin on even dims, cos on odd ones; padding (position 0) is 0, 1, 0, 1, ...
    codes = full_model.variance_adaptor.dur_position_encoder(torch.tensor([[0.0, 3.0]]))[0]
    assert codes[0].tolist() == [0.0, 1.0] * 16
    assert codes[1, 4].item() == pytest.approx(math.sin(3 / 10000 ** (4 / 32)), abs=1e-6)
    assert codes[1, 5].item() == pytest.approx(math.cos(3 / 10000 ** (4 / 32)), abs=1e-6)


@pytest.mark.parametrize("feature", ["MAS", "FP", "using_byte"])
def test_unsupported_features_are_refused(feature):
    with pytest.raises(UnsupportedSambertConfig, match=feature):
        KanTtsSambert({**PARAMS_TINY, feature: True}, VOCAB_SIZES)


def test_missing_vocabulary_size_is_refused():
    sizes = {k: v for k, v in VOCAB_SIZES.items() if k != "emotion"}
    with pytest.raises(UnsupportedSambertConfig, match="emotion"):
        KanTtsSambert(PARAMS_TINY, sizes)


def test_fixture_weights_are_deterministic_and_sensible(full_model):
    again, other = KanTtsSambert(PARAMS_16K, VOCAB_SIZES), KanTtsSambert(PARAMS_16K, VOCAB_SIZES)
    rng_before = torch.get_rng_state()
    init_for_fixture(again, seed=0)
    init_for_fixture(other, seed=1)
    assert torch.equal(torch.get_rng_state(), rng_before)
    ours, theirs, different = full_model.state_dict(), again.state_dict(), other.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not torch.equal(ours["spk_tokenizer.weight"], different["spk_tokenizer.weight"])

    inputs = random_batch([30], seed=5)
    first, second = synthesize(full_model, *inputs)[0], synthesize(again, *inputs)[0]
    assert np.array_equal(first.mel, second.mel)
    assert np.isfinite(first.mel).all()
    # Realistic lengths: the fixture's duration head is centred on 5 frames per phone.
    assert 2 <= first.frames_per_phone.mean() <= 10
    assert first.frames_per_phone.min() >= 1 and first.frames_per_phone.max() <= 20


def test_set_duration_bias_controls_frames_per_phone(tiny_model):
    model = copy.deepcopy(tiny_model)
    model.variance_adaptor.duration_predictor.fc.weight.data.zero_()  # only the bias is left
    for frames in (0.0, 2.0, 7.0):
        set_duration_bias(model, frames)
        item = synthesize(model, *random_batch([9], seed=2))[0]
        assert item.frames_per_phone.tolist() == [int(frames)] * 9
        assert item.mel.shape == (9 * frames, PARAMS_TINY["num_mels"])


@pytest.mark.parametrize("which", ["tiny", "full"])
def test_batched_items_equal_single_items(which, tiny_model, full_model):
    model = tiny_model if which == "tiny" else full_model
    lengths = [11, 3, 27, 1, 19, 8, 30, 14]
    inputs = random_batch(lengths, seed=7)
    batched = synthesize(model, *inputs)
    assert len({item.band_width for item in batched}) > 1  # each item keeps its own band width
    assert len({item.mel.shape[0] for item in batched}) > 1
    for b, n in enumerate(lengths):
        ids, emotion, speaker, _ = (t[b : b + 1] for t in inputs)
        single = synthesize(model, ids[:, :n], emotion[:, :n], speaker[:, :n], [n])[0]
        assert np.array_equal(batched[b].frames_per_phone, single.frames_per_phone)
        assert batched[b].band_width == single.band_width
        assert batched[b].mel.shape == single.mel.shape
        assert np.abs(batched[b].mel - single.mel).max() <= 1e-4


def test_frames_and_band_widths_follow_kan_tts_rounding(full_model):
    items = synthesize(full_model, *random_batch([25, 12, 40], seed=11))
    for item in items:
        durations = np.exp(item.log_durations) - np.float32(1)
        # KAN-TTS, in float32: reps = long(d + 0.5); x_band = h_band = int(max(d) / r + 0.5)
        assert np.array_equal(item.frames_per_phone, (durations + np.float32(0.5)).astype(np.int64))
        assert item.band_width == int(durations.max() / np.float32(3) + np.float32(0.5))
        assert item.mel.shape[0] == item.frames_per_phone.sum()


def test_round_durations_by_hand():
    d = torch.tensor([[0.49, 0.5, 1.5, 2.4999, 7.6], [4.0, 1.2, 0.0, 9.0, 9.0]])
    frames, band = round_durations(torch.log(d + 1), torch.tensor([5, 2]), 3)
    assert frames.tolist() == [[0, 1, 2, 2, 8], [4, 1, 0, 0, 0]]  # padded phones get no frames
    assert band.tolist() == [3, 1]  # int(7.6/3 + .5) = 3, int(4/3 + .5) = 1 (padding ignored)
    frames, band = round_durations(torch.log(d + 1), torch.tensor([5, 2]), 3, torch.tensor([2.0, 0.5]))
    assert frames.tolist() == [[1, 1, 3, 5, 15], [2, 1, 0, 0, 0]]  # 0.98, 1, 3, 4.9998, 15.2 | 2, 0.6
    assert band.tolist() == [5, 1]  # int(15.2/3 + .5) = 5, int(2/3 + .5) = 1


def test_regulate_lengths_by_hand():
    frames = torch.tensor([[2, 0, 3], [1, 1, 0]])
    text = torch.tensor([[[1.0], [2.0], [3.0]], [[4.0], [5.0], [6.0]]])
    lr_text, lr_speaker, lr_emotion, positions, lengths = regulate_lengths(frames, text, text + 10, text + 20, 3)
    assert lengths.tolist() == [5, 2]
    assert lr_text[..., 0].tolist() == [[1, 1, 3, 3, 3, 0], [4, 5, 0, 0, 0, 0]]  # 6 = 5 rounded up to r
    assert lr_speaker[..., 0].tolist() == [[11, 11, 13, 13, 13, 0], [14, 15, 0, 0, 0, 0]]
    assert lr_emotion[..., 0].tolist() == [[21, 21, 23, 23, 23, 0], [24, 25, 0, 0, 0, 0]]
    assert positions.tolist() == [[1, 2, 1, 2, 3, 0], [1, 1, 0, 0, 0, 0]]


def test_duration_scale_scales_only_its_item(tiny_model):
    ids, emotion, speaker, _ = random_batch([20], seed=3)
    inputs = (ids.repeat(3, 1, 1), emotion.repeat(3, 1), speaker.repeat(3, 1), torch.tensor([20] * 3))  # one text, 3x
    plain = synthesize(tiny_model, *inputs)
    scaled = synthesize(tiny_model, *inputs, duration_scale=[1.0, 2.0, 0.5])
    # Scale 1 is the unscaled result (up to float noise: the batch around it runs longer).
    assert np.array_equal(plain[0].frames_per_phone, scaled[0].frames_per_phone)
    assert np.abs(plain[0].mel - scaled[0].mel).max() <= 1e-5
    assert np.array_equal(plain[0].mel, synthesize_mel(tiny_model, *inputs, duration_scale=[1.0] * 3)[0])
    for item, unscaled, factor in zip(scaled[1:], plain[1:], (2.0, 0.5)):
        assert np.array_equal(item.log_durations, unscaled.log_durations)  # the prediction itself is unscaled
        durations = (np.exp(item.log_durations) - np.float32(1)) * np.float32(factor)
        assert np.array_equal(item.frames_per_phone, (durations + np.float32(0.5)).astype(np.int64))
        assert item.band_width == int(durations.max() / np.float32(3) + np.float32(0.5))
        assert item.mel.shape[0] == item.frames_per_phone.sum()
    assert scaled[1].mel.shape[0] > plain[0].mel.shape[0] > scaled[2].mel.shape[0]


def decoder_state_at(model: KanTtsSambert, inputs, step: int):
    """Everything the decoder step `step` takes, from a real run of the loop up to it."""
    ids, emotion, speaker, lengths = inputs
    text_aug, _, speaker_hid, emotion_hid, _, _ = model.encode(ids, emotion, speaker, lengths)
    frames = torch.full(ids.shape[:2], 4).masked_fill(padding_mask(lengths, ids.shape[1]), 0)
    lr = regulate_lengths(frames, text_aug, speaker_hid, emotion_hid, model.r)
    memory, memory_keys, memory_values = model.decoder_memory(*lr[:4])
    memory_lengths = (lr[4] + model.r - 1) // model.r
    x_keys, x_values = model.empty_decoder_cache(len(lengths))
    previous = torch.zeros(len(lengths), model.num_mels)
    band = torch.tensor([2, 2])
    for s in range(step):
        out, x_keys, x_values = model.decoder_step(
            previous, memory[:, s], x_keys, x_values, memory_keys, memory_values, band, band, memory_lengths
        )
        previous = out[:, -model.num_mels :]
    return [previous, memory[:, step], x_keys, x_values, memory_keys, memory_values, band, band, memory_lengths]


@torch.no_grad()
def test_decoder_step_sees_only_its_bands(tiny_model):
    # Item 0: 8 phones x 4 frames = 32 frames -> M = 11 steps; item 1: 3 phones -> 12 frames -> M = 4.
    # Band 2 at step 3: decoder steps [1, 3]; memory [3, 5] for item 0 and [3, 3] for item 1.
    state = decoder_state_at(tiny_model, random_batch([8, 3], seed=4), step=3)
    reference = tiny_model.decoder_step(*state)[0]

    def output_after(index: int, change) -> torch.Tensor:
        changed = list(state)
        changed[index] = change(changed[index].clone())
        return tiny_model.decoder_step(*changed)[0]

    def bump(positions, item=slice(None)):
        def change(cache):
            cache[:, item, :, positions] += 3.0
            return cache

        return change

    for index in (2, 3):  # x keys, x values: step 0 is outside the band, steps 1-2 inside
        assert torch.equal(output_after(index, bump([0])), reference)
        assert not torch.allclose(output_after(index, bump([1]))[0], reference[0])
    for index in (4, 5):  # memory keys, values
        assert torch.equal(output_after(index, bump([0, 1, 2, 6, 7, 8, 9, 10])), reference)
        assert not torch.allclose(output_after(index, bump([5], item=0))[0], reference[0])
        assert torch.equal(output_after(index, bump([4, 5], item=1)), reference)  # past item 1's M
    # Item 1 sees one memory position, so only its value (not its key) can matter.
    assert not torch.allclose(output_after(5, bump([3], item=1))[1], reference[1])


@torch.no_grad()
def test_pitch_predictor_matches_packed_sequences(tiny_model):
    """The per-item BLSTM equals KAN-TTS's pack_padded_sequence path on a padded batch."""
    predictor = tiny_model.variance_adaptor.pitch_predictor
    lengths = torch.tensor([5, 9, 2, 7])
    x = torch.randn(4, 9, 18, generator=torch.Generator().manual_seed(0))
    pad = padding_mask(lengths, 9)
    ours = predictor(x, lengths, pad)

    packed = torch.nn.utils.rnn.pack_padded_sequence(
        predictor.fsmn(x, pad), lengths, batch_first=True, enforce_sorted=False
    )
    hidden, _ = torch.nn.utils.rnn.pad_packed_sequence(predictor.blstm(packed)[0], batch_first=True, total_length=9)
    expected = predictor.fc(hidden)[..., 0].masked_fill(pad, 0.0)
    assert torch.allclose(ours, expected, atol=1e-6)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda i: {**i, "lengths": [0, 5]}, "between 1 and"),
        (lambda i: {**i, "lengths": [6, 5]}, "between 1 and"),
        (lambda i: {**i, "duration_scale": [1.0, 0.0]}, "duration_scale"),
        (lambda i: {**i, "duration_scale": [1.0]}, "duration_scale"),
        (lambda i: {**i, "ids": i["ids"][..., :3]}, "ids must be"),
        (lambda i: {**i, "speaker": i["speaker"][:, :4]}, "emotion and speaker"),
    ],
)
def test_bad_inputs_are_refused(tiny_model, change, message):
    ids, emotion, speaker, lengths = random_batch([5, 5], seed=0)
    inputs = dict(ids=ids, emotion=emotion, speaker=speaker, lengths=lengths)
    with pytest.raises(SambertInputError, match=message):
        synthesize(tiny_model, **change(inputs))


def test_sentence_longer_than_the_position_table_is_refused(tiny_model):
    with pytest.raises(SambertInputError, match="at most 64"):
        synthesize(tiny_model, *random_batch([65], seed=0))


def test_extended_position_table_takes_longer_sentences_and_keeps_the_shorter_ones(tiny_model):
    model = copy.deepcopy(tiny_model)
    short = synthesize(model, *random_batch([40], seed=0))[0]
    model.extend_position_table(70)
    assert model.max_phones == 70 and model.state_dict().keys() == tiny_model.state_dict().keys()
    np.testing.assert_array_equal(synthesize(model, *random_batch([40], seed=0))[0].mel, short.mel)
    assert len(synthesize(model, *random_batch([70], seed=0))[0].frames_per_phone) == 70


def test_speaker_embedding_voice_repeats_its_embedding_for_every_phone(tiny_model):
    params = {**PARAMS_TINY, "SE": True, "speaker_units": 12}
    model = KanTtsSambert(params, {k: v for k, v in VOCAB_SIZES.items() if k != "speaker"})
    assert not hasattr(model, "spk_tokenizer") and "speaker_embedding" not in model.state_dict()
    embedding = torch.randn(12)
    model.set_speaker_embedding(embedding)
    ids, emotion, speaker, lengths = random_batch([6, 4], seed=0)
    with torch.no_grad():
        speaker_hid = model.encode(torch.as_tensor(ids), torch.as_tensor(emotion), None, torch.as_tensor(lengths))[2]
    assert speaker_hid.shape == (2, 6, 12) and torch.equal(speaker_hid, embedding.expand(2, 6, 12))
    with pytest.raises(SambertInputError, match=r"speaker embedding of shape \[11\], expected \[12\]"):
        model.set_speaker_embedding(torch.zeros(11))
