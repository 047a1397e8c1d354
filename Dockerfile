# Images. builder and triton are the GPU pair (docker-compose.yml); both use TensorRT 10.5 (NGC 24.10), so the
# engines the builder makes load in the server. Change both tags together (see scripts/build_engines.sh).
ARG TENSORRT_IMAGE=nvcr.io/nvidia/tensorrt:24.10-py3
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3

# builder: ModelScope directory -> ONNX -> FP16 TensorRT engines -> GPU model repository
FROM ${TENSORRT_IMAGE} AS builder
WORKDIR /workspace
COPY . .
# polygraphy runs the built engine for the speed check (scripts/build_engines.sh --bench).
RUN pip install --no-cache-dir "torch==2.13.0" polygraphy && pip install --no-cache-dir -e ".[export]"
ENTRYPOINT ["scripts/build_repository.sh", "gpu"]

# triton: the NGC server with our python-backend models' dependencies (numpy<2 for the python stub)
FROM ${TRITON_IMAGE} AS triton
WORKDIR /workspace
COPY . .
# onnxruntime-gpu 1.20 is built for CUDA 12 and cuDNN 9, as the 24.10 image has them.
RUN pip install --no-cache-dir -e . "onnxruntime-gpu==1.20.1"
ENTRYPOINT ["scripts/gpu_serve.sh"]

# cpu: the CPU server as scripts/setup.sh builds it anywhere (Triton 2.51 from the nvidia-pytriton wheel, python
# backend), with the exporter for the init container that writes the model repository (Kubernetes cpu overlay).
FROM python:3.11-slim-bookworm AS cpu
WORKDIR /workspace
RUN apt-get update && apt-get install -y --no-install-recommends curl gcc && rm -rf /var/lib/apt/lists/*
COPY . .
# torch's CPU build from its own index (PyPI's default Linux wheel carries CUDA); setup.sh then keeps it.
RUN python -m venv .venv && .venv/bin/pip install --no-cache-dir "torch==2.13.0" \
      --index-url https://download.pytorch.org/whl/cpu && scripts/setup.sh
ENV PATH=/workspace/.venv/bin:$PATH
ENTRYPOINT ["python", "-m", "deploy.launcher"]

# gateway: the HTTP API in front of Triton (no model, no torch): FastAPI, uvicorn, tritonclient (Kubernetes).
FROM python:3.11-slim-bookworm AS gateway
WORKDIR /workspace
COPY . .
RUN pip install --no-cache-dir ".[gateway]" && useradd --system gateway
USER gateway
EXPOSE 8080
ENTRYPOINT ["python", "-m", "gateway"]
