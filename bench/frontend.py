"""Front-end speed on one CPU core: characters per second over the test corpus and a 10k-character text.

    .venv/bin/python -m bench.frontend [--out results/frontend_bench.md]

Each run starts with an empty per-word pinyin cache (the cost a new text pays); the warm figure
repeats the corpus with the cache filled, as a long-running server mostly sees it.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "frontend_corpus.txt"
TARGET_CHARS_PER_S = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "frontend_bench.md")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    args = parser.parse_args()

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    started = time.perf_counter()
    from serving.frontend import FrontEnd, FrontEndError
    from serving.frontend.g2p import _word_pinyin
    from serving.symbols import Vocabulary

    front_end = FrontEnd(Vocabulary.build(["F7"]), max_text_chars=None)
    init_s = time.perf_counter() - started

    texts = [line for line in CORPUS.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    long_text = ""
    while len(long_text) < 10_000:
        long_text += "".join(texts)
    long_text = long_text[:10_000]

    def run(batch: list[str], cold: bool) -> float:
        best = float("inf")
        for _ in range(args.repeat):
            if cold:
                _word_pinyin.cache_clear()
            start = time.perf_counter()
            for text in batch:
                try:
                    front_end(text)
                except FrontEndError:
                    pass  # the corpus has a few texts with nothing to read
            best = min(best, time.perf_counter() - start)
        return sum(map(len, batch)) / best

    corpus_cold = run(texts, cold=True)
    corpus_warm = run(texts, cold=False)
    long_cold = run([long_text], cold=True)
    rows = [
        ("corpus, cold word cache", f"{len(texts)} texts, {sum(map(len, texts))} chars", corpus_cold),
        ("corpus, warm word cache", f"{len(texts)} texts, {sum(map(len, texts))} chars", corpus_warm),
        ("one 10,000-char text, cold word cache", f"{len(front_end(long_text))} sentences", long_cold),
    ]
    lines = [
        "# Front-end speed (python -m bench.frontend)",
        "",
        f"One core of {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
        f"best of {args.repeat} runs. Target: at least {TARGET_CHARS_PER_S} chars/s.",
        f"Start-up (jieba dictionary, pypinyin, FrontEnd): {init_s:.2f} s, once per process.",
        "",
        "| input | size | chars/s |",
        "|---|---|---|",
        *[f"| {name} | {size} | {speed:,.0f} |" for name, size, speed in rows],
        "",
    ]
    report = "\n".join(lines)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
