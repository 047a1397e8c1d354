"""Shared pytest fixtures: random-weight ModelScope model directories, written once per session."""

from pathlib import Path

import pytest

from export.fixtures import make_model_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-voice model directory with tiny networks (same layout, vocabularies and audio config)."""
    return make_model_dir(tmp_path_factory.mktemp("tiny_model_dir"), size="tiny")


@pytest.fixture(scope="session")
def full_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-voice model directory with the real 16 kHz network sizes (~140 MB, a few seconds to write)."""
    return make_model_dir(tmp_path_factory.mktemp("full_model_dir"), size="full")
