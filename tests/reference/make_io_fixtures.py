#!/usr/bin/python3
"""Writes the io layer's reference files into tests/reference/io/.

Run with the system Python that has torch 1.13 and numpy:
    /usr/bin/python3 tests/reference/make_io_fixtures.py

- io/fixture.safetensors: F32, F16, BF16, F64, I32, I64 and 0-dim tensors
  plus __metadata__, written by the small writer below, which follows the
  safetensors README ("Format") and the layout of Hugging Face's writer
  (tensors ordered by dtype alignment, largest first, then by name; the JSON
  header padded with spaces to a multiple of 8 bytes). The safetensors Python
  package is not needed. The F16/BF16 tensors are torch's .half() and
  .bfloat16() of the F32 tensor "values"; "values_f16_as_f32" and
  "values_bf16_as_f32" hold torch's conversions back to float32, which the C++
  reader must reproduce bit for bit.
- io/npy_*.npy: numpy.save output (float32 and float64, C order, version 1.0
  and 2.0, a 0-dim array) and three files the C++ reader must refuse
  (Fortran order, big-endian, float16).

The files are small and committed; the C++ tests need no Python.

    /usr/bin/python3 tests/reference/make_io_fixtures.py --read FILE.safetensors

prints what a safetensors file holds (for example one the C++ writer made),
read by the independent reader below, which checks the header as the README
describes it.
"""
import json
import os
import struct
import sys

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "io")

# safetensors dtype name, bytes per element, by torch dtype
DTYPES = {
    torch.float64: ("F64", 8),
    torch.float32: ("F32", 4),
    torch.float16: ("F16", 2),
    torch.bfloat16: ("BF16", 2),
    torch.int64: ("I64", 8),
    torch.int32: ("I32", 4),
}


def tensor_bytes(t):
    """Row-major little-endian bytes of t (bfloat16 via its int16 bit pattern)."""
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()


def write_safetensors(path, tensors, metadata):
    names = sorted(tensors, key=lambda n: (-DTYPES[tensors[n].dtype][1], n))
    header = {"__metadata__": metadata}
    chunks, offset = [], 0
    for name in names:
        t = tensors[name]
        data = tensor_bytes(t)
        assert len(data) == t.numel() * DTYPES[t.dtype][1]
        header[name] = {"dtype": DTYPES[t.dtype][0], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


NUMPY_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


def read_safetensors(path):
    """Returns (metadata, {name: numpy array}) after checking the header."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    assert 8 + n <= len(data), "header runs past the end"
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    buffer = data[8 + n:]
    arrays, covered = {}, 0
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        begin, end = e["data_offsets"]
        assert begin == covered, f"{name}: hole or overlap at {begin}"
        covered = end
        raw = buffer[begin:end]
        if e["dtype"] == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, NUMPY_DTYPES[e["dtype"]])
        assert a.size == int(np.prod(e["shape"])), f"{name}: size does not match the shape"
        arrays[name] = a.reshape(e["shape"])
    assert covered == len(buffer), "stray bytes after the last tensor"
    return metadata, arrays


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--read":
        metadata, arrays = read_safetensors(sys.argv[2])
        print("metadata:", metadata)
        for name, a in arrays.items():
            print(f"{name}: {a.dtype} {list(a.shape)} {a.ravel()[:6].tolist()}")
        return

    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    # Values that exercise the 16-bit conversions: signed zeros, F16 overflow
    # and its rounding boundary (65520 rounds to inf), F16 subnormals and the
    # ties around 2^-25, float denormals, infinities, NaN, ties to even.
    special = [0.0, -0.0, 1.0, -1.0, 0.1, -0.3, 1.0 / 3.0, 3.14159265, 65504.0, 65519.99, 65520.0, -65536.0,
               1e6, 1e-3, 6.0e-8, 2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0001, 3.0 * 2.0 ** -26, 2.0 ** -14,
               2.0 ** -14 - 2.0 ** -25, 1e-40, -1e-40, 1.0 + 2.0 ** -11, 1.0 + 3.0 * 2.0 ** -11, 1.0 + 2.0 ** -8,
               1.0 + 3.0 * 2.0 ** -8, 3.3895314e38, float("inf"), float("-inf"), float("nan")]
    values = torch.cat([torch.tensor(special, dtype=torch.float32),
                        torch.randn(64, generator=g) * 10.0]).reshape(5, 19)
    matrix = torch.randn(4, 6, generator=g)
    tensors = {
        "values": values,
        "values_f16": values.half(),
        "values_f16_as_f32": values.half().float(),
        "values_bf16": values.bfloat16(),
        "values_bf16_as_f32": values.bfloat16().float(),
        "h.0.attn.c_attn.weight": matrix,
        "h.0.attn.c_attn.weight_bf16": matrix.bfloat16(),
        "loss": torch.tensor(2.5, dtype=torch.float32),
        "h.0.attn.masked_bias": torch.tensor(-1e4, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
        "weight_f64": torch.tensor([[1.0 / 3.0, -2.5], [1e-300, 7.0]], dtype=torch.float64),
        "position_ids": torch.arange(5, dtype=torch.int64).reshape(1, 5) - 2,
        "ids_i32": torch.tensor([7, -3, 2147483647], dtype=torch.int32),
    }
    write_safetensors(os.path.join(OUT, "fixture.safetensors"), tensors,
                      {"format": "pt", "producer": "make_io_fixtures.py"})

    # .npy: a[i, j] = (i * 5 + j) / 8 - 1, exact in binary.
    a = (np.arange(15, dtype=np.float32).reshape(3, 5) / 8 - 1).astype(np.float32)
    np.save(os.path.join(OUT, "npy_f32.npy"), a)
    np.save(os.path.join(OUT, "npy_f64.npy"), a.astype(np.float64)[:2, :3] + 1e-12)
    np.save(os.path.join(OUT, "npy_f32_scalar.npy"), np.array(-0.75, dtype=np.float32))
    with open(os.path.join(OUT, "npy_f32_v2.npy"), "wb") as f:
        np.lib.format.write_array(f, a, version=(2, 0))
    np.save(os.path.join(OUT, "npy_f32_fortran.npy"), np.asfortranarray(a))
    np.save(os.path.join(OUT, "npy_f32_bigendian.npy"), a.astype(">f4"))
    np.save(os.path.join(OUT, "npy_f16.npy"), a.astype(np.float16))

    for name in sorted(os.listdir(OUT)):
        print(f"{name}: {os.path.getsize(os.path.join(OUT, name))} bytes")


if __name__ == "__main__":
    main()
