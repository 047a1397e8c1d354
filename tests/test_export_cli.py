"""`python -m export` on the tiny fixture, run as a user runs it (a subprocess)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from models.model_dir import ModelDir
from serving.contract import ACOUSTIC_GRAPHS, EXPORT_CONFIG_FILE, VOCODER_BF16_CHECK, VOCODER_ONNX, ExportConfig
from serving.limits import MAX_SENTENCE_TOKENS
from serving.runtime.acoustic import AcousticRuntime
from serving.runtime.vocoder import VocoderRuntime

ROOT = Path(__file__).resolve().parent.parent


def run_export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "export", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def assert_one_line_error(result: subprocess.CompletedProcess, pattern: str) -> None:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(pattern, lines[0]), lines[0]


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export_cli")
    result = run_export(tiny_model_dir, "--out", out)
    assert result.returncode == 0, result.stderr
    return out, result.stdout


def test_exports_every_voice_and_writes_export_json(tiny_model_dir, exported):
    out, stdout = exported
    model_dir = ModelDir(tiny_model_dir)
    config = ExportConfig.read(out)
    assert list(config.voices) == model_dir.voice_names
    assert config.default_voice == model_dir.voice_names[0]
    for name in model_dir.voice_names:
        voice = model_dir.voice(name)
        assert sorted(p.name for p in (out / name).iterdir()) == sorted([*ACOUSTIC_GRAPHS, VOCODER_ONNX, VOCODER_BF16_CHECK])
        spec = config.voices[name]
        assert spec.speakers == voice.vocabulary.speakers and spec.has_mask == voice.has_mask
        assert (spec.outputs_per_step, spec.max_len) == (voice.am_params["outputs_per_step"], MAX_SENTENCE_TOKENS)
        assert spec.nsf is None
        assert (config.audio.sample_rate, config.audio.hop_length, config.audio.n_mels) == (
            voice.audio.sample_rate, voice.audio.hop_length, voice.audio.n_mels)
    # One progress line per step, each with the elapsed seconds; a parity figure per voice.
    lines = stdout.strip().splitlines()
    assert all(re.match(r"\[\s*\d+\.\d+s\] ", line) for line in lines), stdout
    diffs = [float(d) for d in re.findall(r"mel max abs diff (\S+),", stdout)]
    assert len(diffs) == len(model_dir.voice_names) and max(diffs) <= 1e-3


def test_exported_voice_runs_end_to_end(tiny_model_dir, exported):
    out, _ = exported
    name = ModelDir(tiny_model_dir).voice_names[1]
    ids = np.zeros((5, 6), dtype=np.int64)
    (mel,) = AcousticRuntime(out / name).synthesize([ids], [1.0])
    (audio,) = VocoderRuntime(out / name / VOCODER_ONNX).vocode([mel])
    assert len(mel) > 0 and audio.shape == (len(mel) * ExportConfig.read(out).audio.hop_length,)
    assert np.isfinite(audio).all()


def test_voice_option_selects_and_orders_by_voices_json(tiny_model_dir, tmp_path):
    second = ModelDir(tiny_model_dir).voice_names[1]
    result = run_export(tiny_model_dir, "--out", tmp_path, "--voice", second)
    assert result.returncode == 0, result.stderr
    config = ExportConfig.read(tmp_path)
    assert list(config.voices) == [second] and config.default_voice == second
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([EXPORT_CONFIG_FILE, second])


def test_user_errors_exit_with_one_line(tiny_model_dir, tmp_path):
    assert_one_line_error(run_export(tmp_path / "missing", "--out", tmp_path / "out"), "does not exist")
    assert_one_line_error(run_export(tiny_model_dir, "--out", tmp_path / "out", "--voice", "nobody"),
                          "unknown voice 'nobody'")
    assert not (tmp_path / "out").exists()


def test_voices_with_different_audio_configs_are_refused(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    second = ModelDir(model_dir).voice_names[1]
    audio_path = model_dir / "voices" / second / "audio_config.yaml"
    audio = yaml.safe_load(audio_path.read_text())
    audio["audio_config"]["fmax"] = 7600.0  # another mel analysis (a rate of its own is refused earlier)
    audio_path.write_text(yaml.safe_dump(audio))
    assert_one_line_error(run_export(model_dir, "--out", tmp_path / "out"), "do not share one audio configuration")
    assert not (tmp_path / "out").exists()


class CodeInACheckpoint:
    """What a hostile checkpoint carries: unpickling it calls Path.touch on a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_a_checkpoint_that_would_run_code_is_refused_unless_trusted(tiny_model_dir, tmp_path):
    model_dir = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    voice = ModelDir(model_dir).voice()
    marker = tmp_path / "the checkpoint ran code"
    checkpoint = torch.load(voice.am_checkpoint, weights_only=True)
    torch.save({**checkpoint, "optimizer": CodeInACheckpoint(marker)}, voice.am_checkpoint)

    refused = run_export(model_dir, "--out", tmp_path / "out", "--voice", voice.name)
    assert_one_line_error(refused, rf"checkpoint {re.escape(str(voice.am_checkpoint))} holds pickled Python objects "
                                   r"besides tensors.*could run code.*--trust-checkpoint")
    assert not marker.exists()

    trusted = run_export(model_dir, "--out", tmp_path / "out", "--voice", voice.name, "--trust-checkpoint")
    assert trusted.returncode == 0, trusted.stderr
    assert marker.exists()  # trusting a file means running what it holds
    spec = ExportConfig.read(tmp_path / "out").voices[voice.name]
    assert spec.trusted_checkpoints == [str(voice.am_checkpoint)]
