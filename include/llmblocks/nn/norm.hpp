// llmblocks/nn/norm.hpp — the normalisation layers, one module whose kind is
// config data:
//   NormKind::layer_norm         (x - mean) / sqrt(var + eps) * w + b    GPT-2, GPT-3 (Ba et al. 2016)
//   NormKind::layer_norm_no_bias (x - mean) / sqrt(var + eps) * w        PaLM ("no biases", Chowdhery et al. 2022)
//   NormKind::rms_norm           x / sqrt(mean(x^2) + eps) * w           T5 (Zhang & Sennrich 2019)
// over the last axis; var is the biased variance. Weight starts at 1, bias at 0.
#pragma once

#include <string>

#include "llmblocks/nn/module.hpp"
#include "llmblocks/ops/norm.hpp"

namespace llmblocks {

enum class NormKind {
    layer_norm,          // GPT-2, GPT-3: mean-subtracted, scale and bias
    layer_norm_no_bias,  // PaLM: mean-subtracted, scale only
    rms_norm,            // T5 (and PaLM's "rmsnorm" variant): no mean, no bias
};

inline const char* norm_kind_name(NormKind kind) {
    switch (kind) {
        case NormKind::layer_norm: return "layer_norm";
        case NormKind::layer_norm_no_bias: return "layer_norm_no_bias";
        case NormKind::rms_norm: return "rms_norm";
    }
    return "?";
}

struct NormConfig {
    NormKind kind = NormKind::layer_norm;
    double eps = 1e-5;  // GPT-2: 1e-5; T5: 1e-6
};

template <class T>
struct Norm {
    Variable<T> weight;  // (C), starts at 1
    Variable<T> bias;    // (C), starts at 0; only for NormKind::layer_norm
    NormConfig config;

    Norm() = default;
    Norm(index_t dim, const NormConfig& config_) : config(config_) {
        LLMBLOCKS_CHECK(dim >= 1, "Norm: dimension must be >= 1, got ", dim);
        LLMBLOCKS_CHECK(config.eps >= 0.0, "Norm: eps must be >= 0, got ", config.eps);
        weight = make_parameter(Tensor<T>::ones({dim}));
        if (config.kind == NormKind::layer_norm) bias = make_parameter(Tensor<T>::zeros({dim}));
    }

    // (..., C) -> (..., C)
    Variable<T> operator()(const Variable<T>& x) const {
        const T eps = static_cast<T>(config.eps);
        if (config.kind == NormKind::rms_norm) return rms_norm(x, weight, eps);
        return layer_norm(x, weight, bias, eps);  // bias undefined for layer_norm_no_bias
    }

    void collect_parameters(ParameterList<T>& list, const std::string& prefix) const {
        add_parameter(list, prefix, "weight", weight);
        add_parameter(list, prefix, "bias", bias);
    }
};

}  // namespace llmblocks
