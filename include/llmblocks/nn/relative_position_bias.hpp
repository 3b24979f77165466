// llmblocks/nn/relative_position_bias.hpp — T5's relative position bias
// (Raffel et al. 2020): a learned (num_buckets, H) table; the attention score
// of query i and key k gets weight[bucket(k - i), h] added. Buckets are exact
// for short distances and log-spaced up to max_distance; the encoder's are
// bidirectional, the decoder's causal. T5 owns one table per stack (in its
// first layer), computes the (H, Tq, Tk) bias once per forward pass and passes
// that one Variable to the attention of every layer (AttentionContext::bias);
// cross-attention has none. Its gradient sums the uses of all layers.
#pragma once

#include <string>

#include "llmblocks/nn/module.hpp"
#include "llmblocks/ops/relative_position.hpp"

namespace llmblocks {

template <class T>
struct RelativePositionBias {
    Variable<T> weight;  // (num_buckets, H)
    T5BucketConfig config;

    RelativePositionBias() = default;
    // HF T5 defaults: 32 buckets, max_distance 128; encoder bidirectional, decoder causal.
    RelativePositionBias(index_t n_heads, const T5BucketConfig& config_, Rng& rng, double init_std = 1.0)
        : config(config_) {
        LLMBLOCKS_CHECK(n_heads >= 1, "RelativePositionBias: n_heads must be >= 1, got ", n_heads);
        kernels::detail::t5_bucket_check("RelativePositionBias", config.bidirectional, config.num_buckets,
                                         config.max_distance);
        weight = normal_parameter<T>({config.num_buckets, n_heads}, init_std, rng);
    }

    // (H, Tq, Tk): the bias for queries at positions q0 .. q0+Tq-1 and keys 0 .. Tk-1
    // (decoding: Tq new tokens after q0 cached ones, Tk = q0 + Tq).
    Variable<T> operator()(index_t q_len, index_t kv_len, index_t q0 = 0) const {
        return relative_position_bias(weight, config, q_len, kv_len, q0);
    }

    void collect_parameters(ParameterList<T>& list, const std::string& prefix) const {
        add_parameter(list, prefix, "weight", weight);
    }
};

}  // namespace llmblocks
