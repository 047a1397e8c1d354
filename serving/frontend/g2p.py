"""Characters -> pinyin syllables: pypinyin with its phrase dictionary, erhua and neutral tones.

Rules (tone sandhi across words lives in sandhi.py):
- pypinyin reads a whole lexical word at once (TONE3, neutral tone as 5), so its phrase dictionary
  resolves polyphones (银行 hang2, 重复 chong2, 了解 liao3).
- A character without pinyin (emoji, symbols, Latin letters, a Han character pypinyin does not
  know) produces no syllable: it is skipped.
- Erhua: a word-final 儿 read er2/er5 merges into the previous syllable (玩儿 -> wanr2), unless
  儿 is a syllable of its own in that word (儿子 has 儿 first; 女儿, 婴儿 ... are listed below).
- Neutral tone: structural particles (的 地 得 了 着 过, by their part of speech), modal particles,
  and the common words listed in NEUTRAL_LAST_WORDS (including reduplicated verbs, 看看 kan4 kan5)
  get tone 5 on their last syllable where pypinyin's dictionary lacks it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from pypinyin import Style, lazy_pinyin

_TONE3 = re.compile(r"^([a-zü]+)([1-5])$")

# Words ending in a 儿 that is a syllable of its own (son/child/person), so not erhua.
ER_SYLLABIC_WORDS = frozenset(
    "女儿 婴儿 幼儿 孤儿 健儿 男儿 胎儿 患儿 宠儿 孙儿 侄儿 少儿 育儿 妻儿 弃儿 乳儿 犬儿 "
    "新生儿 早产儿 混血儿 幸运儿 弄潮儿 孤寡儿 残疾儿 流浪儿 留守儿".split()
)

# Common words whose last syllable is neutral in standard Mandarin (pypinyin often lacks it).
# Words with two usual readings (起来 as a verb or a complement, 东西 thing or east-west) are
# included only where the neutral reading is by far the more frequent one.
NEUTRAL_LAST_WORDS = frozenset(
    "知道 明白 先生 朋友 豆腐 衣服 事情 地方 时候 关系 告诉 喜欢 漂亮 聪明 休息 麻烦 清楚 "
    "舒服 客气 热闹 认识 生意 消息 眼睛 耳朵 脑袋 结实 姑娘 窗户 打扮 打听 收拾 商量 欺负 "
    "大夫 名字 丈夫 媳妇 月亮 太阳 玻璃 讲究 糊涂 马虎 凉快 干净 规矩 老实 踏实 咳嗽 哆嗦 "
    "琢磨 吆喝 招呼 张罗 佩服 钥匙 包袱 称呼 应酬 打量 记得 认得 晓得 值得 舍得 觉得 "
    "爸爸 妈妈 哥哥 姐姐 弟弟 妹妹 爷爷 奶奶 姥姥 叔叔 舅舅 伯伯 婶婶 姑姑 宝宝 娃娃 "
    "星星 谢谢 太太 公公 婆婆 蝈蝈 猩猩 东西 意思 学生 头发 指头 力气 脾气 福气 运气 "
    "云彩 疙瘩 亲戚 嘱咐 吩咐 折腾 道理 委屈 笑话 尾巴 哑巴 嘴巴 下巴 泥巴 篱笆 喇叭 "
    "琵琶 裁缝 买卖 动静 牢骚 厉害 利索 稀罕 暖和 快活 扫帚 相声 芝麻 苗条 便宜 骆驼 "
    "蘑菇 葫芦 萝卜 胡萝卜 狐狸 核桃 石榴 葡萄 风筝 灯笼 功夫 工夫 早上 晚上 "
    # reduplicated verbs ("try doing"): only these, since AA adverbs (处处, 常常) keep their tone
    "看看 说说 想想 试试 听听 走走 问问 聊聊 谈谈 歇歇 尝尝 找找 玩玩 坐坐 动动 练练 "
    "学学 查查 算算 摸摸 瞧瞧 读读 写写 逛逛 转转 猜猜 帮帮 洗洗".split()
)

# Structural particles (when jieba tags them u*) and their neutral-tone reading.
PARTICLE_READINGS = {"的": "de", "地": "de", "得": "de", "了": "le", "着": "zhe", "过": "guo"}


@dataclass
class Syllable:
    char: str       # the character it reads (an erhua syllable keeps the character before 儿)
    pinyin: str     # toneless, e.g. "zhong", "lv", "huar" (erhua appends r)
    tone: int       # 1..5, 5 = neutral
    offset: int     # index of the character in the sentence text
    fixed: bool = False  # set by SSML <phoneme>: no rule may change it


@dataclass
class Word:
    """A lexical word (jieba) with its syllables; characters without pinyin have none."""

    text: str
    pos: str
    syllables: list[Syllable]


@lru_cache(maxsize=65536)
def _word_pinyin(text: str) -> tuple[tuple[str, int] | None, ...]:
    """(toneless pinyin, tone) per character of a word, None where pypinyin has no reading."""
    readings = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True)
    if len(readings) != len(text):  # pypinyin keeps a run of unknown characters as one item
        return tuple(_word_pinyin(c)[0] for c in text)
    result = []
    for reading in readings:
        match = _TONE3.match(reading)
        result.append((match.group(1).replace("ü", "v"), int(match.group(2))) if match else None)
    return tuple(result)


def word_syllables(text: str, pos: str, offset: int, overrides: dict[int, tuple[str, int]]) -> Word:
    """The Word for `text` starting at `offset` in the sentence; overrides: offset -> (pinyin, tone)."""
    syllables = []
    for i, (char, reading) in enumerate(zip(text, _word_pinyin(text))):
        if offset + i in overrides:
            pinyin, tone = overrides[offset + i]
            syllables.append(Syllable(char, pinyin, tone, offset + i, fixed=True))
        elif reading is not None:
            syllables.append(Syllable(char, reading[0], reading[1], offset + i))
    word = Word(text, pos, syllables)
    _apply_erhua(word)
    _apply_neutral_tone(word)
    return word


def _apply_erhua(word: Word) -> None:
    syls = word.syllables
    if (len(word.text) < 2 or word.text[-1] != "儿" or word.text in ER_SYLLABIC_WORDS
            or len(syls) < 2 or syls[-1].char != "儿" or syls[-1].fixed or syls[-2].fixed
            or syls[-1].pinyin != "er" or syls[-1].tone not in (2, 5) or syls[-2].pinyin.endswith("r")):
        return
    syls[-2].pinyin += "r"
    del syls[-1]


def _apply_neutral_tone(word: Word) -> None:
    syls = [s for s in word.syllables if not s.fixed]
    if not syls or syls[-1] is not word.syllables[-1]:
        return
    last = syls[-1]
    if len(word.text) == 1:
        if word.pos.startswith("u") and word.text in PARTICLE_READINGS:
            last.pinyin = PARTICLE_READINGS[word.text]
            last.tone = 5
        elif word.pos == "y":
            last.tone = 5
    elif word.text in NEUTRAL_LAST_WORDS:
        last.tone = 5
