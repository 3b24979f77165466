#!/usr/bin/env bash
# The README's main job: builds the examples and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target quickstart llmblocks_cli
# Threads sleep rather than spin while they wait: much faster when other work
# shares the cores, 20-35% slower on an idle one (docs/performance.md).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
./build/release/examples/quickstart
