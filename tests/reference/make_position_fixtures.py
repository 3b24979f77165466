#!/usr/bin/env python3
"""Writes the PyTorch fixtures of tests/kernels/test_rope.cpp and test_relative_position.cpp.

Run with Debian's python3-torch (torch 1.13):  /usr/bin/python3 tests/reference/make_position_fixtures.py
Output: tests/reference/positions/manifest.json and one raw little-endian float32 file per case
(arrays concatenated in C order; the manifest gives each array's shape and offset in floats).
The fixtures are committed, so the C++ tests need no Python.

RoPE (RoFormer, Su et al. 2021), float32, in the forms its users write it:
  - rotate-half as Hugging Face Llama / GPT-NeoX: x*cos + rotate_half(x)*sin, cos = cat(freqs, freqs).cos(),
    with GPT-NeoX's partial rotation (rotary_pct): only x[..., :rot_dim] rotates;
  - interleaved as Meta's Llama code (complex64 multiplication by e^(i angle)) and as GPT-J
    (rotate_every_two with repeat_interleave'd sin/cos, partial rotary_dim).
  The cos/sin tables are computed in float64 and rounded to float32, as llmblocks' RopeCache does;
  one case also stores the output with Hugging Face's float32 tables (out_hf32), to measure the
  difference. Gradients come from torch.autograd (x.grad for a random dout).
T5 relative position bias (Raffel et al. 2020): Hugging Face's T5Attention._relative_position_bucket,
written out below (transformers is not installed here), evaluated on a vector of relative positions,
and compute_bias with its gradient for the embedding weight.
"""
import json
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "positions")


class CaseFile:
    """Arrays of one case, concatenated into <name>.f32."""

    def __init__(self, name):
        self.name = name
        self.arrays = {}
        self.chunks = []
        self.offset = 0

    def add(self, key, tensor):
        t = tensor.detach().to(torch.float32).contiguous()
        self.arrays[key] = {"shape": list(t.shape), "offset": self.offset}
        self.chunks.append(t.numpy().astype("<f4").tobytes())
        self.offset += t.numel()

    def write(self):
        path = self.name + ".f32"
        with open(os.path.join(OUT_DIR, path), "wb") as f:
            for c in self.chunks:
                f.write(c)
        return {"file": path, "arrays": self.arrays}


# ---- RoPE -----------------------------------------------------------------------------------

def rope_tables_float64(rot_dim, theta, positions):
    """(len(positions), rot_dim/2) cos and sin, computed in float64, rounded to float32."""
    i = torch.arange(rot_dim // 2, dtype=torch.float64)
    inv_freq = theta ** (-2.0 * i / rot_dim)
    angles = torch.outer(positions.to(torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def rope_tables_hf_float32(rot_dim, theta, positions):
    """Hugging Face Llama's tables: inv_freq, the angles and cos/sin all in float32."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, rot_dim, 2, dtype=torch.int64).float() / rot_dim))
    freqs = torch.outer(positions.float(), inv_freq)
    return freqs.cos(), freqs.sin()


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rope_hf_neox(x, cos, sin, rot_dim):
    """HF Llama apply_rotary_pos_emb with GPT-NeoX's partial rotation. cos, sin: (T, rot_dim/2)."""
    cos = torch.cat((cos, cos), dim=-1)  # (T, rot_dim), broadcast over (B, H)
    sin = torch.cat((sin, sin), dim=-1)
    x_rot, x_pass = x[..., :rot_dim], x[..., rot_dim:]
    return torch.cat((x_rot * cos + rotate_half(x_rot) * sin, x_pass), dim=-1)


def rope_meta_complex(x, cos, sin, rot_dim):
    """Meta's Llama apply_rotary_emb: x as complex64 pairs (x[2i], x[2i+1]) times freqs_cis."""
    assert rot_dim == x.shape[-1]
    freqs_cis = torch.complex(cos, sin)  # (T, rot_dim/2) complex64
    xc = torch.view_as_complex(x.reshape(*x.shape[:-1], rot_dim // 2, 2))
    return torch.view_as_real(xc * freqs_cis).flatten(-2)


def rotate_every_two(x):
    x1 = x[..., ::2]
    x2 = x[..., 1::2]
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


def rope_gptj(x, cos, sin, rot_dim):
    """GPT-J apply_rotary_pos_emb on x[..., :rotary_dim], sin/cos repeat_interleave'd."""
    cos = cos.repeat_interleave(2, dim=-1)
    sin = sin.repeat_interleave(2, dim=-1)
    x_rot, x_pass = x[..., :rot_dim], x[..., rot_dim:]
    return torch.cat((x_rot * cos + rotate_every_two(x_rot) * sin, x_pass), dim=-1)


ROPE_CASES = [
    # name, style, form, theta, (B, H, T, D), rot_dim, pos0
    ("rope_llama", "rotate_half", rope_hf_neox, 10000.0, (2, 3, 7, 16), 16, 0),
    ("rope_llama3_theta", "rotate_half", rope_hf_neox, 500000.0, (1, 2, 9, 64), 64, 5),
    ("rope_neox_partial", "rotate_half", rope_hf_neox, 10000.0, (2, 2, 5, 32), 8, 3),
    ("rope_meta_interleaved", "interleaved", rope_meta_complex, 10000.0, (2, 3, 7, 16), 16, 0),
    ("rope_gptj_partial", "interleaved", rope_gptj, 10000.0, (1, 3, 6, 24), 8, 11),
    ("rope_llama3_far", "rotate_half", rope_hf_neox, 500000.0, (1, 2, 4, 128), 128, 1000),
]


def make_rope(manifest):
    for name, style, form, theta, shape, rot_dim, pos0 in ROPE_CASES:
        B, H, T, D = shape
        x = torch.randn(shape, dtype=torch.float32, requires_grad=True)
        dout = torch.randn(shape, dtype=torch.float32)
        positions = torch.arange(pos0, pos0 + T)
        cos, sin = rope_tables_float64(rot_dim, theta, positions)
        out = form(x, cos, sin, rot_dim)
        out.backward(dout)
        case = CaseFile(name)
        case.add("x", x)
        case.add("out", out)
        case.add("dout", dout)
        case.add("dinp", x.grad)
        entry = {"name": name, "style": style, "form": form.__name__, "theta": theta, "shape": list(shape),
                 "rot_dim": rot_dim, "pos0": pos0}
        if name == "rope_llama3_far":
            cos32, sin32 = rope_tables_hf_float32(rot_dim, theta, positions)
            out_hf32 = form(x.detach(), cos32, sin32, rot_dim)
            case.add("out_hf32", out_hf32)
            entry["max_abs_diff_hf32_vs_float64_tables"] = float((out_hf32 - out).abs().max())
        entry.update(case.write())
        manifest["rope"].append(entry)


# ---- T5 relative position bias --------------------------------------------------------------

def hf_relative_position_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """Hugging Face T5Attention._relative_position_bucket, line for line."""
    relative_buckets = 0
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    relative_position_if_large = max_exact + (
        torch.log(relative_position.float() / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).to(torch.long)
    relative_position_if_large = torch.min(
        relative_position_if_large, torch.full_like(relative_position_if_large, num_buckets - 1)
    )
    relative_buckets += torch.where(is_small, relative_position, relative_position_if_large)
    return relative_buckets


BUCKET_CONFIGS = [
    # bidirectional, num_buckets, max_distance
    (True, 32, 128),   # T5 encoder defaults
    (False, 32, 128),  # T5 decoder defaults
    (True, 8, 20),
    (False, 8, 20),
    (True, 12, 50),    # max_exact 3: the divisions are not exact in binary
    (False, 20, 77),   # max_exact 10
    (True, 33, 100),   # odd num_buckets: bucket 32 is never used
    (False, 7, 30),
    (True, 4, 3),      # the smallest bidirectional config: one exact bucket per direction
    (False, 2, 5),     # the smallest causal config
    (True, 64, 1024),
]
FAR = [400, 999, 1000, 1001, 1023, 1024, 1025, 4096, 10**5, 10**6, 2**31, 2**40]


def make_buckets(manifest):
    rel = list(range(-300, 301)) + FAR + [-d for d in FAR]
    rel_t = torch.tensor(rel, dtype=torch.long)
    for bidirectional, num_buckets, max_distance in BUCKET_CONFIGS:
        buckets = hf_relative_position_bucket(rel_t, bidirectional, num_buckets, max_distance)
        # The same values one element at a time (PyTorch's scalar loop instead of its vector one).
        for r, b in zip(rel, buckets.tolist()):
            one = hf_relative_position_bucket(torch.tensor([r]), bidirectional, num_buckets, max_distance)
            assert int(one) == b, (bidirectional, num_buckets, max_distance, r)
        manifest["t5_buckets"].append({"bidirectional": bidirectional, "num_buckets": num_buckets,
                                       "max_distance": max_distance, "relative_positions": rel,
                                       "buckets": buckets.tolist()})


BIAS_CASES = [
    # name, bidirectional, num_buckets, max_distance, H, Tq, Tk, q0
    ("t5_bias_encoder", True, 8, 20, 3, 30, 30, 0),
    ("t5_bias_decoder_cached", False, 8, 20, 2, 3, 28, 25),
    ("t5_bias_default", True, 32, 128, 2, 5, 300, 0),
]


def make_bias(manifest):
    for name, bidirectional, num_buckets, max_distance, H, Tq, Tk, q0 in BIAS_CASES:
        emb = torch.nn.Embedding(num_buckets, H)
        with torch.no_grad():
            emb.weight.copy_(torch.randn(num_buckets, H))
        # HF T5Attention.compute_bias with query positions q0 .. q0+Tq-1 (the decoder's cache_position).
        context_position = torch.arange(q0, q0 + Tq, dtype=torch.long)[:, None]
        memory_position = torch.arange(Tk, dtype=torch.long)[None, :]
        relative_position = memory_position - context_position
        bucket = hf_relative_position_bucket(relative_position, bidirectional, num_buckets, max_distance)
        values = emb(bucket)                        # (Tq, Tk, H)
        values = values.permute([2, 0, 1]).unsqueeze(0)  # (1, H, Tq, Tk)
        dbias = torch.randn(1, H, Tq, Tk)
        values.backward(dbias)
        case = CaseFile(name)
        case.add("weight", emb.weight)
        case.add("bias", values[0])
        case.add("dbias", dbias[0])
        case.add("dweight", emb.weight.grad)
        entry = {"name": name, "bidirectional": bidirectional, "num_buckets": num_buckets,
                 "max_distance": max_distance, "H": H, "Tq": Tq, "Tk": Tk, "q0": q0}
        entry.update(case.write())
        manifest["t5_bias"].append(entry)


def main():
    assert sys.byteorder == "little"
    torch.manual_seed(0)
    os.makedirs(OUT_DIR, exist_ok=True)
    manifest = {"generator": "tests/reference/make_position_fixtures.py", "torch": torch.__version__,
                "rope": [], "t5_buckets": [], "t5_bias": []}
    make_rope(manifest)
    make_buckets(manifest)
    make_bias(manifest)
    with open(os.path.join(OUT_DIR, "manifest.json"), "w") as f:
        json.dump(manifest, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
