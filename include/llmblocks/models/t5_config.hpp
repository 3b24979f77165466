// llmblocks/models/t5_config.hpp — the configuration of T5 (Raffel et al.
// 2020), with the released sizes as presets.
//
// T5 is an encoder-decoder with RMS layer norm, no biases, relative position
// buckets shared by all layers of a stack, and attention without 1/sqrt(d)
// scaling. v1.0 uses a ReLU feed-forward; v1.1 a gated GELU and an untied head.
// Field names and defaults are Hugging Face's T5Config (DESIGN.md, contract
// details 7).
#pragma once

#include <string>

#include "llmblocks/core/error.hpp"

namespace llmblocks {

enum class T5FeedForward {
    ReLU,       // "relu": wo(relu(wi x)) — T5 v1.0
    GatedGELU,  // "gated-gelu": wo(gelu_tanh(wi_0 x) * wi_1 x) — T5 v1.1
};

struct T5Config {
    index_t vocab_size = 32128;
    index_t d_model = 512;
    index_t d_kv = 64;                    // per-head width; d_kv * num_heads need not equal d_model
    index_t d_ff = 2048;
    index_t num_layers = 6;               // encoder layers
    index_t num_decoder_layers = -1;      // -1: same as num_layers
    index_t num_heads = 8;
    index_t relative_attention_num_buckets = 32;
    index_t relative_attention_max_distance = 128;
    double layer_norm_epsilon = 1e-6;
    T5FeedForward feed_forward_proj = T5FeedForward::ReLU;
    bool tie_word_embeddings = true;      // tied head rescales by d_model^-0.5
    index_t decoder_start_token_id = 0;
    index_t eos_token_id = 1;

    index_t decoder_layers() const { return num_decoder_layers >= 0 ? num_decoder_layers : num_layers; }
    index_t inner_dim() const { return d_kv * num_heads; }

    void validate() const {
        LLMBLOCKS_CHECK(vocab_size > 0 && d_model > 0 && d_kv > 0 && d_ff > 0 && num_layers > 0 && num_heads > 0 &&
                            decoder_layers() > 0,
                        "t5 config: sizes must be positive");
        LLMBLOCKS_CHECK(relative_attention_num_buckets >= 2 && relative_attention_max_distance >= 2,
                        "t5 config: relative_attention_num_buckets and relative_attention_max_distance must be >= 2");
        LLMBLOCKS_CHECK(layer_norm_epsilon > 0, "t5 config: layer_norm_epsilon must be positive");
    }

    // Presets: "tiny" (tests and demos) and the released "small", "base", "large", "3B", "11B" (v1.0).
    static T5Config preset(const std::string& name) {
        T5Config c;
        if (name == "tiny") {
            c.vocab_size = 256, c.d_model = 64, c.d_kv = 16, c.d_ff = 128, c.num_layers = 2, c.num_heads = 4;
        } else if (name == "small") {
        } else if (name == "base") {
            c.d_model = 768, c.d_ff = 3072, c.num_layers = 12, c.num_heads = 12;
        } else if (name == "large") {
            c.d_model = 1024, c.d_ff = 4096, c.num_layers = 24, c.num_heads = 16;
        } else if (name == "3B") {
            c.d_model = 1024, c.d_kv = 128, c.d_ff = 16384, c.num_layers = 24, c.num_heads = 32;
        } else if (name == "11B") {
            c.d_model = 1024, c.d_kv = 128, c.d_ff = 65536, c.num_layers = 24, c.num_heads = 128;
        } else {
            fail("t5: unknown preset '", name, "' (expected tiny, small, base, large, 3B or 11B)");
        }
        return c;
    }
};

}  // namespace llmblocks
