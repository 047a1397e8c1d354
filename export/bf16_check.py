"""The BF16 CPU vocoder's quality record: a voice's vocoder.onnx on OpenVINO in BF16 against FP32.

Where the CPU computes BF16 natively (AVX512-BF16 or AMX), OpenVINO runs the vocoder's convolutions
in BF16 with FP32 accumulation, several times faster than FP32. Whether that is good enough is decided
on sound: the voice's own acoustic model makes the mels of CHECK_SENTENCES, both precisions vocode them,
and the re-analysed log-mel L1 between the two outputs must stay within serving.contract.MAX_L1_VS_FP32
on every sentence (serving.contract.BF16Check, written as <voice>/vocoder.bf16.json). The second bound,
the distance to real speech, needs trained weights and a recording, so it is checked on the universal
HiFi-GAN V1 (tests/test_vocoder_precision.py, bench/precision.py), not per voice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.mel import log_mel_l1, log_mel_spectrogram
from serving.contract import BF16, FP32, AudioSettings, BF16Check
from serving.runtime.vocoder import VocoderRuntime

# Sentences whose acoustic-model mels drive the per-voice quality record (different lengths and tones).
CHECK_SENTENCES = (
    "欢迎使用语音合成服务，今天天气很好。",
    "我们明天早上八点出发，请大家准时集合。",
    "春眠不觉晓，处处闻啼鸟。",
)


def bf16_check(vocoder_onnx: Path, mels: list[np.ndarray], analysis: AudioSettings, sentences: list[str],
               sources: list[np.ndarray] | None = None) -> BF16Check:
    """Vocode `mels` ([frames, n_mels] each; an NSF vocoder with their `sources`) in both precisions and compare
    the re-analysed outputs."""
    fp32_audio = VocoderRuntime(vocoder_onnx, FP32).vocode(mels, sources)
    bf16 = VocoderRuntime(vocoder_onnx, BF16)
    bf16_audio = bf16.vocode(mels, sources)
    l1 = [log_mel_l1(log_mel_spectrogram(low, analysis), log_mel_spectrogram(ref, analysis))
          for low, ref in zip(bf16_audio, fp32_audio)]
    return BF16Check(sentences=list(sentences), l1_vs_fp32=[round(x, 5) for x in l1], in_bf16=bf16.precision == BF16)
