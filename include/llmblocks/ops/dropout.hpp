// llmblocks/ops/dropout.hpp — differentiable (inverted) dropout, Srivastava et
// al. 2014, as in GPT-2's attention, residual and embedding dropout and T5.
//
// In training each element is kept with probability 1 - p and scaled by
// 1 / (1 - p), so the expected value is unchanged and evaluation is the
// identity. The mask comes from the caller's Rng, so a seed fixes it.
#pragma once

#include <vector>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/kernels/elementwise.hpp"
#include "llmblocks/ops/common.hpp"

namespace llmblocks {

// x * mask / (1 - p) with mask ~ Bernoulli(1 - p) drawn from `rng` in row-major
// order when training; x itself (no copy, no draw) when not training or p == 0.
template <class T>
Variable<T> dropout(const Variable<T>& x, double p, Rng& rng, bool training = true) {
    detail::require_defined("dropout", x, "input");
    LLMBLOCKS_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability ", p, " is outside [0, 1] for input ", x.shape());
    if (!training || p == 0.0) return x;
    const Tensor<T> X = x.value().contiguous();
    const index_t n = X.numel();
    // mask_i = 1/(1-p) with probability 1-p, else 0 (all zero when p == 1)
    Tensor<T> mask = Tensor<T>::empty(X.shape());
    const T keep_scale = p < 1.0 ? static_cast<T>(1.0 / (1.0 - p)) : T(0);
    for (index_t i = 0; i < n; ++i) mask.data()[i] = rng.uniform() >= p ? keep_scale : T(0);
    Tensor<T> out = Tensor<T>::empty(X.shape());
    kernels::mul(out.data(), X.data(), mask.data(), n);  // out = x * mask
    return record_op<T>("dropout", out, {x}, [mask, n](const Tensor<T>& dout, const std::vector<T*>& d) {
        if (!d[0]) return;
        // out = x * mask  =>  dx += dout * mask
        Tensor<T> tmp = Tensor<T>::empty({n});
        kernels::mul(tmp.data(), dout.data(), mask.data(), n);
        kernels::axpy(d[0], T(1), tmp.data(), n);
    });
}

}  // namespace llmblocks
