"""The export contract: every name that crosses a boundary, owned here once.

What `python -m export` writes into an export directory, what the model repository generator copies
from it, what the Triton models exchange, and what the in-process pipeline runs:

    <export dir>/export.json                  ExportConfig: voices, their vocabularies, the audio settings
    <export dir>/<voice>/encoder.onnx ...      the six acoustic graphs (ACOUSTIC_GRAPHS)
    <export dir>/<voice>/vocoder.onnx          the vocoder, MEL [batch, n_mels, frames] (NSF: and SOURCE) -> WAV [batch, 1, samples]
    <export dir>/<voice>/vocoder.bf16.json     the quality record of that vocoder run in BF16 (CPU, OpenVINO)
    <export dir>/<voice>/vocoder_fp16.onnx     the mixed-precision graph an FP16 engine is built from (GPU hosts)
    <export dir>/<voice>/vocoder.plan          the TensorRT engine and vocoder.plan.json, its metadata (GPU hosts)

Triton tensors are named in upper case everywhere; a tensor keeps its name from the model that makes
it to every model that reads it, so the `tts` ensemble maps each name to itself.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from serving.symbols import STREAMS, Vocabulary

# -- the export directory ------------------------------------------------------------------------

EXPORT_CONFIG_FILE = "export.json"
FORMAT_VERSION = 5  # 2: one audio settings type; 3: the postnet as two graphs, the vocoder's context frames;
#                     4: a vocoder graph OpenVINO runs in BF16; 5: NSF and personal voices, the regrown position table

# The acoustic model's sub-graphs, in the order serving.runtime.acoustic runs them.
ENCODER = "encoder.onnx"
DURATION_STEP = "duration_step.onnx"
DECODER_MEMORY = "decoder_memory.onnx"
DECODER_STEP = "decoder_step.onnx"
POSTNET_FSMN = "postnet_fsmn.onnx"
POSTNET_LSTM = "postnet_lstm.onnx"
ACOUSTIC_GRAPHS = (ENCODER, DURATION_STEP, DECODER_MEMORY, DECODER_STEP, POSTNET_FSMN, POSTNET_LSTM)

VOCODER_ONNX = "vocoder.onnx"
VOCODER_BF16_CHECK = "vocoder.bf16.json"  # the BF16 CPU vocoder's quality record against FP32 (BF16Check)
VOCODER_FP16_ONNX = "vocoder_fp16.onnx"  # FP16 with FP32 islands (export.fp16_check)
FP16_CHECK_REPORT = "fp16_check.json"
VOCODER_PLAN = "vocoder.plan"
TIMING_CACHE = "trt_timing.cache"  # in the export directory itself, shared by the voices' engine builds

# What the vocoder model runs (its "runtime" parameter): on CPU VOCODER_ONNX on OpenVINO at a precision;
# on a GPU host the TensorRT engine, served as the model VOCODER_ENGINE.
FP32, BF16, TENSORRT = "fp32", "bf16", "tensorrt"


def plan_metadata_path(plan: Path) -> Path:
    """The metadata file written beside a TensorRT engine (GPU, TensorRT version, profile, batch size)."""
    return plan.with_name(plan.name + ".json")


# metadata_props of the graphs: what a runtime needs that no input shape carries
META_MAX_LEN = "max_len"  # encoder: the longest phone sequence (the position table's size)
META_VOCABULARY_SIZES = "vocabulary_sizes"  # encoder: JSON {stream: rows}
META_OUTPUTS_PER_STEP = "outputs_per_step"  # decoder_step: frames per decoder step (r)
META_CONTEXT = "context_frames"  # postnet_fsmn: JSON [earlier, later] decoder frames one mel frame depends on
META_HOP = "hop_length"  # vocoder: samples per mel frame
META_N_MELS = "n_mels"  # vocoder: mel bins
META_RIGHT_CONTEXT = "right_context_frames"  # vocoder: how far padding after an item reaches back into it
META_SOURCE_CHANNELS = "source_channels"  # vocoder: an NSF vocoder's SOURCE channels (harmonics + 1); 0 without
META_ACTIVATION_PER_FRAME = "activation_values_per_frame"  # vocoder: its widest tensor, in values per mel frame

# -- Triton tensors ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tensor:
    """A Triton tensor: its config data type and its dims per request row (after the batch axis).

    In dims, -1 is a length that varies and a str names a size of the export (ExportConfig.sizes()).
    """

    name: str
    dtype: str
    dims: tuple
    meaning: str


TEXT = Tensor("TEXT", "TYPE_STRING", (1,), "UTF-8 text or SSML to read")
VOICE = Tensor("VOICE", "TYPE_STRING", (1,), "a voice of the model directory (default: the first)")
EMOTION = Tensor("EMOTION", "TYPE_STRING", (1,), "an emotion of the voice (default: neutral)")
SPEAKER = Tensor("SPEAKER", "TYPE_STRING", (1,), "a speaker of a multi-speaker voice (default: F7, as ModelScope reads)")
SPEED = Tensor("SPEED", "TYPE_FP32", (1,), "speaking rate, 1.0 is the model's own")
SEED = Tensor("SEED", "TYPE_INT64", (1,), "fixes an NSF voice's random excitation (default: the deployment's seed, else none)")
IDS = Tensor("IDS", "TYPE_INT64", (-1, "streams"), "one sentence's symbol ids, one column per symbol stream")
TOKENS = Tensor("TOKENS", "TYPE_INT32", (1,), "the sentence's token count (IDS rows past it are padding)")
VOICE_INDEX = Tensor("VOICE_INDEX", "TYPE_INT32", (1,), "the voice's position in ExportConfig.voice_names()")
DURATION_SCALE = Tensor("DURATION_SCALE", "TYPE_FP32", (1,), "multiplies the predicted phone durations (1 / SPEED)")
PAUSE = Tensor("PAUSE", "TYPE_FP32", (1,), "seconds of silence after the sentence")
NOISE_SEED = Tensor("NOISE_SEED", "TYPE_INT64", (1,), "the seed of the sentence's NSF noise (serving.runtime.nsf.sentence_seed)")
MEL = Tensor("MEL", "TYPE_FP32", ("frame_values", -1),
             "the sentence's acoustic frames: mel bins, for an NSF voice then f0 and voicing (frames past FRAMES are padding)")
# The vocoder graph's (and engine's) own inputs: mel bins only, and an NSF vocoder's source (serving.runtime.nsf).
VOCODER_MEL = Tensor("MEL", "TYPE_FP32", ("n_mels", -1), "mel bins of the frames to vocode")
SOURCE = Tensor("SOURCE", "TYPE_FP32", ("source_channels", -1), "an NSF vocoder's source, [harmonics + 1, frames * hop]")
FRAMES = Tensor("FRAMES", "TYPE_INT32", (1,), "the sentence's mel frame count")
WAV = Tensor("WAV", "TYPE_FP32", (1, -1), "the sentence's waveform (samples past FRAMES x hop are padding)")
AUDIO = Tensor("AUDIO", "TYPE_FP32", (-1,), "FP32 PCM in [-1, 1], sentences joined with pauses (tts_stream: a chunk of it)")
SAMPLE_RATE = Tensor("SAMPLE_RATE", "TYPE_INT32", (1,), "samples per second of AUDIO")


@dataclass(frozen=True)
class Model:
    """A Triton model's interface: what it reads and writes, and which inputs a request may leave out."""

    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    optional: tuple[Tensor, ...] = ()


# TEXT is required, but optional in the configs so that a request without it reaches the front end and
# gets a clear error (otherwise the ensemble waits for it and reports a scheduling deadlock).
REQUEST_INPUTS = (TEXT, VOICE, EMOTION, SPEED, SPEAKER, SEED)
FRONTEND = Model("frontend", REQUEST_INPUTS, (IDS, TOKENS, VOICE_INDEX, DURATION_SCALE, PAUSE, NOISE_SEED), REQUEST_INPUTS)
ACOUSTIC = Model("acoustic", (IDS, TOKENS, VOICE_INDEX, DURATION_SCALE, PAUSE), (MEL, FRAMES))  # PAUSE: the audio bound
VOCODER = Model("vocoder", (MEL, FRAMES, VOICE_INDEX, NOISE_SEED), (WAV,))
JOIN = Model("join", (WAV, FRAMES, PAUSE), (AUDIO, SAMPLE_RATE))
TTS = Model("tts", REQUEST_INPUTS, (AUDIO, SAMPLE_RATE), REQUEST_INPUTS)
PIPELINE = (FRONTEND, ACOUSTIC, VOCODER, JOIN)  # the steps of the `tts` ensemble, in order; one row per sentence
# Streaming (decoupled): the same request, answered by one response per chunk (the chunks of AUDIO in order,
# joined they are `tts`'s AUDIO) and a final one. It calls VOCODER itself (BLS).
TTS_STREAM = Model("tts_stream", REQUEST_INPUTS, (AUDIO, SAMPLE_RATE), REQUEST_INPUTS)

# Clients read the voice catalogue (voices, their emotions and speakers, the default voice, the sample rate) as a JSON
# string parameter of the front end's config.
CATALOGUE_MODEL, CATALOGUE_PARAMETER = FRONTEND, "voices"

# On a GPU host the vocoder model hands each batch to the TensorRT engine, its own Triton model (an NSF
# vocoder's engine also takes the source the vocoder model makes).
VOCODER_ENGINE = Model("vocoder_engine", (VOCODER_MEL,), (WAV,))
NSF_VOCODER_ENGINE = Model("vocoder_engine", (VOCODER_MEL, SOURCE), (WAV,))

# -- export.json ---------------------------------------------------------------------------------


class ExportConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AudioSettings:
    """The mel front end that the acoustic model and the vocoder share (a voice's audio_config.yaml)."""

    sample_rate: int
    hop_length: int
    win_length: int
    n_fft: int
    n_mels: int
    fmin: float
    fmax: float


@dataclass(frozen=True)
class F0Norm:
    """How an NSF voice's f0 output turns into Hz: f0 * scale + shift, computed in `dtype` (ModelScope's denorm_f0).

    From the am config's nsf_norm_type: "mean_std" takes am/mvn.npy (row 0 the mean, row 1 the std; torch
    promotes to its dtype), "global" the config's f0 range (scale max - min, shift min, in float32)."""

    scale: float
    shift: float
    dtype: str  # "float32" or "float64"


@dataclass(frozen=True)
class NsfSpec:
    """An NSF voice: how its f0 turns into Hz, and the source its vocoder takes (KAN-TTS nsf_params)."""

    f0_norm: F0Norm
    harmonics: int  # nb_harmonics: the source has harmonics + 1 channels
    sample_rate: int  # the rate the source's phase advances at

    @property
    def source_channels(self) -> int:
        return self.harmonics + 1


@dataclass(frozen=True)
class VoiceSpec:
    speakers: list[str]
    has_mask: bool
    outputs_per_step: int  # decoder frames per step (r)
    max_len: int  # longest phone sequence the position table covers
    vocoder_context_frames: list[int]  # [earlier, later] mel frames a frame's samples depend on
    trusted_checkpoints: list[str] = field(default_factory=list)  # loaded in full, with --trust-checkpoint
    nsf: NsfSpec | None = None  # an NSF voice's f0 and source

    def vocabulary(self) -> Vocabulary:
        return Vocabulary.build(self.speakers, self.has_mask)

    @classmethod
    def from_json(cls, data: dict) -> "VoiceSpec":
        nsf = data.get("nsf")
        if nsf is not None:
            nsf = NsfSpec(**{**nsf, "f0_norm": F0Norm(**nsf["f0_norm"])})
        return cls(**{**data, "nsf": nsf})


@dataclass(frozen=True)
class ExportConfig:
    """export.json: the only description of the model the server needs."""

    default_voice: str
    audio: AudioSettings
    voices: dict[str, VoiceSpec]
    source: str = ""
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)

    def voice_names(self) -> list[str]:
        """Voice names with the default first; a voice's index in this list is its VOICE_INDEX."""
        return [self.default_voice] + [v for v in self.voices if v != self.default_voice]

    @property
    def nsf(self) -> bool:
        """NSF voices (an export's voices are all NSF or none, with one source size)."""
        return any(spec.nsf for spec in self.voices.values())

    def sizes(self) -> dict[str, int]:
        """The named sizes that Tensor dims refer to."""
        source = next((spec.nsf.source_channels for spec in self.voices.values() if spec.nsf), 0)
        return {"n_mels": self.audio.n_mels, "frame_values": self.audio.n_mels + (2 if source else 0),
                "streams": len(STREAMS), "source_channels": source}

    @property
    def vocoder_engine(self) -> Model:
        """The engine model's interface (GPU target)."""
        return NSF_VOCODER_ENGINE if self.nsf else VOCODER_ENGINE

    def write(self, export_dir: Path) -> Path:
        path = Path(export_dir) / EXPORT_CONFIG_FILE
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=2) + "\n")
        return path

    @classmethod
    def read(cls, export_dir: Path) -> "ExportConfig":
        path = Path(export_dir) / EXPORT_CONFIG_FILE
        if not path.is_file():
            raise ExportConfigError(f"{path} not found: run `python -m export MODEL_DIR --out {export_dir}` first")
        data = json.loads(path.read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise ExportConfigError(f"{path} has format version {data.get('format_version')}, expected "
                                    f"{FORMAT_VERSION}: export the model again")
        return cls(
            default_voice=data["default_voice"],
            audio=AudioSettings(**data["audio"]),
            voices={name: VoiceSpec.from_json(spec) for name, spec in data["voices"].items()},
            source=data.get("source", ""),
            extra=data.get("extra", {}),
        )


# The quality bound of a low-precision CPU vocoder, on real speech (results/precision.md).
MAX_L1_VS_FP32 = 0.10  # mean |ln-mel(low precision) - ln-mel(FP32)| of the two outputs, re-analysed
MAX_DISTANCE_RISE = 0.10  # ln-mel L1 to the input speech may rise by at most 10 % of FP32's
# A request's audio in a batch vs alone: FP32 within a waveform difference; BF16 within a re-analysed ln-mel
# L1, since the acoustic model's float noise between batch and single (~1e-6) passes through BF16 rounding.
MAX_FP32_BATCH_DIFF = 1e-3
MAX_BF16_BATCH_L1 = 0.03


@dataclass(frozen=True)
class BF16Check:
    """The export's record of one voice's vocoder run in BF16 against FP32 (VOCODER_BF16_CHECK)."""

    sentences: list[str]
    l1_vs_fp32: list[float]  # per sentence
    in_bf16: bool = True  # False: the exporting CPU has no BF16, so both runs were FP32 and nothing was measured
    max_l1_vs_fp32: float = MAX_L1_VS_FP32

    @property
    def holds(self) -> bool:
        return self.in_bf16 and bool(self.l1_vs_fp32) and max(self.l1_vs_fp32) <= self.max_l1_vs_fp32

    def write(self, voice_dir: Path) -> Path:
        path = Path(voice_dir) / VOCODER_BF16_CHECK
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=1) + "\n")
        return path

    @classmethod
    def read(cls, voice_dir: Path) -> "BF16Check":
        data = json.loads((Path(voice_dir) / VOCODER_BF16_CHECK).read_text())
        # The bound is this code's, not the file's: an old record cannot loosen it.
        return cls(sentences=data["sentences"], l1_vs_fp32=data["l1_vs_fp32"], in_bf16=data["in_bf16"])

    def summary(self) -> str:
        if not self.in_bf16:
            return "BF16 not measured (the exporting CPU has no BF16: export on a CPU with avx512_bf16 or amx_bf16)"
        return f"BF16 vs FP32 log-mel L1 {max(self.l1_vs_fp32):.4f} (bound {self.max_l1_vs_fp32})"
