"""Shared pytest fixtures: random-weight ModelScope model directories, written once per session."""

import subprocess
import sys
from pathlib import Path

import pytest

from deploy.repository import generate
from models.fixtures import DEFAULT_VOICES, make_model_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-voice model directory with tiny networks (same layout, vocabularies and audio config)."""
    return make_model_dir(tmp_path_factory.mktemp("tiny_model_dir"), size="tiny")


@pytest.fixture(scope="session")
def full_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-voice model directory with the real 16 kHz network sizes (~140 MB, a few seconds to write)."""
    return make_model_dir(tmp_path_factory.mktemp("full_model_dir"), size="full")


@pytest.fixture(scope="session")
def tiny_repository(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CPU model repository of the tiny fixture's default voice (one voice halves the export)."""
    export_dir = tmp_path_factory.mktemp("tiny_export")
    subprocess.run([sys.executable, "-m", "export", str(tiny_model_dir), "--out", str(export_dir),
                    "--voice", DEFAULT_VOICES[0]], check=True)
    return generate(export_dir, tmp_path_factory.mktemp("tiny_repo") / "model_repository", "cpu")
