#!/usr/bin/env python3
"""Writes the PyTorch fixtures of tests/nn/test_attention_module.cpp and tests/nn/test_blocks.cpp.

Run with the system Python that has torch 1.13:
    /usr/bin/python3 tests/reference/make_nn_fixtures.py
It writes one safetensors file per case into tests/reference/nn/ (written by hand below: an
8-byte little-endian header length, a JSON header, then the float32 data). Each file holds
  x, dy                 the input (B, T, C) and a random output gradient dy
  <param name>          every parameter, under llmblocks' own names ("attn.q_proj.weight", ...)
  y                     the module's output
  grad.x, grad.<param>  d(sum(y * dy)) / d(input or parameter)
and its __metadata__ holds the case's configuration (read by the C++ test), so that the
shapes and options are written in one place.

The modules are written here from the math of the papers, not from the C++ code:
  attention  q = x Wq^T + bq, k = x Wk^T + bk, v = x Wv^T + bv (weights stored (out, in)),
             heads split as (B, T, H, D) -> (B, H, T, D); query head h reads K/V head
             h // (Hq / Hkv) (torch.repeat_interleave, as Hugging Face's repeat_kv);
             s = scale q k^T + bias, masked with -inf, softmax over keys, o = p v,
             merged back to (B, T, Hq D), y = o Wo^T + bo.
  masks      causal j <= i; prefix-LM j < P or j <= i; local band i - W < j <= i.
  T5 bias    bias[h, i, j] = table[bucket(j - i), h] with Hugging Face's
             T5Attention._relative_position_bucket (copied from its definition, float32 math).
  RoPE       rotate-half: x cos + rotate_half(x) sin, inv_freq = theta^(-2i/D).
  norms      LayerNorm (with bias, GPT-2; scale-only, PaLM); RMSNorm (T5).
  GPT-2      weights (in, out) (Conv1D: y = x W + b), q/k/v from one fused projection
  FFN        GELU-tanh MLP with biases (GPT-2), SwiGLU down(silu(gate x) * up x) (PaLM),
             ReLU (T5 v1.0).
  blocks     serial: h = x + attn(ln_1(x)); y = h + mlp(ln_2(h))   (GPT-2, T5 encoder)
             parallel: y = x + attn(norm(x)) + mlp(norm(x))        (PaLM)

Inputs and weights are float32 draws from a fixed seed. Outputs and gradients are computed in
float64 from those float32 values and rounded once to float32; the C++ tests run in float32
and compare to 1e-5 relative.
"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "nn")


def save_safetensors(path, tensors, metadata):
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    offset = 0
    blobs = []
    for name, t in tensors:
        data = t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def f32(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).to(torch.float32)


# ---- the math ------------------------------------------------------------------------

def linear(x, p, name, in_out=False):
    # (out, in) weights: y = x W^T + b; GPT-2's Conv1D stores (in, out): y = x W + b.
    y = x @ (p[name + ".weight"] if in_out else p[name + ".weight"].T)
    if name + ".bias" in p:
        y = y + p[name + ".bias"]
    return y


def t5_bucket(relative_position, bidirectional, num_buckets, max_distance):
    # Hugging Face T5Attention._relative_position_bucket
    relative_buckets = 0
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    large = max_exact + (
        torch.log(relative_position.float() / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
    ).to(torch.long)
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return relative_buckets + torch.where(is_small, relative_position, large)


def t5_bias(table, T, bidirectional, num_buckets, max_distance):
    pos = torch.arange(T)
    rel = pos[None, :] - pos[:, None]  # key - query
    buckets = t5_bucket(rel, bidirectional, num_buckets, max_distance)  # (T, T)
    return table[buckets].permute(2, 0, 1)  # (H, T, T)


def rope_rotate_half(x, theta):
    T, D = x.shape[-2], x.shape[-1]
    inv_freq = theta ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1)
    sin = torch.cat([ang.sin(), ang.sin()], -1)
    half = D // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rot * sin


def attention(x, p, prefix, cfg, bias=None):
    B, T, _ = x.shape
    Hq, Hkv, D = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"]
    io = bool(cfg.get("in_out"))
    if cfg.get("fused_qkv"):  # GPT-2's c_attn: one projection to [q | k | v]
        q, k, v = linear(x, p, prefix + ".qkv_proj", io).split([Hq * D, Hkv * D, Hkv * D], dim=-1)
    else:
        q, k, v = (linear(x, p, prefix + n, io) for n in (".q_proj", ".k_proj", ".v_proj"))
    q = q.reshape(B, T, Hq, D).transpose(1, 2)
    k = k.reshape(B, T, Hkv, D).transpose(1, 2)
    v = v.reshape(B, T, Hkv, D).transpose(1, 2)
    if cfg.get("rope_theta"):
        q = rope_rotate_half(q, cfg["rope_theta"])
        k = rope_rotate_half(k, cfg["rope_theta"])
    k = k.repeat_interleave(Hq // Hkv, dim=1)
    v = v.repeat_interleave(Hq // Hkv, dim=1)
    scale = 1.0 / math.sqrt(D) if cfg["scaled"] else 1.0
    s = (q @ k.transpose(-1, -2)) * scale
    if bias is not None:
        s = s + bias
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    mask = cfg["mask"]
    if mask == "causal":
        visible = j <= i
    elif mask == "prefix_lm":
        visible = (j < cfg["prefix_length"]) | (j <= i)
    elif mask == "local":
        visible = (j <= i) & (j > i - cfg["window"])
    else:
        visible = torch.ones(T, T, dtype=torch.bool)
    s = s.masked_fill(~visible, float("-inf"))
    o = torch.softmax(s, dim=-1) @ v
    o = o.transpose(1, 2).reshape(B, T, Hq * D)
    return linear(o, p, prefix + ".o_proj", io)


def norm(x, p, prefix, kind, eps):
    w = p[prefix + ".weight"]
    if kind == "rms_norm":
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
    return F.layer_norm(x, (x.shape[-1],), w, p.get(prefix + ".bias"), eps)


def feed_forward(x, p, prefix, kind, io=False):
    if kind == "gelu":
        return linear(F.gelu(linear(x, p, prefix + ".up", io), approximate="tanh"), p, prefix + ".down", io)
    if kind == "relu":
        return linear(torch.relu(linear(x, p, prefix + ".up")), p, prefix + ".down")
    if kind == "swiglu":
        return linear(F.silu(linear(x, p, prefix + ".gate")) * linear(x, p, prefix + ".up"), p, prefix + ".down")
    raise ValueError(kind)


# ---- parameters ----------------------------------------------------------------------

def attention_params(prefix, C, Hq, Hkv, D, bias, fused_in_out=False):
    p = {}
    names = [("q_proj", Hq * D, C), ("k_proj", Hkv * D, C), ("v_proj", Hkv * D, C), ("o_proj", C, Hq * D)]
    if fused_in_out:
        names = [("qkv_proj", (Hq + 2 * Hkv) * D, C), ("o_proj", C, Hq * D)]
    for name, out_f, in_f in names:
        p[f"{prefix}.{name}.weight"] = f32(in_f, out_f, scale=0.3) if fused_in_out else f32(out_f, in_f, scale=0.3)
        if bias:
            p[f"{prefix}.{name}.bias"] = f32(out_f, scale=0.1)
    return p


def norm_params(prefix, C, kind):
    p = {prefix + ".weight": 1.0 + f32(C, scale=0.2)}
    if kind == "layer_norm":
        p[prefix + ".bias"] = f32(C, scale=0.2)
    return p


def ffn_params(prefix, C, hidden, kind, bias, in_out=False):
    p = {}
    names = [("gate", hidden, C)] if kind == "swiglu" else []
    names += [("up", hidden, C), ("down", C, hidden)]
    for name, out_f, in_f in names:
        p[f"{prefix}.{name}.weight"] = f32(in_f, out_f, scale=0.3) if in_out else f32(out_f, in_f, scale=0.3)
        if bias:
            p[f"{prefix}.{name}.bias"] = f32(out_f, scale=0.1)
    return p


def write_case(name, metadata, x, params, forward):
    dy = f32(*x.shape)
    X = x.to(torch.float64).requires_grad_(True)
    P = {k: v.to(torch.float64).requires_grad_(True) for k, v in params.items()}
    y = forward(X, P)
    names = list(params.keys())
    grads = torch.autograd.grad((y * dy.to(torch.float64)).sum(), [X] + [P[n] for n in names])
    tensors = [("x", x), ("dy", dy)] + [(n, params[n]) for n in names] + [("y", y)]
    tensors += [("grad.x", grads[0])] + [("grad." + n, g) for n, g in zip(names, grads[1:])]
    save_safetensors(os.path.join(OUT, name + ".safetensors"), tensors, metadata)
    print(f"{name}: y {tuple(y.shape)}, {len(names)} parameters")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(2024)
    B, T, C = 2, 7, 20

    # Attention flavours: projections with biases (GPT-style), D = 5.
    attention_cases = [
        ("attention_mha_causal", dict(n_heads=4, n_kv_heads=4, mask="causal")),
        ("attention_mqa_causal", dict(n_heads=4, n_kv_heads=1, mask="causal")),
        ("attention_gqa_causal", dict(n_heads=4, n_kv_heads=2, mask="causal")),
        ("attention_mha_prefix", dict(n_heads=4, n_kv_heads=4, mask="prefix_lm", prefix_length=3)),
        ("attention_gqa_local", dict(n_heads=4, n_kv_heads=2, mask="local", window=3)),
        ("attention_mqa_bidirectional", dict(n_heads=4, n_kv_heads=1, mask="bidirectional")),
    ]
    for name, cfg in attention_cases:
        cfg = dict(cfg, d_model=C, head_dim=5, bias=1, scaled=1, prefix_length=cfg.get("prefix_length", 0),
                   window=cfg.get("window", 0))
        x = f32(B, T, C)
        params = attention_params("attn", C, cfg["n_heads"], cfg["n_kv_heads"], 5, True)
        write_case(name, cfg, x, params, lambda X, P, cfg=cfg: attention(X, P, "attn", cfg))

    # T5: relative position bias (bidirectional encoder buckets; the table learns), no scaling,
    # no biases, d_kv * heads != d_model.
    cfg = dict(d_model=C, n_heads=3, n_kv_heads=3, head_dim=4, bias=0, scaled=0, mask="bidirectional",
               prefix_length=0, window=0, num_buckets=8, max_distance=5, bidirectional=1)
    x = f32(B, T, C)
    params = attention_params("attn", C, 3, 3, 4, False)
    params["rel.weight"] = f32(8, 3)
    write_case("attention_t5_bias", cfg, x, params,
               lambda X, P: attention(X, P, "attn", cfg, t5_bias(P["rel.weight"], T, True, 8, 5)))
    # T5 decoder self-attention: causal buckets and the causal mask.
    cfg = dict(cfg, mask="causal", bidirectional=0)
    x = f32(B, T, C)
    params = attention_params("attn", C, 3, 3, 4, False)
    params["rel.weight"] = f32(8, 3)
    write_case("attention_t5_bias_causal", cfg, x, params,
               lambda X, P: attention(X, P, "attn", cfg, t5_bias(P["rel.weight"], T, False, 8, 5)))

    # GPT-2 serial block: LayerNorm with bias, MHA with biases and one fused [q | k | v]
    # projection, GELU-tanh MLP 4x with biases, every weight in Conv1D's (in, out) layout.
    cfg = dict(d_model=C, n_heads=4, n_kv_heads=4, head_dim=5, mask="causal", hidden=4 * C, eps=1e-5,
               fused_qkv=1, in_out=1, scaled=1)
    params = {**norm_params("ln_1", C, "layer_norm"), **attention_params("attn", C, 4, 4, 5, True, True),
              **norm_params("ln_2", C, "layer_norm"), **ffn_params("mlp", C, 4 * C, "gelu", True, True)}

    def serial_gpt2(X, P):
        h = X + attention(norm(X, P, "ln_1", "layer_norm", 1e-5), P, "attn", cfg)
        return h + feed_forward(norm(h, P, "ln_2", "layer_norm", 1e-5), P, "mlp", "gelu", True)
    write_case("block_serial_gpt2", cfg, f32(B, T, C), params, serial_gpt2)

    # PaLM parallel block: scale-only LayerNorm shared by both branches, multi-query attention
    # with RoPE (rotate-half, theta 10000), SwiGLU, no biases anywhere. head_dim 6 (!= C / H).
    cfg = dict(d_model=C, n_heads=4, n_kv_heads=1, head_dim=6, mask="causal", hidden=28, eps=1e-5,
               rope_theta=10000.0, scaled=1)
    params = {**norm_params("norm", C, "layer_norm_no_bias"), **attention_params("attn", C, 4, 1, 6, False),
              **ffn_params("mlp", C, 28, "swiglu", False)}

    def parallel_palm(X, P):
        n = norm(X, P, "norm", "layer_norm_no_bias", 1e-5)
        return X + attention(n, P, "attn", cfg) + feed_forward(n, P, "mlp", "swiglu")
    write_case("block_parallel_palm", cfg, f32(B, T, C), params, parallel_palm)

    # T5 encoder block (serial): RMSNorm eps 1e-6, relative bias, no scaling, ReLU FFN, no biases.
    cfg = dict(d_model=C, n_heads=2, n_kv_heads=2, head_dim=6, mask="bidirectional", hidden=24, eps=1e-6,
               scaled=0, num_buckets=8, max_distance=5, bidirectional=1)
    params = {**norm_params("ln_1", C, "rms_norm"), **attention_params("attn", C, 2, 2, 6, False),
              **norm_params("ln_2", C, "rms_norm"), **ffn_params("mlp", C, 24, "relu", False)}
    params["rel.weight"] = f32(8, 2)

    def serial_t5(X, P):
        bias = t5_bias(P["rel.weight"], T, True, 8, 5)
        h = X + attention(norm(X, P, "ln_1", "rms_norm", 1e-6), P, "attn", cfg, bias)
        return h + feed_forward(norm(h, P, "ln_2", "rms_norm", 1e-6), P, "mlp", "relu")
    write_case("block_serial_t5", cfg, f32(B, T, C), params, serial_t5)


if __name__ == "__main__":
    main()
