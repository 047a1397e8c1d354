"""The GPU vocoder's bucketing, checked on CPU: an ONNX Runtime session of the same vocoder graph stands in
for the TensorRT engine. Each mel is padded to a multiple of the bucket and batched with the mels of its
bucket; every waveform cut back must equal the item vocoded alone at its own length: exactly for a causal
vocoder, outside the last right-context frames for a non-causal one (those frames see the padding)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.fp16_check import random_mels
from export.onnx_vocoder import export_vocoder, kan_vocoder_meta
from models.fixtures import voc_config
from models.hifigan import KanHifiGanGenerator
from serving.contract import MEL, VOCODER_ONNX
from serving.runtime.vocoder_engine import EngineCall, EngineVocoder

FRAMES = [37, 11, 24, 3, 30, 17, 6, 26, 40, 9]  # buckets of 16: 48, 16, 32, 16, 32, 32, 16, 32, 48, 16
BUCKET = 16
FLOAT_TOLERANCE = 1e-5  # the same graph on another shape sums in another order


def exported(causal: bool, out: Path) -> tuple[KanHifiGanGenerator, Path]:
    torch.manual_seed(0)
    vocoder = KanHifiGanGenerator(**voc_config("tiny", causal)["Model"]["Generator"]["params"])
    vocoder.remove_weight_norm()
    return vocoder, export_vocoder(vocoder.eval(), out / VOCODER_ONNX, kan_vocoder_meta(vocoder), log=lambda _: None)


def engine_and_reference(path: Path, shapes: list):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def infer(mel: np.ndarray, source: None) -> np.ndarray:
        shapes.append(mel.shape)
        return session.run(None, {MEL.name: mel})[0]

    def alone(mel: np.ndarray) -> np.ndarray:
        return session.run(None, {MEL.name: np.ascontiguousarray(mel.T[None])})[0][0, 0]

    return infer, alone


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "noncausal"])
def test_bucketed_engine_batches_equal_items_alone(causal, tmp_path):
    vocoder, path = exported(causal, tmp_path)
    shapes: list = []
    infer, alone = engine_and_reference(path, shapes)
    mels = random_mels(vocoder.in_channels, FRAMES, seed=1)
    audio = EngineVocoder(EngineCall(infer, max_batch_size=3), vocoder.hop_length, vocoder.in_channels,
                          BUCKET).vocode(mels)
    # One shape per bucket, at most the engine's batch size per call, every item in exactly one call.
    assert all(shape[2] % BUCKET == 0 and shape[0] <= 3 for shape in shapes)
    assert sorted(s[2] for s in shapes) == [16, 16, 32, 32, 48]
    assert sum(shape[0] for shape in shapes) == len(FRAMES)
    context = vocoder.right_context_frames()
    assert (context == 0) == causal
    for mel, wav in zip(mels, audio):
        reference = alone(mel)
        assert wav.shape == reference.shape == (len(mel) * vocoder.hop_length,)
        untouched = max(0, len(mel) - context) * vocoder.hop_length
        assert np.abs(wav[:untouched] - reference[:untouched]).max(initial=0) < FLOAT_TOLERANCE
        if not causal and len(mel) % BUCKET:  # the stated bound is not empty: padding does reach the tail
            assert np.abs(wav[untouched:] - reference[untouched:]).max() > FLOAT_TOLERANCE
