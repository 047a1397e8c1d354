#!/usr/bin/env bash
# Idempotent setup: .venv with the server, exporter, client, test tools, plus a CPU Triton 2.51 server
# (from the nvidia-pytriton wheel) and perf_analyzer 2.51 under .triton/. Needs only python3.11, pip, gcc.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
TRITON_HOME=${TRITON_HOME:-$ROOT/.triton}
step() { printf '[setup] %s\n' "$*"; }

step "python environment in $VENV"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)
# torch first and pinned: every machine here holds that CPU build locally; anything else pulls CUDA wheels.
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e "$ROOT[server,export,gateway,hub,dev]" -e "$ROOT/client"

PY="$VENV/bin/python"
SP=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PYLIBDIR=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')

step "Triton python backend and stub for Python $PYVER in $TRITON_HOME"
rm -rf "$TRITON_HOME/backends/python"; mkdir -p "$TRITON_HOME/backends"
cp -r "$SP/pytriton/tritonserver/backends/python" "$TRITON_HOME/backends/python"
rm -rf "$TRITON_HOME/backends/python/__pycache__"
cp "$SP/pytriton/tritonserver/python_backend_stubs/$PYVER/triton_python_backend_stub" "$TRITON_HOME/backends/python/"
# The stub embeds libpython: make it load this interpreter's own, not the system's (stdlib mismatch otherwise).
if [ -e "$PYLIBDIR/libpython$PYVER.so.1.0" ]; then
  ln -sf "$PYLIBDIR/libpython$PYVER.so.1.0" "$VENV/lib/libpython$PYVER.so.1.0"
fi

if [ ! -x "$TRITON_HOME/tools/bin/perf_analyzer" ]; then
  step "perf_analyzer 2.51 (the newest build that runs on glibc 2.36)"
  mkdir -p "$TRITON_HOME/tools/bin" "$TRITON_HOME/tools/lib" "$TRITON_HOME/tools/dl"
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps tritonclient==2.51.0 -d "$TRITON_HOME/tools/dl"
  "$PY" - "$TRITON_HOME" <<'PYEOF'
import glob, sys, zipfile
home = sys.argv[1]
wheel = glob.glob(f"{home}/tools/dl/tritonclient-2.51.0-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    data = z.read("tritonclient-2.51.0.data/data/bin/perf_analyzer")
with open(f"{home}/tools/bin/perf_analyzer", "wb") as f:
    f.write(data)
PYEOF
  chmod +x "$TRITON_HOME/tools/bin/perf_analyzer"; rm -rf "$TRITON_HOME/tools/dl"
fi
mkdir -p "$TRITON_HOME/tools/lib"
ln -sf "$(ls "$SP"/nvidia_pytriton.libs/libb64-*.so.0d)" "$TRITON_HOME/tools/lib/libb64.so.0d"
ln -sf "$(ls "$SP"/nvidia_pytriton.libs/libcudart-*.so.12*)" "$TRITON_HOME/tools/lib/libcudart.so.12"

cat > "$TRITON_HOME/env.sh" <<EOS
export TRITONSERVER="$SP/pytriton/tritonserver/bin/tritonserver"
export TRITON_BACKENDS="$TRITON_HOME/backends"
export TRITON_CACHES="$SP/pytriton/tritonserver/caches"
export TRITON_LD_LIBRARY_PATH="$PYLIBDIR:$SP/nvidia_pytriton.libs"
export PERF_ANALYZER="$TRITON_HOME/tools/bin/perf_analyzer"
export PERF_ANALYZER_LD_LIBRARY_PATH="$TRITON_HOME/tools/lib"
export TRITON_VENV="$VENV"
EOS
step "done: source $TRITON_HOME/env.sh"
