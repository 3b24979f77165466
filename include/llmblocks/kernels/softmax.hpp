// llmblocks/kernels/softmax.hpp — row-wise softmax and log-softmax with their
// gradients: attention probabilities (Vaswani et al. 2017, in every model here)
// and the cross-entropy of the language-model head.
//
// All kernels work on `rows` rows of `cols` contiguous elements:
//   softmax(x)_j     = exp(x_j - m) / sum_k exp(x_k - m),       m = max_k x_k
//   log_softmax(x)_j = (x_j - m) - log(sum_k exp(x_k - m))
// Subtracting the row max m makes every exponent <= 0, so logits of 1e4 (or
// 1e30) neither overflow nor lose the distribution; the largest term is exp(0) = 1,
// so the sum is >= 1 and its log and reciprocal are safe. Each row takes three
// passes: max, exp-and-sum (softmax stores the exps in `out`), then scale (or shift).
//
// Masked entries (-inf, as in causal attention) get probability exactly 0. A row
// whose entries are ALL -inf (fully masked) has no distribution; PyTorch returns
// NaN there. Here softmax returns a row of 0s (such an attention row then adds
// nothing, and no NaN spreads through the network) and log_softmax returns a row
// of -inf (= log 0, consistent with it). A NaN or +inf in a row gives a NaN row.
//
// `out` may be the same array as `inp` (in-place). Rows are split over threads.
#pragma once

#include <cmath>
#include <limits>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/elementwise.hpp"
#include "llmblocks/kernels/reduce.hpp"
#include "llmblocks/kernels/simd.hpp"

namespace llmblocks::kernels {

namespace detail {

template <class T, class... Ptrs>
inline void check_rows(const char* op, index_t rows, index_t cols, const Ptrs*... ptrs) {
    static_assert(is_kernel_type_v<T>, "llmblocks kernels: T must be float or double");
    LLMBLOCKS_CHECK(rows >= 0 && cols >= 0, op, ": rows and cols must be >= 0, got (rows, cols) = ",
                    Shape{rows, cols});
    LLMBLOCKS_CHECK(rows == 0 || cols == 0 || ((ptrs != nullptr) && ...), op, ": null array for (rows, cols) = ",
                    Shape{rows, cols});
}

// Calls row_fn(r) for every row, whole rows per thread.
template <class RowFn>
inline void parallel_rows(index_t rows, index_t cols, const RowFn& row_fn) {
    parallel_for(0, rows, row_grain(cols), [&](index_t lo, index_t hi) {
        for (index_t r = lo; r < hi; ++r) row_fn(r);
    });
}

// One softmax row: out = exp(x - max) / sum.
template <class T>
inline void softmax_row(T* out, const T* x, index_t cols) {
    using B = simd::batch<T>;
    constexpr T minus_inf = -std::numeric_limits<T>::infinity();
    const T m = max_serial(x, cols);
    if (m == minus_inf) {  // fully masked row: all zeros (documented above)
        for_each_batch<T>(0, cols, [&](index_t i, const auto& lanes) { lanes.store(out + i, B(T(0))); });
        return;
    }
    const B vm(m);
    B acc(T(0));
    for_each_batch<T>(0, cols, [&](index_t i, const auto& lanes) {
        const B e = xsimd::exp(lanes.load(x + i, minus_inf) - vm);  // padding lanes give exp(-inf) = 0
        lanes.store(out + i, e);
        acc += e;
    });
    const B inv(T(1) / xsimd::hadd(acc));
    for_each_batch<T>(0, cols, [&](index_t i, const auto& lanes) { lanes.store(out + i, lanes.load(out + i) * inv); });
}

// One log-softmax row: out = (x - max) - log(sum exp(x - max)).
template <class T>
inline void log_softmax_row(T* out, const T* x, index_t cols) {
    using B = simd::batch<T>;
    constexpr T minus_inf = -std::numeric_limits<T>::infinity();
    const T m = max_serial(x, cols);
    if (m == minus_inf) {  // fully masked row: log 0 everywhere
        for_each_batch<T>(0, cols, [&](index_t i, const auto& lanes) { lanes.store(out + i, B(minus_inf)); });
        return;
    }
    const B vm(m);
    B acc(T(0));
    for_each_batch<T>(0, cols, [&](index_t i, const auto& lanes) { acc += xsimd::exp(lanes.load(x + i, minus_inf) - vm); });
    const B log_sum(std::log(xsimd::hadd(acc)));
    for_each_batch<T>(0, cols, [&](index_t i, const auto& lanes) {
        lanes.store(out + i, (lanes.load(x + i) - vm) - log_sum);
    });
}

}  // namespace detail

// out = softmax(inp) over each row.
template <class T>
void softmax_forward(T* out, const T* inp, index_t rows, index_t cols) {  // out, inp: (rows, cols)
    detail::check_rows<T>("softmax_forward", rows, cols, out, inp);
    if (cols == 0) return;
    detail::parallel_rows(rows, cols, [=](index_t r) { detail::softmax_row(out + r * cols, inp + r * cols, cols); });
}
template <class T>
void softmax_forward_reference(T* out, const T* inp, index_t rows, index_t cols) {
    detail::check_rows<T>("softmax_forward_reference", rows, cols, out, inp);
    for (index_t r = 0; r < rows && cols > 0; ++r) {
        const T* x = inp + r * cols;
        T* y = out + r * cols;
        T m = -std::numeric_limits<T>::infinity();
        bool has_nan = false;
        for (index_t j = 0; j < cols; ++j) {
            has_nan = has_nan || std::isnan(x[j]);
            m = std::max(m, x[j]);
        }
        if (has_nan) m = std::numeric_limits<T>::quiet_NaN();
        if (m == -std::numeric_limits<T>::infinity()) {
            for (index_t j = 0; j < cols; ++j) y[j] = T(0);
            continue;
        }
        T s = T(0);
        for (index_t j = 0; j < cols; ++j) {
            y[j] = std::exp(x[j] - m);
            s += y[j];
        }
        const T inv = T(1) / s;
        for (index_t j = 0; j < cols; ++j) y[j] *= inv;
    }
}

// Given y = softmax(x): dx_j = y_j (dy_j - sum_k dy_k y_k). Accumulates into dinp.
template <class T>
void softmax_backward(T* dinp, const T* out, const T* dout, index_t rows, index_t cols) {  // all (rows, cols)
    detail::check_rows<T>("softmax_backward", rows, cols, dinp, out, dout);
    if (cols == 0) return;
    using B = simd::batch<T>;
    detail::parallel_rows(rows, cols, [=](index_t r) {
        const T* y = out + r * cols;
        const T* dy = dout + r * cols;
        T* dx = dinp + r * cols;
        const B s(detail::dot_serial(dy, y, cols));
        detail::for_each_batch<T>(0, cols, [&](index_t i, const auto& lanes) {
            lanes.store(dx + i, xsimd::fma(lanes.load(y + i), lanes.load(dy + i) - s, lanes.load(dx + i)));
        });
    });
}
template <class T>
void softmax_backward_reference(T* dinp, const T* out, const T* dout, index_t rows, index_t cols) {
    detail::check_rows<T>("softmax_backward_reference", rows, cols, dinp, out, dout);
    for (index_t r = 0; r < rows && cols > 0; ++r) {
        const T* y = out + r * cols;
        const T* dy = dout + r * cols;
        T* dx = dinp + r * cols;
        T s = T(0);
        for (index_t j = 0; j < cols; ++j) s += dy[j] * y[j];
        for (index_t j = 0; j < cols; ++j) dx[j] += y[j] * (dy[j] - s);
    }
}

// out = log_softmax(inp) over each row.
template <class T>
void log_softmax_forward(T* out, const T* inp, index_t rows, index_t cols) {  // out, inp: (rows, cols)
    detail::check_rows<T>("log_softmax_forward", rows, cols, out, inp);
    if (cols == 0) return;
    detail::parallel_rows(rows, cols, [=](index_t r) { detail::log_softmax_row(out + r * cols, inp + r * cols, cols); });
}
template <class T>
void log_softmax_forward_reference(T* out, const T* inp, index_t rows, index_t cols) {
    detail::check_rows<T>("log_softmax_forward_reference", rows, cols, out, inp);
    for (index_t r = 0; r < rows && cols > 0; ++r) {
        const T* x = inp + r * cols;
        T* y = out + r * cols;
        T m = -std::numeric_limits<T>::infinity();
        bool has_nan = false;
        for (index_t j = 0; j < cols; ++j) {
            has_nan = has_nan || std::isnan(x[j]);
            m = std::max(m, x[j]);
        }
        if (has_nan) m = std::numeric_limits<T>::quiet_NaN();
        if (m == -std::numeric_limits<T>::infinity()) {
            for (index_t j = 0; j < cols; ++j) y[j] = -std::numeric_limits<T>::infinity();
            continue;
        }
        T s = T(0);
        for (index_t j = 0; j < cols; ++j) s += std::exp(x[j] - m);
        const T log_s = std::log(s);
        for (index_t j = 0; j < cols; ++j) y[j] = (x[j] - m) - log_s;
    }
}

// Given y = log_softmax(x) (log-probabilities): dx_j = dy_j - exp(y_j) sum_k dy_k.
// Accumulates into dinp.
template <class T>
void log_softmax_backward(T* dinp, const T* out, const T* dout, index_t rows, index_t cols) {  // all (rows, cols)
    detail::check_rows<T>("log_softmax_backward", rows, cols, dinp, out, dout);
    if (cols == 0) return;
    using B = simd::batch<T>;
    detail::parallel_rows(rows, cols, [=](index_t r) {
        const T* y = out + r * cols;
        const T* dy = dout + r * cols;
        T* dx = dinp + r * cols;
        const B s(detail::sum_serial(dy, cols));
        detail::for_each_batch<T>(0, cols, [&](index_t i, const auto& lanes) {
            const B p = xsimd::exp(lanes.load(y + i));
            lanes.store(dx + i, lanes.load(dx + i) + xsimd::fnma(p, s, lanes.load(dy + i)));
        });
    });
}
template <class T>
void log_softmax_backward_reference(T* dinp, const T* out, const T* dout, index_t rows, index_t cols) {
    detail::check_rows<T>("log_softmax_backward_reference", rows, cols, dinp, out, dout);
    for (index_t r = 0; r < rows && cols > 0; ++r) {
        const T* y = out + r * cols;
        const T* dy = dout + r * cols;
        T* dx = dinp + r * cols;
        T s = T(0);
        for (index_t j = 0; j < cols; ++j) s += dy[j];
        for (index_t j = 0; j < cols; ++j) dx[j] += dy[j] - std::exp(y[j]) * s;
    }
}

}  // namespace llmblocks::kernels
