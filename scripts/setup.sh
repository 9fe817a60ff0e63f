#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks, then configures and builds ncd.
# Usage: scripts/setup.sh [BUILD_DIR [CMAKE_ARGS...]]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
shift || true

packages=(build-essential cmake ninja-build pkg-config antlr4 libantlr4-runtime-dev
          libyaml-cpp-dev libcli11-dev libmimalloc-dev libgraphviz-dev libgvc6 fonts-dejavu-core libgtest-dev nlohmann-json3-dev
          libopenblas-dev libonnx-dev libprotobuf-dev python3 python3-numpy python3-torch python3-onnx)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
ninja -C "$build_dir"
