#!/usr/bin/env bash
# The GPU study: Qwen2.5-Coder-0.5B-Instruct on every item of the ten benchmarks on one GPU
# (an H200 lent by the `run` device tool), within 15 minutes including the transfers.
#
#   studies/gpu_study.sh prepare          # here: build/gpu-study/{model/part*.bin,wheels,benchmarks}
#   # device: one `run` call per model chunk (each transfer carries at most 64 MiB), e.g.
#   #   run(command="ls build/gpu-study/model", carry=["build/gpu-study/model/part00.bin"])
#   #   ... part07 ...; then, in the same warm session:
#   #   run(command="studies/gpu_study.sh generate", timeout_s=600,
#   #       carry=["build/gpu-study/benchmarks", "build/gpu-study/wheels",
#   #              "build/gpu-study/model/part07.bin"])
#   studies/gpu_study.sh finish FETCHED   # here: grade, estimator study -> data/studies/h200-qwen05b
#   .venv/bin/python -m entropy_sentinel.evaluate.study markdown data/studies/h200-qwen05b  # README tables
#
# Torch, transformers, pandas and pyarrow are on the GPU machine; the gguf wheel travels along.
# `generate` stops generating at its deadline and still writes what it has (at most 64 MiB back).
set -euo pipefail
cd "$(dirname "$0")/.."
STEP="${1:?usage: studies/gpu_study.sh prepare|generate|finish FETCHED}"
case "$STEP" in
  prepare)
    .venv/bin/python studies/gpu_study.py prepare "${@:2}"
    GGUF_VERSION=$(.venv/bin/python -c 'from importlib.metadata import version; print(version("gguf"))')
    rm -rf build/gpu-study/wheels
    .venv/bin/python -m pip download -q --no-deps -d build/gpu-study/wheels "gguf==$GGUF_VERSION"
    du -sh build/gpu-study/*
    ;;
  generate)
    PYDEPS=/tmp/gpu-study/py
    python -c 'import gguf' 2>/dev/null \
      || python -m pip install -q --no-deps --no-index --target "$PYDEPS" build/gpu-study/wheels/*.whl
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true
    PYTHONPATH="workflow:$PYDEPS" python studies/gpu_study.py generate --out "${OUT:?}/study" "${@:2}"
    du -sh "$OUT/study"
    ;;
  finish)
    .venv/bin/python studies/gpu_study.py finish --fetched "${2:?the fetched study folder}" "${@:3}"
    ;;
  *)
    echo "unknown step $STEP: use prepare, generate or finish" >&2
    exit 2
    ;;
esac
