// llmblocks/nn/attention.hpp — Attention: the one attention module of GPT-2,
// GPT-3, PaLM and T5 (Vaswani et al. 2017), whose variants are config data:
//   n_kv_heads = n_heads        multi-head attention (GPT-2, GPT-3, T5)
//   n_kv_heads = 1              multi-query attention (PaLM; Shazeer 2019): one K/V head shared by all queries
//   n_kv_heads | n_heads        grouped-query attention (Ainslie et al. 2023): a K/V head per group of queries
//   cross = true                cross-attention: queries from x, keys/values from the encoder output (T5)
//   scaled = false              no 1/sqrt(head_dim) (T5 folds it into its initialisation)
//   fused_qkv = true            one projection to [q | k | v] (GPT-2's c_attn)
//   bias = false                no projection biases (PaLM, T5)
// and whose per-call context (AttentionContext) picks the mask (causal,
// bidirectional, prefix-LM, local band of width W as in GPT-3's sparse layers),
// key padding, the additive bias (T5's relative position bias), the rotary
// embedding (PaLM) and the KV cache of incremental decoding.
//
//   q, k, v = split_heads(x Wq), split_heads(x Wk), split_heads(x Wv)
//   q, k    = rope(q, pos), rope(k, pos)                      (when ctx.rope)
//   y       = merge_heads(softmax(scale q k^T + bias + mask) v) Wo
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "llmblocks/nn/kv_cache.hpp"
#include "llmblocks/nn/linear.hpp"
#include "llmblocks/nn/rotary.hpp"
#include "llmblocks/ops/attention.hpp"
#include "llmblocks/ops/shape.hpp"

namespace llmblocks {

struct AttentionLayerConfig {
    index_t d_model = 0;     // width of x
    index_t n_heads = 1;     // query heads Hq
    index_t n_kv_heads = 0;  // K/V heads Hkv: 0 means n_heads (multi-head); 1 multi-query; a divisor: grouped-query
    index_t head_dim = 0;    // D: 0 means d_model / n_heads (T5's d_kv and PaLM's 256 need not be)
    bool cross = false;      // keys/values from a memory (the encoder output) instead of x
    index_t d_memory = 0;    // width of the memory for cross-attention; 0 means d_model
    bool bias = true;        // projection biases: GPT-2 yes; PaLM, T5 no
    bool fused_qkv = false;  // one [q | k | v] projection (self-attention only)
    bool scaled = true;      // scores * 1/sqrt(head_dim); T5: false
    double init_std = 0.02;
    double out_init_std = 0.02;  // GPT-2 scales the residual projection by 1/sqrt(2 n_layer)
    WeightLayout layout = WeightLayout::OutIn;
};

// What one call needs besides x: all optional.
template <class T>
struct AttentionContext {
    AttentionMask mask = AttentionMask::causal;  // cross-attention and encoders: bidirectional
    index_t prefix_length = 0;                   // prefix_lm: keys < prefix_length are visible to all queries
    index_t window = 0;                          // local: query p sees keys p - window < j <= p
    std::vector<index_t> key_lengths;            // (B) keys j >= key_lengths[b] are padding
    std::vector<std::uint8_t> key_padding_mask;  // (B, Tk), 0 = padding
    Variable<T> bias;                            // (Hq, Tq, Tk) additive scores (T5 relative position bias)
    const RotaryEmbedding<T>* rope = nullptr;    // rotate q and k (PaLM)
    index_t pos0 = 0;                            // position of the first token of x (without a cache)
    LayerKVCache<T>* cache = nullptr;            // incremental decoding: append k/v, attend to all cached
};

template <class T>
struct Attention {
    Linear<T> q_proj;    // d_model -> Hq D
    Linear<T> k_proj;    // d_model (or d_memory) -> Hkv D
    Linear<T> v_proj;    // d_model (or d_memory) -> Hkv D
    Linear<T> qkv_proj;  // d_model -> (Hq + 2 Hkv) D, instead of the three when fused_qkv
    Linear<T> o_proj;    // Hq D -> d_model
    AttentionLayerConfig config;

    Attention() = default;
    Attention(const AttentionLayerConfig& config_, Rng& rng) : config(config_) {
        AttentionLayerConfig& c = config;
        LLMBLOCKS_CHECK(c.d_model >= 1 && c.n_heads >= 1, "Attention: need d_model >= 1 and n_heads >= 1, got ",
                        c.d_model, " and ", c.n_heads);
        if (c.n_kv_heads == 0) c.n_kv_heads = c.n_heads;
        if (c.head_dim == 0) {
            LLMBLOCKS_CHECK(c.d_model % c.n_heads == 0, "Attention: ", c.n_heads, " heads do not divide d_model ",
                            c.d_model, "; set head_dim");
            c.head_dim = c.d_model / c.n_heads;
        }
        if (c.d_memory == 0) c.d_memory = c.d_model;
        LLMBLOCKS_CHECK(c.n_kv_heads >= 1 && c.n_heads % c.n_kv_heads == 0, "Attention: n_kv_heads ", c.n_kv_heads,
                        " does not divide n_heads ", c.n_heads);
        LLMBLOCKS_CHECK(!(c.cross && c.fused_qkv), "Attention: fused_qkv needs self-attention (cross = false)");
        const index_t q_out = c.n_heads * c.head_dim, kv_out = c.n_kv_heads * c.head_dim;
        if (c.fused_qkv) {
            qkv_proj = Linear<T>(c.d_model, q_out + 2 * kv_out, c.bias, rng, c.init_std, c.layout);
        } else {
            q_proj = Linear<T>(c.d_model, q_out, c.bias, rng, c.init_std, c.layout);
            k_proj = Linear<T>(c.d_memory, kv_out, c.bias, rng, c.init_std, c.layout);
            v_proj = Linear<T>(c.d_memory, kv_out, c.bias, rng, c.init_std, c.layout);
        }
        o_proj = Linear<T>(q_out, c.d_model, c.bias, rng, c.out_init_std, c.layout);
    }

    // Self-attention: x (B, T, d_model) -> (B, T, d_model).
    Variable<T> operator()(const Variable<T>& x, const AttentionContext<T>& ctx = {}) const {
        LLMBLOCKS_CHECK(!config.cross, "Attention: a cross-attention layer needs the memory: call (x, memory, ctx)");
        check_input("x", x, config.d_model);
        auto [q, k, v] = project_self(x);  // (B, Hq, T, D), (B, Hkv, T, D), (B, Hkv, T, D)
        const index_t pos0 = ctx.cache ? ctx.cache->length : ctx.pos0;
        if (ctx.rope) {
            q = (*ctx.rope)(q, pos0);  // PaLM: rotary positions on queries and keys
            k = (*ctx.rope)(k, pos0);
        }
        if (ctx.cache) std::tie(k, v) = through_cache(*ctx.cache, k, v);
        return finish(q, k, v, ctx, pos0);
    }

    // Cross-attention: queries from x (B, Tq, d_model), keys and values from memory
    // (B, Tk, d_memory). With ctx.cache, the memory's K/V are projected once (when the
    // cache is empty) and reused by later calls, whose memory may then be undefined.
    Variable<T> operator()(const Variable<T>& x, const Variable<T>& memory, const AttentionContext<T>& ctx) const {
        LLMBLOCKS_CHECK(config.cross, "Attention: a self-attention layer takes no memory: call (x, ctx)");
        check_input("x", x, config.d_model);
        const Variable<T> q = split_heads(q_proj(x), config.n_heads);
        Variable<T> k, v;
        if (ctx.cache && ctx.cache->length > 0) {
            k = Variable<T>(ctx.cache->keys());  // T5 decoding: the encoder's K/V, computed once
            v = Variable<T>(ctx.cache->values());
        } else {
            check_input("memory", memory, config.d_memory);
            k = split_heads(k_proj(memory), config.n_kv_heads);
            v = split_heads(v_proj(memory), config.n_kv_heads);
            if (ctx.cache) std::tie(k, v) = through_cache(*ctx.cache, k, v);
        }
        return finish(q, k, v, ctx, ctx.pos0);
    }

    void collect_parameters(ParameterList<T>& list, const std::string& prefix) const {
        if (config.fused_qkv) {
            qkv_proj.collect_parameters(list, join_name(prefix, "qkv_proj"));
        } else {
            q_proj.collect_parameters(list, join_name(prefix, "q_proj"));
            k_proj.collect_parameters(list, join_name(prefix, "k_proj"));
            v_proj.collect_parameters(list, join_name(prefix, "v_proj"));
        }
        o_proj.collect_parameters(list, join_name(prefix, "o_proj"));
    }

    // A cache of the right shape for this layer: (B, Hkv, max_len, D).
    LayerKVCache<T> make_cache(index_t batch, index_t max_len) const {
        return LayerKVCache<T>(batch, config.n_kv_heads, max_len, config.head_dim);
    }

private:
    static void check_input(const char* what, const Variable<T>& x, index_t width) {
        LLMBLOCKS_CHECK(x.defined() && x.dim() == 3 && x.size(2) == width, "Attention: ", what, " must be (B, T, ",
                        width, "), got ", x.defined() ? x.shape() : Shape{});
    }

    std::tuple<Variable<T>, Variable<T>, Variable<T>> project_self(const Variable<T>& x) const {
        const index_t Hq = config.n_heads, Hkv = config.n_kv_heads, D = config.head_dim;
        if (!config.fused_qkv)
            return {split_heads(q_proj(x), Hq), split_heads(k_proj(x), Hkv), split_heads(v_proj(x), Hkv)};
        const Variable<T> qkv = qkv_proj(x);  // (B, T, (Hq + 2 Hkv) D): GPT-2's c_attn
        return {split_heads(slice(qkv, -1, 0, Hq * D), Hq), split_heads(slice(qkv, -1, Hq * D, (Hq + Hkv) * D), Hkv),
                split_heads(slice(qkv, -1, (Hq + Hkv) * D, (Hq + 2 * Hkv) * D), Hkv)};
    }

    // Appends k, v to the cache and returns views of everything cached so far.
    static std::pair<Variable<T>, Variable<T>> through_cache(LayerKVCache<T>& cache, const Variable<T>& k,
                                                             const Variable<T>& v) {
        LLMBLOCKS_CHECK(!k.requires_grad() && !v.requires_grad(),
                        "Attention: a KV cache is for inference (its keys pass no gradient); call under no_grad()");
        cache.append(k.value(), v.value());
        return {Variable<T>(cache.keys()), Variable<T>(cache.values())};
    }

    Variable<T> finish(const Variable<T>& q, const Variable<T>& k, const Variable<T>& v,
                       const AttentionContext<T>& ctx, index_t pos0) const {
        AttentionOptions o;
        o.mask = ctx.mask;
        o.prefix_length = ctx.prefix_length;
        o.window = ctx.window;
        o.q_pos0 = pos0;
        if (!config.scaled) o.scale = 1.0;  // T5: no 1/sqrt(d) scaling
        o.key_lengths = ctx.key_lengths;
        o.key_padding_mask = ctx.key_padding_mask;
        return o_proj(merge_heads(attention(q, k, v, ctx.bias, o)));
    }
};

}  // namespace llmblocks
