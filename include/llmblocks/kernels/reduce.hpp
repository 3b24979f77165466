// llmblocks/kernels/reduce.hpp — reductions of a contiguous array: sum, max and
// dot product, with their scalar references; and the single-thread row
// reductions that the softmax and norm kernels build on.
//
// Numerics: the SIMD path keeps four vector accumulators (4 * width partial sums
// in flight, which hides the add latency and also shortens the rounding chains:
// its error is usually smaller than the sequential reference's). Arrays of
// kReduceParallelMin elements or more are cut into fixed blocks of kReduceBlock
// elements; each block is reduced on its own (in parallel) and the block results
// are then summed in order. The blocks depend only on n, so the result is the
// same bit for bit whatever the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/memory.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/elementwise.hpp"
#include "llmblocks/kernels/simd.hpp"

namespace llmblocks::kernels {

// Elements per block of a threaded reduction, and the size from which it is threaded.
inline constexpr index_t kReduceBlock = index_t{1} << 14;
inline constexpr index_t kReduceParallelMin = index_t{1} << 16;
// Row kernels (softmax, norms) give each thread whole rows, at least this many
// elements' worth (an OpenMP fork/join costs about as much as 10^4 simple flops).
inline constexpr index_t kRowGrainElements = index_t{1} << 14;

namespace detail {

// Rows per parallel_for grain for rows of `cols` elements.
inline index_t row_grain(index_t cols) { return std::max<index_t>(1, kRowGrainElements / std::max<index_t>(cols, 1)); }

// Largest lane of v.
template <class T>
inline T lane_max(const simd::batch<T>& v) {
    alignas(64) T buf[simd::width<T>];
    v.store_aligned(buf);
    T m = buf[0];
    for (index_t k = 1; k < simd::width<T>; ++k) m = std::max(m, buf[k]);
    return m;
}

// sum(a[0..n)) on the calling thread, four vector accumulators.
template <class T>
inline T sum_serial(const T* a, index_t n) {
    using B = simd::batch<T>;
    constexpr index_t W = simd::width<T>;
    B acc0(T(0)), acc1(T(0)), acc2(T(0)), acc3(T(0));
    index_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        acc0 += simd::load(a + i);
        acc1 += simd::load(a + i + W);
        acc2 += simd::load(a + i + 2 * W);
        acc3 += simd::load(a + i + 3 * W);
    }
    for_each_batch<T>(i, n, [&](index_t j, const auto& lanes) { acc0 += lanes.load(a + j, T(0)); });
    return xsimd::hadd((acc0 + acc1) + (acc2 + acc3));
}

// sum(a * b) on the calling thread.
template <class T>
inline T dot_serial(const T* a, const T* b, index_t n) {
    using B = simd::batch<T>;
    constexpr index_t W = simd::width<T>;
    B acc0(T(0)), acc1(T(0)), acc2(T(0)), acc3(T(0));
    index_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        acc0 = xsimd::fma(simd::load(a + i), simd::load(b + i), acc0);
        acc1 = xsimd::fma(simd::load(a + i + W), simd::load(b + i + W), acc1);
        acc2 = xsimd::fma(simd::load(a + i + 2 * W), simd::load(b + i + 2 * W), acc2);
        acc3 = xsimd::fma(simd::load(a + i + 3 * W), simd::load(b + i + 3 * W), acc3);
    }
    for_each_batch<T>(i, n, [&](index_t j, const auto& lanes) {
        acc0 = xsimd::fma(lanes.load(a + j, T(0)), lanes.load(b + j, T(0)), acc0);
    });
    return xsimd::hadd((acc0 + acc1) + (acc2 + acc3));
}

// sum((a - m)^2) on the calling thread (LayerNorm's variance pass).
template <class T>
inline T sum_squared_deviation_serial(const T* a, index_t n, T m) {
    using B = simd::batch<T>;
    constexpr index_t W = simd::width<T>;
    const B vm(m);
    B acc0(T(0)), acc1(T(0)), acc2(T(0)), acc3(T(0));
    index_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        const B d0 = simd::load(a + i) - vm, d1 = simd::load(a + i + W) - vm;
        const B d2 = simd::load(a + i + 2 * W) - vm, d3 = simd::load(a + i + 3 * W) - vm;
        acc0 = xsimd::fma(d0, d0, acc0);
        acc1 = xsimd::fma(d1, d1, acc1);
        acc2 = xsimd::fma(d2, d2, acc2);
        acc3 = xsimd::fma(d3, d3, acc3);
    }
    for_each_batch<T>(i, n, [&](index_t j, const auto& lanes) {
        const B d = lanes.load(a + j, m) - vm;  // padding lanes hold m: d = 0
        acc0 = xsimd::fma(d, d, acc0);
    });
    return xsimd::hadd((acc0 + acc1) + (acc2 + acc3));
}

// max(a[0..n)) on the calling thread; -inf for n = 0; NaN if any element is NaN.
template <class T>
inline T max_serial(const T* a, index_t n) {
    using B = simd::batch<T>;
    constexpr index_t W = simd::width<T>;
    constexpr T lowest = -std::numeric_limits<T>::infinity();
    B m0(lowest), m1(lowest);
    // NaN lanes seen so far. (xsimd::isnan, not x != x: xsimd 8.1 compiles != to
    // an ordered compare on AVX-512, for which NaN != NaN is false.)
    typename B::batch_bool_type nan0(false), nan1(false);
    index_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
        const B x0 = simd::load(a + i), x1 = simd::load(a + i + W);
        m0 = xsimd::max(m0, x0);
        m1 = xsimd::max(m1, x1);
        nan0 = nan0 | xsimd::isnan(x0);
        nan1 = nan1 | xsimd::isnan(x1);
    }
    for_each_batch<T>(i, n, [&](index_t j, const auto& lanes) {
        const B x = lanes.load(a + j, lowest);
        m0 = xsimd::max(m0, x);
        nan0 = nan0 | xsimd::isnan(x);
    });
    if (xsimd::any(nan0 | nan1)) return std::numeric_limits<T>::quiet_NaN();
    return lane_max(xsimd::max(m0, m1));
}

// Applies `serial` to fixed blocks of kReduceBlock elements in parallel when
// n >= kReduceParallelMin and sums the block results in block order.
template <class T, class Serial>
inline T blocked_sum(index_t n, Serial serial) {
    if (n < kReduceParallelMin) return serial(index_t{0}, n);
    const index_t blocks = (n + kReduceBlock - 1) / kReduceBlock;
    AlignedBuffer<T> partial(blocks);
    T* p = partial.data();
    parallel_for(0, blocks, 1, [&](index_t lo, index_t hi) {
        for (index_t blk = lo; blk < hi; ++blk) {
            const index_t begin = blk * kReduceBlock;
            p[blk] = serial(begin, std::min(n, begin + kReduceBlock));
        }
    });
    return sum_serial(p, blocks);
}

}  // namespace detail

// sum(a); 0 for n = 0.
template <class T>
T sum(const T* a, index_t n) {
    detail::check_elementwise<T>("sum", n, a);
    return detail::blocked_sum<T>(n, [a](index_t lo, index_t hi) { return detail::sum_serial(a + lo, hi - lo); });
}
template <class T>
T sum_reference(const T* a, index_t n) {
    detail::check_elementwise<T>("sum_reference", n, a);
    T s = T(0);
    for (index_t i = 0; i < n; ++i) s += a[i];
    return s;
}

// sum(a * b); 0 for n = 0.
template <class T>
T dot(const T* a, const T* b, index_t n) {
    detail::check_elementwise<T>("dot", n, a, b);
    return detail::blocked_sum<T>(n, [a, b](index_t lo, index_t hi) { return detail::dot_serial(a + lo, b + lo, hi - lo); });
}
template <class T>
T dot_reference(const T* a, const T* b, index_t n) {
    detail::check_elementwise<T>("dot_reference", n, a, b);
    T s = T(0);
    for (index_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

// max(a); n must be > 0. NaN if any element is NaN (as torch.max).
template <class T>
T max(const T* a, index_t n) {
    detail::check_elementwise<T>("max", n, a);
    LLMBLOCKS_CHECK(n > 0, "max: empty array (n = 0) has no maximum");
    if (n < kReduceParallelMin) return detail::max_serial(a, n);
    const index_t blocks = (n + kReduceBlock - 1) / kReduceBlock;
    AlignedBuffer<T> partial(blocks);
    T* p = partial.data();
    parallel_for(0, blocks, 1, [&](index_t lo, index_t hi) {
        for (index_t blk = lo; blk < hi; ++blk) {
            const index_t begin = blk * kReduceBlock;
            p[blk] = detail::max_serial(a + begin, std::min(n, begin + kReduceBlock) - begin);
        }
    });
    return detail::max_serial(p, blocks);
}
template <class T>
T max_reference(const T* a, index_t n) {
    detail::check_elementwise<T>("max_reference", n, a);
    LLMBLOCKS_CHECK(n > 0, "max_reference: empty array (n = 0) has no maximum");
    T m = a[0];
    for (index_t i = 0; i < n; ++i) {
        if (std::isnan(a[i])) return a[i];
        m = std::max(m, a[i]);
    }
    return m;
}

}  // namespace llmblocks::kernels
