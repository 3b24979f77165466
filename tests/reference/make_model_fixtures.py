#!/usr/bin/env python3
"""Writes the decoder-only model fixtures (GPT-2, GPT-3, PaLM) of tests/models/test_gpt2.cpp and
tests/models/test_palm.cpp: small random checkpoints in the Hugging Face layout, with the logits,
loss and gradients PyTorch computes for them.

Run with the system Python that has torch 1.13 (transformers is not needed):
    /usr/bin/python3 tests/reference/make_model_fixtures.py
One directory per case under tests/reference/models/<case>/:
  config.json          Hugging Face config keys (DESIGN.md, checkpoint contract 1-3), with some
                       keys that do not change the math (dropout rates, n_inner: null, ...)
  model.safetensors    the checkpoint, under the file names of the contract (some cases with the
                       "transformer." prefix, GPT-2's attention-mask buffers and a tied lm_head copy)
  expected.safetensors tokens (T) and targets (T) as I64 (targets hold -100s), logits (T, V)
  grad.safetensors     exactly what `llmblocks grad` writes: loss (0-dim) and the gradient of every
                       parameter under its file name (tied embedding: one gradient, both uses)
One sequence per case (batch 1), so the CLI's `logits` / `grad` commands can be checked against
the same files.

The models are written here in torch from the contract, following Hugging Face's modeling code
detail for detail (GPT2LMHeadModel; LlamaForCausalLM for the PaLM names, RoPE and repeat_kv):
  GPT-2  x = wte[ids] + wpe[0..T-1]; per layer h = x + attn(ln_1 x), y = h + mlp(ln_2 h);
         c_attn/c_proj/c_fc are Conv1D: y = x W + b with W stored (in, out); q, k, v are the
         three C-wide column blocks of c_attn; scores q k^T / sqrt(head_dim), causal (local layers:
         i - W < j <= i, GPT-Neo's band), masked with finfo.min (as Hugging Face) then softmax;
         mlp = c_proj(gelu_new(c_fc x)), gelu_new = 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3)));
         LayerNorm eps = layer_norm_epsilon; logits = ln_f(x) wte^T (tied).
  PaLM   x = E[ids]; parallel y = x + attn(n(x)) + mlp(n(x)), serial h = x + attn(n1 x),
         y = h + mlp(n2 h); Linear (out, in) without biases; RoPE rotate-half with
         inv_freq = theta^(-2i/head_dim) at positions 0..T-1; query head h reads K/V head
         h // (heads / kv_heads) (repeat_kv); causal, scale 1/sqrt(head_dim);
         mlp = down(silu(gate x) * up x); layernorm (x - mean)/sqrt(biased var + eps) * w,
         rmsnorm x / sqrt(mean(x^2) + eps) * w; logits = norm(x) E^T (tied) or lm_head.
Loss = mean cross-entropy over rows whose target is not -100 (no shift: targets align with rows).

Weights are float32 draws from a fixed seed (norm weights near 1 and biases nonzero, so that
swapped or dropped parameters show). The forward and backward run in float64 from those float32
values and are rounded once to float32; the C++ tests run in float32.
"""
import json
import math
import os
import shutil
import struct

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "models")

DTYPES = {torch.float32: ("F32", "<f4"), torch.int64: ("I64", "<i8"), torch.bool: ("BOOL", "|b1"),
          torch.uint8: ("U8", "|u1")}


def save_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, tensor); float tensors are written as F32, others in their dtype."""
    header = {}
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    offset = 0
    blobs = []
    for name, t in tensors:
        t = t.detach()
        if t.is_floating_point():
            t = t.to(torch.float32)
        code, np_dtype = DTYPES[t.dtype]
        data = t.contiguous().numpy().astype(np_dtype).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def f32(*shape, scale=1.0, mean=0.0):
    return (torch.randn(*shape) * scale + mean).to(torch.float32)


# ---- the math (float64) ------------------------------------------------------------------

def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def attend(q, k, v, mask):
    """q (B, Hq, T, D), k/v (B, Hkv, T, D), mask (T, T) bool (True = visible)."""
    Hq, Hkv = q.shape[1], k.shape[1]
    k = torch.repeat_interleave(k, Hq // Hkv, dim=1)  # repeat_kv: query head h reads kv head h // (Hq/Hkv)
    v = torch.repeat_interleave(v, Hq // Hkv, dim=1)
    w = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    w = torch.where(mask, w, torch.tensor(torch.finfo(w.dtype).min, dtype=w.dtype))
    return torch.softmax(w, dim=-1) @ v


def causal_mask(T, window=None):
    i = torch.arange(T).unsqueeze(1)
    j = torch.arange(T).unsqueeze(0)
    visible = j <= i
    if window is not None:
        visible = visible & (j > i - window)  # GPT-3 local layer: i - W < j <= i
    return visible


def split_heads(x, H):
    B, T, _ = x.shape
    return x.view(B, T, H, -1).transpose(1, 2)


def merge_heads(x):
    B, H, T, D = x.shape
    return x.transpose(1, 2).reshape(B, T, H * D)


def gpt2_forward(P, cfg, ids):
    C, H = cfg["n_embd"], cfg["n_head"]
    eps = cfg["layer_norm_epsilon"]
    T = ids.shape[1]
    x = P["wte.weight"][ids] + P["wpe.weight"][torch.arange(T)]
    spans = cfg.get("attention_layers") or ["global"] * cfg["n_layer"]
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        window = cfg["window_size"] if spans[i] == "local" else None
        n = F.layer_norm(x, (C,), P[p + "ln_1.weight"], P[p + "ln_1.bias"], eps)
        qkv = n @ P[p + "attn.c_attn.weight"] + P[p + "attn.c_attn.bias"]  # Conv1D: x W + b, W (in, out)
        q, k, v = qkv.split(C, dim=2)
        a = merge_heads(attend(split_heads(q, H), split_heads(k, H), split_heads(v, H), causal_mask(T, window)))
        x = x + a @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"]
        n = F.layer_norm(x, (C,), P[p + "ln_2.weight"], P[p + "ln_2.bias"], eps)
        m = gelu_new(n @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"])
        x = x + m @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), P["ln_f.weight"], P["ln_f.bias"], eps)
    return x @ P["wte.weight"].t()  # tied LM head


def palm_norm(x, w, kind, eps):
    if kind == "rmsnorm":
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)  # biased variance
    return (x - mean) / torch.sqrt(var + eps) * w


def rope(x, theta):
    """x (B, H, T, D): Hugging Face Llama's rotate-half RoPE at positions 0..T-1."""
    D, T = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    rotated = torch.cat((-x2, x1), dim=-1)
    return x * emb.cos() + rotated * emb.sin()


def palm_forward(P, cfg, ids):
    Hq, Hkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    kind, eps, theta = cfg["norm_type"], cfg["layer_norm_epsilon"], cfg["rope_theta"]
    T = ids.shape[1]
    x = P["model.embed_tokens.weight"][ids]
    mask = causal_mask(T)

    def attn(n, p):
        q = split_heads(n @ P[p + "self_attn.q_proj.weight"].t(), Hq)
        k = split_heads(n @ P[p + "self_attn.k_proj.weight"].t(), Hkv)
        v = split_heads(n @ P[p + "self_attn.v_proj.weight"].t(), Hkv)
        a = attend(rope(q, theta), rope(k, theta), v, mask)
        return merge_heads(a) @ P[p + "self_attn.o_proj.weight"].t()

    def mlp(n, p):
        g = F.silu(n @ P[p + "mlp.gate_proj.weight"].t())
        return (g * (n @ P[p + "mlp.up_proj.weight"].t())) @ P[p + "mlp.down_proj.weight"].t()

    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        if cfg["parallel_block"]:
            n = palm_norm(x, P[p + "input_layernorm.weight"], kind, eps)
            x = x + attn(n, p) + mlp(n, p)  # one norm feeds both branches
        else:
            h = x + attn(palm_norm(x, P[p + "input_layernorm.weight"], kind, eps), p)
            x = h + mlp(palm_norm(h, P[p + "post_attention_layernorm.weight"], kind, eps), p)
    x = palm_norm(x, P["model.norm.weight"], kind, eps)
    head = P["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else P["lm_head.weight"]
    return x @ head.t()


# ---- parameters ---------------------------------------------------------------------------

def gpt2_params(cfg):
    V, P_, C, L = cfg["vocab_size"], cfg["n_positions"], cfg["n_embd"], cfg["n_layer"]
    p = {"wte.weight": f32(V, C, scale=0.3), "wpe.weight": f32(P_, C, scale=0.3)}
    for i in range(L):
        h = f"h.{i}."
        p[h + "ln_1.weight"] = f32(C, scale=0.1, mean=1.0)
        p[h + "ln_1.bias"] = f32(C, scale=0.1)
        p[h + "attn.c_attn.weight"] = f32(C, 3 * C, scale=0.25)
        p[h + "attn.c_attn.bias"] = f32(3 * C, scale=0.1)
        p[h + "attn.c_proj.weight"] = f32(C, C, scale=0.15)
        p[h + "attn.c_proj.bias"] = f32(C, scale=0.1)
        p[h + "ln_2.weight"] = f32(C, scale=0.1, mean=1.0)
        p[h + "ln_2.bias"] = f32(C, scale=0.1)
        p[h + "mlp.c_fc.weight"] = f32(C, 4 * C, scale=0.25)
        p[h + "mlp.c_fc.bias"] = f32(4 * C, scale=0.1)
        p[h + "mlp.c_proj.weight"] = f32(4 * C, C, scale=0.1)
        p[h + "mlp.c_proj.bias"] = f32(C, scale=0.1)
    p["ln_f.weight"] = f32(C, scale=0.1, mean=1.0)
    p["ln_f.bias"] = f32(C, scale=0.1)
    return p


def palm_params(cfg):
    V, C, L = cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"]
    Hq, Hkv, Fh = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["intermediate_size"]
    D = cfg.get("head_dim") or C // Hq
    p = {"model.embed_tokens.weight": f32(V, C, scale=0.5)}
    for i in range(L):
        h = f"model.layers.{i}."
        p[h + "input_layernorm.weight"] = f32(C, scale=0.1, mean=1.0)
        if not cfg["parallel_block"]:
            p[h + "post_attention_layernorm.weight"] = f32(C, scale=0.1, mean=1.0)
        p[h + "self_attn.q_proj.weight"] = f32(Hq * D, C, scale=0.3)
        p[h + "self_attn.k_proj.weight"] = f32(Hkv * D, C, scale=0.3)
        p[h + "self_attn.v_proj.weight"] = f32(Hkv * D, C, scale=0.3)
        p[h + "self_attn.o_proj.weight"] = f32(C, Hq * D, scale=0.15)
        p[h + "mlp.gate_proj.weight"] = f32(Fh, C, scale=0.25)
        p[h + "mlp.up_proj.weight"] = f32(Fh, C, scale=0.25)
        p[h + "mlp.down_proj.weight"] = f32(C, Fh, scale=0.15)
    p["model.norm.weight"] = f32(C, scale=0.1, mean=1.0)
    if not cfg["tie_word_embeddings"]:
        p["lm_head.weight"] = f32(V, C, scale=0.3)
    return p


# ---- cases --------------------------------------------------------------------------------

def write_case(name, cfg, params, forward, ids, targets, prefix="", extra=()):
    """extra: (file name, tensor) pairs stored in the checkpoint that are not parameters."""
    out = os.path.join(OUT, name)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")

    P = {k: v.to(torch.float64).requires_grad_(True) for k, v in params.items()}
    logits = forward(P, cfg, ids.unsqueeze(0))[0]  # (T, V)
    loss = F.cross_entropy(logits, targets, ignore_index=-100, reduction="mean")
    loss.backward()

    model = [(prefix + k, v) for k, v in params.items()] + list(extra)
    save_safetensors(os.path.join(out, "model.safetensors"), model)
    save_safetensors(os.path.join(out, "expected.safetensors"),
                     [("tokens", ids), ("targets", targets), ("logits", logits)])
    grads = [("loss", loss.reshape(()))] + [(prefix + k, P[k].grad) for k in params]
    save_safetensors(os.path.join(out, "grad.safetensors"), grads)
    sizes = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"{name}: loss {loss.item():.6f}, max |logit| {logits.abs().max().item():.3f}, {sizes} bytes")


def tokens_and_targets(T, V, n_ignored):
    ids = torch.randint(0, V, (T,), dtype=torch.int64)
    ids[1] = 0  # row 0 of the embedding is an ordinary row (no padding_idx)
    targets = torch.randint(0, V, (T,), dtype=torch.int64)
    targets[torch.randperm(T)[:n_ignored]] = -100
    return ids, targets


def gpt2_config(model_type, V, P_, C, L, H, attention_layers=None, window=None):
    cfg = {
        "model_type": model_type, "architectures": ["GPT2LMHeadModel"],
        "vocab_size": V, "n_positions": P_, "n_ctx": P_, "n_embd": C, "n_layer": L, "n_head": H,
        "n_inner": None, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
        "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1, "initializer_range": 0.02,
        "scale_attn_weights": True, "bos_token_id": V - 1, "eos_token_id": V - 1,
    }
    if attention_layers is not None:
        cfg["attention_layers"] = attention_layers
        cfg["window_size"] = window
    return cfg


def palm_config(V, C, L, Hq, Hkv, Fh, norm_type, parallel, tied, head_dim=None, eps=1e-5, theta=10000.0):
    cfg = {
        "model_type": "palm", "vocab_size": V, "hidden_size": C, "num_hidden_layers": L,
        "num_attention_heads": Hq, "num_key_value_heads": Hkv, "intermediate_size": Fh,
        "max_position_embeddings": 64, "rope_theta": theta, "layer_norm_epsilon": eps,
        "norm_type": norm_type, "parallel_block": parallel, "tie_word_embeddings": tied,
        "pad_token_id": 0,
    }
    if head_dim is not None:
        cfg["head_dim"] = head_dim
    return cfg


def main():
    torch.manual_seed(20261130)
    os.makedirs(OUT, exist_ok=True)

    # GPT-2, plain names (as GPT2Model.save_pretrained writes them), no buffers.
    cfg = gpt2_config("gpt2", V=40, P_=16, C=16, L=2, H=4)
    ids, targets = tokens_and_targets(T=11, V=40, n_ignored=3)
    write_case("gpt2_plain", cfg, gpt2_params(cfg), gpt2_forward, ids, targets)

    # GPT-2 as GPT2LMHeadModel's old pytorch_model.bin held it: "transformer." names, the mask
    # buffers (attn.bias BOOL (1, 1, P, P), attn.masked_bias 0-dim F32) and a tied lm_head copy.
    cfg = gpt2_config("gpt2", V=40, P_=16, C=16, L=2, H=4)
    cfg["layer_norm_epsilon"] = 1e-3  # eps is read from the config
    params = gpt2_params(cfg)
    extra = []
    for i in range(cfg["n_layer"]):
        extra.append((f"transformer.h.{i}.attn.bias", torch.tril(torch.ones(16, 16, dtype=torch.bool)).view(1, 1, 16, 16)))
        extra.append((f"transformer.h.{i}.attn.masked_bias", torch.tensor(-1e4, dtype=torch.float32)))
    extra.append(("lm_head.weight", params["wte.weight"].clone()))
    ids, targets = tokens_and_targets(T=16, V=40, n_ignored=5)
    write_case("gpt2_prefixed_buffers", cfg, params, gpt2_forward, ids, targets, prefix="transformer.", extra=extra)

    # GPT-3: dense and banded layers alternating, window 3 < T = 12.
    cfg = gpt2_config("gpt3", V=48, P_=16, C=16, L=3, H=2, attention_layers=["global", "local", "local"], window=3)
    ids, targets = tokens_and_targets(T=12, V=48, n_ignored=2)
    write_case("gpt3_local", cfg, gpt2_params(cfg), gpt2_forward, ids, targets)

    # PaLM: MQA / GQA / MHA, parallel and serial, both norms, tied and untied, a head_dim key.
    palm_cases = [
        ("palm_mqa_parallel_layernorm_tied", palm_config(56, 32, 2, 4, 1, 48, "layernorm", True, True)),
        ("palm_gqa_serial_rmsnorm_untied", palm_config(56, 32, 2, 4, 2, 40, "rmsnorm", False, False, eps=1e-6)),
        ("palm_mha_parallel_rmsnorm_untied_head_dim",
         palm_config(56, 32, 2, 4, 4, 40, "rmsnorm", True, False, head_dim=12, theta=500.0)),
        ("palm_gqa_serial_layernorm_tied", palm_config(56, 24, 2, 6, 3, 40, "layernorm", False, True)),
    ]
    for name, cfg in palm_cases:
        ids, targets = tokens_and_targets(T=10, V=56, n_ignored=3)
        write_case(name, cfg, palm_params(cfg), palm_forward, ids, targets)


if __name__ == "__main__":
    main()
