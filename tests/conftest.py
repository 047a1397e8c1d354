"""Shared pytest fixtures: random-weight ModelScope model directories, written once per session."""

import subprocess
import sys
from pathlib import Path

import pytest
from gateway_support import with_stream_model

from deploy.launcher import TritonServer
from deploy.repository import generate
from gateway.launcher import GatewayProcess
from models.fixtures import DEFAULT_VOICES, make_model_dir, make_work_dir

# The tiny model directory of each family that tests/data/kantts/ holds KAN-TTS's and ModelScope's own outputs
# for (its README says how they were recorded): the fixture maker's arguments.
FAMILY_DIRS = {
    "emo16k": dict(family="emo16k", seed=0),
    "multisp24k": dict(family="multisp24k", seed=1, speaker_list="M7,xiaoyu,F7"),  # F7 is not the list's first
    "nsf24k": dict(family="nsf24k", seed=0),
    "nsf16k": dict(family="nsf16k", seed=0),
    "personal16k": dict(family="personal16k", seed=0),
    "workdir": None,  # the work directory of a personal-voice fine-tuning run, seed 0
}


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


@pytest.fixture(scope="session")
def gateway_triton(tiny_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    """Triton with the tiny repository and a stand-in streaming model, models loaded and unloaded on request."""
    repository = with_stream_model(tiny_repository, tmp_path_factory.mktemp("gateway_repo") / "model_repository")
    with TritonServer(repository, extra_args=["--model-control-mode=explicit", "--load-model=*"]) as server:
        yield server


@pytest.fixture(scope="session")
def gateway_process(gateway_triton, tmp_path_factory: pytest.TempPathFactory):
    """A gateway with the default settings in front of gateway_triton."""
    with GatewayProcess(gateway_triton.grpc_url, tmp_path_factory.mktemp("gateway") / "gateway.log") as gateway:
        yield gateway


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory: pytest.TempPathFactory):
    """family_dir(name) -> the tiny directory FAMILY_DIRS[name] describes, written on first use."""
    made: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in made:
            out = tmp_path_factory.mktemp(f"family_{name}")
            arguments = FAMILY_DIRS[name]
            made[name] = make_work_dir(out, "tiny", seed=0) if arguments is None else make_model_dir(out, "tiny", **arguments)
        return made[name]

    return make
