// llmblocks/ops/softmax.hpp — differentiable softmax and log-softmax over the
// last axis (attention probabilities; log-probabilities of a language model).
// Both save their output: the backward kernels need only it and dout.
#pragma once

#include <vector>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/kernels/softmax.hpp"
#include "llmblocks/ops/common.hpp"

namespace llmblocks {

// softmax(x)_j = exp(x_j) / sum_k exp(x_k), along the last dimension.
template <class T>
Variable<T> softmax(const Variable<T>& x) {
    detail::require_defined("softmax", x, "input");
    LLMBLOCKS_CHECK(x.dim() >= 1, "softmax: needs at least one dimension, got ", x.shape());
    const Tensor<T> X = x.value().contiguous();
    const index_t cols = x.shape().back(), rows = detail::rows_of(x.shape());
    Tensor<T> out = Tensor<T>::empty(X.shape());
    if (cols > 0) kernels::softmax_forward(out.data(), X.data(), rows, cols);
    return record_op<T>("softmax", out, {x}, [out, rows, cols](const Tensor<T>& dout, const std::vector<T*>& d) {
        // y = softmax(x)  =>  dx += y * (dout - sum_j dout_j y_j)
        if (d[0] && cols > 0) kernels::softmax_backward(d[0], out.data(), dout.data(), rows, cols);
    });
}

// log_softmax(x)_j = x_j - log sum_k exp(x_k), along the last dimension.
template <class T>
Variable<T> log_softmax(const Variable<T>& x) {
    detail::require_defined("log_softmax", x, "input");
    LLMBLOCKS_CHECK(x.dim() >= 1, "log_softmax: needs at least one dimension, got ", x.shape());
    const Tensor<T> X = x.value().contiguous();
    const index_t cols = x.shape().back(), rows = detail::rows_of(x.shape());
    Tensor<T> out = Tensor<T>::empty(X.shape());
    if (cols > 0) kernels::log_softmax_forward(out.data(), X.data(), rows, cols);
    return record_op<T>("log_softmax", out, {x}, [out, rows, cols](const Tensor<T>& dout, const std::vector<T*>& d) {
        // y = log_softmax(x)  =>  dx += dout - exp(y) * sum_j dout_j
        if (d[0] && cols > 0) kernels::log_softmax_backward(d[0], out.data(), dout.data(), rows, cols);
    });
}

}  // namespace llmblocks
