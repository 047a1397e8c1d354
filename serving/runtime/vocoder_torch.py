"""The BF16 CPU vocoder: the program that `python -m export --cpu-bf16-vocoder` saves (torch.export), run by torch.

The only module of `serving` that imports torch, and only a deployment that chooses BF16 imports it
(deploy.vocoder_precision). It loads the saved program, not the export package's classes.

Like the FP32 runtime it vocodes the items of a batch one at a time, each at its own length, which
matters more here: oneDNN sums in a different order for a different input length, and rounding to BF16
between the layers turns those last-bit differences into audible ones (a trained vocoder's item padded
to a longer batch differs from the same item alone by ~0.03 log-mel L1 everywhere, results/precision.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

# Before torch loads OpenMP: idle threads sleep rather than spin, since the server's other models share
# these cores (spinning made a call take 0.8 to 9.7 s instead of a steady 0.2 to 0.7 s here).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

from serving.contract import META_HOP, META_N_MELS
from serving.runtime.vocoder import VocoderModelError, VocoderRuntime

META_FILE = "vocoder.json"  # extra file of the saved program: the metadata props, as in the ONNX file


class TorchVocoderRuntime(VocoderRuntime):
    def __init__(self, path: str | Path, intra_op_threads: int | None = None):
        if intra_op_threads:
            torch.set_num_threads(intra_op_threads)
        extra = {META_FILE: ""}
        self.module = torch.export.load(str(path), extra_files=extra).module()
        props = json.loads(extra[META_FILE] or "{}")
        missing = [key for key in (META_HOP, META_N_MELS) if key not in props]
        if missing:
            raise VocoderModelError(f"{path} lacks the metadata {', '.join(missing)}: export it again with "
                                    "python -m export MODEL_DIR --out DIR --cpu-bf16-vocoder")
        self.hop_length = int(props[META_HOP])
        self.n_mels = int(props[META_N_MELS])
        self.source_channels = 0  # the BF16 program is exported for vocoders without an NSF source

    def _forward(self, mel: np.ndarray, source: None) -> np.ndarray:
        with torch.inference_mode():
            return self.module(torch.from_numpy(np.ascontiguousarray(mel.T[None])))[0, 0].numpy()
