#!/usr/bin/env python3
"""GPT-2 124M training step and KV-cache decoding: llmblocks against PyTorch,
side by side in one run.

Runs bench_model (peak/fma, train_step/gpt2-124M/B4xT64, decode/gpt2-124M/p16n128)
and then the PyTorch peer (torch_gpt2.py train and decode, 2 threads, its fastest
setting: OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE), and prints one table with
the medians and the ratios the targets are stated in:

    python3 bench/model_ratios.py --bench build/bench/bench/bench_model \\
        --peer ../shared/peers/torch_gpt2.py [--repetitions 3]

The peer is not part of llmblocks; its path is given on the command line.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys


def run_ours(bench, repetitions, wait_policy):
    env = dict(os.environ)
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    else:
        env.pop("OMP_WAIT_POLICY", None)
    out = subprocess.run(
        [bench, "--benchmark_format=json", f"--benchmark_repetitions={repetitions}"],
        env=env, check=True, capture_output=True, text=True).stdout
    runs = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        name = b["run_name"].split("/min_time")[0]
        runs.setdefault(name, []).append(b)
    return runs


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def run_peer(python, peer, mode_args):
    env = dict(os.environ, OMP_NUM_THREADS="2", OMP_WAIT_POLICY="PASSIVE")
    out = subprocess.run([python, peer] + mode_args, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="the bench_model executable")
    ap.add_argument("--peer", required=True, help="torch_gpt2.py")
    ap.add_argument("--python", default="/usr/bin/python3", help="the Python that has torch")
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--wait-policy", default="passive",
                    help="OMP_WAIT_POLICY for llmblocks (passive, active, or '' for OpenMP's default)")
    args = ap.parse_args()

    ours = run_ours(args.bench, args.repetitions, args.wait_policy)
    train = run_peer(args.python, args.peer, ["train", "--threads", "2", "--B", "4", "--T", "64", "--steps", "6"])
    decode = run_peer(args.python, args.peer, ["decode", "--threads", "2", "--prompt", "16", "--new", "128"])

    peak = max(r["GFLOPS"] for r in ours["peak/fma"])  # the best run, as bench_model's MFU uses
    step = ours["train_step/gpt2-124M/B4xT64"]
    our_step_s = median(step, "real_time") / 1e3  # real_time is in ms (Unit kMillisecond)
    our_mfu = median(step, "MFU")
    our_gflops = median(step, "GFLOPS")
    peer_step_s = train["step"]["median_s"]
    our_decode = median(ours["decode/gpt2-124M/p16n128"], "tokens_per_s")
    peer_decode = decode["decode_tokens_per_s"]
    peer_mfu = our_gflops * our_step_s / peer_step_s / peak  # the same model FLOPs over the peer's time

    print(f"FMA peak (peak/fma, all threads, best run): {peak:.1f} GFLOP/s; "
          f"llmblocks with OMP_WAIT_POLICY={args.wait_policy or '(unset)'}")
    print(f"{'benchmark':34} {'llmblocks':>12} {'PyTorch':>12} {'ratio':>8}")
    print(f"{'train_step/gpt2-124M/B4xT64 (s)':34} {our_step_s:12.3f} {peer_step_s:12.3f} "
          f"{our_step_s / peer_step_s:8.2f}   (target <= 0.50)")
    print(f"{'  tokens/s':34} {256 / our_step_s:12.1f} {256 / peer_step_s:12.1f} {peer_step_s / our_step_s:8.2f}")
    print(f"{'  MFU':34} {our_mfu:12.1%} {peer_mfu:12.1%}")
    print(f"{'decode/gpt2-124M/p16n128 (tok/s)':34} {our_decode:12.1f} {peer_decode:12.1f} "
          f"{our_decode / peer_decode:8.2f}   (target >= 2.00)")
    ok = our_step_s <= 0.5 * peer_step_s and our_decode >= 2.0 * peer_decode
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
