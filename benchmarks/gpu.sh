#!/usr/bin/env bash
# The checks that need a GPU, as one prepared run (about 10 minutes on one H100/H200):
#   bash benchmarks/gpu.sh            # after `make .venv/.bench` on the GPU machine
# 1. where the gradient graphs run: every node on CUDAExecutionProvider (PLACEMENT-cuda.json)
# 2. gradient against forward per row on CUDA (RESULTS-cuda.md)
# 3. the benchmark suite on CUDA, fused (auto) and unfused, with CUDA-graph capture checked by
#    the harness's engine rows (benchmarks/results/cuda-*)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
$PY -m benchmarks.gradient --device cuda --placement
$PY -m benchmarks.gradient --device cuda --repeats 5
$PY -m benchmarks run --device cuda --suite full --fuse auto
$PY -m benchmarks run --device cuda --suite full --fuse off
