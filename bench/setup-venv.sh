#!/usr/bin/env bash
# Creates the virtual environment of the ONNX runtimes bench/compare.py sets
# beside mixer on the CPU: OpenVINO and ONNX Runtime from PyPI, with NumPy.
# The model is exported by Debian's python3-torch outside it
# (bench/onnx_baseline.py export), so the environment holds no PyTorch.
#
#   bench/setup-venv.sh            # into ~/.cache/mixer-venv-bench
#   MIXER_BENCH_VENV=DIR bench/setup-venv.sh
#
# Nothing else needs it: the tests never use it, and compare.py leaves the
# OpenVINO and ONNX Runtime columns out, saying so, where it is missing.
set -euo pipefail
venv="${MIXER_BENCH_VENV:-$HOME/.cache/mixer-venv-bench}"
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q numpy openvino onnxruntime
"$venv/bin/python" - <<'PY'
import onnxruntime
import openvino
print(f"OpenVINO {openvino.__version__}, ONNX Runtime {onnxruntime.__version__}")
PY
echo "virtual environment ready: $venv"
