"""The PyTorch side: KAN-TTS networks, ModelScope model directories and strict checkpoint loading,
eager reference synthesis, mel analysis and random-weight fixtures. Used by export/, bench/ and tests,
never by the server (serving/ imports no torch)."""
