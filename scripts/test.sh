#!/usr/bin/env bash
# Builds and runs every test of llmblocks:
#   1. the doctest suite in three builds: `release` (-march=native, OpenMP),
#      `portable` (no -march=native: the SSE2 kernels) and `no-openmp`;
#   2. a downstream project that compiles the README's C++ example against an
#      install prefix with find_package(llmblocks), in a temp dir;
#   3. a downstream project that pulls llmblocks in with add_subdirectory.
# Ends with one line "N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)
# ccache (used when installed) then finds its results again from any checkout path.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
passed=0
failed=0

for preset in release portable no-openmp; do
  echo "== ${preset}: configure and build"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  echo "== ${preset}: ctest"
  log=$(mktemp)
  if ctest --preset "$preset" -j "$jobs" | tee "$log"; then :; fi
  total=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' "$log")
  bad=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\1/p' "$log")
  rm -f "$log"
  if [[ -z "$total" ]]; then
    echo "== ${preset}: ctest printed no summary" >&2
    failed=$((failed + 1))
  else
    passed=$((passed + total - bad))
    failed=$((failed + bad))
  fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== consumer: find_package against an install prefix, building the README examples"
cmake --install build/release --prefix "$tmp/prefix" >/dev/null
cp -r tests/consumers/find_package "$tmp/find_package"
# Every C++ code block of the README is an example; compile and run exactly those.
awk -v dir="$tmp/find_package" '/^```cpp/{n++; out=sprintf("%s/example_%d.cpp", dir, n); inside=1; next}
     /^```/{inside=0; next} inside{print > out}' README.md
examples=("$tmp"/find_package/example_*.cpp)
if [[ ! -s "${examples[0]}" ]]; then
  echo "README.md has no \`\`\`cpp block" >&2
  exit 1
fi
ok=1
if cmake -S "$tmp/find_package" -B "$tmp/find_package/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
      -DCMAKE_BUILD_TYPE=Release >/dev/null &&
   cmake --build "$tmp/find_package/build" -j "$jobs"; then
  for src in "${examples[@]}"; do
    name=$(basename "$src" .cpp)
    echo "-- README $name"
    "$tmp/find_package/build/$name" || ok=0
  done
else
  ok=0
fi
if [[ $ok -eq 1 ]]; then
  passed=$((passed + 1))
else
  echo "== consumer find_package: FAILED" >&2
  failed=$((failed + 1))
fi

echo "== consumer: add_subdirectory"
if cmake -S tests/consumers/add_subdirectory -B "$tmp/add_subdirectory" -DLLMBLOCKS_SOURCE_DIR="$PWD" \
      -DCMAKE_BUILD_TYPE=Release >/dev/null &&
   cmake --build "$tmp/add_subdirectory" -j "$jobs" &&
   "$tmp/add_subdirectory/consumer"; then
  passed=$((passed + 1))
else
  echo "== consumer add_subdirectory: FAILED" >&2
  failed=$((failed + 1))
fi

echo "${passed} passed, ${failed} failed"
[[ $failed -eq 0 ]]
