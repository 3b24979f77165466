// llmblocks/autograd/gradcheck.hpp — checks a backward against central finite
// differences in double precision (the test every differentiable op passes).
//
// For f: inputs -> output (any shape), gradcheck draws a fixed random
// projection w of the output's shape and compares, for every element x_k of
// every input,
//   analytic:  d(sum(w * f))/dx_k   from one backward(w)
//   numeric:   (sum(w * f(x_k + eps)) - sum(w * f(x_k - eps))) / (2 eps)
// An element passes when |analytic - numeric| <= atol + rtol * |numeric|.
// A random w tests every output's gradient at once; a wrong backward passes
// only for a measure-zero set of w. Inputs must stay away from kinks (ReLU at
// 0) by more than eps.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/core/tensor.hpp"

namespace llmblocks {

struct GradcheckOptions {
    double eps = 1e-6;       // finite-difference step
    double rtol = 1e-5;      // relative tolerance (of the numeric derivative)
    double atol = 1e-8;      // absolute tolerance
    std::uint64_t seed = 1;  // seeds the projection w
};

struct GradcheckResult {
    bool ok = true;
    double max_abs_error = 0.0;  // largest |analytic - numeric|
    index_t checked = 0;         // derivatives compared
    std::string message;         // the worst failure: input, element, both values; empty when ok

    explicit operator bool() const { return ok; }
};

// Checks fn's backward at `inputs` (each becomes a leaf that requires grad;
// the tensors passed in are not modified). fn must be deterministic (seed any
// dropout inside it).
inline GradcheckResult gradcheck(const std::function<VariableD(const std::vector<VariableD>&)>& fn,
                                 const std::vector<TensorD>& inputs, const GradcheckOptions& options = {}) {
    std::vector<VariableD> leaves;
    for (const TensorD& t : inputs) leaves.emplace_back(t.clone(), true);

    // Analytic: one backward with the projection as output gradient.
    VariableD out = fn(leaves);
    LLMBLOCKS_CHECK(out.defined() && out.requires_grad(), "gradcheck: the function's result of shape ",
                    out.defined() ? out.shape() : Shape{}, " does not depend on any input");
    Rng rng(options.seed);
    const TensorD w = TensorD::randn(out.shape(), rng);
    out.backward(w);

    const auto projected = [&]() {
        NoGradGuard guard;
        const TensorD y = fn(leaves).value().contiguous();
        LLMBLOCKS_CHECK(y.shape() == w.shape(), "gradcheck: the result's shape changed from ", w.shape(), " to ",
                        y.shape());
        double s = 0.0;
        for (index_t i = 0; i < y.numel(); ++i) s += y.data()[i] * w.data()[i];
        return s;
    };

    GradcheckResult result;
    double worst_excess = 0.0;
    for (std::size_t i = 0; i < leaves.size(); ++i) {
        const TensorD x = leaves[i].value();  // contiguous clone: perturbed in place
        const TensorD g = leaves[i].grad();   // undefined: the backward never reached this input
        for (index_t k = 0; k < x.numel(); ++k) {
            const double saved = x.data()[k];
            x.data()[k] = saved + options.eps;
            const double plus = projected();
            x.data()[k] = saved - options.eps;
            const double minus = projected();
            x.data()[k] = saved;
            const double numeric = (plus - minus) / (2.0 * options.eps);
            const double analytic = g.defined() ? g.data()[k] : 0.0;
            const double err = std::abs(analytic - numeric);
            const double excess = err - (options.atol + options.rtol * std::abs(numeric));
            result.max_abs_error = std::max(result.max_abs_error, err);
            ++result.checked;
            if (!(excess <= 0.0) && (result.ok || !(excess <= worst_excess))) {
                result.ok = false;
                worst_excess = std::isnan(excess) ? INFINITY : excess;
                std::ostringstream os;
                os << std::setprecision(10) << "gradcheck: input " << i << " of shape " << shape_str(x.shape())
                   << ", flat element " << k << ": analytic " << analytic << " vs numeric " << numeric << " (|diff| "
                   << err << ", rtol " << options.rtol << ", atol " << options.atol << ", eps " << options.eps << ")";
                result.message = os.str();
            }
        }
    }
    return result;
}

}  // namespace llmblocks
