"""The text front end: ttsfrd's real output, G2P and tone rules, flags, emotions, SSML, robustness, corpus."""

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest

from serving.frontend import FrontEnd, FrontEndError
from serving.frontend.tokens import syllable_flags, word_flags
from serving.limits import SENTENCE_PAUSE_S
from serving.symbols import EMOTIONS, STREAMS, Vocabulary

DATA = Path(__file__).parent / "data"
SNAPSHOT = DATA / "frontend_snapshot.json"


@pytest.fixture(scope="module")
def front_end() -> FrontEnd:
    return FrontEnd(Vocabulary.build(["F7"]))


def read_lines(path: Path) -> list[str]:
    return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def compact(symbols: list[str]) -> str:
    """phone+tone digit per phone and #N per break: the snapshot's view (flags follow from it)."""
    out = []
    for symbol in symbols:
        phone, tone = symbol[1:-1].split("$")[:2]
        out.append(phone if phone.startswith("#") else phone + tone[-1])
    return " ".join(out)


def phones_and_tones(front_end: FrontEnd, text: str) -> str:
    """Compact view of a text's symbols: phone+tone digit per phone, #N per break."""
    return " ".join(compact(sentence.symbols) for sentence in front_end(text))


def test_matches_real_ttsfrd_output_token_for_token(front_end):
    text, output = read_lines(DATA / "ttsfrd_sample.txt")
    expected = output.split("\t")[1].split()
    sentences = front_end(text)
    assert len(sentences) == 1
    assert sentences[0].symbols == expected
    assert sentences[0].text == text


def test_ids_follow_the_vocabulary_and_stream_order(front_end):
    vocabulary = front_end.vocabulary
    sentence = front_end("您可以向我询问。")[0]
    assert sentence.ids.dtype == np.int64 and sentence.ids.shape == (len(sentence.symbols), len(STREAMS))
    for symbol, row in zip(sentence.symbols, sentence.ids):
        fields = symbol[1:-1].split("$")
        expected = [vocabulary.tables[s]["@" + f if s == "sy" else f] for s, f in zip(STREAMS, fields)]
        assert row.tolist() == expected


# --- G2P -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    # polyphones resolved by pypinyin's phrase dictionary
    ("银行", "y_c2 in_c2 h_c2 ang_c2 #4"),
    ("重复", "ch_c2 ong_c2 f_c4 u_c4 #4"),
    ("成长", "ch_c2 eng_c2 zh_c3 ang_c3 #4"),
    ("音乐", "y_c1 in_c1 y_c4 ve_c4 #4"),
    ("了解", "l_c2 iao_c2 j_c3 ie_c3 #4"),  # liao3 jie3 with 3-3 sandhi
    # erhua, and 儿 kept as a syllable
    ("玩儿", "w_c2 anr_c2 #4"),
    ("哪儿", "n_c3 ar_c3 #4"),
    ("一点儿", "y_c4 i_c4 d_c3 ianr_c3 #4"),
    ("儿子", "ge2 er_c2 z_c5 ii_c5 #4"),
    ("女儿", "n_c3 v_c3 ge2 er_c2 #4"),
    ("婴儿", "y_c1 ing_c1 ge2 er_c2 #4"),
    # 一 and 不
    ("一个", "y_c2 i_c2 g_c4 e_c4 #4"),
    ("一天", "y_c4 i_c4 t_c1 ian_c1 #4"),
    ("一起", "y_c4 i_c4 q_c3 i_c3 #4"),
    ("一样", "y_c2 i_c2 y_c4 ang_c4 #4"),
    ("第一", "d_c4 i_c4 y_c1 i_c1 #4"),
    ("统一", "t_c3 ong_c3 y_c1 i_c1 #4"),
    ("十一月", "sh_c2 ih_c2 y_c1 i_c1 y_c4 ve_c4 #4"),
    ("看一看", "k_c4 an_c4 y_c5 i_c5 k_c4 an_c4 #4"),
    ("不对", "b_c2 u_c2 d_c4 uei_c4 #4"),
    ("不好", "b_c4 u_c4 h_c3 ao_c3 #4"),
    ("去不去", "q_c4 v_c4 b_c5 u_c5 q_c4 v_c4 #4"),
    ("对不起", "d_c4 uei_c4 b_c5 u_c5 q_c3 i_c3 #4"),
    # third-tone chains
    ("你好", "n_c2 i_c2 h_c3 ao_c3 #4"),
    ("展览馆", "zh_c2 an_c2 l_c2 an_c2 g_c3 uan_c3 #4"),
    ("我很好", "w_c3 o_c3 #1 h_c2 en_c2 h_c3 ao_c3 #4"),
    # neutral tones
    ("妈妈", "m_c1 a_c1 m_c5 a_c5 #4"),
    ("看看", "k_c4 an_c4 k_c5 an_c5 #4"),
    ("知道", "zh_c1 ih_c1 d_c5 ao_c5 #4"),
    ("我的", "w_c3 o_c3 d_c5 e_c5 #4"),
    ("走了吗", "z_c3 ou_c3 l_c5 e_c5 m_c5 a_c5 #4"),
])
def test_pinyin_sandhi_erhua_and_neutral_tone(front_end, text, expected):
    assert phones_and_tones(front_end, text) == expected


def test_prosodic_words_and_breaks(front_end):
    # particles join the word before (的), one-syllable words pair up, punctuation is #3, the end #4
    assert phones_and_tones(front_end, "我的书，很好看。") == (
        "w_c3 o_c3 d_c5 e_c5 #1 sh_c1 u_c1 #3 h_c3 en_c3 #1 h_c3 ao_c3 k_c4 an_c4 #4")
    # a long phrase without punctuation gets a #2 near its middle, and only one there
    symbols = front_end("科学家们通过对大量观测数据的分析发现全球气候变暖正在导致极端天气事件的频率增加")[0].symbols
    breaks = [s[1:3] for s in symbols if s.startswith("{#")]
    assert breaks[-1] == "#4" and "#2" in breaks and "#3" not in breaks


def syllables_per_prosodic_word(front_end: FrontEnd, text: str) -> list[int]:
    counts, current = [], 0
    for item in phones_and_tones(front_end, text).split():
        if item.startswith("#"):
            counts.append(current // 2)  # Mandarin syllables have two phones
            current = 0
        else:
            current += 1
    return counts


def test_spelled_out_numbers_are_grouped_for_reading(front_end):
    assert syllables_per_prosodic_word(front_end, "幺三八幺二三四五六七八") == [3, 4, 4]
    assert syllables_per_prosodic_word(front_end, "一万两千三百四十五") == [2, 2, 2, 3]
    assert syllables_per_prosodic_word(front_end, "一九四九年") == [5]


def test_position_flags_follow_the_kantts_rules():
    assert syllable_flags(1) == ["s_both"]
    assert syllable_flags(2) == ["s_begin", "s_end"]
    assert syllable_flags(3) == ["s_begin", "s_middle", "s_end"]
    assert word_flags([2]) == ["word_begin", "word_end"]
    assert word_flags([2, 2]) == ["word_begin", "word_middle", "word_middle", "word_end"]
    assert word_flags([2, 2, 2]) == ["word_begin"] + ["word_middle"] * 4 + ["word_end"]
    assert word_flags([1]) == ["word_both"]
    assert word_flags([1, 2]) == ["word_begin", "word_middle", "word_end"]
    assert word_flags([2, 1]) == ["word_begin", "word_middle", "word_end"]
    assert word_flags([3]) == ["word_begin", "word_middle", "word_end"]


# --- emotions and speakers -------------------------------------------------------------------

def emotion_column(sentence, vocabulary: Vocabulary) -> set[str]:
    names = {i: s for s, i in vocabulary.tables["emotion"].items()}
    return {names[i] for i in sentence.ids[:, STREAMS.index("emotion")]}


def test_emotions_are_the_voice_inventory_without_none_and_placeholders(front_end):
    emotions = front_end.emotions()
    assert emotions[0] == "neutral" and "happy" in emotions and "arousal" in emotions
    assert "none" not in emotions and not any("placeholder" in e for e in emotions)
    assert len(emotions) == len(EMOTIONS) - 1 - 9


@pytest.mark.parametrize("emotion", ["happy", "emotion_happy", " Happy "])
def test_emotion_from_the_request(front_end, emotion):
    sentence = front_end("你好。", emotion=emotion)[0]
    assert emotion_column(sentence, front_end.vocabulary) == {"emotion_happy", "emotion_none"}
    phones = [s for s in sentence.symbols if not s.startswith("{#")]
    assert all("$emotion_happy$" in s for s in phones)


def test_default_emotion_is_neutral(front_end):
    assert emotion_column(front_end("你好。")[0], front_end.vocabulary) == {"emotion_neutral", "emotion_none"}


def test_unknown_emotion_lists_the_available_ones(front_end):
    with pytest.raises(FrontEndError, match=r"unknown emotion 'joy': use one of neutral, angry.*happy"):
        front_end("你好。", emotion="joy")


def test_speaker_is_f7_looked_up_in_the_list_as_modelscope_does_or_the_one_asked_for():
    front_end = FrontEnd(Vocabulary.build(["M7", "xiaoyu", "F7"]))
    sentence = front_end("你好。")[0]
    assert all(s.endswith("$F7}") for s in sentence.symbols)
    assert set(sentence.ids[:, STREAMS.index("speaker")].tolist()) == {2}
    chosen = front_end("你好。", speaker="xiaoyu")[0]
    assert set(chosen.ids[:, STREAMS.index("speaker")].tolist()) == {1}
    assert front_end.speakers() == ["M7", "xiaoyu", "F7"]
    with pytest.raises(FrontEndError, match="unknown speaker 'F74': use one of M7, xiaoyu, F7"):
        front_end("你好。", speaker="F74")


def test_a_voice_without_f7_needs_its_speaker_named():
    front_end = FrontEnd(Vocabulary.build(["zhitian_emo", "zhiyan_emo"]))
    with pytest.raises(FrontEndError, match="no default speaker .*lacks F7.*name one of those"):
        front_end("你好。")
    assert all(s.endswith("$zhiyan_emo}") for s in front_end("你好。", speaker="zhiyan_emo")[0].symbols)


# --- robustness ------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "   \n\t ", "，。！？……", "😀😀", "\x00\x07"])
def test_nothing_to_read_is_a_clear_error(front_end, text):
    with pytest.raises(FrontEndError) as error:
        front_end(text)
    assert "\n" not in str(error.value) and "send" in str(error.value)


def test_emoji_rare_characters_control_characters_and_latin_never_crash(front_end):
    assert phones_and_tones(front_end, "你好😀\x00\u200b啊") == phones_and_tones(front_end, "你好啊")
    # 𠀀 has a pypinyin reading (he1); U+2A6A5 does not and is skipped
    assert phones_and_tones(front_end, "好\U0002a6a5人") == phones_and_tones(front_end, "好人")
    assert front_end("Hello world, 你好 CPU")  # Latin is spelled by normalisation


def test_random_text_never_crashes(front_end):
    rng = random.Random(0)
    pools = ["你好世界银行重复一不儿了的吗", "，。！？、；：…—“”《》（）", "abcXYZ 0123456789.%-+/:@#",
             "😀👍🏽\u200b\x00\x07\t\n\r", "\U0002a6a5\U00020000㐀〇Ⅲαβγ＃＄", "<>&\"'"]
    for _ in range(300):
        text = "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 30)))
        if rng.random() < 0.2:
            text = "<speak>" + text + "</speak>"
        try:
            sentences = front_end(text)
        except FrontEndError:
            continue
        assert all(s.ids.shape == (len(s.symbols), len(STREAMS)) and len(s.symbols) > 1 for s in sentences)


def test_text_longer_than_the_request_limit_is_refused():
    front_end = FrontEnd(Vocabulary.build(["F7"]), max_text_chars=10)
    with pytest.raises(FrontEndError, match="split it"):
        front_end("一二三四五六七八九十十一")


def test_long_text_is_split_into_sentences_with_pauses(front_end):
    text = "今天天气很好。我们去公园散步吧！" + "这是一个很长的句子，" * 12 + "结束了。"
    sentences = front_end(text)
    assert len(sentences) >= 4
    assert all(len(s.text) <= front_end.max_sentence_chars for s in sentences)
    assert [s.pause_after for s in sentences] == [SENTENCE_PAUSE_S] * (len(sentences) - 1) + [0.0]
    assert all(s.symbols[-1].startswith("{#4$") for s in sentences)


# --- SSML ------------------------------------------------------------------------------------

def test_ssml_phoneme_overrides_the_reading(front_end):
    plain = phones_and_tones(front_end, "<speak>重新开始</speak>")
    forced = phones_and_tones(front_end, '<speak><phoneme alphabet="py" ph="zhong4">重</phoneme>新开始</speak>')
    assert plain.startswith("ch_c2 ong_c2") and forced.startswith("zh_c4 ong_c4")
    assert plain.split()[2:] == forced.split()[2:]
    # an override is taken as given: no sandhi on it
    assert phones_and_tones(front_end, '<speak><phoneme alphabet="py" ph="ni3 hao3">你好</phoneme></speak>') \
        == "n_c3 i_c3 h_c3 ao_c3 #4"


def test_ssml_break_becomes_the_pause_after_a_sentence(front_end):
    sentences = front_end('<speak>你好<break time="300ms"/>再见<break time="1s"/><break time="0.5s"/>明天见</speak>')
    assert [s.text for s in sentences] == ["你好", "再见", "明天见"]
    assert [s.pause_after for s in sentences] == [pytest.approx(0.3), pytest.approx(1.5), 0.0]
    trailing = front_end('<speak>你好。<break time="2s"/></speak>')
    assert trailing[-1].pause_after == pytest.approx(2.0)


def test_ssml_emotion_applies_to_its_span(front_end):
    sentences = front_end('<speak>你好。<emotion category="sad" intensity="1.0">再见。</emotion></speak>',
                          emotion="happy")
    vocabulary = front_end.vocabulary
    assert emotion_column(sentences[0], vocabulary) == {"emotion_happy", "emotion_none"}
    assert emotion_column(sentences[1], vocabulary) == {"emotion_sad", "emotion_none"}


def test_text_is_ssml_only_when_it_starts_with_speak(front_end):
    # not SSML (an unclosed tag would be an SSML error): read as text, letters spelled by normalisation
    assert "p_c2 eng_c2 y_c5 ou_c5" in phones_and_tones(front_end, "你好<speak>朋友")
    assert phones_and_tones(front_end, "  <speak>朋友</speak>") == phones_and_tones(front_end, "朋友")


@pytest.mark.parametrize("ssml, message", [
    ("<speak>你好", r"line 1, column \d+: .*closed"),
    ("<speak>你好<foo>呀</foo></speak>", r"line 1, column 10: unsupported element <foo>"),
    ('<speak>\n<phoneme alphabet="py" ph="chong9">重</phoneme></speak>', r"line 2, .*bad ph syllable \"chong9\""),
    ('<speak><phoneme alphabet="py" ph="bv2">重</phoneme></speak>', r"bad ph syllable \"bv2\""),
    ('<speak><phoneme alphabet="py" ph="chong2 fu4">重</phoneme></speak>', r"1 character\(s\) but 2 syllable"),
    ('<speak><phoneme alphabet="ipa" ph="a">重</phoneme></speak>', r'alphabet="py"'),
    ('<speak>你好<break time="fast"/></speak>', r'bad <break time="fast">'),
    ('<speak>你好<break time="20s"/></speak>', r"longer than 10s"),
    ('<speak>你好<break strength="weak"/></speak>', r"needs the attribute\(s\) time"),
    ('<speak><emotion category="joy">你好</emotion></speak>', r"unknown emotion 'joy'"),
    ("<speaker>你好</speaker>", r"must be <speak>, not <speaker>"),
])
def test_invalid_ssml_says_where(front_end, ssml, message):
    with pytest.raises(FrontEndError, match="invalid SSML at .*" + message):
        front_end(ssml)


# --- corpus ----------------------------------------------------------------------------------

def corpus_outputs(front_end: FrontEnd) -> dict[str, list[dict]]:
    outputs = {}
    for text in read_lines(DATA / "frontend_corpus.txt"):
        try:
            sentences = front_end(text)
        except FrontEndError as error:
            outputs[text] = [{"error": str(error)}]
            continue
        for sentence in sentences:  # every symbol is in the voice's inventory (encode raises otherwise)
            assert sentence.ids.shape == (len(sentence.symbols), len(STREAMS))
            front_end.vocabulary.encode([tuple(s[1:-1].split("$")) for s in sentence.symbols])
        outputs[text] = [{"text": s.text, "phones": compact(s.symbols), "pause_after": s.pause_after}
                         for s in sentences]
    return outputs


def test_corpus_runs_clean_and_matches_the_snapshot(front_end):
    texts = read_lines(DATA / "frontend_corpus.txt")
    assert len(texts) >= 200
    outputs = corpus_outputs(front_end)
    errors = [t for t, o in outputs.items() if "error" in o[0]]
    assert len(errors) <= 3, errors  # only texts with nothing readable (……, α、β、γ)
    if os.environ.get("UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(outputs, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    changed = [t for t in outputs if outputs[t] != expected.get(t)]
    assert not changed and set(expected) == set(outputs), (
        f"{len(changed)} corpus outputs changed, e.g. {changed[:3]}; if intended, rerun with UPDATE_SNAPSHOT=1")
