"""tts-client: speak a text with the Triton TTS server and write a WAV file.

    tts-client "今天天气很好" -o out.wav --voice zhitian_emo --emotion happy --speed 1.2
    tts-client -f story.txt -o story.wav --protocol http
    echo "你好" | tts-client -o hello.wav
    tts-client --list-voices
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tts_client.client import DEFAULT_URLS, TTSClient, TTSError


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
    parser.add_argument("-o", "--output", type=Path, default=Path("out.wav"),
                        help="WAV file to write (16-bit PCM; default: out.wav)")
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
    with TTSClient(args.url, args.protocol, timeout_s=args.timeout, retries=args.retries) as client:
        if text is None:
            list_voices(client)
            return
        start = time.perf_counter()
        synthesis = client.synthesize(text, voice=args.voice, emotion=args.emotion, speed=args.speed,
                                      speaker=args.speaker, seed=args.seed)
        latency_s = time.perf_counter() - start
        synthesis.to_wav(args.output)
    print(f"wrote {args.output}: {synthesis.duration_s:.2f} s of audio at {synthesis.sample_rate} Hz "
          f"(server answered in {latency_s:.2f} s)")


def main(argv: list[str] | None = None) -> int:
    try:
        run(build_parser().parse_args(argv))
    except (UsageError, TTSError) as exc:
        return fail(str(exc), 2 if isinstance(exc, UsageError) else 1)
    except OSError as exc:  # unreadable --file, unwritable --output
        return fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc), 1)
    except UnicodeDecodeError as exc:
        return fail(f"the text is not valid UTF-8 ({exc.reason} at byte {exc.start})", 1)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    return 0


def fail(message: str, code: int) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
