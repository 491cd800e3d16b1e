#!/usr/bin/env bash
# Builds the llama-cpp-python wheel once into the trunkline cache and prints its path.
#
# llama-cpp-python ships as source only and takes ~5 minutes to compile on 2 cores, so
# the wheel is cached outside the checkout and rebuilt only when missing (or forced).
#
#   wheel=$(bash serving/envs/build_llama_cpp_wheel.sh)
#   .venv/bin/pip install --no-deps "$wheel"
#
# Knobs (environment):
#   TRUNKLINE_WHEELS   cache folder (default ~/.cache/trunkline/wheels)
#   TRUNKLINE_PYTHON   interpreter whose pip builds the wheel (default: .venv/bin/python
#                      of this checkout if present, else python3.11); the wheel is tagged
#                      py3-none-linux_<arch>, usable by any Python 3 on this machine
#   LLAMA_CPP_VERSION  version to build (default 0.3.36, the one pyproject.toml pins)
#   CMAKE_ARGS         passed to the llama.cpp CMake build (and then pip's wheel cache is
#                      bypassed), e.g. -DGGML_NATIVE=OFF for a wheel that runs on other
#                      x86-64 machines
#   FORCE_REBUILD=1    build even if the wheel is cached
set -euo pipefail

version=${LLAMA_CPP_VERSION:-0.3.36}
cache=${TRUNKLINE_WHEELS:-$HOME/.cache/trunkline/wheels}
repo=$(cd "$(dirname "$0")/../.." && pwd)
default_python=python3.11
[[ -x $repo/.venv/bin/python ]] && default_python=$repo/.venv/bin/python
python=${TRUNKLINE_PYTHON:-$default_python}

log() { printf '[llama-cpp wheel] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

find_wheel() {
    compgen -G "$cache/llama_cpp_python-${version}-*.whl" | head -n 1 || true
}

mkdir -p "$cache"
# One builder at a time: a second caller waits, then finds the wheel.
exec {lock_fd}>"$cache/.llama-cpp-python.lock"
flock "$lock_fd"

wheel=$(find_wheel)
if [[ -n $wheel && ${FORCE_REBUILD:-0} != 1 ]]; then
    log "cached: $wheel"
    echo "$wheel"
    exit 0
fi

command -v "$python" >/dev/null || die "'$python' not found (set TRUNKLINE_PYTHON)"
for tool in cc c++ make; do
    command -v "$tool" >/dev/null || die "'$tool' not found: install build-essential"
done

build_dir=$(mktemp -d "${TMPDIR:-/tmp}/llama-cpp-wheel.XXXXXX")
trap 'rm -rf "$build_dir"' EXIT
started=$SECONDS
log "building llama-cpp-python==$version with $python (about 5 minutes on 2 cores)"
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
    "$python" -m pip wheel --no-deps --no-binary llama-cpp-python --progress-bar off ${CMAKE_ARGS:+--no-cache-dir} \
    -w "$build_dir" "llama-cpp-python==$version" >&2 ||
    die "pip wheel failed; see the build output above"

built=$(compgen -G "$build_dir/llama_cpp_python-${version}-*.whl" | head -n 1 || true)
[[ -n $built ]] || die "pip finished but left no wheel in $build_dir"
# Replace any old wheel only once the new one is complete, so readers never see half a file.
target=$cache/$(basename "$built")
cp "$built" "$target.partial"
mv -f "$target.partial" "$target"
[[ -n $wheel && $wheel != "$target" ]] && rm -f "$wheel"
wheel=$target
log "done in $((SECONDS - started)) s: $wheel"
echo "$wheel"
