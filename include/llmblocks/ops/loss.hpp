// llmblocks/ops/loss.hpp — differentiable cross-entropy of a language model,
// with PyTorch's ignore_index and PaLM's z-loss.
//
//   loss = (1 / N) * sum over rows r with targets[r] != ignore_index of
//          [ logsumexp(logits[r]) - logits[r, targets[r]] + z_loss * logsumexp(logits[r])^2 ]
// N counts the rows that are not ignored (PyTorch's reduction="mean"). When
// every row is ignored the loss is 0 with a zero gradient (PyTorch gives NaN).
// The fused kernel (kernels/loss.hpp) never materialises the softmax.
#pragma once

#include <cstdint>
#include <vector>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/kernels/loss.hpp"
#include "llmblocks/ops/common.hpp"

namespace llmblocks {

struct CrossEntropyOptions {
    std::int32_t ignore_index = -100;  // rows with this target count for nothing (PyTorch's default)
    double z_loss = 0.0;               // PaLM uses 1e-4: adds z_loss * log(Z)^2 per counted row
};

// Mean cross-entropy of logits (..., V) against int32 targets (...); a scalar.
template <class T>
Variable<T> cross_entropy(const Variable<T>& logits, const TensorI& targets, CrossEntropyOptions options = {}) {
    detail::require_defined("cross_entropy", logits, "logits");
    LLMBLOCKS_CHECK(targets.defined(), "cross_entropy: targets tensor is undefined");
    const Shape& ls = logits.shape();
    LLMBLOCKS_CHECK(ls.size() >= 1 && Shape(ls.begin(), ls.end() - 1) == targets.shape(),
                    "cross_entropy: targets must have the shape of logits without the last dimension: logits ", ls,
                    " vs targets ", targets.shape());
    const index_t V = ls.back(), rows = detail::rows_of(ls);
    LLMBLOCKS_CHECK(V > 0 || rows == 0, "cross_entropy: logits ", ls, " have an empty class dimension");
    const Tensor<T> X = logits.value().contiguous();  // (rows, V)
    const TensorI Y = targets.contiguous();           // (rows)
    const T z = static_cast<T>(options.z_loss);
    const std::int32_t ignore = options.ignore_index;

    Tensor<T> losses = Tensor<T>::empty({rows});  // per-row loss, 0 on ignored rows
    Tensor<T> lse = Tensor<T>::empty({rows});     // log Z per row, saved for the backward
    kernels::cross_entropy_forward(losses.data(), lse.data(), X.data(), Y.data(), rows, V, z, ignore);
    index_t counted = 0;
    double total = 0.0;
    for (index_t r = 0; r < rows; ++r) {
        if (Y.data()[r] == ignore) continue;
        ++counted;
        total += static_cast<double>(losses.data()[r]);
    }
    const T inv_n = counted > 0 ? static_cast<T>(1.0 / static_cast<double>(counted)) : T(0);
    Tensor<T> out = Tensor<T>::full({}, static_cast<T>(total) * inv_n);  // ()
    return record_op<T>("cross_entropy", out, {logits},
                        [X, Y, lse, rows, V, z, ignore, inv_n](const Tensor<T>& dout, const std::vector<T*>& d) {
                            if (!d[0] || rows == 0) return;
                            // loss = inv_n * sum_r loss_r  =>  dloss_r = dout * inv_n
                            Tensor<T> dlosses = Tensor<T>::full({rows}, dout.item() * inv_n);
                            kernels::cross_entropy_backward(d[0], dlosses.data(), X.data(), lse.data(), Y.data(), rows, V,
                                                            z, ignore);
                        });
}

}  // namespace llmblocks
