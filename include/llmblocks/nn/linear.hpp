// llmblocks/nn/linear.hpp — Linear: y = x W^T + b, the projection of every
// transformer (attention q/k/v/o, feed-forward up/gate/down). GPT-2 uses
// biases; PaLM ("no biases in any dense kernel") and T5 do not.
#pragma once

#include <string>

#include "llmblocks/nn/module.hpp"
#include "llmblocks/ops/linear.hpp"

namespace llmblocks {

template <class T>
struct Linear {
    Variable<T> weight;  // (out, in) [WeightLayout::OutIn] or (in, out) [InOut, GPT-2's Conv1D]
    Variable<T> bias;    // (out), or undefined when bias is off
    WeightLayout layout = WeightLayout::OutIn;

    Linear() = default;
    // Weight ~ N(0, init_std^2) (GPT-2: 0.02), bias zero.
    Linear(index_t in_features, index_t out_features, bool use_bias, Rng& rng, double init_std = 0.02,
           WeightLayout layout_ = WeightLayout::OutIn)
        : layout(layout_) {
        LLMBLOCKS_CHECK(in_features >= 1 && out_features >= 1, "Linear: sizes must be >= 1, got in ", in_features,
                        ", out ", out_features);
        const Shape shape = layout == WeightLayout::OutIn ? Shape{out_features, in_features}
                                                          : Shape{in_features, out_features};
        weight = normal_parameter<T>(shape, init_std, rng);
        if (use_bias) bias = make_parameter(Tensor<T>::zeros({out_features}));
    }

    index_t in_features() const { return weight.size(layout == WeightLayout::OutIn ? 1 : 0); }
    index_t out_features() const { return weight.size(layout == WeightLayout::OutIn ? 0 : 1); }

    // (..., in) -> (..., out)
    Variable<T> operator()(const Variable<T>& x) const { return linear(x, weight, bias, layout); }

    void collect_parameters(ParameterList<T>& list, const std::string& prefix) const {
        add_parameter(list, prefix, "weight", weight);
        add_parameter(list, prefix, "bias", bias);
    }
};

}  // namespace llmblocks
