// llmblocks/ops/norm.hpp — differentiable LayerNorm (GPT-2 and GPT-3 with a
// bias; PaLM's scale-only variant without one) and RMSNorm (T5; Zhang &
// Sennrich 2019), over the last axis.
//
//   layer_norm: y = (x - mean) / sqrt(var + eps) * w (+ b), var biased
//   rms_norm:   y = x / sqrt(mean(x^2) + eps) * w
// The forward saves mean and 1/std per row for the backward kernel.
#pragma once

#include <type_traits>
#include <vector>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/kernels/norm.hpp"
#include "llmblocks/ops/common.hpp"

namespace llmblocks {

namespace detail {
template <class T>
void check_norm_weight(const char* op, const Variable<T>& x, const Variable<T>& w, const char* what) {
    require_defined(op, x, "input");
    require_defined(op, w, what);
    LLMBLOCKS_CHECK(x.dim() >= 1 && w.shape() == Shape{x.shape().back()}, op, ": ", what, " shape ", w.shape(),
                    " does not match the last dimension of input ", x.shape());
}
}  // namespace detail

// LayerNorm over the last axis of x (..., C) with weight (C) and bias (C);
// pass an undefined bias for the scale-only LayerNorm of PaLM.
template <class T>
Variable<T> layer_norm(const Variable<T>& x, const Variable<T>& weight, const Variable<T>& bias,
                       std::type_identity_t<T> eps = T(1e-5)) {
    detail::check_norm_weight("layer_norm", x, weight, "weight");
    if (bias.defined()) detail::check_norm_weight("layer_norm", x, bias, "bias");
    const Tensor<T> X = x.value().contiguous();  // (rows, C)
    const Tensor<T> W = weight.value().contiguous();
    const Tensor<T> Bv = bias.defined() ? bias.value().contiguous() : Tensor<T>();
    const index_t C = x.shape().back(), rows = detail::rows_of(x.shape());
    Tensor<T> out = Tensor<T>::empty(X.shape());
    Tensor<T> mean = Tensor<T>::empty({rows});
    Tensor<T> rstd = Tensor<T>::empty({rows});
    if (C > 0)
        kernels::layernorm_forward(out.data(), mean.data(), rstd.data(), X.data(), W.data(),
                                   Bv.defined() ? Bv.data() : static_cast<const T*>(nullptr), rows, C, eps);
    return record_op<T>("layer_norm", out, {x, weight, bias},
                        [X, W, mean, rstd, rows, C](const Tensor<T>& dout, const std::vector<T*>& d) {
                            // y = (x - mean) * rstd * w + b: dx, dw, db (null when not wanted)
                            if (C > 0)
                                kernels::layernorm_backward(d[0], d[1], d[2], dout.data(), X.data(), W.data(), mean.data(),
                                                            rstd.data(), rows, C);
                        });
}

// Scale-only LayerNorm (no bias): PaLM.
template <class T>
Variable<T> layer_norm(const Variable<T>& x, const Variable<T>& weight, std::type_identity_t<T> eps = T(1e-5)) {
    return layer_norm(x, weight, Variable<T>(), eps);
}

// RMSNorm over the last axis of x (..., C) with weight (C).
template <class T>
Variable<T> rms_norm(const Variable<T>& x, const Variable<T>& weight, std::type_identity_t<T> eps = T(1e-6)) {
    detail::check_norm_weight("rms_norm", x, weight, "weight");
    const Tensor<T> X = x.value().contiguous();  // (rows, C)
    const Tensor<T> W = weight.value().contiguous();
    const index_t C = x.shape().back(), rows = detail::rows_of(x.shape());
    Tensor<T> out = Tensor<T>::empty(X.shape());
    Tensor<T> rstd = Tensor<T>::empty({rows});
    if (C > 0) kernels::rmsnorm_forward(out.data(), rstd.data(), X.data(), W.data(), rows, C, eps);
    return record_op<T>("rms_norm", out, {x, weight}, [X, W, rstd, rows, C](const Tensor<T>& dout, const std::vector<T*>& d) {
        // y = x * rstd * w: dx, dw (null when not wanted)
        if (C > 0) kernels::rmsnorm_backward(d[0], d[1], dout.data(), X.data(), W.data(), rstd.data(), rows, C);
    });
}

}  // namespace llmblocks
