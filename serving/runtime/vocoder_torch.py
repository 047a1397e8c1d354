"""The BF16 CPU vocoder: the TorchScript file that `python -m export --cpu-bf16-vocoder` writes, run by torch.

The only module of `serving` that imports torch, and only a deployment that chooses BF16 imports it
(serving.vocoder_precision). It loads the saved TorchScript, not the export package's classes. Batching,
trimming and the recomputed tails of a non-causal vocoder are VocoderRuntime's; only the forward differs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from serving.runtime.vocoder import META_HOP, META_N_MELS, META_RIGHT_CONTEXT, VocoderModelError, VocoderRuntime

META_FILE = "vocoder.json"  # TorchScript extra file holding the metadata props, as in the ONNX file


class TorchVocoderRuntime(VocoderRuntime):
    def __init__(self, path: str | Path, intra_op_threads: int | None = None):
        if intra_op_threads:
            torch.set_num_threads(intra_op_threads)
        extra = {META_FILE: ""}
        self.module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra).eval()
        props = json.loads(extra[META_FILE] or "{}")
        missing = [key for key in (META_HOP, META_N_MELS, META_RIGHT_CONTEXT) if key not in props]
        if missing:
            raise VocoderModelError(f"{path} lacks the metadata {', '.join(missing)}: export it again with "
                                    "python -m export MODEL_DIR --out DIR --cpu-bf16-vocoder")
        self.hop_length = int(props[META_HOP])
        self.n_mels = int(props[META_N_MELS])
        self.right_context_frames = int(props[META_RIGHT_CONTEXT])

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.module(torch.from_numpy(batch)).numpy()
