// llmblocks/nn/embedding.hpp — Embedding (token embeddings of every model)
// and PositionEmbedding: GPT-2's learned absolute position embeddings (wpe),
// added to the token embeddings at the input. PaLM uses rotary embeddings
// (nn/rotary.hpp) and T5 a relative position bias (nn/relative_position_bias.hpp)
// instead.
#pragma once

#include <string>

#include "llmblocks/nn/module.hpp"
#include "llmblocks/ops/embedding.hpp"

namespace llmblocks {

// A (V, C) table; ids (...) of int32 -> (..., C).
template <class T>
struct Embedding {
    Variable<T> weight;  // (V, C)

    Embedding() = default;
    // Rows ~ N(0, init_std^2) (GPT-2: 0.02; T5 and PaLM use 1.0 with their own scalings).
    Embedding(index_t num_embeddings, index_t dim, Rng& rng, double init_std = 0.02)
        : weight(normal_parameter<T>({num_embeddings, dim}, init_std, rng)) {}

    Variable<T> operator()(const TensorI& ids) const { return embedding(ids, weight); }

    void collect_parameters(ParameterList<T>& list, const std::string& prefix) const {
        add_parameter(list, prefix, "weight", weight);
    }
};

// GPT-2: learned absolute positions, one (C) vector per position < max_positions.
template <class T>
struct PositionEmbedding {
    Variable<T> weight;  // (max_positions, C)

    PositionEmbedding() = default;
    PositionEmbedding(index_t max_positions, index_t dim, Rng& rng, double init_std = 0.01)
        : weight(normal_parameter<T>({max_positions, dim}, init_std, rng)) {}

    index_t max_positions() const { return weight.size(0); }

    // (T, C): the embeddings of positions pos0 .. pos0+T-1 (pos0 > 0 when decoding with a KV
    // cache); broadcasts over the batch when added to (B, T, C) token embeddings.
    Variable<T> operator()(index_t seq_len, index_t pos0 = 0) const {
        LLMBLOCKS_CHECK(seq_len >= 0 && pos0 >= 0 && pos0 + seq_len <= max_positions(), "PositionEmbedding: positions ",
                        pos0, "..", pos0 + seq_len - 1, " outside the table ", weight.shape());
        TensorI ids = TensorI::empty({seq_len});
        for (index_t t = 0; t < seq_len; ++t) ids.data()[t] = static_cast<std::int32_t>(pos0 + t);
        return embedding(ids, weight);
    }

    void collect_parameters(ParameterList<T>& list, const std::string& prefix) const {
        add_parameter(list, prefix, "weight", weight);
    }
};

}  // namespace llmblocks
