"""Benchmark texts: Chinese requests of three lengths, every one unique in a run, in a fixed seeded order.

Unique texts mean no cache anywhere (response cache, front-end memo) can help either system. Every
level of the run gets the same mix (short, medium, long in turn), so levels are comparable.
"""

from __future__ import annotations

import random

SUBJECTS = ["我们", "小王", "张老师", "这家公司", "我的朋友", "他们", "李经理", "妈妈", "同学们", "那位医生",
            "爷爷", "新来的同事"]
TIMES = ["今天上午", "明天下午", "这个周末", "昨天晚上", "下个月", "每天早上", "刚才", "去年夏天", "春节前"]
PLACES = ["在图书馆", "在公园里", "在火车站", "在学校门口", "在市中心", "在海边", "在会议室", "在家里", "在小区楼下"]
ACTIONS = ["看书", "散步", "开会", "买东西", "学习中文", "讨论新的计划", "等朋友", "做饭", "打篮球", "写报告",
           "照顾孩子", "练习书法"]
ENDINGS = ["。", "吧。", "了。", "呢。"]
COMMENTS = ["大家都觉得很有意思", "天气特别好", "一切都很顺利", "结果比预想的要好", "路上有一点堵车",
            "气氛非常热闹", "每个人都很认真", "时间过得很快"]

KINDS = ("short", "medium", "long")


def _short(rng: random.Random) -> str:  # about 4 to 9 characters, one clause
    return rng.choice(SUBJECTS) + rng.choice(ACTIONS) + rng.choice(ENDINGS)


def _medium(rng: random.Random) -> str:  # about 14 to 22 characters, one sentence of two clauses
    return f"{rng.choice(TIMES)}，{rng.choice(SUBJECTS)}{rng.choice(PLACES)}{rng.choice(ACTIONS)}。"


def _long(rng: random.Random) -> str:  # about 40 to 60 characters, three sentences
    return (f"{rng.choice(TIMES)}，{rng.choice(SUBJECTS)}{rng.choice(PLACES)}{rng.choice(ACTIONS)}，"
            f"{rng.choice(COMMENTS)}。{rng.choice(SUBJECTS)}说{rng.choice(TIMES)}还要{rng.choice(PLACES)}"
            f"{rng.choice(ACTIONS)}。{rng.choice(COMMENTS)}。")


MAKERS = {"short": _short, "medium": _medium, "long": _long}


class TextPool:
    """Hands out unique texts, short, medium and long in turn, from one seeded generator."""

    def __init__(self, seed: int = 0):
        self._rng = random.Random(seed)
        self._used: set[str] = set()

    def take(self, n: int) -> list[str]:
        """The next `n` texts; the mix restarts at "short" for every call, so equal-sized calls have equal mixes."""
        return [self._unique(KINDS[i % len(KINDS)]) for i in range(n)]

    def _unique(self, kind: str) -> str:
        for _ in range(10_000):
            text = MAKERS[kind](self._rng)
            if text not in self._used:
                self._used.add(text)
                return text
        raise RuntimeError(f"ran out of unique {kind} texts: ask for fewer requests")


def kind_of(index: int) -> str:
    """The length class of the `index`-th text of a `TextPool.take` call."""
    return KINDS[index % len(KINDS)]
