// llmblocks/models/palm_config.hpp — the configuration of PaLM (Chowdhery et
// al. 2022), with the three published sizes as presets.
//
// PaLM's differences from GPT-2, each a field here: SwiGLU feed-forward, no
// biases, parallel attention + feed-forward blocks, multi-query attention
// (num_key_value_heads = 1), RoPE, a shared input-output embedding, and a
// 256k SentencePiece vocabulary. Keys follow DESIGN.md's checkpoint contract 3.
#pragma once

#include <string>

#include "llmblocks/core/error.hpp"

namespace llmblocks {

enum class NormType {
    LayerNorm,  // (x - mean) / sqrt(var + eps) * w — PaLM's, scale only, no bias
    RMSNorm,    // x / sqrt(mean(x^2) + eps) * w
};

struct PaLMConfig {
    index_t vocab_size = 256000;
    index_t hidden_size = 4096;          // d_model
    index_t num_hidden_layers = 32;
    index_t num_attention_heads = 16;
    index_t num_key_value_heads = 1;     // 1: multi-query; = heads: multi-head; a divisor in between: grouped
    index_t head_dim = 256;              // 0 means hidden_size / num_attention_heads
    index_t intermediate_size = 16384;   // SwiGLU hidden width (PaLM: 4 * d_model)
    index_t max_position_embeddings = 2048;
    double rope_theta = 10000.0;
    double layer_norm_epsilon = 1e-6;
    NormType norm_type = NormType::LayerNorm;
    bool parallel_block = true;          // y = x + attn(norm(x)) + mlp(norm(x))
    bool tie_word_embeddings = true;     // logits = x E^T

    index_t resolved_head_dim() const { return head_dim > 0 ? head_dim : hidden_size / num_attention_heads; }

    void validate() const {
        LLMBLOCKS_CHECK(vocab_size > 0 && hidden_size > 0 && num_hidden_layers > 0 && num_attention_heads > 0 &&
                            num_key_value_heads > 0 && intermediate_size > 0 && max_position_embeddings > 0,
                        "palm config: sizes must be positive");
        LLMBLOCKS_CHECK(num_attention_heads % num_key_value_heads == 0, "palm config: num_attention_heads ",
                        num_attention_heads, " is not a multiple of num_key_value_heads ", num_key_value_heads);
        LLMBLOCKS_CHECK(head_dim > 0 || hidden_size % num_attention_heads == 0, "palm config: hidden_size ",
                        hidden_size, " is not divisible by num_attention_heads ", num_attention_heads,
                        " and no head_dim is given");
        LLMBLOCKS_CHECK(resolved_head_dim() % 2 == 0, "palm config: RoPE needs an even head_dim, got ",
                        resolved_head_dim());
        LLMBLOCKS_CHECK(rope_theta > 0 && layer_norm_epsilon > 0, "palm config: rope_theta and layer_norm_epsilon must be positive");
    }

    // Presets: "tiny" (tests and demos) and the paper's "8B", "62B", "540B" (Table 1:
    // layers, d_model, heads, head_dim 256, d_ff = 4 d_model, vocabulary 256k).
    static PaLMConfig preset(const std::string& name) {
        PaLMConfig c;
        if (name == "tiny") {
            c.vocab_size = 256, c.hidden_size = 64, c.num_hidden_layers = 2, c.num_attention_heads = 4;
            c.head_dim = 16, c.intermediate_size = 256, c.max_position_embeddings = 128;
        } else if (name == "8B") {
        } else if (name == "62B") {
            c.hidden_size = 8192, c.num_hidden_layers = 64, c.num_attention_heads = 32, c.intermediate_size = 32768;
        } else if (name == "540B") {
            c.hidden_size = 18432, c.num_hidden_layers = 118, c.num_attention_heads = 48, c.intermediate_size = 73728;
        } else {
            fail("palm: unknown preset '", name, "' (expected tiny, 8B, 62B or 540B)");
        }
        return c;
    }
};

}  // namespace llmblocks
