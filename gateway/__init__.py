"""HTTP gateway in front of Triton: the JSON/WAV API, async tasks, OpenAI-style speech, metrics and a WebUI."""
