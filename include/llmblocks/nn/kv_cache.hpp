// llmblocks/nn/kv_cache.hpp — the key/value cache of incremental decoding
// (every autoregressive model: GPT-2, GPT-3, PaLM, T5's decoder).
//
// Each layer keeps the keys and values of the tokens seen so far in a
// preallocated (B, Hkv, T_max, D) pair of tensors; a decode step appends its
// new keys/values in place and attention reads the filled prefix
// [0, length) as a strided view (no copy), with the new queries at absolute
// positions length, length+1, ... Memory per token (per sequence):
//     2 * n_layers * n_kv_heads * head_dim * sizeof(T)
// so multi-query attention (PaLM, Shazeer 2019: n_kv_heads = 1) stores
// n_heads times less than multi-head, and grouped-query n_heads/n_kv_heads less.
// For cross-attention (T5's decoder) a LayerKVCache of capacity T_enc holds
// the encoder's projected K/V, filled by the first decode step and reused.
#pragma once

#include <cstddef>
#include <vector>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/tensor.hpp"

namespace llmblocks {

template <class T>
struct LayerKVCache {
    Tensor<T> k;         // (B, Hkv, T_max, D)
    Tensor<T> v;         // (B, Hkv, T_max, D)
    index_t length = 0;  // filled positions [0, length)

    LayerKVCache() = default;
    LayerKVCache(index_t batch, index_t n_kv_heads, index_t max_len, index_t head_dim)
        : k(Tensor<T>::zeros({batch, n_kv_heads, max_len, head_dim})),
          v(Tensor<T>::zeros({batch, n_kv_heads, max_len, head_dim})) {
        LLMBLOCKS_CHECK(batch >= 1 && n_kv_heads >= 1 && max_len >= 1 && head_dim >= 1,
                        "LayerKVCache: sizes must be >= 1, got (B, Hkv, T_max, D) = ",
                        Shape{batch, n_kv_heads, max_len, head_dim});
    }

    index_t capacity() const { return k.size(2); }
    // Bytes held by K and V.
    std::size_t bytes() const { return 2 * static_cast<std::size_t>(k.numel()) * sizeof(T); }

    // Copies k_new, v_new (B, Hkv, Tn, D) into positions [length, length + Tn).
    void append(const Tensor<T>& k_new, const Tensor<T>& v_new) {
        LLMBLOCKS_CHECK(k.defined(), "LayerKVCache::append: the cache is not allocated");
        const Shape expect{k.size(0), k.size(1), k_new.dim() == 4 ? k_new.size(2) : -1, k.size(3)};
        LLMBLOCKS_CHECK(k_new.shape() == expect && v_new.shape() == expect, "LayerKVCache::append: new k ",
                        k_new.shape(), " / v ", v_new.shape(), " do not fit the cache ", k.shape());
        const index_t n = k_new.size(2);
        LLMBLOCKS_CHECK(length + n <= capacity(), "LayerKVCache::append: ", length, " cached + ", n,
                        " new positions exceed the capacity ", capacity(), " of cache ", k.shape());
        k.narrow(2, length, n).copy_(k_new);
        v.narrow(2, length, n).copy_(v_new);
        length += n;
    }

    // (B, Hkv, length, D) views of the filled part.
    Tensor<T> keys() const { return k.narrow(2, 0, length); }
    Tensor<T> values() const { return v.narrow(2, 0, length); }

    void reset() { length = 0; }
};

// One LayerKVCache per layer.
template <class T>
struct KVCache {
    std::vector<LayerKVCache<T>> layers;

    KVCache() = default;
    KVCache(index_t n_layers, index_t batch, index_t n_kv_heads, index_t max_len, index_t head_dim) {
        LLMBLOCKS_CHECK(n_layers >= 1, "KVCache: n_layers must be >= 1, got ", n_layers);
        for (index_t i = 0; i < n_layers; ++i) layers.emplace_back(batch, n_kv_heads, max_len, head_dim);
    }

    LayerKVCache<T>& operator[](index_t layer) { return layers.at(static_cast<std::size_t>(layer)); }
    index_t n_layers() const { return static_cast<index_t>(layers.size()); }
    index_t length() const { return layers.empty() ? 0 : layers.front().length; }

    std::size_t bytes() const {
        std::size_t n = 0;
        for (const auto& l : layers) n += l.bytes();
        return n;
    }
    // 2 * n_layers * n_kv_heads * head_dim * sizeof(T): the cost of one more token of one sequence.
    static std::size_t bytes_per_token(index_t n_layers, index_t n_kv_heads, index_t head_dim) {
        return 2 * static_cast<std::size_t>(n_layers * n_kv_heads * head_dim) * sizeof(T);
    }

    void reset() {
        for (auto& l : layers) l.reset();
    }
};

}  // namespace llmblocks
