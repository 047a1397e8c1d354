"""Build and deploy tooling (no torch): the model repository generator with its per-target settings,
the local tritonserver launcher, the TensorRT engine check and the CPU vocoder's precision choice."""
