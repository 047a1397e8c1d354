"""tts-client: speak a text with the Triton TTS server and write a WAV file.

    tts-client "今天天气很好" -o out.wav --voice zhitian_emo --emotion happy --speed 1.2
    tts-client -f story.txt -o story.wav --protocol http
    echo "你好" | tts-client -o hello.wav
    tts-client -f story.txt --stream -o story.wav          # written as the chunks arrive
    tts-client -f story.txt --stream -o - | aplay -f FLOAT_LE -r 16000 -c 1   # raw PCM to a player
    tts-client --list-voices
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from tts_client.client import DEFAULT_URLS, TTSClient, TTSError

STDOUT = "-"


class UsageError(Exception):
    pass


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse prints the usage block before its error; we keep errors to one line."""

    def error(self, message: str):
        raise UsageError(f"{message} (see tts-client --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="tts-client", description="Speak a text with the Sambert-HifiGan Triton TTS server.",
        epilog="The text comes from TEXT, from --file, or from standard input (TEXT is '-' or left out).")
    parser.add_argument("text", nargs="?", metavar="TEXT", help="the text to speak ('-': read standard input)")
    parser.add_argument("-f", "--file", type=Path, help="read the text from this UTF-8 file")
    parser.add_argument("-o", "--output", default="out.wav",
                        help="WAV file to write (16-bit PCM; default: out.wav); '-': raw 32-bit float little-endian "
                             "mono PCM to standard output")
    parser.add_argument("--stream", action="store_true",
                        help="stream (gRPC): write the audio as it is made, chunk by chunk")
    parser.add_argument("--voice", help="voice name (default: the server's default; see --list-voices)")
    parser.add_argument("--emotion", help="emotion of the voice (default: the voice's default)")
    parser.add_argument("--speed", type=float, default=1.0, help="speaking rate, 0.5 to 2.0 (default: 1.0)")
    parser.add_argument("--speaker", help="a speaker of a multi-speaker voice (default: the voice's; see --list-voices)")
    parser.add_argument("--seed", type=int, help="fix an NSF voice's random excitation (default: a new one each time)")
    parser.add_argument("--protocol", choices=sorted(DEFAULT_URLS), default="grpc", help="default: grpc")
    parser.add_argument("--url", help="server host:port (default: localhost:8001 for grpc, localhost:8000 for http)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the audio (default: 120)")
    parser.add_argument("--retries", type=int, default=3,
                        help="extra tries while the server cannot be reached (default: 3)")
    parser.add_argument("--list-voices", action="store_true",
                        help="print the voices, their emotions and speakers, then exit")
    return parser


def read_text(args: argparse.Namespace) -> str:
    """TEXT as given; a file or standard input as UTF-8, without the line break that ends it."""
    if args.file is not None:
        if args.text is not None:
            raise UsageError("give the text either as TEXT or with --file, not both")
        return args.file.read_bytes().decode("utf-8").strip()
    if args.text is not None and args.text != "-":
        return args.text
    if args.text is None and sys.stdin.isatty():
        raise UsageError("no text given: pass TEXT, --file PATH, or pipe the text into standard input")
    return sys.stdin.buffer.read().decode("utf-8").strip()


def list_voices(client: TTSClient) -> None:
    default, speakers = client.default_voice, client.speakers()
    for name, emotions in client.voices().items():
        marker = " (default)" if name == default else ""
        print(f"{name}{marker}: {', '.join(emotions)}; speakers {', '.join(speakers[name])}")


def run(args: argparse.Namespace) -> None:
    text = None if args.list_voices else read_text(args)
    if args.stream and args.protocol != "grpc":
        raise UsageError("--stream needs --protocol grpc")
    with TTSClient(args.url, args.protocol, timeout_s=args.timeout, retries=args.retries) as client:
        if text is None:
            list_voices(client)
            return
        start = time.perf_counter()
        if args.stream:
            seconds, sample_rate, first_s = write_stream(client, text, args, start)
            timing = f"first audio after {first_s:.2f} s, the last after {time.perf_counter() - start:.2f} s"
        else:
            synthesis = client.synthesize(text, voice=args.voice, emotion=args.emotion, speed=args.speed,
                                          speaker=args.speaker, seed=args.seed)
            seconds, sample_rate = synthesis.duration_s, synthesis.sample_rate
            timing = f"server answered in {time.perf_counter() - start:.2f} s"
            if args.output == STDOUT:
                write_pcm(synthesis.audio)
            else:
                synthesis.to_wav(args.output)
    where = "standard output" if args.output == STDOUT else args.output
    print(f"wrote {where}: {seconds:.2f} s of audio at {sample_rate} Hz ({timing})",
          file=sys.stderr if args.output == STDOUT else sys.stdout)


def write_stream(client: TTSClient, text: str, args: argparse.Namespace, start: float) -> tuple[float, int, float]:
    """Write each chunk as it arrives; returns seconds of audio, the sample rate and when the first chunk came."""
    wav, samples, sample_rate, first_s = None, 0, 0, 0.0
    try:
        for chunk in client.stream(text, voice=args.voice, emotion=args.emotion, speed=args.speed,
                                  speaker=args.speaker, seed=args.seed):
            if not samples:
                first_s, sample_rate = time.perf_counter() - start, chunk.sample_rate
                if args.output != STDOUT:
                    wav = sf.SoundFile(args.output, "w", samplerate=sample_rate, channels=1, format="WAV",
                                       subtype="PCM_16")
            if wav is None:
                write_pcm(chunk.audio)
            else:
                wav.write(np.clip(chunk.audio, -1.0, 1.0))
                wav.flush()  # the header then tells how much is there, so the file can be played while it grows
            samples += len(chunk.audio)
    finally:
        if wav is not None:
            wav.close()
    return samples / max(sample_rate, 1), sample_rate, first_s


def write_pcm(audio: np.ndarray) -> None:
    sys.stdout.buffer.write(audio.astype("<f4").tobytes())
    sys.stdout.buffer.flush()


def main(argv: list[str] | None = None) -> int:
    try:
        run(build_parser().parse_args(argv))
    except (UsageError, TTSError) as exc:
        return fail(str(exc), 2 if isinstance(exc, UsageError) else 1)
    except OSError as exc:  # unreadable --file, unwritable --output
        return fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc), 1)
    except UnicodeDecodeError as exc:
        return fail(f"the text is not valid UTF-8 ({exc.reason} at byte {exc.start})", 1)
    except BrokenPipeError:  # the player at the other end of -o - has quit
        return 0
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    return 0


def fail(message: str, code: int) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
