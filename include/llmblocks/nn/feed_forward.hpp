// llmblocks/nn/feed_forward.hpp — the position-wise feed-forward network,
// one module whose variant is config data:
//   FeedForwardKind::gelu    down(gelu(up x))                 GPT-2, GPT-3 (tanh GELU, hidden 4 d_model, biases)
//   FeedForwardKind::relu    down(relu(up x))                 T5 v1.0 ("relu", hidden d_ff, no biases)
//   FeedForwardKind::swiglu  down(silu(gate x) * up x)        PaLM (Shazeer 2020 "GLU Variants"; no biases)
//   FeedForwardKind::geglu   down(gelu(gate x) * up x)        T5 v1.1 "gated-gelu" (tanh GELU, no biases)
// `hidden` is the inner width (GPT-2: 4 * d_model; PaLM: 4 * d_model with an
// extra gate matrix). Names: up, gate (gated kinds only), down.
#pragma once

#include <string>

#include "llmblocks/nn/linear.hpp"
#include "llmblocks/ops/activation.hpp"
#include "llmblocks/ops/elementwise.hpp"

namespace llmblocks {

enum class FeedForwardKind {
    gelu,    // GPT-2, GPT-3
    relu,    // T5 v1.0
    swiglu,  // PaLM
    geglu,   // T5 v1.1
};

inline const char* feed_forward_kind_name(FeedForwardKind kind) {
    switch (kind) {
        case FeedForwardKind::gelu: return "gelu";
        case FeedForwardKind::relu: return "relu";
        case FeedForwardKind::swiglu: return "swiglu";
        case FeedForwardKind::geglu: return "geglu";
    }
    return "?";
}

inline bool is_gated(FeedForwardKind kind) { return kind == FeedForwardKind::swiglu || kind == FeedForwardKind::geglu; }

struct FeedForwardConfig {
    FeedForwardKind kind = FeedForwardKind::gelu;
    index_t hidden = 0;              // inner width; 0 means 4 * d_model
    bool bias = true;                // GPT-2: true; PaLM, T5: false
    GeluKind gelu = GeluKind::Tanh;  // GPT-2's "gelu_new" and T5's gated-gelu are the tanh form
    double init_std = 0.02;
    double out_init_std = 0.02;  // GPT-2 scales the residual projection by 1/sqrt(2 n_layer)
    WeightLayout layout = WeightLayout::OutIn;
};

template <class T>
struct FeedForward {
    Linear<T> up;    // d_model -> hidden
    Linear<T> gate;  // d_model -> hidden, gated kinds only
    Linear<T> down;  // hidden -> d_model
    FeedForwardConfig config;

    FeedForward() = default;
    FeedForward(index_t d_model, const FeedForwardConfig& config_, Rng& rng) : config(config_) {
        if (config.hidden == 0) config.hidden = 4 * d_model;
        const index_t H = config.hidden;
        if (is_gated(config.kind)) gate = Linear<T>(d_model, H, config.bias, rng, config.init_std, config.layout);
        up = Linear<T>(d_model, H, config.bias, rng, config.init_std, config.layout);
        down = Linear<T>(H, d_model, config.bias, rng, config.out_init_std, config.layout);
    }

    // (..., d_model) -> (..., d_model)
    Variable<T> operator()(const Variable<T>& x) const {
        switch (config.kind) {
            case FeedForwardKind::gelu:
                return down(config.gelu == GeluKind::Tanh ? gelu_tanh(up(x)) : gelu(up(x)));
            case FeedForwardKind::relu: return down(relu(up(x)));
            case FeedForwardKind::swiglu: return down(swiglu(gate(x), up(x)));    // PaLM: silu(gate x) * up x
            case FeedForwardKind::geglu: return down(geglu(gate(x), up(x), config.gelu));  // T5 v1.1
        }
        fail("FeedForward: unknown kind ", static_cast<int>(config.kind));
    }

    void collect_parameters(ParameterList<T>& list, const std::string& prefix) const {
        if (gate.weight.defined()) gate.collect_parameters(list, join_name(prefix, "gate"));
        up.collect_parameters(list, join_name(prefix, "up"));
        down.collect_parameters(list, join_name(prefix, "down"));
    }
};

}  // namespace llmblocks
