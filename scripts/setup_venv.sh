#!/usr/bin/env bash
# Creates .venv with a CPU build of PyTorch, the package and its extras. Idempotent.
#   XMODAL_PYTHON   interpreter to use (default: python3.11, the ROS 2 Kilted wheels need it, else python3)
#   XMODAL_EXTRAS   pip extras (default: ros,onnx,bench,test,fuzz,registration)
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=${XMODAL_PYTHON:-$(command -v python3.11 || command -v python3)}
extras=${XMODAL_EXTRAS:-ros,onnx,bench,test,fuzz,registration}

# pip repeats a harmless warning for every package a local index lacks; keep its real errors.
quiet() { "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }

if [ ! -x .venv/bin/python ]; then
    "$python_bin" -m venv .venv
fi
# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
quiet .venv/bin/pip install -q "torch==2.13.0"
quiet .venv/bin/pip install -q -e ".[${extras}]" "torch==2.13.0"
.venv/bin/python -c "import torch, xmodal_compress_ros; print('xmodal_compress_ros', xmodal_compress_ros.__version__, 'torch', torch.__version__)"
