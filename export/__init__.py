"""Export for serving: Sambert as ONNX sub-graphs, the vocoder as ONNX, its CPU precision variants and
its TensorRT engine (the networks themselves are in models/)."""
