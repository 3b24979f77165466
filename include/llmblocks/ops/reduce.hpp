// llmblocks/ops/reduce.hpp — differentiable sum and mean of all elements
// (losses, and the gradient checks' projections).
#pragma once

#include <vector>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/kernels/reduce.hpp"
#include "llmblocks/ops/common.hpp"

namespace llmblocks {

namespace detail {
template <class T>
Variable<T> scaled_sum(const char* op, const Variable<T>& x, bool average) {
    require_defined(op, x, "input");
    const Tensor<T> X = x.value().contiguous();
    const index_t n = X.numel();
    const T factor = average ? (n > 0 ? T(1) / static_cast<T>(n) : T(0)) : T(1);
    const T total = n > 0 ? kernels::sum(X.data(), n) : T(0);
    Tensor<T> out = Tensor<T>::full({}, total * factor);  // ()
    return record_op<T>(op, out, {x}, [n, factor](const Tensor<T>& dout, const std::vector<T*>& d) {
        if (!d[0]) return;
        // out = factor * sum_i x_i  =>  dx_i += factor * dout
        const T g = dout.item() * factor;
        for (index_t i = 0; i < n; ++i) d[0][i] += g;
    });
}
}  // namespace detail

// Sum of all elements; a scalar (shape ()).
template <class T>
Variable<T> sum(const Variable<T>& x) {
    return detail::scaled_sum("sum", x, false);
}

// Mean of all elements; a scalar (shape ()). Zero for an empty input.
template <class T>
Variable<T> mean(const Variable<T>& x) {
    return detail::scaled_sum("mean", x, true);
}

}  // namespace llmblocks
