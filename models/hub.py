"""Download a model directory from the ModelScope hub with the `modelscope` library (into its own cache).

    python -m models.hub iic/speech_sambert-hifigan_tts_zh-cn_16k [--timeout-s 10] [--cache-dir DIR]

Prints the local model directory on stdout (scripts/serve.sh --model serves it). First it asks the hub's
address for any HTTP answer within --timeout-s, so a machine that cannot reach the hub learns so in
seconds rather than after the library's retries. The hub is MODELSCOPE_ENDPOINT, else the library's default.

Exit status: 0 and the directory; 3 when the hub cannot be reached (scripts/demo.sh then serves the
fixture); 1 for any other failure. Every failure is one line on stderr.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

from models.model_dir import ModelDir, ModelDirError

DEFAULT_MODEL = "iic/speech_sambert-hifigan_tts_zh-cn_16k"
DEFAULT_TIMEOUT_S = 10.0
EXIT_UNREACHABLE = 3


class HubError(RuntimeError):
    """The download failed (one-line message)."""


class HubUnreachable(HubError):
    """The hub did not answer at all."""


def hub_endpoint() -> str:
    try:
        from modelscope.hub.api import HubApi
    except ImportError:
        raise HubError("the modelscope library is not installed: pip install modelscope "
                       "(scripts/setup.sh installs it)") from None
    return HubApi().endpoint


def _ask(endpoint: str, timeout_s: float, outcome: queue.Queue) -> None:
    try:
        urllib.request.urlopen(endpoint, timeout=timeout_s).close()
        outcome.put(None)
    except urllib.error.HTTPError:
        outcome.put(None)  # any HTTP status is an answer: the hub is there
    except (OSError, ValueError) as e:
        outcome.put(getattr(e, "reason", None) or e)


def check_reachable(endpoint: str, timeout_s: float) -> None:
    """Raises HubUnreachable unless the endpoint answers HTTP within timeout_s, its name lookup included
    (which urlopen's own timeout does not cover: the lookup runs in a daemon thread we stop waiting for)."""
    outcome: queue.Queue = queue.Queue()
    threading.Thread(target=_ask, args=(endpoint, timeout_s, outcome), daemon=True).start()
    try:
        reason = outcome.get(timeout=timeout_s)
    except queue.Empty:
        reason = f"no answer within {timeout_s:g} s"
    if isinstance(reason, TimeoutError):
        reason = f"no answer within {timeout_s:g} s"
    if reason is not None:
        raise HubUnreachable(f"cannot reach the ModelScope hub at {endpoint}: {reason}")


def download(model_id: str, timeout_s: float = DEFAULT_TIMEOUT_S, cache_dir: Path | None = None) -> Path:
    """The model's directory in the modelscope cache, downloaded when needed and checked as a model directory."""
    endpoint = hub_endpoint()
    check_reachable(endpoint, timeout_s)
    from modelscope.hub.snapshot_download import snapshot_download

    try:
        path = Path(snapshot_download(model_id, cache_dir=str(cache_dir) if cache_dir else None))
    except Exception as e:  # the library raises many kinds (HTTP, file system, not found); each is one line here
        raise HubError(f"downloading {model_id} from {endpoint} failed: {type(e).__name__}: {e}") from None
    try:
        ModelDir(path)
    except ModelDirError as e:
        raise HubError(f"downloaded {model_id} to {path}, but it is not a model directory we can serve: {e}") from None
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.hub", description=__doc__.split("\n")[0])
    parser.add_argument("model_id", nargs="?", default=DEFAULT_MODEL, help=f"default {DEFAULT_MODEL}")
    parser.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S,
                        help="how long to wait for the hub's first answer")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: the modelscope library's cache")
    args = parser.parse_args(argv)
    try:
        print(download(args.model_id, args.timeout_s, args.cache_dir))
    except HubUnreachable as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_UNREACHABLE)
    except HubError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
