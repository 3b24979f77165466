// Test support: the small measures the model and CLI tests apply to PyTorch fixtures (GPT-2, PaLM, T5):
// max |t|, the relative error ||a - b|| / ||b|| and fixture ids read back as int32.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "llmblocks/core/tensor.hpp"

namespace llmblocks::testing {

// A (1, N) int32 tensor from a fixture's I64 tensor of N ids (read as float: exact for these ids).
inline TensorI as_ids(const TensorF& t) {
    TensorI ids = TensorI::empty({1, t.numel()});
    const TensorF c = t.contiguous();
    for (index_t i = 0; i < t.numel(); ++i) ids.data()[i] = static_cast<std::int32_t>(c.data()[i]);
    return ids;
}

// max_i |t_i| (0 for an empty tensor).
inline double max_abs(const TensorF& t) {
    const TensorF c = t.contiguous();
    double m = 0;
    for (index_t i = 0; i < c.numel(); ++i) m = std::max(m, std::fabs(static_cast<double>(c.data()[i])));
    return m;
}

// ||a - b|| / ||b|| in double; ||a - b|| when b is all zeros. The shapes must match (REQUIRE).
template <class T>
double relative_error(const Tensor<T>& a, const TensorF& b) {
    REQUIRE(a.shape() == b.shape());
    const Tensor<T> ac = a.contiguous();
    const TensorF bc = b.contiguous();
    double d = 0, n = 0;
    for (index_t i = 0; i < bc.numel(); ++i) {
        const double e = static_cast<double>(ac.data()[i]) - static_cast<double>(bc.data()[i]);
        d += e * e;
        n += static_cast<double>(bc.data()[i]) * static_cast<double>(bc.data()[i]);
    }
    return n > 0 ? std::sqrt(d / n) : std::sqrt(d);
}

}  // namespace llmblocks::testing
