#!/usr/bin/env python3
"""Writes the PyTorch fixtures of tests/ops/test_fixtures.cpp.

Run with the system Python that has torch 1.13:
    /usr/bin/python3 tests/reference/make_ops_fixtures.py
It writes tests/reference/ops/ops_fixtures.bin (every tensor as raw
little-endian float32, one after another) and ops_fixtures.txt (one line per
tensor: name, offset in floats, number of dimensions, sizes). Integer targets
are stored as float32 (exact for these small values).

Inputs are float32 draws from a fixed seed. The expected values and gradients
are computed by PyTorch in float64 from those float32 inputs and rounded once
to float32, so they are the exact answer to float32 precision; the C++ test
runs the ops in float32 and compares to 1e-5 relative.

Cases: LayerNorm with bias and scale-only (F.layer_norm), RMSNorm (T5's
formula), GELU tanh (F.gelu(approximate="tanh")), softmax, cross-entropy with
ignore_index=-100 (F.cross_entropy, mean over counted rows), and the same
cross-entropy plus PaLM's z-loss 1e-4 * logsumexp^2 averaged over counted rows.
Gradients are those of sum(y * dy) for a random dy (the vector-Jacobian
product), or of the scalar loss.
"""
import os

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "ops")

torch.manual_seed(1234)
tensors = []  # (name, float32 tensor)


def put(name, t):
    tensors.append((name, t.detach().to(torch.float32).contiguous()))


def f32(*shape, scale=1.0):
    return (torch.randn(*shape) * scale).to(torch.float32)


def leaf(t):
    return t.to(torch.float64).requires_grad_(True)


def vjp(name, y, dy, inputs):
    """Stores y and d(sum(y * dy))/d(input) for each named input."""
    put(name + ".y", y)
    grads = torch.autograd.grad((y * dy.to(torch.float64)).sum(), [t for _, t in inputs])
    for (iname, _), g in zip(inputs, grads):
        put(name + ".d" + iname, g)


# LayerNorm (GPT-2: with bias; PaLM: scale only), eps 1e-5, over C = 11.
x, w, b, dy = f32(2, 5, 11, scale=2.0) + 0.5, 1.0 + f32(11, scale=0.2), f32(11, scale=0.2), f32(2, 5, 11)
put("ln.x", x), put("ln.w", w), put("ln.b", b), put("ln.dy", dy)
X, W, B = leaf(x), leaf(w), leaf(b)
vjp("ln", F.layer_norm(X, (11,), W, B, 1e-5), dy, [("x", X), ("w", W), ("b", B)])
X, W = leaf(x), leaf(w)
vjp("lns", F.layer_norm(X, (11,), W, None, 1e-5), dy, [("x", X), ("w", W)])

# RMSNorm (T5): x / sqrt(mean(x^2) + eps) * w, eps 1e-6.
X, W = leaf(x), leaf(w)
vjp("rms", X * torch.rsqrt(X.pow(2).mean(-1, keepdim=True) + 1e-6) * W, dy, [("x", X), ("w", W)])

# GELU, tanh approximation (GPT-2's gelu_new).
g, gdy = f32(3, 17, scale=2.0), f32(3, 17)
put("gelu.x", g), put("gelu.dy", gdy)
G = leaf(g)
vjp("gelu", F.gelu(G, approximate="tanh"), gdy, [("x", G)])

# Softmax over the last axis.
s, sdy = f32(3, 13, scale=2.0), f32(3, 13)
put("softmax.x", s), put("softmax.dy", sdy)
S = leaf(s)
vjp("softmax", torch.softmax(S, -1), sdy, [("x", S)])

# Cross-entropy with ignored rows, and with PaLM's z-loss.
V = 23
logits = f32(2, 6, V, scale=2.0)
targets = torch.randint(0, V, (2, 6))
targets[0, 1] = -100
targets[1, 0] = -100
targets[1, 4] = -100
put("ce.logits", logits), put("ce.targets", targets.to(torch.float32))

L = leaf(logits)
loss = F.cross_entropy(L.view(-1, V), targets.view(-1), ignore_index=-100)
put("ce.loss", loss)
put("ce.dlogits", torch.autograd.grad(loss, L)[0])

Z_LOSS = 1e-4
L = leaf(logits)
flat, flat_t = L.view(-1, V), targets.view(-1)
counted = flat_t != -100
lse = torch.logsumexp(flat, -1)
zloss = F.cross_entropy(flat, flat_t, ignore_index=-100) + Z_LOSS * (lse[counted] ** 2).mean()
put("cez.loss", zloss)
put("cez.dlogits", torch.autograd.grad(zloss, L)[0])

os.makedirs(OUT, exist_ok=True)
offset = 0
with open(os.path.join(OUT, "ops_fixtures.bin"), "wb") as data, open(os.path.join(OUT, "ops_fixtures.txt"), "w") as manifest:
    manifest.write("# name offset_in_floats ndim sizes... (float32 little-endian in ops_fixtures.bin)\n")
    for name, t in tensors:
        data.write(t.numpy().astype("<f4").tobytes())
        manifest.write(" ".join([name, str(offset), str(t.dim())] + [str(s) for s in t.shape]) + "\n")
        offset += t.numel()
print(f"wrote {len(tensors)} tensors, {offset * 4} bytes, to {OUT}")
