"""Inference runtimes for the exported graphs (ONNX Runtime, no torch): the acoustic model and the vocoder."""
