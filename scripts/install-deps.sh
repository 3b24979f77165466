#!/usr/bin/env bash
# Installs the Debian 12 packages llmblocks needs. Idempotent: when every
# package is already installed it changes nothing and touches no network.
#   scripts/install-deps.sh            build, test and benchmark dependencies
#   scripts/install-deps.sh --with-torch  also PyTorch (python3-torch), for the
#                                      reference-fixture scripts and the peer benchmarks
set -euo pipefail

packages=(
  g++ cmake make ccache pkg-config
  libeigen3-dev libxsimd-dev xtl-dev nlohmann-json3-dev libutf8proc-dev  # the library
  doctest-dev                                                            # tests
  libbenchmark-dev libopenblas-dev libdnnl-dev                           # benchmarks and their peers
)
if [[ "${1:-}" == "--with-torch" ]]; then
  packages+=(python3-torch python3-numpy)
elif [[ $# -gt 0 ]]; then
  echo "install-deps.sh: unknown option '$1' (expected --with-torch)" >&2
  exit 2
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
