"""Export a ModelScope Sambert-HifiGan model directory for serving, in one command:

    python -m export MODEL_DIR --out DIR [--voice NAME ...]

For each voice (every voice of voices/voices.json by default; --voice may repeat), in voices.json order:
load it strictly (models.loader), write the acoustic graphs (export.onnx_acoustic) and the vocoder
(export.onnx_vocoder) into DIR/<voice>/ with their checks, compare the served CPU runtimes with PyTorch
on one sentence, and record how the vocoder fares in BF16 against FP32 (export.bf16_check;
deploy.vocoder_precision decides where BF16 is served).
Then write DIR/export.json (the first exported voice is the default voice).
Checkpoints load as tensors and plain data only; one that holds pickled Python objects is refused unless
--trust-checkpoint is given (export.json then records it).
A mistake in the command or the model directory ends with one line, `error: ...`, and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from export.bf16_check import CHECK_SENTENCES, bf16_check
from export.onnx_acoustic import export_acoustic
from export.onnx_vocoder import export_vocoder, kan_vocoder_meta
from models.loader import CheckpointError, LoadedVoice, load_voice
from models.model_dir import ModelDir, ModelDirError, Voice
from models.reference import synthesize, vocode
from serving.contract import VOCODER_BF16_CHECK, VOCODER_ONNX, ExportConfig, NsfSpec, VoiceSpec
from serving.frontend import FrontEnd
from serving.runtime.acoustic import AcousticRuntime
from serving.runtime.nsf import SourceNoise, vocoder_input
from serving.runtime.vocoder import VocoderRuntime

PARITY_SENTENCE = "欢迎使用语音合成服务，今天天气很好。"
PARITY_TOLERANCE = 1e-3  # max abs difference of the mel and of the waveform, served runtimes (FP32) vs PyTorch


class ExportError(Exception):
    """The export cannot be done as asked, or its result is wrong (one-line message)."""


class Progress:
    """Prints one line per step with the seconds since the export started."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.1f}s] {message}", flush=True)


def selected_voices(model_dir: ModelDir, names: list[str] | None) -> list[Voice]:
    """The voices to export in voices.json order, checked to share one audio configuration."""
    for name in names or []:
        model_dir.voice(name)  # an unknown voice fails here, before any work
    voices = [model_dir.voice(name) for name in model_dir.voice_names if not names or name in names]
    sources = {v.voc_params["nsf_params"]["nb_harmonics"] if v.nsf else 0 for v in voices}
    if len(sources) > 1:
        raise ExportError("the voices are not all NSF voices of one source size (nsf_params.nb_harmonics): export them "
                          "into separate directories with --voice")
    if len({v.audio for v in voices}) > 1:
        detail = ", ".join(
            f"{v.name}: {v.audio.sample_rate} Hz, hop {v.audio.hop_length}, {v.audio.n_mels} mels" for v in voices
        )
        raise ExportError(
            f"the voices do not share one audio configuration ({detail}): export them into separate directories "
            "with --voice"
        )
    return voices


def export_voice(model_dir: ModelDir, voice: Voice, out: Path, progress: Progress,
                 trust_checkpoints: bool) -> VoiceSpec:
    loaded = load_voice(model_dir, voice.name, trust_checkpoints)
    progress(f"{voice.name}: loaded {voice.am_checkpoint.name} (acoustic) and {voice.voc_checkpoint.name} (vocoder)")
    for path in loaded.trusted_checkpoints:
        progress(f"{voice.name}: {path} holds pickled Python objects; loaded in full as --trust-checkpoint asks")
    voice_dir = out / voice.name
    export_acoustic(loaded.am, voice_dir, loaded.vocabulary.sizes(), log=lambda line: progress(f"{voice.name}: {line}"))
    vocoder_path = voice_dir / VOCODER_ONNX
    export_vocoder(loaded.vocoder, vocoder_path, kan_vocoder_meta(loaded.vocoder), log=lambda _: None)
    progress(f"{voice.name}: {VOCODER_ONNX}: checked")
    frontend, acoustic = FrontEnd(loaded.vocabulary), AcousticRuntime(voice_dir)
    check_parity(loaded, voice_dir, frontend, acoustic, progress)
    record_bf16(loaded, voice_dir, acoustic, frontend, progress)
    return voice_spec(loaded)


def voice_spec(loaded: LoadedVoice) -> VoiceSpec:
    """What the server needs to know of a voice besides its graphs."""
    nsf = None
    if loaded.voice.nsf:
        nsf = NsfSpec(loaded.voice.f0_norm, loaded.vocoder.nsf_harmonics, loaded.vocoder.nsf_sample_rate)
    return VoiceSpec(
        speakers=loaded.vocabulary.speakers,
        has_mask=loaded.voice.has_mask,
        outputs_per_step=loaded.am.r,
        max_len=loaded.am.max_phones,
        vocoder_context_frames=list(loaded.vocoder.context_frames()),
        trusted_checkpoints=[str(path) for path in loaded.trusted_checkpoints],
        nsf=nsf,
    )


@torch.no_grad()
def check_parity(loaded: LoadedVoice, voice_dir: Path, frontend: FrontEnd, acoustic: AcousticRuntime,
                 progress: Progress) -> None:
    """The acoustic graphs (ONNX Runtime) and the vocoder (OpenVINO, FP32) against PyTorch on PARITY_SENTENCE
    (an NSF vocoder given the same frames with its noise off: its noise is random)."""
    ids = frontend(PARITY_SENTENCE)[0].ids
    (mel,) = acoustic.synthesize([ids], [1.0])
    batch = torch.from_numpy(ids)[None]
    (expected,) = synthesize(loaded.am, batch[..., :4], batch[..., 4], batch[..., 5], [len(ids)])
    if mel.shape != expected.mel.shape:
        raise ExportError(
            f"{loaded.name}: the acoustic graphs give {len(mel)} mel frames, PyTorch {len(expected.mel)}: the exported "
            "acoustic graphs do not match the model"
        )
    spec = voice_spec(loaded)
    frames, source = expected.mel, None
    if spec.nsf:
        frames, source = vocoder_input(expected.mel, spec.nsf, loaded.audio.hop_length, SourceNoise(enabled=False))
    (audio,) = VocoderRuntime(voice_dir / VOCODER_ONNX).vocode([frames], None if source is None else [source])
    expected_audio = vocode(loaded, expected.mel, SourceNoise(enabled=False))
    mel_diff = float(np.abs(mel - expected.mel).max())
    audio_diff = float(np.abs(audio - expected_audio).max())
    progress(
        f"{loaded.name}: served runtimes vs PyTorch on one sentence ({len(ids)} tokens, {len(mel)} frames): "
        f"mel max abs diff {mel_diff:.1e}, waveform max abs diff {audio_diff:.1e}"
    )
    if max(mel_diff, audio_diff) > PARITY_TOLERANCE:
        raise ExportError(
            f"{loaded.name}: the served runtimes differ from PyTorch by more than {PARITY_TOLERANCE} (mel {mel_diff:.1e}, "
            f"waveform {audio_diff:.1e}): the export is wrong, do not serve it"
        )


def record_bf16(loaded: LoadedVoice, voice_dir: Path, acoustic: AcousticRuntime, frontend: FrontEnd,
                progress: Progress) -> None:
    """Write the vocoder's BF16 quality record: BF16 vs FP32 on the acoustic model's mels of CHECK_SENTENCES
    (an NSF vocoder with their sources, its noise off)."""
    ids = [frontend(sentence)[0].ids for sentence in CHECK_SENTENCES]
    mels, sources = acoustic.synthesize(ids, [1.0] * len(ids)), None
    nsf = voice_spec(loaded).nsf
    if nsf:
        made = [vocoder_input(m, nsf, loaded.audio.hop_length, SourceNoise(enabled=False)) for m in mels]
        mels, sources = [mel for mel, _ in made], [source for _, source in made]
    check = bf16_check(voice_dir / VOCODER_ONNX, mels, loaded.audio, list(CHECK_SENTENCES), sources)
    check.write(voice_dir)
    verdict = "holds" if check.holds else "does NOT hold (served in BF16 only if asked for explicitly)"
    progress(f"{loaded.name}: {VOCODER_BF16_CHECK}: {check.summary()} on {len(mels)} sentences: {verdict}")


def run(model_path: Path, out: Path, names: list[str] | None, trust_checkpoints: bool = False) -> Path:
    progress = Progress()
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file: give a directory")
    model_dir = ModelDir(model_path)
    voices = selected_voices(model_dir, names)
    progress(f"exporting {len(voices)} voice(s) of {model_dir.path}: {', '.join(v.name for v in voices)}")
    specs = {voice.name: export_voice(model_dir, voice, out, progress, trust_checkpoints) for voice in voices}
    config = ExportConfig(
        default_voice=voices[0].name,
        audio=voices[0].audio,
        voices=specs,
        source=str(model_dir.path.resolve()),
    )
    path = config.write(out)
    progress(f"wrote {path}; done")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export", description="Export a ModelScope Sambert-HifiGan model directory to ONNX for serving."
    )
    parser.add_argument("model_dir", type=Path, help="the downloaded model directory (configuration.json, voices/)")
    parser.add_argument("--out", type=Path, required=True, help="export directory (DIR/<voice>/*.onnx, DIR/export.json)")
    parser.add_argument("--voice", action="append", help="a voice to export (repeatable; default: every voice)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="load checkpoints that hold pickled Python objects besides tensors (this runs code from "
                             "them: only for files you trust); export.json records which ones needed it")
    args = parser.parse_args(argv)
    try:
        run(args.model_dir, args.out, args.voice, args.trust_checkpoint)
    except (ModelDirError, CheckpointError, ExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # an --out that cannot be written, a file that vanished, a full disk
        print(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
