"""export.json: what an export directory holds, read by the repository generator and the Triton models.

Written by `python -m export`, it is the only description of the model the server needs: the voices
with their symbol inventories and the audio configuration shared by every voice.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from serving.symbols import Vocabulary

FILE_NAME = "export.json"
FORMAT_VERSION = 1


class ExportConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AudioSpec:
    sample_rate: int
    hop_length: int
    n_mels: int


@dataclass(frozen=True)
class VoiceSpec:
    speakers: list[str]
    has_mask: bool
    outputs_per_step: int   # decoder frames per step (r)
    max_len: int            # longest phone sequence the position table covers

    def vocabulary(self) -> Vocabulary:
        return Vocabulary.build(self.speakers, self.has_mask)


@dataclass(frozen=True)
class ExportConfig:
    default_voice: str
    audio: AudioSpec
    voices: dict[str, VoiceSpec]
    source: str = ""
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)

    def voice_names(self) -> list[str]:
        """Voice names with the default first; a voice's index in this list is its VOICE_INDEX."""
        return [self.default_voice] + [v for v in self.voices if v != self.default_voice]

    def write(self, export_dir: Path) -> Path:
        path = Path(export_dir) / FILE_NAME
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=2) + "\n")
        return path

    @classmethod
    def read(cls, export_dir: Path) -> "ExportConfig":
        path = Path(export_dir) / FILE_NAME
        if not path.is_file():
            raise ExportConfigError(f"{path} not found: run `python -m export MODEL_DIR --out {export_dir}` first")
        data = json.loads(path.read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise ExportConfigError(f"{path} has format version {data.get('format_version')}, expected "
                                    f"{FORMAT_VERSION}: export the model again")
        return cls(
            default_voice=data["default_voice"],
            audio=AudioSpec(**data["audio"]),
            voices={name: VoiceSpec(**spec) for name, spec in data["voices"].items()},
            source=data.get("source", ""),
            extra=data.get("extra", {}),
        )
