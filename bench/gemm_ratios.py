#!/usr/bin/python3
"""Ratios of llmblocks' GEMM to the best peer, from bench_gemm's JSON output.

    bench_gemm --benchmark_repetitions=30 --benchmark_enable_random_interleaving=true \
               --benchmark_min_time=0.05 --benchmark_report_aggregates_only=true \
               --benchmark_out=gemm.json --benchmark_out_format=json
    /usr/bin/python3 bench/gemm_ratios.py gemm.json [--markdown]

Random interleaving runs the repetitions of all the benchmarks in a shuffled
order, so that a slow spell of a shared machine falls on every implementation
alike instead of on whichever ran then; many short repetitions sample those
spells more evenly than a few long ones. For each shape/layout it takes the
GFLOPS counter of each implementation (the median aggregate when the run has
repetitions, else the mean over the runs),
the best of the peers (openblas, openblas_gemv, onednn; eigen is shown but is
not a peer), and prints llmblocks / best peer. Issue 2's targets: every ratio
>= 0.9 and the geometric mean >= 1.0.

The gemm_paired benchmarks (--benchmark_filter=gemm_paired/) call llmblocks
and oneDNN in turn and time each call; their ratios (median over the call
pairs) are printed in a table of their own, from the same file or another.
"""
import json
import math
import sys
from collections import defaultdict

PEERS = ("openblas", "openblas_gemv", "onednn")
SHOWN = ("llmblocks", "openblas", "openblas_gemv", "onednn", "eigen")


def load(path):
    with open(path) as f:
        data = json.load(f)
    medians = {}
    runs = defaultdict(list)
    for b in data["benchmarks"]:
        parts = b.get("run_name", b["name"]).split("/")
        if len(parts) < 4 or parts[0] != "gemm" or "GFLOPS" not in b:
            continue
        key = (parts[1], parts[2], parts[3])  # impl, MxKxN, NN|NT
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[key] = b["GFLOPS"]
        elif not b.get("error_occurred", False):
            runs[key].append(b["GFLOPS"])
    values = dict(medians)
    for key, vals in runs.items():
        values.setdefault(key, sum(vals) / len(vals))
    return values


def load_paired(path):
    """gemm_paired/<MxKxN>/<NN|NT> -> (llmblocks GFLOPS, oneDNN GFLOPS, vs_onednn),
    the median aggregate when the run has repetitions, else the first run."""
    with open(path) as f:
        data = json.load(f)
    paired = {}
    for b in data["benchmarks"]:
        parts = b.get("run_name", b["name"]).split("/")
        if len(parts) < 3 or parts[0] != "gemm_paired" or "vs_onednn" not in b:
            continue
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        key = (parts[1], parts[2])
        if b.get("run_type") == "aggregate" or key not in paired:
            paired[key] = (b["llmblocks_GFLOPS"], b["onednn_GFLOPS"], b["vs_onednn"])
    return paired


def print_paired(paired):
    cases = sorted(paired, key=lambda c: (shape_order(c[0]), c[1]))
    print("\npaired, call by call (gemm_paired): llmblocks / oneDNN is the median over the call pairs")
    print(f"{'shape':<18}  {'llmblocks':>10}  {'onednn':>10}  {'llmblocks / onednn':>18}")
    for shape, layout in cases:
        mine, theirs, ratio = paired[(shape, layout)]
        flag = "  < 0.9" if ratio < 0.9 else ""
        print(f"{shape + '/' + layout:<18}  {mine:>10.1f}  {theirs:>10.1f}  {ratio:>18.3f}{flag}")
    ratios = [paired[c][2] for c in cases]
    geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"lowest {min(ratios):.3f}, geometric mean {geomean:.3f}")


def shape_order(shape):
    m, k, n = (int(x) for x in shape.split("x"))
    return (m == 1, m, k, n)


def main(argv):
    paths = [a for a in argv[1:] if not a.startswith("--")]
    markdown = "--markdown" in argv
    if len(paths) != 1:
        print(__doc__)
        return 2
    values = load(paths[0])
    paired = load_paired(paths[0])
    if paired and not any(i == "llmblocks" for (i, _, _) in values):
        print_paired(paired)
        return 0
    cases = sorted({(s, l) for (_, s, l) in values}, key=lambda c: (shape_order(c[0]), c[1]))
    impls = [i for i in SHOWN if any((i, s, l) in values for s, l in cases)]
    ratios = []
    rows = []
    for shape, layout in cases:
        mine = values.get(("llmblocks", shape, layout))
        peers = {p: values[(p, shape, layout)] for p in PEERS if (p, shape, layout) in values}
        if mine is None or not peers:
            continue
        best_name = max(peers, key=peers.get)
        ratio = mine / peers[best_name]
        ratios.append(ratio)
        cells = [f"{values[(i, shape, layout)]:.1f}" if (i, shape, layout) in values else "-" for i in impls]
        rows.append((f"{shape}/{layout}", cells, best_name, ratio))
    if not ratios:
        print("no llmblocks/peer pairs found")
        return 1
    geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    if markdown:
        print("| shape (MxKxN/layout) | " + " | ".join(impls) + " | best peer | llmblocks / best |")
        print("|---|" + "---:|" * len(impls) + "---|---:|")
        for name, cells, best, ratio in rows:
            flag = " **<0.9**" if ratio < 0.9 else ""
            print(f"| {name} | " + " | ".join(cells) + f" | {best} | {ratio:.2f}{flag} |")
        print(f"| geometric mean | " + " | ".join("" for _ in impls) + f" | | {geomean:.2f} |")
    else:
        width = max(len(r[0]) for r in rows)
        print(f"{'shape':<{width}}  " + "  ".join(f"{i:>13}" for i in impls) + "  best peer      ratio")
        for name, cells, best, ratio in rows:
            flag = "  < 0.9" if ratio < 0.9 else ""
            print(f"{name:<{width}}  " + "  ".join(f"{c:>13}" for c in cells) + f"  {best:<13} {ratio:5.2f}{flag}")
        print(f"geometric mean of llmblocks / best peer: {geomean:.3f}")
    worst = min(ratios)
    ok = worst >= 0.9 and geomean >= 1.0
    print(f"\nmin ratio {worst:.2f} (target >= 0.9), geomean {geomean:.2f} (target >= 1.0): "
          + ("targets met" if ok else "targets NOT met"))
    if paired:
        print_paired(paired)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
