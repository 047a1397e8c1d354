"""Shared pytest fixtures: random-weight ModelScope model directories, their exports and repositories
(written once per session), and the clean-up of stubs a test killed."""

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


def export_voice(model_dir: Path, out: Path) -> Path:
    """An export of a model directory's default voice (one voice halves the export)."""
    subprocess.run([sys.executable, "-m", "export", str(model_dir), "--out", str(out), "--voice", DEFAULT_VOICES[0]],
                   check=True)
    return out


@pytest.fixture(scope="session")
def tiny_export(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_voice(tiny_model_dir, tmp_path_factory.mktemp("tiny_export"))


@pytest.fixture(scope="session")
def tiny_noncausal_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny fixture with KAN-TTS's non-causal HiFi-GAN (a right context as well as a left one)."""
    model_dir = make_model_dir(tmp_path_factory.mktemp("tiny_noncausal_model_dir"), size="tiny", causal_vocoder=False)
    return export_voice(model_dir, tmp_path_factory.mktemp("tiny_noncausal_export"))


@pytest.fixture(scope="session")
def tiny_repository(tiny_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CPU model repository of the tiny fixture's default voice."""
    return generate(tiny_export, tmp_path_factory.mktemp("tiny_repo") / "model_repository", "cpu")


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


@pytest.fixture(scope="session")
def family_export(family_dir, tmp_path_factory: pytest.TempPathFactory):
    """family_export(name) -> family_dir(name) exported, on first use."""
    made: dict[str, Path] = {}

    def export(name: str) -> Path:
        if name not in made:
            out = tmp_path_factory.mktemp(f"export_{name}")
            subprocess.run([sys.executable, "-m", "export", str(family_dir(name)), "--out", str(out)], check=True,
                           capture_output=True)
            made[name] = out
        return made[name]

    return export


@pytest.fixture
def killed_stub_regions():
    """Shared-memory regions of stubs a test killed; a killed stub cannot remove its own, so we do.
    Only these exact names: other servers on this machine have regions of their own."""
    regions: list[str] = []
    yield regions
    for region in regions:
        (Path("/dev/shm") / region).unlink(missing_ok=True)
