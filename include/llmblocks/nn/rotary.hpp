// llmblocks/nn/rotary.hpp — RotaryEmbedding (RoPE; RoFormer, Su et al. 2021):
// the position encoding of PaLM, GPT-NeoX and Llama. No parameters: it rotates
// each query and key head by angles p * theta^(-2i/rot_dim) (a cos/sin table,
// cached and grown on demand), so a query-key dot product depends only on the
// offset between the two positions. Two conventions (RopeStyle):
//   rotate_half  pairs (x[i], x[i + rot_dim/2]): Hugging Face Llama, GPT-NeoX, PaLM here
//   interleaved  pairs (x[2i], x[2i+1]): the RoFormer paper, GPT-J, Meta's Llama
// theta: 10000 (RoFormer, PaLM, Llama 2), 500000 (Llama 3). rot_dim < head_dim
// rotates only the first rot_dim features (GPT-NeoX rotary_pct, GPT-J rotary_dim).
// One instance is shared by all layers of a model.
#pragma once

#include <memory>
#include <string>

#include "llmblocks/nn/module.hpp"
#include "llmblocks/ops/rope.hpp"

namespace llmblocks {

struct RotaryConfig {
    index_t rot_dim = 0;  // features rotated per head (even); usually head_dim
    double theta = 10000.0;
    RopeStyle style = RopeStyle::rotate_half;
    index_t max_positions = 0;  // cos/sin rows computed up front (more are added on demand)
};

template <class T>
struct RotaryEmbedding {
    std::shared_ptr<RopeCache<T>> cache;  // (positions, rot_dim/2) cos and sin
    RopeStyle style = RopeStyle::rotate_half;

    RotaryEmbedding() = default;
    explicit RotaryEmbedding(const RotaryConfig& config)
        : cache(std::make_shared<RopeCache<T>>(config.rot_dim, config.theta, config.max_positions)),
          style(config.style) {}

    index_t rot_dim() const { return cache->rot_dim(); }

    // x (B, H, T, D) rotated at positions pos0 .. pos0+T-1 (pos0 = cached tokens when decoding).
    // Grows the cos/sin cache when needed (not thread-safe with other calls on this instance).
    Variable<T> operator()(const Variable<T>& x, index_t pos0 = 0) const {
        LLMBLOCKS_CHECK(cache != nullptr, "RotaryEmbedding: not initialised (input ", x.shape(), ")");
        LLMBLOCKS_CHECK(x.dim() == 4, "RotaryEmbedding: expected a (B, H, T, D) input, got ", x.shape());
        cache->reserve(pos0 + x.size(2));
        return rope(x, std::shared_ptr<const RopeCache<T>>(cache), style, pos0);
    }

    void collect_parameters(ParameterList<T>&, const std::string&) const {}  // none
};

}  // namespace llmblocks
