# GPU images. Build through docker-compose.yml; both sides use TensorRT 10.5 (NGC 24.10), so the
# engines the builder makes load in the server. Change both tags together (see scripts/build_engines.sh).
ARG TENSORRT_IMAGE=nvcr.io/nvidia/tensorrt:24.10-py3
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3

# builder: ModelScope directory -> ONNX -> FP16 TensorRT engines -> GPU model repository
FROM ${TENSORRT_IMAGE} AS builder
WORKDIR /workspace
COPY . .
# polygraphy runs the built engine for the speed check (scripts/build_engines.sh --bench).
RUN pip install --no-cache-dir "torch==2.13.0" polygraphy && pip install --no-cache-dir -e ".[export]"
ENTRYPOINT ["scripts/gpu_build.sh"]

# triton: the NGC server with our python-backend models' dependencies (numpy<2 for the python stub)
FROM ${TRITON_IMAGE} AS triton
WORKDIR /workspace
COPY . .
# onnxruntime-gpu 1.20 is built for CUDA 12 and cuDNN 9, as the 24.10 image has them.
RUN pip install --no-cache-dir -e . "onnxruntime-gpu==1.20.1"
ENTRYPOINT ["scripts/gpu_serve.sh"]
