"""Server-side library for Sambert-HifiGan serving: front end, model directory, ONNX Runtime runtime.

Nothing here imports torch: this package runs inside Triton's python backend.
"""
