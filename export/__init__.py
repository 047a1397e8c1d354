"""PyTorch side: the KAN-TTS networks, checkpoint loading, reference synthesis, ONNX and TensorRT export."""
