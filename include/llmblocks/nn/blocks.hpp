// llmblocks/nn/blocks.hpp — the transformer blocks, one named block per
// family, built from Norm, Attention and FeedForward; the differences between
// GPT-2, GPT-3, PaLM and T5 are the config presets at the bottom, each
// difference tagged (docs/blocks.md collects the tags into one table).
//
//   SerialBlock    (GPT-2, GPT-3, T5 encoder)  h = x + attn(ln_1(x));  y = h + mlp(ln_2(h))
//   ParallelBlock  (PaLM)                      y = x + attn(norm(x)) + mlp(norm(x)), one norm
//   T5DecoderBlock (T5 decoder)                h = x + self_attn(ln_1(x)); h = h + cross_attn(ln_2(h), enc);
//                                              y = h + mlp(ln_3(h))
// All are pre-norm (the norm sits inside the residual branch: GPT-2, Radford
// et al. 2019, section 2.3). Dropout is left to the model (off at inference).
#pragma once

#include <string>

#include "llmblocks/nn/attention.hpp"
#include "llmblocks/nn/feed_forward.hpp"
#include "llmblocks/nn/norm.hpp"
#include "llmblocks/ops/elementwise.hpp"

namespace llmblocks {

struct BlockConfig {
    index_t d_model = 0;
    NormConfig norm;
    AttentionLayerConfig attention;  // d_model is filled in from above
    FeedForwardConfig feed_forward;

    // The attention's config with the block's width (and cross = true for cross-attention).
    AttentionLayerConfig attention_config(bool cross = false) const {
        AttentionLayerConfig a = attention;
        a.d_model = d_model;
        if (cross) {
            a.cross = true;
            a.fused_qkv = false;
        }
        return a;
    }
};

// GPT-2 / GPT-3 / T5 encoder: attention, then feed-forward, each on its own norm.
template <class T>
struct SerialBlock {
    Norm<T> ln_1;
    Attention<T> attn;
    Norm<T> ln_2;
    FeedForward<T> mlp;

    SerialBlock() = default;
    SerialBlock(const BlockConfig& c, Rng& rng)
        : ln_1(c.d_model, c.norm), attn(c.attention_config(), rng), ln_2(c.d_model, c.norm),
          mlp(c.d_model, c.feed_forward, rng) {}

    // x (B, T, d_model) -> (B, T, d_model)
    Variable<T> operator()(const Variable<T>& x, const AttentionContext<T>& ctx = {}) const {
        const Variable<T> h = x + attn(ln_1(x), ctx);  // GPT-2: x + attn(ln_1(x))
        return h + mlp(ln_2(h));                        // GPT-2: then + mlp(ln_2(h)), a second norm
    }

    void collect_parameters(ParameterList<T>& list, const std::string& prefix) const {
        ln_1.collect_parameters(list, join_name(prefix, "ln_1"));
        attn.collect_parameters(list, join_name(prefix, "attn"));
        ln_2.collect_parameters(list, join_name(prefix, "ln_2"));
        mlp.collect_parameters(list, join_name(prefix, "mlp"));
    }
};

// PaLM (Chowdhery et al. 2022, section 2, "Parallel Layers"; from GPT-J): attention and
// feed-forward read the same normalised input, and both add to the residual at once.
template <class T>
struct ParallelBlock {
    Norm<T> norm;
    Attention<T> attn;
    FeedForward<T> mlp;

    ParallelBlock() = default;
    ParallelBlock(const BlockConfig& c, Rng& rng)
        : norm(c.d_model, c.norm), attn(c.attention_config(), rng),
          mlp(c.d_model, c.feed_forward, rng) {}

    Variable<T> operator()(const Variable<T>& x, const AttentionContext<T>& ctx = {}) const {
        const Variable<T> n = norm(x);        // PaLM: one norm feeds both branches
        return x + attn(n, ctx) + mlp(n);     // PaLM: y = x + attn(n) + mlp(n), no serial dependency
    }

    void collect_parameters(ParameterList<T>& list, const std::string& prefix) const {
        norm.collect_parameters(list, join_name(prefix, "norm"));
        attn.collect_parameters(list, join_name(prefix, "attn"));
        mlp.collect_parameters(list, join_name(prefix, "mlp"));
    }
};

// T5 decoder (Raffel et al. 2020): causal self-attention, cross-attention to the encoder
// output, feed-forward; three RMSNorms.
template <class T>
struct T5DecoderBlock {
    Norm<T> ln_1;
    Attention<T> self_attn;
    Norm<T> ln_2;
    Attention<T> cross_attn;
    Norm<T> ln_3;
    FeedForward<T> mlp;

    T5DecoderBlock() = default;
    // c.attention configures both attentions (cross = true is set for the second).
    T5DecoderBlock(const BlockConfig& c, Rng& rng)
        : ln_1(c.d_model, c.norm), self_attn(c.attention_config(), rng),
          ln_2(c.d_model, c.norm), cross_attn(c.attention_config(true), rng), ln_3(c.d_model, c.norm),
          mlp(c.d_model, c.feed_forward, rng) {}

    // x (B, T, d_model), encoder (B, T_enc, d_model) -> (B, T, d_model). self_ctx carries the
    // causal mask and the decoder's relative position bias; cross_ctx the encoder's key padding
    // (and, when decoding, the cache of the encoder's K/V). T5: no position bias on cross-attention.
    Variable<T> operator()(const Variable<T>& x, const Variable<T>& encoder, const AttentionContext<T>& self_ctx,
                           const AttentionContext<T>& cross_ctx) const {
        Variable<T> h = x + self_attn(ln_1(x), self_ctx);         // T5: causal self-attention, shared bias
        h = h + cross_attn(ln_2(h), encoder, cross_ctx);          // T5: decoder reads the encoder output
        return h + mlp(ln_3(h));                                   // T5: relu or gated-gelu feed-forward
    }

    void collect_parameters(ParameterList<T>& list, const std::string& prefix) const {
        ln_1.collect_parameters(list, join_name(prefix, "ln_1"));
        self_attn.collect_parameters(list, join_name(prefix, "self_attn"));
        ln_2.collect_parameters(list, join_name(prefix, "ln_2"));
        cross_attn.collect_parameters(list, join_name(prefix, "cross_attn"));
        ln_3.collect_parameters(list, join_name(prefix, "ln_3"));
        mlp.collect_parameters(list, join_name(prefix, "mlp"));
    }
};

// ---- presets: the architectural differences as data ----------------------------------

// GPT-2 (Radford et al. 2019) and GPT-3 (Brown et al. 2020) block: SerialBlock.
// GPT-3: the same block; its alternating dense and locally banded sparse layers are a per-call
// choice (AttentionContext mask = local, window = W on the banded layers).
inline BlockConfig gpt2_block_config(index_t d_model, index_t n_heads, index_t n_layers = 1) {
    BlockConfig c;
    c.d_model = d_model;
    c.norm = {NormKind::layer_norm, 1e-5};           // GPT-2: LayerNorm with bias, eps 1e-5
    c.attention.n_heads = n_heads;                   // GPT-2: multi-head (n_kv_heads = n_heads)
    c.attention.bias = true;                         // GPT-2: biases on every projection
    c.attention.fused_qkv = true;                    // GPT-2: one c_attn projection to [q | k | v]
    c.attention.scaled = true;                       // GPT-2: scores / sqrt(head_dim)
    c.attention.layout = WeightLayout::InOut;        // GPT-2: Conv1D weights stored (in, out)
    c.attention.out_init_std = 0.02 / std::sqrt(2.0 * static_cast<double>(n_layers));  // GPT-2: residual init
    c.feed_forward.kind = FeedForwardKind::gelu;     // GPT-2: GELU (tanh form, "gelu_new")
    c.feed_forward.hidden = 4 * d_model;             // GPT-2: hidden = 4 d_model
    c.feed_forward.bias = true;
    c.feed_forward.layout = WeightLayout::InOut;
    c.feed_forward.out_init_std = c.attention.out_init_std;
    return c;
}

// PaLM (Chowdhery et al. 2022) block: ParallelBlock.
inline BlockConfig palm_block_config(index_t d_model, index_t n_heads, index_t n_kv_heads = 1, index_t head_dim = 0,
                                     index_t hidden = 0) {
    BlockConfig c;
    c.d_model = d_model;
    c.norm = {NormKind::layer_norm_no_bias, 1e-5};   // PaLM: LayerNorm without bias
    c.attention.n_heads = n_heads;
    c.attention.n_kv_heads = n_kv_heads;             // PaLM: multi-query (one K/V head)
    c.attention.head_dim = head_dim;                 // PaLM: head_dim 256 at any width
    c.attention.bias = false;                        // PaLM: no biases in any dense kernel
    c.attention.scaled = true;
    c.feed_forward.kind = FeedForwardKind::swiglu;   // PaLM: SwiGLU feed-forward
    c.feed_forward.hidden = hidden ? hidden : 4 * d_model;
    c.feed_forward.bias = false;
    return c;                                        // PaLM: RoPE is passed per call (AttentionContext::rope)
}

// T5 (Raffel et al. 2020) block: SerialBlock (encoder) or T5DecoderBlock.
inline BlockConfig t5_block_config(index_t d_model, index_t n_heads, index_t d_kv, index_t d_ff, bool gated_gelu = false) {
    BlockConfig c;
    c.d_model = d_model;
    c.norm = {NormKind::rms_norm, 1e-6};             // T5: RMSNorm (no mean, no bias), eps 1e-6
    c.attention.n_heads = n_heads;
    c.attention.head_dim = d_kv;                     // T5: d_kv * n_heads need not equal d_model
    c.attention.bias = false;                        // T5: no biases
    c.attention.scaled = false;                      // T5: no 1/sqrt(head_dim) scaling
    c.attention.init_std = 1.0 / std::sqrt(static_cast<double>(d_model));
    c.attention.out_init_std = 1.0 / std::sqrt(static_cast<double>(n_heads * d_kv));
    c.feed_forward.kind = gated_gelu ? FeedForwardKind::geglu   // T5 v1.1: gated-gelu
                                     : FeedForwardKind::relu;   // T5 v1.0: ReLU
    c.feed_forward.hidden = d_ff;
    c.feed_forward.bias = false;
    c.feed_forward.init_std = 1.0 / std::sqrt(static_cast<double>(d_model));
    c.feed_forward.out_init_std = 1.0 / std::sqrt(static_cast<double>(d_ff));
    return c;                                        // T5: relative position bias passed per call
}

}  // namespace llmblocks
