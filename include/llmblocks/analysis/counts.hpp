// llmblocks/analysis/counts.hpp — parameter counts, FLOPs per token and KV-cache
// bytes of the four architectures, computed from their configs alone (so the
// 175B and 540B presets can be described without instantiating them).
//
// FLOPs follow PaLM's model-FLOPs accounting (Chowdhery et al. 2022, App. B):
// a matmul with N weights costs 2N FLOPs per token forward, the backward twice
// that (so training is 3x forward, the "6N" of Kaplan et al. 2020), and
// self-attention adds 2 * 2 * n_layer * n_heads * head_dim * T per token at
// context length T (scores and weighted values over the full T x T; a causal
// kernel skips half, so this is the convention, not the work a kernel does).
// Embedding lookups, norms, biases and softmax are not counted.
#pragma once

#include <cstdint>

#include "llmblocks/models/gpt2_config.hpp"
#include "llmblocks/models/palm_config.hpp"
#include "llmblocks/models/t5_config.hpp"

namespace llmblocks {

struct ModelCounts {
    std::int64_t parameters = 0;            // unique tensors' elements (a tied embedding once)
    std::int64_t embedding_parameters = 0;  // token (and learned position) embeddings, lm_head if untied
    std::int64_t matmul_parameters = 0;     // weights used in matmuls per token, the LM head included
    double forward_flops_per_token = 0;     // at the given context length
    double training_flops_per_token = 0;    // forward + backward = 3x forward
    std::int64_t kv_cache_bytes_per_token = 0;  // decoder self-attention K and V, fp32, all layers

    std::int64_t non_embedding_parameters() const { return parameters - embedding_parameters; }
};

namespace detail {
inline void finish_counts(ModelCounts& c, double attention_flops) {
    c.forward_flops_per_token = 2.0 * static_cast<double>(c.matmul_parameters) + attention_flops;
    c.training_flops_per_token = 3.0 * c.forward_flops_per_token;
}
}  // namespace detail

// GPT-2 / GPT-3. context <= 0 means n_positions. GPT-3's local layers attend to
// at most window_size keys, which the attention term takes into account.
inline ModelCounts count(const GPT2Config& cfg, index_t context = 0) {
    cfg.validate();
    const std::int64_t V = cfg.vocab_size, P = cfg.n_positions, C = cfg.n_embd, L = cfg.n_layer;
    const std::int64_t T = context > 0 ? context : P;
    const std::int64_t per_layer = 2 * C                // ln_1
                                   + C * 3 * C + 3 * C  // attn.c_attn
                                   + C * C + C          // attn.c_proj
                                   + 2 * C              // ln_2
                                   + C * 4 * C + 4 * C  // mlp.c_fc
                                   + 4 * C * C + C;     // mlp.c_proj
    ModelCounts c;
    c.embedding_parameters = V * C + P * C;
    c.parameters = c.embedding_parameters + L * per_layer + 2 * C;
    c.matmul_parameters = L * (3 * C * C + C * C + 8 * C * C) + V * C;
    double attention = 0;
    for (index_t i = 0; i < L; ++i) {
        const std::int64_t keys = cfg.span(i) == AttentionSpan::Local ? std::min<std::int64_t>(T, cfg.window_size) : T;
        attention += 4.0 * static_cast<double>(C) * static_cast<double>(keys);
    }
    detail::finish_counts(c, attention);
    c.kv_cache_bytes_per_token = 2 * L * C * static_cast<std::int64_t>(sizeof(float));
    return c;
}

// PaLM. context <= 0 means max_position_embeddings.
inline ModelCounts count(const PaLMConfig& cfg, index_t context = 0) {
    cfg.validate();
    const std::int64_t V = cfg.vocab_size, C = cfg.hidden_size, L = cfg.num_hidden_layers;
    const std::int64_t H = cfg.num_attention_heads, Hkv = cfg.num_key_value_heads, D = cfg.resolved_head_dim();
    const std::int64_t F = cfg.intermediate_size;
    const std::int64_t T = context > 0 ? context : cfg.max_position_embeddings;
    const std::int64_t attn = C * H * D + 2 * C * Hkv * D + H * D * C;  // q, k, v, o
    const std::int64_t mlp = 3 * C * F;                                  // gate, up, down
    const std::int64_t norms = cfg.parallel_block ? C : 2 * C;
    ModelCounts c;
    c.embedding_parameters = V * C * (cfg.tie_word_embeddings ? 1 : 2);
    c.parameters = c.embedding_parameters + L * (attn + mlp + norms) + C;
    c.matmul_parameters = L * (attn + mlp) + V * C;
    detail::finish_counts(c, 4.0 * static_cast<double>(L * H * D) * static_cast<double>(T));
    c.kv_cache_bytes_per_token = 2 * L * Hkv * D * static_cast<std::int64_t>(sizeof(float));
    return c;
}

// T5. FLOPs are per token pair: one encoder token plus one decoder token, with
// encoder and decoder both `context` long (default 512, T5's pre-training input length).
inline ModelCounts count(const T5Config& cfg, index_t context = 0) {
    cfg.validate();
    const std::int64_t V = cfg.vocab_size, C = cfg.d_model, F = cfg.d_ff, Hd = cfg.inner_dim();
    const std::int64_t Le = cfg.num_layers, Ld = cfg.decoder_layers();
    const std::int64_t T = context > 0 ? context : 512;
    const std::int64_t attn = 4 * C * Hd;  // q, k, v, o
    const std::int64_t ffn = (cfg.feed_forward_proj == T5FeedForward::GatedGELU ? 3 : 2) * C * F;
    const std::int64_t bias_table = cfg.relative_attention_num_buckets * cfg.num_heads;  // one per stack
    ModelCounts c;
    c.embedding_parameters = V * C * (cfg.tie_word_embeddings ? 1 : 2);
    const std::int64_t encoder = Le * (attn + ffn + 2 * C) + bias_table + C;
    const std::int64_t decoder = Ld * (2 * attn + ffn + 3 * C) + bias_table + C;
    c.parameters = c.embedding_parameters + encoder + decoder;
    c.matmul_parameters = Le * (attn + ffn) + Ld * (2 * attn + ffn) + V * C;
    // encoder self-attention, decoder self-attention and cross-attention, each over T keys
    detail::finish_counts(c, 4.0 * static_cast<double>(Hd) * static_cast<double>(T) * static_cast<double>(Le + 2 * Ld));
    c.kv_cache_bytes_per_token = 2 * Ld * Hd * static_cast<std::int64_t>(sizeof(float));
    return c;
}

// Model FLOPs utilization: achieved model FLOP/s over the hardware peak.
inline double model_flops_utilization(double training_flops_per_token, double tokens_per_second,
                                      double peak_flops_per_second) {
    return training_flops_per_token * tokens_per_second / peak_flops_per_second;
}

}  // namespace llmblocks
