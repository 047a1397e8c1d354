"""Sentence splitting: boundaries, length limit, word boundaries and linear cost."""

import jieba
import pytest

from serving.frontend import sentences
from serving.frontend.normalize import normalize
from serving.frontend.sentences import split_sentences

PARAGRAPH = (
    "今天天气很好，我们去公园散步吧！你觉得怎么样？我觉得非常好，因为阳光明媚、微风不燥，而且公园里的花都开了。"
    "\n第二行没有标点\n中华人民共和国国务院总理在人民大会堂举行新闻发布会回答中外记者提问"
)


def test_sentence_ends_and_line_breaks() -> None:
    assert split_sentences("你好。我很好！你呢？好；行…\n下一行\n\n最后", 100) == [
        "你好。", "我很好！", "你呢？", "好；", "行…", "下一行", "最后",
    ]


def test_short_sentences_stay_whole_with_their_marks() -> None:
    assert split_sentences(PARAGRAPH, 100) == [
        "今天天气很好，我们去公园散步吧！",
        "你觉得怎么样？",
        "我觉得非常好，因为阳光明媚、微风不燥，而且公园里的花都开了。",
        "第二行没有标点",
        "中华人民共和国国务院总理在人民大会堂举行新闻发布会回答中外记者提问",
    ]


def test_long_sentences_split_at_clauses_then_words() -> None:
    assert split_sentences(PARAGRAPH, 12) == [
        "今天天气很好，",
        "我们去公园散步吧！",
        "你觉得怎么样？",
        "我觉得非常好，",
        "因为阳光明媚、微风不燥，",  # two clauses packed into one chunk
        "而且公园里的花都开了。",
        "第二行没有标点",
        "中华人民共和国国务院总理",  # no marks: cut between jieba's words
        "在人民大会堂举行新闻",
        "发布会回答中外记者提问",
    ]


def test_colon_is_a_clause_boundary_and_run_of_marks_stays_together() -> None:
    assert split_sentences("他说：我们明天一起去北京吧？！", 8) == ["他说：", "我们明天一起去", "北京吧？！"]


def test_word_longer_than_max_chars_is_cut_at_max_chars() -> None:
    assert split_sentences("中华人民共和国", 3) == ["中华人", "民共和", "国"]


def test_empty_and_marks_only_input() -> None:
    assert split_sentences("", 10) == []
    assert split_sentences("\n\n", 10) == []
    assert split_sentences("。，！", 10) == []


def test_max_chars_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        split_sentences("你好", 0)


def _long_text(chars: int) -> str:
    pieces = [
        "今天是2024年5月1日，气温-3℃到12.5℃，湿度65%。",
        "本次活动共有2个会场，3,500人参加，门票¥100/人，欢迎大家踊跃报名参加我们精心准备的各项活动。",
        "中华人民共和国国务院总理在人民大会堂举行新闻发布会回答中外记者提问并介绍了今年的经济社会发展情况\n",
        "他在NBA打了10年球，场均得分25.3分！",
    ]
    text = ""
    while len(text) < chars:
        text += pieces[len(text) % len(pieces)]
    return normalize(text[:chars])


@pytest.mark.parametrize("max_chars", [1, 7, 20, 60])
def test_long_text_is_partitioned_within_limits_in_one_pass(max_chars: int, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _long_text(10_000)
    tokenized: list[int] = []
    real_words = sentences._words

    def counting_words(clause: str) -> list[str]:
        tokenized.append(len(clause))
        return real_words(clause)

    monkeypatch.setattr(sentences, "_words", counting_words)
    chunks = split_sentences(text, max_chars)
    # Nothing lost, nothing repeated, every chunk within the limit.
    assert "".join(chunks) == text.replace("\n", "")
    assert all(0 < len(chunk) <= max_chars for chunk in chunks)
    # Linear cost: each character reaches the word tokenizer at most once.
    assert sum(tokenized) <= len(text)
    if max_chars < 60:
        assert tokenized  # the long line without marks needs word cuts


def test_cuts_inside_a_clause_fall_on_word_boundaries() -> None:
    clause = "中华人民共和国国务院总理在人民大会堂举行新闻发布会回答中外记者提问并介绍了今年的经济社会发展情况"
    word_ends = set()
    position = 0
    for word in jieba.lcut(clause):
        position += len(word)
        word_ends.add(position)
    longest_word = max(len(word) for word in jieba.lcut(clause))
    for max_chars in range(longest_word, 30):
        chunks = split_sentences(clause, max_chars)
        cut = 0
        for chunk in chunks[:-1]:
            cut += len(chunk)
            assert cut in word_ends, (max_chars, chunks)
