#!/usr/bin/env bash
# The README's main job: builds the examples and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target quickstart
./build/release/examples/quickstart
