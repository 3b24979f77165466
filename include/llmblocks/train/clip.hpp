// llmblocks/train/clip.hpp — global gradient-norm clipping (Pascanu et al. 2013),
// as torch.nn.utils.clip_grad_norm_: GPT-3 and PaLM clip the global norm at 1.0.
//
//   norm = sqrt(sum over all parameters and elements of g^2)      (in double)
//   if norm > max_norm: every g *= max_norm / (norm + 1e-6)
// Returns the norm before clipping (log it). A NaN norm leaves the gradients
// unchanged (torch would multiply them by NaN): the caller sees it and can skip
// the step. An infinite norm zeroes them, as torch does. The sum
// uses fixed blocks added in order, so the result does not depend on the thread
// count. Parameters without a gradient count as zero.
#pragma once

#include <cmath>

#include "llmblocks/core/threading.hpp"
#include "llmblocks/train/optimizer.hpp"

namespace llmblocks {

// The L2 norm of all gradients together.
template <class T>
double global_grad_norm(const ParameterList<T>& params) {
    double total = 0.0;
    for (const auto& p : params) {
        const T* g = detail::gradient_or_null("global_grad_norm", p);
        if (g) total += detail::sum_squares(g, p.variable.numel());
    }
    return std::sqrt(total);
}

// Scales all gradients so that their global norm is at most max_norm; returns the pre-clip norm.
template <class T>
double clip_grad_norm(const ParameterList<T>& params, double max_norm) {
    LLMBLOCKS_CHECK(max_norm > 0.0, "clip_grad_norm: max_norm must be > 0, got ", max_norm);
    const double norm = global_grad_norm(params);
    const double coeff = max_norm / (norm + 1e-6);
    if (!(coeff < 1.0)) return norm;  // below the threshold (or NaN norm: leave the gradients alone)
    const T c = static_cast<T>(coeff);
    for (const auto& p : params) {
        T* g = detail::gradient_or_null("clip_grad_norm", p);
        if (!g) continue;
        parallel_for(0, p.variable.numel(), detail::kOptimizerGrain, [&](index_t lo, index_t hi) {
            for (index_t k = lo; k < hi; ++k) g[k] *= c;
        });
    }
    return norm;
}

}  // namespace llmblocks
