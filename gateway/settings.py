"""Every number and switch of the gateway, in one place: defaults here, overridable by flag or environment.

Precedence: a command-line flag, then the environment variable TTS_GATEWAY_<NAME>, then the default.
API keys are never taken from the command line (other users of the machine can read it): they come from
TTS_GATEWAY_API_KEYS (comma-separated) or a file named by --api-keys-file (one key per line).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

# Triton's default ports and the request bounds the server enforces.
from gateway.project import MAX_STREAM_TEXT_CHARS, MAX_TEXT_CHARS, Ports

ENV_PREFIX = "TTS_GATEWAY_"
GATEWAY_PORT = 8080  # plus the deployment's port offset, like Triton's 8000-8002


class SettingsError(ValueError):
    """A setting has a value the gateway cannot run with (one-line message)."""


def _setting(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    host: str = _setting("127.0.0.1", "address to bind; 0.0.0.0 exposes the gateway to the network")
    port_offset: int = _setting(0, "added to the default ports of the gateway and of Triton")
    port: int | None = _setting(None, f"port to listen on (default {GATEWAY_PORT} + port offset)")
    triton_url: str | None = _setting(None, f"Triton gRPC host:port (default 127.0.0.1:{Ports().grpc} + port offset)")
    triton_refresh_s: float = _setting(0.0, "connect to Triton afresh this often, resolving --triton-url again so that "
                                            "replicas added since get calls (0: never; Kubernetes: 30)")
    triton_timeout_s: float = _setting(120.0, "limit for one synthesis in Triton, streamed or not (504 after it)")
    catalogue_ttl_s: float = _setting(30.0, "how long the voice catalogue read from Triton is reused")
    max_body_bytes: int = _setting(64 * 1024, "largest request body accepted (413 above it)")
    max_text_chars: int = _setting(MAX_TEXT_CHARS, "longest text accepted (400 above it)")
    max_stream_text_chars: int = _setting(MAX_STREAM_TEXT_CHARS, "longest text /api/tts/stream accepts while Triton "
                                                                 "serves the streaming model (400 above it)")
    max_stream_body_bytes: int = _setting(1024 * 1024, "largest request body /api/tts/stream accepts (413 above it)")
    max_requests_per_client: int = _setting(16, "requests one client (API key, else address) may have in flight "
                                                "(429 above it)")
    cors_origins: str = _setting("", "comma-separated origins allowed to call from a browser (empty: none)")
    api_keys_file: Path | None = _setting(None, "file of API keys, one per line (keys also from TTS_GATEWAY_API_KEYS)")
    task_retention_s: float = _setting(600.0, "how long a finished async task's result is kept")
    max_tasks: int = _setting(100, "async tasks kept at once, running or finished (the oldest finished go first)")
    stream_chunk_s: float = _setting(0.5, "seconds of audio per chunk when a stream is cut from a whole synthesis")
    api_keys: frozenset[str] = field(default=frozenset(), metadata={"help": None})  # from the env var and the file

    @property
    def bind_port(self) -> int:
        return self.port if self.port is not None else GATEWAY_PORT + self.port_offset

    @property
    def triton_grpc_url(self) -> str:
        return self.triton_url or f"127.0.0.1:{Ports().grpc + self.port_offset}"

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    def check(self) -> "Settings":
        positive = ("triton_timeout_s", "max_body_bytes", "max_text_chars", "max_stream_text_chars",
                    "max_stream_body_bytes", "max_requests_per_client",
                    "task_retention_s", "max_tasks", "stream_chunk_s")
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be more than 0 (got {getattr(self, name)})")
        for name in ("catalogue_ttl_s", "triton_refresh_s"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must be 0 or more (got {getattr(self, name)})")
        return self


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse(kind: type, name: str, text: str):
    converters = {int: int, float: float, str: str, Path: Path}
    try:
        return converters[kind](text)
    except ValueError:
        raise SettingsError(f"{name}: {text!r} is not a valid {kind.__name__}") from None


def _kind(setting) -> type:
    """The value type of a field ("int | None" -> int)."""
    return {"str": str, "int": int, "float": float, "Path": Path}[setting.type.split(" | ")[0]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for setting in fields(Settings):
        if setting.metadata["help"] is not None:
            env = ENV_PREFIX + setting.name.upper()
            parser.add_argument(_flag(setting.name), dest=setting.name, default=None, metavar=setting.name.upper(),
                                help=f"{setting.metadata['help']} [env {env}; default {setting.default}]")


def read_api_keys(env: dict[str, str], keys_file: Path | None) -> frozenset[str]:
    keys = {key.strip() for key in env.get(ENV_PREFIX + "API_KEYS", "").split(",")}
    if keys_file is not None:
        try:
            keys |= {line.strip() for line in Path(keys_file).read_text().splitlines()}
        except OSError as e:
            raise SettingsError(f"cannot read the API keys file {keys_file}: {e.strerror}") from None
    return frozenset(key for key in keys if key)


def from_sources(args: argparse.Namespace | None = None, env: dict[str, str] | None = None) -> Settings:
    """Settings from parsed flags (add_arguments), the environment and the defaults."""
    env = dict(os.environ) if env is None else env
    values = {}
    for setting in fields(Settings):
        if setting.metadata["help"] is None:
            continue
        flag_value = getattr(args, setting.name, None) if args is not None else None
        text = flag_value if flag_value is not None else env.get(ENV_PREFIX + setting.name.upper())
        if text is not None:
            values[setting.name] = _parse(_kind(setting), _flag(setting.name), text)
    settings = replace(Settings(), **values)
    return replace(settings, api_keys=read_api_keys(env, settings.api_keys_file)).check()
