"""The baseline the benchmark compares against: the eager PyTorch model behind a one-at-a-time HTTP service.

What a careful user of the "ModelScope pipeline behind Flask" approach runs: every voice loaded once
at start, the same text front end and vocoder as the Triton server, inference mode, FP32, torch using
every core, and a single-threaded server, so requests queue behind each other (its defining property).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m bench.baseline_server --model-dir DIR [--port 8100]

OMP_WAIT_POLICY=PASSIVE (bench.systems sets it): OpenMP's default busy-waiting makes torch several
times slower whenever anything else runs on the cores (on a shared 2-core machine, 103 s instead of
14 s for the same six texts); a careful user turns it off.

    POST /synthesize  {"text": "...", "voice": optional, "emotion": optional}
                      -> 200 audio/wav (16-bit PCM, mono), or 400 {"error": "..."} for a bad request
    GET  /health      -> 200 {"status": "ready", "voices": [...], "settings": {torch threads, ...}}
"""

from __future__ import annotations

import argparse
import io
import json
import os
import wave
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import torch

from models.loader import LoadedVoice, load_voice
from models.model_dir import ModelDir
from models.reference import synthesize_mel, vocode
from serving.frontend import FrontEnd, FrontEndError
from serving.steps.join import join_sentences
from serving.symbols import STREAMS

LINGUISTIC_COLUMNS = 4  # ids columns: sy, tone, syllable_flag, word_segment, then emotion, then speaker
EMOTION_COLUMN, SPEAKER_COLUMN = STREAMS.index("emotion"), STREAMS.index("speaker")
# Clients queue in the listen backlog while one request runs; the stdlib default (5) would make
# the kernel drop connections of a 16-client load and retry them seconds later.
LISTEN_BACKLOG = 128


class BaselineRequestError(ValueError):
    """A bad request (empty text, unknown voice or emotion); answered with 400 and this message."""


class BaselineTTS:
    """Text -> audio with the eager PyTorch reference, one request at a time."""

    def __init__(self, model_dir: str | Path, threads: int | None = None):
        torch.set_num_threads(threads or os.cpu_count() or 1)
        directory = ModelDir(model_dir)
        self.default_voice = directory.default_voice
        self.voices: dict[str, LoadedVoice] = {name: load_voice(directory, name) for name in directory.voice_names}
        self.frontends = {name: FrontEnd(voice.vocabulary) for name, voice in self.voices.items()}

    @torch.inference_mode()
    def synthesize(self, text: str, voice: str | None = None, emotion: str | None = None) -> tuple[np.ndarray, int]:
        """float32 audio of every sentence of `text`, joined with the front end's pauses, and its sample rate."""
        name = voice or self.default_voice
        if name not in self.voices:
            raise BaselineRequestError(f"unknown voice {name!r}; available: {', '.join(self.voices)}")
        loaded = self.voices[name]
        try:
            sentences = self.frontends[name](text, emotion)
        except FrontEndError as e:
            raise BaselineRequestError(str(e)) from None
        # The reference synthesises the sentences of one request as one batch (items keep their own lengths).
        lengths = [len(s.ids) for s in sentences]
        ids = np.zeros((len(sentences), max(lengths), len(STREAMS)), dtype=np.int64)
        for row, sentence in enumerate(sentences):
            ids[row, : len(sentence.ids)] = sentence.ids
        mels = synthesize_mel(loaded.am, ids[..., :LINGUISTIC_COLUMNS], ids[..., EMOTION_COLUMN],
                              ids[..., SPEAKER_COLUMN], lengths)
        hop, sample_rate = loaded.audio.hop_length, loaded.audio.sample_rate
        # The vocoder runs sentence by sentence: no compute is spent on padding.
        frames = np.array([[len(mel)] for mel in mels], dtype=np.int64)
        wav = np.zeros((len(mels), 1, int(frames.max()) * hop), dtype=np.float32)
        for row, mel in enumerate(mels):
            if len(mel):
                wav[row, 0, : len(mel) * hop] = vocode(loaded, mel)  # an NSF voice: f0 de-normalised, unseeded noise
        pauses = np.array([[s.pause_after] for s in sentences], dtype=np.float32)
        return join_sentences(wav, frames, pauses, hop, sample_rate)[0], sample_rate


def settings() -> dict:
    """The settings that decide the baseline's speed, as /health reports them."""
    return {"torch_threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "torch": torch.__version__, "precision": "fp32"}


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM mono WAV file bytes."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return buffer.getvalue()


def make_handler(tts: BaselineTTS) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so a waiting client never holds the only worker.
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            if self.path != "/health":
                return self.send_json(HTTPStatus.NOT_FOUND, {"error": "use GET /health or POST /synthesize"})
            self.send_json(HTTPStatus.OK, {"status": "ready", "voices": list(tts.voices), "settings": settings()})

        def do_POST(self) -> None:
            if self.path != "/synthesize":
                return self.send_json(HTTPStatus.NOT_FOUND, {"error": "use POST /synthesize"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if not isinstance(body, dict) or not isinstance(body.get("text"), str):
                    raise BaselineRequestError('send a JSON object {"text": "...", "voice": ..., "emotion": ...}')
                audio, sample_rate = tts.synthesize(body["text"], body.get("voice"), body.get("emotion"))
            except (BaselineRequestError, json.JSONDecodeError, UnicodeDecodeError) as e:
                return self.send_json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
            except Exception as e:  # a bug, not the client's fault: say so and keep serving
                return self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(e).__name__}: {e}"})
            self.send_body(HTTPStatus.OK, "audio/wav", wav_bytes(audio, sample_rate))

        def send_json(self, status: HTTPStatus, value: dict) -> None:
            self.send_body(status, "application/json", json.dumps(value, ensure_ascii=False).encode())

        def send_body(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # one line per request would flood the log
            pass

    return Handler


class OneAtATimeServer(HTTPServer):
    request_queue_size = LISTEN_BACKLOG


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="a ModelScope sambert-hifigan model directory")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    args = parser.parse_args()
    tts = BaselineTTS(args.model_dir, args.threads)
    server = OneAtATimeServer(("127.0.0.1", args.port), make_handler(tts))
    print(f"baseline ready on 127.0.0.1:{args.port} (voices: {', '.join(tts.voices)}; {settings()})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
