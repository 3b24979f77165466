// llmblocks/ops/common.hpp — small helpers shared by the differentiable ops:
// argument checks, row counts, column sums for bias gradients.
#pragma once

#include <algorithm>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/core/tensor.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/elementwise.hpp"

namespace llmblocks::detail {

// Fails with "op: <what> is undefined" for an undefined Variable.
template <class T>
void require_defined(const char* op, const Variable<T>& v, const char* what) {
    LLMBLOCKS_CHECK(v.defined(), op, ": ", what, " is undefined");
}

// Elements per parallel chunk below which a loop stays on one thread.
inline constexpr index_t kParallelGrain = 1 << 15;

// Rows of a tensor seen as (rows, cols) with cols its last dimension: the
// product of all other sizes (1 for a scalar or a vector).
inline index_t rows_of(const Shape& shape) {
    index_t rows = 1;
    for (std::size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
    return rows;
}

// dcol (N) += sum over the R rows of m (R, N): the gradient of a broadcast bias.
// Threads split the columns, so no two threads write the same element.
template <class T>
void add_column_sums(T* dcol, const T* m, index_t R, index_t N) {
    const index_t grain = std::max<index_t>(16, kParallelGrain / std::max<index_t>(R, 1));
    parallel_for(0, N, grain, [&](index_t lo, index_t hi) {
        for (index_t r = 0; r < R; ++r) kernels::axpy(dcol + lo, T(1), m + r * N + lo, hi - lo);
    });
}

}  // namespace llmblocks::detail
