"""Load a voice of a ModelScope Sambert-HifiGan model directory into ready-to-run PyTorch networks.

Strict where ModelScope is lax: ModelScope loads the AM with `strict=False`, which hides missing
and unexpected keys. Here every key and shape of both checkpoints must match the networks their
configs describe, and the embedding tables must match the vocabulary of the config (with the
legacy `has_mask` flag), or one error lists everything that is wrong.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.hifigan import KanHifiGanGenerator, VocoderConfigError
from models.model_dir import ModelDir, ModelDirError, Voice
from models.sambert import KanTtsSambert, UnsupportedSambertConfig
from serving.contract import AudioSettings
from serving.limits import MAX_SENTENCE_TOKENS
from serving.symbols import Vocabulary

# The checkpoint tensor that holds each vocabulary stream's embedding table (rows = symbols); a personal
# (SE) voice has no speaker table.
EMBEDDING_TABLES = {
    "sy": "text_encoder.sy_emb.weight",
    "tone": "text_encoder.tone_emb.weight",
    "syllable_flag": "text_encoder.syllable_flag_emb.weight",
    "word_segment": "text_encoder.ws_emb.weight",
    "emotion": "emo_tokenizer.weight",
    "speaker": "spk_tokenizer.weight",
}
LISTED_PER_KIND = 8  # keys named per kind of mismatch before "... and N more"


class CheckpointError(ValueError):
    """A checkpoint file cannot be read, or is not a KAN-TTS checkpoint at all (one-line message)."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint does not fit the network its config describes: every difference in one message."""

    def __init__(self, path: Path, network: str, missing: list[str], unexpected: list[str],
                 shape_mismatches: list[tuple[str, tuple, tuple]]):
        self.path = path
        self.missing = missing
        self.unexpected = unexpected
        self.shape_mismatches = shape_mismatches
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_first(unexpected)}")
        if shape_mismatches:
            shapes = [f"{key} {list(got)} vs {list(want)} expected" for key, got, want in shape_mismatches]
            parts.append(f"{len(shape_mismatches)} shape mismatch(es): {_first(shapes)}")
        super().__init__(
            f"checkpoint {path} does not match the {network} its config.yaml describes: {'; '.join(parts)}. "
            "The checkpoint and the config.yaml next to it must come from the same model download"
        )


class VocabularyMismatchError(CheckpointError):
    """The AM's embedding tables do not have one row per symbol of the voice's vocabulary."""


class UntrustedCheckpointError(CheckpointError):
    """A checkpoint holds pickled Python objects besides tensors; loading them could run code."""


class CheckpointReader:
    """Reads KAN-TTS training checkpoints as tensors and plain data only (torch's weights_only), so that
    a checkpoint cannot run code while it loads. With `trust`, a checkpoint that needs more is loaded in
    full; `trusted` lists the files that needed it."""

    def __init__(self, trust: bool = False):
        self.trust = trust
        self.trusted: list[Path] = []

    def read(self, path: Path, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """The state_dict stored at `checkpoint[keys[0]][keys[1]]...` of a KAN-TTS training checkpoint."""
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"cannot read checkpoint {path}: it is not a PyTorch checkpoint (a zip archive); "
                                  "the file is damaged: download the model again")
        try:
            node = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if not self.trust:
                raise UntrustedCheckpointError(
                    f"checkpoint {path} holds pickled Python objects besides tensors, and loading them could run "
                    f"code, so it is refused ({_unsafe_global(e)}); if you trust the file (your own training run), "
                    "export with --trust-checkpoint") from None
            node = self._load_in_full(path)
            self.trusted.append(path)
        except Exception as e:  # a truncated zip, a zip that is not a torch file, ...
            raise CheckpointError(f"cannot read checkpoint {path} ({type(e).__name__}: {_first_sentence(e)}): the "
                                  "file is damaged or not a PyTorch checkpoint; download the model again") from e
        return _state_dict(node, path, keys)

    @staticmethod
    def _load_in_full(path: Path) -> object:
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # a pickle of classes this environment lacks, ...
            raise CheckpointError(f"cannot read checkpoint {path} even in full ({type(e).__name__}: "
                                  f"{_first_sentence(e)})") from e


@dataclass
class LoadedVoice:
    """A voice ready for inference: both networks in eval mode, the vocoder's weight norm folded."""

    name: str
    am: KanTtsSambert
    vocoder: KanHifiGanGenerator
    audio: AudioSettings
    vocabulary: Vocabulary
    voice: Voice  # where it came from: paths, configs, the chosen checkpoints
    trusted_checkpoints: list[Path]  # loaded in full, with --trust-checkpoint


def load_voice(model_dir: str | Path | ModelDir, voice: str | None = None, trust_checkpoints: bool = False) -> LoadedVoice:
    """Load `voice` (the directory's default voice when None) from a ModelScope model directory."""
    spec = (model_dir if isinstance(model_dir, ModelDir) else ModelDir(model_dir)).voice(voice)
    reader = CheckpointReader(trust_checkpoints)
    am = load_acoustic_model(spec, reader)
    vocoder = load_vocoder(spec, reader)
    return LoadedVoice(spec.name, am, vocoder, spec.audio, spec.vocabulary, spec, reader.trusted)


def load_acoustic_model(spec: Voice, reader: CheckpointReader | None = None) -> KanTtsSambert:
    """The voice's Sambert AM with its checkpoint loaded strictly, in eval mode, its position table covering
    serving.limits.MAX_SENTENCE_TOKENS phones (and an SE voice's speaker embedding from its se.npy)."""
    path = spec.am_checkpoint
    state = (reader or CheckpointReader()).read(path, ("model",))
    # Table sizes come from the checkpoint (legacy has_mask=false ones have a row fewer); a table the
    # checkpoint lacks falls back to the config's size and is then reported as a missing key.
    config_sizes = spec.vocabulary.sizes()
    tables = embedding_tables(spec)
    sizes = {
        stream: state[key].shape[0] if _is_table(state.get(key)) else config_sizes[stream]
        for stream, key in tables.items()
    }
    config_path = spec.paths.am_config
    try:
        am = KanTtsSambert(spec.am_params, sizes)
    except UnsupportedSambertConfig as e:
        raise ModelDirError(f"{config_path}: {e}") from None
    except KeyError as e:
        raise ModelDirError(
            f"{config_path} has no Model.KanTtsSAMBERT.params.{e.args[0]}: restore the file from the model download"
        ) from None
    load_strict(am, state, path, "KAN-TTS Sambert acoustic model")
    _check_vocabulary(spec, sizes, path)
    if spec.speaker_embedding:
        am.set_speaker_embedding(read_speaker_embedding(spec.paths.speaker_embedding, am.params["speaker_units"]))
    am.extend_position_table(MAX_SENTENCE_TOKENS)
    return am.eval()


def embedding_tables(spec: Voice) -> dict[str, str]:
    """The embedding tables the voice's checkpoint holds, by vocabulary stream."""
    return {stream: key for stream, key in EMBEDDING_TABLES.items() if not (stream == "speaker" and spec.speaker_embedding)}


def read_speaker_embedding(path: Path, units: int) -> torch.Tensor:
    """A personal voice's se.npy: one row of `units` numbers (ModelScope repeats it for every phone, as float32)."""
    try:
        embedding = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ModelDirError(f"{path} is not a numpy array file ({e}): copy se.npy from the fine-tuning run again") from None
    if embedding.shape != (1, units) or not np.issubdtype(embedding.dtype, np.floating):
        raise ModelDirError(f"{path} holds {embedding.dtype} {list(embedding.shape)}, but the acoustic model takes a "
                            f"float [1, {units}] speaker embedding (speaker_units): it is not this voice's se.npy")
    return torch.from_numpy(embedding[0].astype(np.float32))


def load_vocoder(spec: Voice, reader: CheckpointReader | None = None) -> KanHifiGanGenerator:
    """The voice's HiFi-GAN generator with its checkpoint loaded strictly, weight norm folded, in eval mode."""
    path = spec.voc_checkpoint
    state = (reader or CheckpointReader()).read(path, ("model", "generator"))
    try:
        vocoder = KanHifiGanGenerator(**spec.voc_params)
    except (VocoderConfigError, TypeError) as e:  # TypeError: a missing or unknown generator parameter
        raise ModelDirError(f"{spec.paths.voc_config}: {e}") from None
    load_strict(vocoder, state, path, "KAN-TTS HiFi-GAN generator")
    vocoder.remove_weight_norm()
    return vocoder.eval()


def _first_sentence(error: Exception) -> str:
    """torch's first sentence says what failed."""
    return " ".join(str(error).split()).split(". ")[0][:200]


def _unsafe_global(error: Exception) -> str:
    """The Python object a weights-only load refused, as torch names it."""
    found = re.search(r"GLOBAL (\S+) was not an allowed global", str(error))
    return f"it names {found.group(1)}" if found else _first_sentence(error)


def _state_dict(node: object, path: Path, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    where = "checkpoint"
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            found = sorted(map(str, node))[:LISTED_PER_KIND] if isinstance(node, dict) else type(node).__name__
            raise CheckpointError(
                f"checkpoint {path} is not a KAN-TTS training checkpoint: {where} has no {key!r} entry "
                f"(it has {found}); put the voice's own checkpoint from the model download there"
            )
        node = node[key]
        where += f"[{key!r}]"
    if not isinstance(node, dict) or not all(isinstance(v, torch.Tensor) for v in node.values()):
        raise CheckpointError(
            f"checkpoint {path}: {where} is not a state_dict of tensors; put the voice's own checkpoint "
            "from the model download there"
        )
    return node


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], path: Path, network: str) -> None:
    """Load `state` into `module` only if every key and shape matches, else raise one error listing all."""
    expected = module.state_dict()
    if not expected.keys() & state.keys():
        raise CheckpointError(
            f"checkpoint {path} holds no {network} weights (none of its {len(state)} keys match, e.g. "
            f"{_first(sorted(state), 3)}): put the voice's own checkpoint from the model download there"
        )
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        (k, tuple(state[k].shape), tuple(v.shape))
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(path, network, missing, unexpected, shapes)
    module.load_state_dict(state, strict=True)


def _check_vocabulary(spec: Voice, sizes: dict[str, int], path: Path) -> None:
    """The checkpoint's tables must have exactly one row per symbol of the config's vocabulary."""
    config_sizes = spec.vocabulary.sizes()
    differing = [s for s in sizes if sizes[s] != config_sizes[s]]
    if not differing:
        return
    detail = ", ".join(f"{s} {sizes[s]} rows vs {config_sizes[s]} symbols" for s in differing)
    if all(sizes[s] == config_sizes[s] + (-1 if spec.has_mask else 1) for s in sizes):
        fix = (f"set model.am.linguistic_unit.has_mask to {str(not spec.has_mask).lower()} in "
               f"{spec.path.parent.parent / 'configuration.json'}")
    else:
        fix = "the checkpoint and am/config.yaml (linguistic_unit.speaker_list) must come from the same model"
    raise VocabularyMismatchError(
        f"checkpoint {path} embedding tables do not fit the vocabulary of {spec.paths.am_config} "
        f"with has_mask={str(spec.has_mask).lower()} ({detail}): {fix}"
    )


def _is_table(value: object) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() == 2


def _first(items: list[str], limit: int = LISTED_PER_KIND) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... and {len(items) - limit} more" if len(items) > limit else "")
