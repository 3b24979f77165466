"""PyTorch peer for bench/bench_attention.cpp: the same attention shapes (batch 1,
12 query heads, head_dim 64, causal; MHA / GQA with 4 KV heads / MQA with 1)
through PyTorch's CPU paths, printing the median milliseconds of each.

Paths:
  matmul  -- plain q @ k^T * scale, causal masked_fill, softmax, @ v
             (materialises the T x T scores, as most PyTorch models do);
  sdpa    -- torch.nn.functional._scaled_dot_product_attention(..., is_causal=True),
             the private fused entry point of torch 1.13 (the public
             F.scaled_dot_product_attention only arrived in torch 2.0).
GQA/MQA expand K/V to all query heads first (repeat_interleave, as Hugging Face's
repeat_kv), inside the timed region.

Wall-clock and process CPU (all threads) medians are printed; on a loaded
machine the CPU figure is the steadier one.

Run:  OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/attention_torch.py
"""
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

H, D = 12, 64
LAYOUTS = {"mha": 12, "gqa": 4, "mqa": 1}


def matmul_path(q, k, v, causal_offset):
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    tq, tk = scores.shape[-2], scores.shape[-1]
    i = torch.arange(tq).unsqueeze(1) + causal_offset
    j = torch.arange(tk).unsqueeze(0)
    scores = scores.masked_fill(j > i, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def sdpa_path(q, k, v, causal_offset):
    if causal_offset == 0:
        return F._scaled_dot_product_attention(q, k, v, None, 0.0, False, True)[0]
    # decode: the one new query sees the whole cache, so no mask is needed
    return F._scaled_dot_product_attention(q, k, v, None, 0.0, False, False)[0]


def median_ms(fn, min_reps):
    """Median wall ms and median process CPU ms (all threads) of fn()."""
    fn()  # warm-up
    wall, cpu = [], []
    start_all = time.perf_counter()
    while len(wall) < min_reps or (time.perf_counter() - start_all < 1.0 and len(wall) < 50):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return statistics.median(wall), statistics.median(cpu), len(wall)


def main():
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'name':32s} {'matmul ms':>10s} {'(cpu ms)':>10s} {'sdpa ms':>10s} {'(cpu ms)':>10s}  reps")
    sizes = [int(s) for s in sys.argv[1:]] or [256, 1024, 4096]
    for layout, hkv in LAYOUTS.items():
        for mode in ("prefill", "decode"):
            for T in sizes:
                tq = T if mode == "prefill" else 1
                q = torch.randn(1, H, tq, D)
                k = torch.randn(1, hkv, T, D)
                v = torch.randn(1, hkv, T, D)
                offset = 0 if mode == "prefill" else T - 1
                g = H // hkv

                def run(path):
                    kk = k.repeat_interleave(g, dim=1) if g > 1 else k
                    vv = v.repeat_interleave(g, dim=1) if g > 1 else v
                    with torch.no_grad():
                        return path(q, kk, vv, offset)

                ref = run(matmul_path)
                assert torch.allclose(ref, run(sdpa_path), atol=1e-4), "paths disagree"
                reps = 3 if T >= 4096 and mode == "prefill" else 10
                mm, mmc, n1 = median_ms(lambda: run(matmul_path), reps)
                sd, sdc, n2 = median_ms(lambda: run(sdpa_path), reps)
                name = f"attention/{layout}/{mode}/T{T}"
                print(f"{name:32s} {mm:10.3f} {mmc:10.3f} {sd:10.3f} {sdc:10.3f}  {n1}/{n2}", flush=True)


if __name__ == "__main__":
    main()
