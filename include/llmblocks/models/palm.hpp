// llmblocks/models/palm.hpp — PaLMModel: PaLM (Chowdhery et al. 2022), a
// decoder-only model built from nn/ blocks (its Llama-style checkpoint names,
// DESIGN.md contract 3, are in io/palm_checkpoint.hpp).
//
//   x      = E[ids]                                          no embedding scaling
//   x      = block_i(x)  for i < num_hidden_layers
//            parallel:  y = x + attn(norm(x)) + mlp(norm(x))    (PaLM, one norm)
//            serial:    h = x + attn(n1(x)); y = h + mlp(n2(h))
//   logits = norm(x) E^T (tied) or norm(x) W_head^T          no logit scaling
//
// attn: no biases, RoPE (rotate-half, inv_freq = theta^(-2i/head_dim), positions
// 0 .. T-1) on q and k, causal, scale 1/sqrt(head_dim), num_key_value_heads K/V
// heads (1 = multi-query, as PaLM; = heads: multi-head; between: grouped-query),
// query head h reading K/V head h / (heads / kv_heads). mlp: SwiGLU
// down(silu(gate x) * up x), no biases. Norms: PaLM's LayerNorm without bias,
// or RMSNorm (config.norm_type).
//
// Initialisation (PaLM section 2, "Training setup"): kernels N(0, 1/fan_in)
// ("fan-in variance scaling"); norm weights 1. PaLM draws the embedding from
// N(0, 1) and scales the tied pre-softmax logits by 1/sqrt(d_model); the
// contract has no logit scaling, so that factor is folded into the initial
// embedding instead: E ~ N(0, 1/d_model), which gives the same initial logits.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "llmblocks/models/gpt2.hpp"
#include "llmblocks/models/palm_config.hpp"
#include "llmblocks/nn/blocks.hpp"
#include "llmblocks/nn/embedding.hpp"
#include "llmblocks/nn/kv_cache.hpp"
#include "llmblocks/nn/linear.hpp"
#include "llmblocks/nn/norm.hpp"
#include "llmblocks/nn/rotary.hpp"
#include "llmblocks/ops/loss.hpp"

namespace llmblocks {

// The block configuration of a PaLM config: its norms, attention heads and SwiGLU width.
inline BlockConfig palm_block_config(const PaLMConfig& c) {
    const index_t D = c.resolved_head_dim();
    BlockConfig b = palm_block_config(c.hidden_size, c.num_attention_heads, c.num_key_value_heads, D, c.intermediate_size);
    b.norm.kind = c.norm_type == NormType::RMSNorm ? NormKind::rms_norm : NormKind::layer_norm_no_bias;
    b.norm.eps = c.layer_norm_epsilon;
    const auto fan_in = [](index_t n) { return 1.0 / std::sqrt(static_cast<double>(n)); };
    b.attention.init_std = fan_in(c.hidden_size);                     // PaLM: N(0, 1/fan_in)
    b.attention.out_init_std = fan_in(c.num_attention_heads * D);
    b.feed_forward.init_std = fan_in(c.hidden_size);
    b.feed_forward.out_init_std = fan_in(c.intermediate_size);
    return b;
}

template <class T>
struct PaLMModel {
    PaLMConfig config;
    Embedding<T> embed_tokens;                   // (V, C); also the LM head when tied
    std::vector<ParallelBlock<T>> parallel_layers;  // when config.parallel_block
    std::vector<SerialBlock<T>> serial_layers;      // otherwise
    Norm<T> norm;                                // final norm
    Linear<T> lm_head;                           // (V, C), only when untied
    RotaryEmbedding<T> rope;                     // shared by all layers; no parameters

    PaLMModel() = default;
    PaLMModel(const PaLMConfig& config_, Rng& rng) : config(config_) {
        config.validate();
        const PaLMConfig& c = config;
        const BlockConfig block = palm_block_config(c);
        embed_tokens = Embedding<T>(c.vocab_size, c.hidden_size, rng, 1.0 / std::sqrt(static_cast<double>(c.hidden_size)));
        for (index_t i = 0; i < c.num_hidden_layers; ++i) {
            if (c.parallel_block)
                parallel_layers.emplace_back(block, rng);
            else
                serial_layers.emplace_back(block, rng);
        }
        norm = Norm<T>(c.hidden_size, block.norm);
        if (!c.tie_word_embeddings)
            lm_head = Linear<T>(c.hidden_size, c.vocab_size, false, rng, 1.0 / std::sqrt(static_cast<double>(c.hidden_size)));
        RotaryConfig r;
        r.rot_dim = c.resolved_head_dim();  // RoPE over the whole head
        r.theta = c.rope_theta;
        r.style = RopeStyle::rotate_half;
        r.max_positions = c.max_position_embeddings;
        rope = RotaryEmbedding<T>(r);
    }

    // ids (B, T) -> logits (B, T, V); padding_mask and prefix_length as GPT2Model::forward.
    Variable<T> forward(const TensorI& ids, const std::vector<std::uint8_t>& padding_mask = {},
                        index_t prefix_length = 0) const {
        return run(ids, nullptr, padding_mask, prefix_length);
    }

    // Mean cross-entropy over rows with targets != -100, targets (B, T) aligned with the logits.
    Variable<T> loss(const TensorI& ids, const TensorI& targets, const std::vector<std::uint8_t>& padding_mask = {},
                     index_t prefix_length = 0) const {
        LLMBLOCKS_CHECK(targets.defined() && targets.shape() == ids.shape(), "palm: targets ",
                        targets.defined() ? targets.shape() : Shape{}, " must have the shape of the ids ", ids.shape());
        return cross_entropy(forward(ids, padding_mask, prefix_length), targets);
    }

    // A KV cache for `batch` sequences of up to max_len tokens (default: max_position_embeddings):
    // num_key_value_heads heads per layer (multi-query stores num_attention_heads times less).
    KVCache<T> make_cache(index_t batch, index_t max_len = 0) const {
        return KVCache<T>(config.num_hidden_layers, batch, config.num_key_value_heads,
                          max_len > 0 ? max_len : config.max_position_embeddings, config.resolved_head_dim());
    }

    // Incremental decoding under no_grad, as GPT2Model: last logits (B, V).
    Tensor<T> prefill(const TensorI& ids, KVCache<T>& cache) const {
        auto guard = no_grad();
        return detail::last_position(run(ids, &cache, {}, 0));
    }
    Tensor<T> decode_step(const TensorI& tokens, KVCache<T>& cache) const {
        LLMBLOCKS_CHECK(tokens.defined() && tokens.dim() == 1, "palm: decode_step takes (B) tokens, got ",
                        tokens.defined() ? tokens.shape() : Shape{});
        return prefill(tokens.contiguous().reshape({tokens.size(0), 1}), cache);
    }

    // llmblocks' own names: embed_tokens.weight, layers.<i>.attn.q_proj.weight, ...
    void collect_parameters(ParameterList<T>& list, const std::string& prefix = "") const {
        embed_tokens.collect_parameters(list, join_name(prefix, "embed_tokens"));
        for (std::size_t i = 0; i < parallel_layers.size(); ++i)
            parallel_layers[i].collect_parameters(list, join_name(prefix, "layers." + std::to_string(i)));
        for (std::size_t i = 0; i < serial_layers.size(); ++i)
            serial_layers[i].collect_parameters(list, join_name(prefix, "layers." + std::to_string(i)));
        norm.collect_parameters(list, join_name(prefix, "norm"));
        if (lm_head.weight.defined()) lm_head.collect_parameters(list, join_name(prefix, "lm_head"));
    }

private:
    Variable<T> run(const TensorI& ids, KVCache<T>* cache, const std::vector<std::uint8_t>& padding_mask,
                    index_t prefix_length) const {
        detail::check_ids("palm", ids);
        detail::check_prefix("palm", ids, prefix_length);
        const index_t B = ids.size(0), T_ = ids.size(1);
        LLMBLOCKS_CHECK(!cache || cache->n_layers() == config.num_hidden_layers, "palm: the KV cache has ",
                        cache ? cache->n_layers() : 0, " layers, the model ", config.num_hidden_layers);
        LLMBLOCKS_CHECK(padding_mask.empty() || static_cast<index_t>(padding_mask.size()) == B * T_,
                        "palm: padding_mask has ", padding_mask.size(), " entries for ids ", ids.shape());
        LLMBLOCKS_CHECK(padding_mask.empty() || !cache, "palm: padding_mask is for full forward passes");

        Variable<T> x = embed_tokens(ids);  // (B, T, C); PaLM: no embedding scaling
        for (index_t i = 0; i < config.num_hidden_layers; ++i) {
            AttentionContext<T> ctx;  // causal, or a prefix LM
            if (prefix_length > 0) {
                ctx.mask = AttentionMask::prefix_lm;
                ctx.prefix_length = prefix_length;
            }
            ctx.rope = &rope;         // PaLM: RoPE on q and k at positions pos0 .. pos0+T-1
            ctx.key_padding_mask = padding_mask;
            if (cache) ctx.cache = &(*cache)[i];
            const auto l = static_cast<std::size_t>(i);
            x = config.parallel_block ? parallel_layers[l](x, ctx) : serial_layers[l](x, ctx);
        }
        x = norm(x);
        if (config.tie_word_embeddings) return linear(x, embed_tokens.weight, WeightLayout::OutIn);  // x E^T
        return lm_head(x);
    }
};

}  // namespace llmblocks
