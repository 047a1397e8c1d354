"""python -m gateway [--port-offset N] [--host ADDR] ...: serve the HTTP API in front of Triton's gRPC endpoint."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from gateway.app import create_app
from gateway.settings import SettingsError, add_arguments, from_sources

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gateway",
        description="Serve the HTTP API (audio over JSON, streaming, async tasks, OpenAI-style speech, metrics, "
                    "a WebUI) in front of Triton's gRPC endpoint.")
    add_arguments(parser)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    try:
        settings = from_sources(args)
    except SettingsError as e:
        sys.exit(f"error: {e}")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("gateway")
    if settings.host not in LOOPBACK and not settings.api_keys:
        log.warning("listening on %s without API keys: anyone who reaches this address can use the API", settings.host)
    log.info("gateway on http://%s:%d, Triton gRPC at %s, API keys %s", settings.host, settings.bind_port,
             settings.triton_grpc_url, "required" if settings.api_keys else "off")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.bind_port, log_level=args.log_level,
                timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
