"""Client for the Sambert-HifiGan Triton TTS server (gRPC or HTTP)."""

from tts_client.client import Synthesis, TTSClient, TTSConnectionError, TTSError

__all__ = ["Synthesis", "TTSClient", "TTSConnectionError", "TTSError"]
