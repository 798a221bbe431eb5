#!/usr/bin/env bash
# GPU benchmark, prepared for the device tool's GPU machine (see bench/gpu.py for what it measures).
#
# That machine has PyTorch (CUDA) and a CPU onnxruntime but no registry, so what chatq needs
# travels as wheels in .whl/ (ignored by git; at most 64 MiB per call):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl transformers==4.57.6 tokenizers==0.22.2 \
#     huggingface-hub==0.36.2 optimum==2.1.0 optimum-onnx==0.1.0 onnx==1.23.2 \
#     pydantic-settings structlog kombu celery standardwebhooks
# onnxruntime-gpu 1.31.1 (244 MiB) is split with `split -b 60M` into .whl/ort-gpu.part-*, sent
# over back-to-back calls (ignored paths on a warm machine are kept between calls) and joined
# here. Smoke test on a CPU first:  bench/gpu.sh --device cpu --preset tiny --batch-sizes 1,2
set -euo pipefail
cd "$(dirname "$0")/.."

OUT_DIR="${OUT:-bench/results}"
mkdir -p "$OUT_DIR"

if [ -d .whl ]; then
  if ls .whl/ort-gpu.part-* >/dev/null 2>&1; then
    cat .whl/ort-gpu.part-* > .whl/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ -z "${OUT:-}" ] && PYTHON=.venv/bin/python
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv
"$PYTHON" bench/gpu.py --out "$OUT_DIR/gpu.json" "$@" 2>&1 | tee "$OUT_DIR/gpu.log"
