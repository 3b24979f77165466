#!/usr/bin/env python3
"""Writes the T5 fixtures of tests/models/test_t5.cpp into tests/reference/models/t5_<case>/.

Run with the system Python that has torch 1.13 (transformers is not needed):
    /usr/bin/python3 tests/reference/make_t5_fixtures.py

Each case directory holds what a Hugging Face T5ForConditionalGeneration checkpoint holds, plus
the expected results:
  config.json          Hugging Face T5Config keys; some keys are left out on purpose so that the
                       loader must apply HF's defaults (DESIGN.md, contract details 7)
  model.safetensors    the weights under HF's names (Linear weights (out, in)); one case stores
                       some tensors as F16 / BF16, one carries the extras real HF files have
                       (encoder.embed_tokens.weight, decoder.embed_tokens.weight and, tied,
                       lm_head.weight: copies of shared.weight)
  expected.safetensors encoder_ids (B, Te), decoder_ids (B, Td), targets (B, Td) (as F32),
                       encoder_mask (B, Te) when the case pads, logits (B, Td, V), loss (0-dim),
                       grad.<checkpoint name> for every parameter (tied: one gradient summing
                       the encoder input, decoder input and LM head uses)

The model below is written from Hugging Face's modeling_t5.py, detail for detail:
  T5LayerNorm          x * rsqrt(mean(x^2) + eps) * w (no mean subtraction, no bias)
  T5Attention          q, k, v, o without biases, inner dim d_kv * num_heads; scores = q k^T with
                       NO 1/sqrt(d_kv); + position_bias (+ mask as finfo(float32).min); softmax;
                       the relative bias lives in block 0 of each stack and is computed once and
                       reused by every later layer; cross-attention gets none (zeros + mask)
  bucket function      T5Attention._relative_position_bucket, in float32, truncating .to(long)
  feed-forward         relu: wo(relu(wi x)); gated-gelu: wo(gelu_new(wi_0 x) * wi_1 x), with
                       gelu_new = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  layers               pre-norm residual: x = x + sublayer(layer_norm(x))
  head                 tied: (dec_out * d_model**-0.5) @ shared^T; untied: lm_head(dec_out)
  loss                 CrossEntropyLoss(ignore_index=-100), mean, over the decoder positions, with
                       the decoder ids used as given (no shift-right)
Dropout is off. Weights are float32 draws (rounded to F16 / BF16 where stored so); the forward
and backward run in float64 from exactly the stored values, and results are rounded once to
float32 (the bucket indices are integer results of the float32 formula, as in HF).
"""
import json
import math
import os
import struct

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "models")
F32_MIN = torch.finfo(torch.float32).min


# ---- safetensors writer (8-byte header length, JSON header, little-endian data) ---------------

def tensor_bytes(t, dtype):
    t = t.detach().contiguous()
    if dtype == "F32":
        return t.to(torch.float32).numpy().astype("<f4").tobytes()
    if dtype == "F16":
        return t.to(torch.float16).numpy().astype("<f2").tobytes()
    if dtype == "BF16":
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    raise ValueError(dtype)


def save_safetensors(path, tensors, dtypes=None):
    dtypes = dtypes or {}
    header = {}
    offset = 0
    blobs = []
    for name, t in tensors:
        dtype = dtypes.get(name, "F32")
        data = tensor_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def round_to(t, dtype):
    """The float32 value a tensor has after being stored as `dtype`."""
    if dtype == "F16":
        return t.to(torch.float16).to(torch.float32)
    if dtype == "BF16":
        return t.to(torch.bfloat16).to(torch.float32)
    return t


# ---- Hugging Face T5, written out --------------------------------------------------------------

def relative_position_bucket(relative_position, bidirectional, num_buckets, max_distance):
    # T5Attention._relative_position_bucket
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
        torch.log(relative_position.float() / max_exact)  # float32, as in HF
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).to(torch.long)
    relative_position_if_large = torch.min(
        relative_position_if_large, torch.full_like(relative_position_if_large, num_buckets - 1))
    relative_buckets += torch.where(is_small, relative_position, relative_position_if_large)
    return relative_buckets


def compute_bias(table, q_len, k_len, bidirectional, cfg):
    # T5Attention.compute_bias: (1, H, q_len, k_len)
    context_position = torch.arange(q_len, dtype=torch.long)[:, None]
    memory_position = torch.arange(k_len, dtype=torch.long)[None, :]
    buckets = relative_position_bucket(memory_position - context_position, bidirectional,
                                       cfg["num_buckets"], cfg["max_distance"])
    values = table[buckets]  # (q, k, H)
    return values.permute([2, 0, 1]).unsqueeze(0)


def layer_norm(x, w, eps):
    # T5LayerNorm: no mean subtraction, no bias
    variance = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(variance + eps))


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def attention(p, prefix, x, kv, position_bias, H, D):
    B, Tq, _ = x.shape
    Tk = kv.shape[1]

    def shape(s, T):
        return s.view(B, T, H, D).transpose(1, 2)

    q = shape(x @ p[prefix + ".q.weight"].t(), Tq)
    k = shape(kv @ p[prefix + ".k.weight"].t(), Tk)
    v = shape(kv @ p[prefix + ".v.weight"].t(), Tk)
    scores = q @ k.transpose(3, 2)  # T5: no 1/sqrt(d_kv)
    scores = scores + position_bias
    w = F.softmax(scores, dim=-1)
    out = (w @ v).transpose(1, 2).contiguous().view(B, Tq, H * D)
    return out @ p[prefix + ".o.weight"].t()


def feed_forward(p, prefix, x, gated):
    if gated:
        h = gelu_new(x @ p[prefix + ".wi_0.weight"].t()) * (x @ p[prefix + ".wi_1.weight"].t())
    else:
        h = torch.relu(x @ p[prefix + ".wi.weight"].t())
    return h @ p[prefix + ".wo.weight"].t()


def t5_forward(p, cfg, encoder_ids, decoder_ids, encoder_mask):
    H, D, eps, gated = cfg["num_heads"], cfg["d_kv"], cfg["eps"], cfg["gated"]
    B, Te = encoder_ids.shape
    Td = decoder_ids.shape[1]
    shared = p["shared.weight"]
    # extended attention masks, as HF: (1 - mask) * finfo.min
    if encoder_mask is None:
        encoder_mask = torch.ones(B, Te, dtype=torch.float64)
    ext = (1.0 - encoder_mask.to(torch.float64))[:, None, None, :] * F32_MIN  # (B, 1, 1, Te)
    causal = torch.tril(torch.ones(Td, Td, dtype=torch.float64))
    dec_ext = (1.0 - causal)[None, None, :, :] * F32_MIN  # (1, 1, Td, Td)

    # encoder
    h = shared[encoder_ids]
    enc_bias = compute_bias(p["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"], Te, Te, True,
                            cfg) + ext
    for i in range(cfg["num_layers"]):
        b = "encoder.block.%d" % i
        n = layer_norm(h, p[b + ".layer.0.layer_norm.weight"], eps)
        h = h + attention(p, b + ".layer.0.SelfAttention", n, n, enc_bias, H, D)
        h = h + feed_forward(p, b + ".layer.1.DenseReluDense", layer_norm(h, p[b + ".layer.1.layer_norm.weight"], eps),
                             gated)
    enc = layer_norm(h, p["encoder.final_layer_norm.weight"], eps)

    # decoder
    h = shared[decoder_ids]
    dec_bias = compute_bias(p["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"], Td, Td, False,
                            cfg) + dec_ext
    cross_bias = torch.zeros(1, H, Td, Te, dtype=torch.float64) + ext  # no position bias on cross-attention
    for i in range(cfg["num_decoder_layers"]):
        b = "decoder.block.%d" % i
        n = layer_norm(h, p[b + ".layer.0.layer_norm.weight"], eps)
        h = h + attention(p, b + ".layer.0.SelfAttention", n, n, dec_bias, H, D)
        n = layer_norm(h, p[b + ".layer.1.layer_norm.weight"], eps)
        h = h + attention(p, b + ".layer.1.EncDecAttention", n, enc, cross_bias, H, D)
        h = h + feed_forward(p, b + ".layer.2.DenseReluDense", layer_norm(h, p[b + ".layer.2.layer_norm.weight"], eps),
                             gated)
    out = layer_norm(h, p["decoder.final_layer_norm.weight"], eps)
    if cfg["tied"]:
        return (out * (cfg["d_model"] ** -0.5)) @ shared.t()
    return out @ p["lm_head.weight"].t()


# ---- parameters under HF names, with HF _init_weights' scales (factor 1), except: the relative ----
# ---- attention biases have std 1 and the norms are 1 + N(0, 0.2^2), so that both matter ------------

def make_parameters(cfg, gen):
    d, dkv, H, dff, V = cfg["d_model"], cfg["d_kv"], cfg["num_heads"], cfg["d_ff"], cfg["vocab_size"]
    inner = dkv * H
    params = []

    def normal(name, shape, std):
        params.append((name, torch.randn(*shape, generator=gen, dtype=torch.float32) * std))

    def norm(name, dim):
        # HF initialises norms to 1; random values around 1 make the fixture test their gradients
        params.append((name, 1.0 + 0.2 * torch.randn(dim, generator=gen, dtype=torch.float32)))

    def attn(prefix, bias):
        normal(prefix + ".q.weight", (inner, d), (d * dkv) ** -0.5)
        normal(prefix + ".k.weight", (inner, d), d ** -0.5)
        normal(prefix + ".v.weight", (inner, d), d ** -0.5)
        normal(prefix + ".o.weight", (d, inner), inner ** -0.5)
        if bias:
            normal(prefix + ".relative_attention_bias.weight", (cfg["num_buckets"], H), 1.0)

    def ffn(prefix):
        if cfg["gated"]:
            normal(prefix + ".wi_0.weight", (dff, d), d ** -0.5)
            normal(prefix + ".wi_1.weight", (dff, d), d ** -0.5)
        else:
            normal(prefix + ".wi.weight", (dff, d), d ** -0.5)
        normal(prefix + ".wo.weight", (d, dff), dff ** -0.5)

    normal("shared.weight", (V, d), 1.0)
    for i in range(cfg["num_layers"]):
        b = "encoder.block.%d" % i
        attn(b + ".layer.0.SelfAttention", i == 0)
        norm(b + ".layer.0.layer_norm.weight", d)
        ffn(b + ".layer.1.DenseReluDense")
        norm(b + ".layer.1.layer_norm.weight", d)
    norm("encoder.final_layer_norm.weight", d)
    for i in range(cfg["num_decoder_layers"]):
        b = "decoder.block.%d" % i
        attn(b + ".layer.0.SelfAttention", i == 0)
        norm(b + ".layer.0.layer_norm.weight", d)
        attn(b + ".layer.1.EncDecAttention", False)
        norm(b + ".layer.1.layer_norm.weight", d)
        ffn(b + ".layer.2.DenseReluDense")
        norm(b + ".layer.2.layer_norm.weight", d)
    norm("decoder.final_layer_norm.weight", d)
    if not cfg["tied"]:
        normal("lm_head.weight", (V, d), 1.0)
    return params


def write_case(name, cfg, config_json, encoder_ids, decoder_ids, targets, encoder_mask=None, dtypes=None,
               hf_extras=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dtypes = dtypes or {}
    params = [(n, round_to(t, dtypes.get(n, "F32"))) for n, t in make_parameters(cfg, gen)]
    leaves = {n: t.to(torch.float64).requires_grad_(True) for n, t in params}

    enc = torch.tensor(encoder_ids, dtype=torch.long)
    dec = torch.tensor(decoder_ids, dtype=torch.long)
    tgt = torch.tensor(targets, dtype=torch.long)
    mask = None if encoder_mask is None else torch.tensor(encoder_mask, dtype=torch.float64)
    logits = t5_forward(leaves, cfg, enc, dec, mask)
    loss = F.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), tgt.reshape(-1), ignore_index=-100)
    loss.backward()

    d = os.path.join(OUT, "t5_" + name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config_json, f, indent=2)
        f.write("\n")
    model = list(params)
    if hf_extras:  # what HF's save_pretrained of a tied T5 writes besides the parameters
        shared = dict(params)["shared.weight"]
        model += [("encoder.embed_tokens.weight", shared), ("decoder.embed_tokens.weight", shared),
                  ("lm_head.weight", shared)]
    save_safetensors(os.path.join(d, "model.safetensors"), model, dtypes)

    expected = [("encoder_ids", enc.to(torch.float32)), ("decoder_ids", dec.to(torch.float32)),
                ("targets", tgt.to(torch.float32))]
    if mask is not None:
        expected.append(("encoder_mask", mask.to(torch.float32)))
    expected += [("logits", logits.detach()), ("loss", loss.detach().reshape(()))]
    expected += [("grad." + n, leaves[n].grad) for n, _ in params]
    save_safetensors(os.path.join(d, "expected.safetensors"), expected)
    print("%-14s logits %s loss %.6f max|logit| %.3f" % (name, tuple(logits.shape), loss.item(),
                                                        logits.abs().max().item()))


def main():
    # 1. T5 v1.0: relu, tied head, HF defaults from absent keys (feed_forward_proj, buckets 32 /
    #    max_distance 128, layer_norm_epsilon, num_decoder_layers, tie_word_embeddings); the file
    #    carries HF's extras (embed_tokens copies, tied lm_head). Te = 11 > max_exact 8 reaches the
    #    encoder's logarithmic buckets.
    cfg = dict(vocab_size=37, d_model=16, d_kv=4, num_heads=4, d_ff=24, num_layers=2, num_decoder_layers=2,
               num_buckets=32, max_distance=128, eps=1e-6, gated=False, tied=True)
    config_json = {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "vocab_size": 37,
                   "d_model": 16, "d_kv": 4, "num_heads": 4, "d_ff": 24, "num_layers": 2, "dropout_rate": 0.1,
                   "initializer_factor": 1.0, "decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0}
    write_case("relu_tied", cfg, config_json,
               encoder_ids=[[5, 0, 17, 36, 2, 9, 9, 30, 1, 14, 22]],
               decoder_ids=[[0, 3, 36, 12, 7, 25, 1]],
               targets=[[3, -100, 12, 7, 0, 36, -100]], hf_extras=True, seed=1)

    # 2. T5 v1.1: gated-gelu, untied head, d_kv * num_heads = 18 != d_model = 20, more decoder
    #    than encoder layers, 8 buckets / max_distance 12 (logarithmic buckets in both stacks),
    #    decoder longer than the encoder, batch 2 with encoder padding.
    cfg = dict(vocab_size=41, d_model=20, d_kv=6, num_heads=3, d_ff=28, num_layers=2, num_decoder_layers=3,
               num_buckets=8, max_distance=12, eps=1e-6, gated=True, tied=False)
    config_json = {"model_type": "t5", "vocab_size": 41, "d_model": 20, "d_kv": 6, "num_heads": 3, "d_ff": 28,
                   "num_layers": 2, "num_decoder_layers": 3, "relative_attention_num_buckets": 8,
                   "relative_attention_max_distance": 12, "layer_norm_epsilon": 1e-6,
                   "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new", "is_gated_act": True,
                   "tie_word_embeddings": False, "dropout_rate": 0.1}
    write_case("gated_untied", cfg, config_json,
               encoder_ids=[[4, 8, 15, 16, 23, 1, 0, 39], [1, 2, 3, 5, 7, 11, 13, 40]],
               decoder_ids=[[0, 9, 18, 27, 36, 4, 13, 22, 31, 40, 8, 17, 26],
                            [0, 40, 39, 38, 1, 2, 3, 4, 5, 6, 7, 8, 9]],
               targets=[[9, 18, -100, 36, 4, 13, 22, 31, 40, 8, 17, 26, 1],
                        [40, 39, -100, -100, 2, 3, 4, 5, 6, 7, 8, 9, 1]],
               encoder_mask=[[1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0, 0]], seed=2)

    # 3. relu, tied, one encoder layer and two decoder layers, layer_norm_epsilon 1e-5, causal buckets
    #    reached (num_buckets 6: max_exact 3), some tensors stored as F16 and BF16 (the reference
    #    is computed from the rounded values).
    cfg = dict(vocab_size=29, d_model=12, d_kv=5, num_heads=2, d_ff=16, num_layers=1, num_decoder_layers=2,
               num_buckets=6, max_distance=9, eps=1e-5, gated=False, tied=True)
    config_json = {"model_type": "t5", "vocab_size": 29, "d_model": 12, "d_kv": 5, "num_heads": 2, "d_ff": 16,
                   "num_layers": 1, "num_decoder_layers": 2, "relative_attention_num_buckets": 6,
                   "relative_attention_max_distance": 9, "layer_norm_epsilon": 1e-5, "feed_forward_proj": "relu",
                   "tie_word_embeddings": True, "torch_dtype": "float16"}
    dtypes = {"shared.weight": "BF16", "encoder.block.0.layer.0.SelfAttention.q.weight": "F16",
              "encoder.block.0.layer.1.DenseReluDense.wi.weight": "BF16",
              "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": "F16",
              "decoder.block.1.layer.1.EncDecAttention.v.weight": "F16",
              "decoder.final_layer_norm.weight": "BF16"}
    write_case("half", cfg, config_json,
               encoder_ids=[[3, 1, 4, 1, 5]],
               decoder_ids=[[0, 2, 7, 18, 28, 8, 11, 4, 5]],
               targets=[[2, 7, 18, 28, -100, 11, 4, 5, 1]], dtypes=dtypes, seed=3)


if __name__ == "__main__":
    main()
