// llmblocks/kernels/gemm.hpp — general matrix products, the kernel behind every
// linear layer, attention product and LM head of GPT-2, GPT-3, PaLM and T5.
//
//   gemm:          C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C
//   gemm_batched:  the same for `batch` independent products at fixed strides
//   gemv:          y (N) = alpha * x (K) * op(W) (K, N) + beta * y, one row:
//                  the decoding step x·W (or x·Wᵀ for PyTorch's [out, in] layout)
//
// All matrices are row-major with leading dimensions (BLAS conventions, as
// cblas with CblasRowMajor): op(A) is A (M x K, lda) or, when trans_a, the
// transpose of A (K x M, lda); op(B) is B (K x N, ldb) or, when trans_b, the
// transpose of B (N x K, ldb). beta == 0 means C is not read, so NaN or
// garbage in C is overwritten; alpha == 0 or K == 0 means A and B are not read.
//
// Each has a `_reference` version with the same signature: the plain loops
// that define the result, which the tests compare the fast path against.
//
// The fast path (gemm_microkernel.hpp) packs the operands into cache-sized
// panels and runs a register-blocked FMA micro-kernel (Goto & van de Geijn
// 2008; BLIS). For wide C the threads take column slabs of C from an atomic
// counter (a thread the OS parks holds the call up by one slab at most, not by
// its whole share), each packing its block of op(A) once per call and its own
// B panels into thread-local scratch kept between calls; tall, narrow C is
// split by rows. One-row products (M == 1, and N == 1 by symmetry) are bound
// by the bandwidth of reading the weight once, so they go to the streaming
// GEMV kernels instead, threaded over the output.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/gemm_microkernel.hpp"
#include "llmblocks/kernels/simd.hpp"

namespace llmblocks::kernels {

namespace gemm_detail {

inline const char* yes_no(bool b) { return b ? "true" : "false"; }

// Validates the arguments of gemm / gemm_batched (op names the caller); the
// pointers may be null when nothing is read or written (batch == 0 included).
template <class T>
inline void check_gemm(const char* op, bool trans_a, bool trans_b, index_t M, index_t N, index_t K, const T* A,
                       index_t lda, const T* B, index_t ldb, const T* C, index_t ldc, index_t batch = 1) {
    LLMBLOCKS_CHECK(M >= 0 && N >= 0 && K >= 0, op, ": negative size: M = ", M, ", N = ", N, ", K = ", K);
    const Shape a_shape = trans_a ? Shape{K, M} : Shape{M, K};
    const Shape b_shape = trans_b ? Shape{N, K} : Shape{K, N};
    const index_t a_min = std::max<index_t>(1, a_shape[1]);
    const index_t b_min = std::max<index_t>(1, b_shape[1]);
    const index_t c_min = std::max<index_t>(1, N);
    LLMBLOCKS_CHECK(lda >= a_min, op, ": lda = ", lda, " is too small for A ", a_shape, " (trans_a = ",
                    yes_no(trans_a), ", M = ", M, ", N = ", N, ", K = ", K, "): need lda >= ", a_min);
    LLMBLOCKS_CHECK(ldb >= b_min, op, ": ldb = ", ldb, " is too small for B ", b_shape, " (trans_b = ",
                    yes_no(trans_b), ", M = ", M, ", N = ", N, ", K = ", K, "): need ldb >= ", b_min);
    LLMBLOCKS_CHECK(ldc >= c_min, op, ": ldc = ", ldc, " is too small for C ", Shape{M, N}, " (M = ", M,
                    ", N = ", N, ", K = ", K, "): need ldc >= ", c_min);
    const bool reads_ab = M > 0 && N > 0 && K > 0 && batch > 0;
    LLMBLOCKS_CHECK(!reads_ab || (A != nullptr && B != nullptr), op, ": null A or B for A ", a_shape, " and B ",
                    b_shape, " (M = ", M, ", N = ", N, ", K = ", K, ")");
    LLMBLOCKS_CHECK(M == 0 || N == 0 || batch == 0 || C != nullptr, op, ": null C for C ", Shape{M, N}, " (M = ", M, ", N = ", N,
                    ", K = ", K, ")");
}

template <class T>
inline void check_gemv(bool trans_w, index_t N, index_t K, const T* x, index_t incx, const T* W, index_t ldw,
                       const T* y, index_t incy) {
    LLMBLOCKS_CHECK(N >= 0 && K >= 0, "gemv: negative size: N = ", N, ", K = ", K);
    LLMBLOCKS_CHECK(incx >= 1 && incy >= 1, "gemv: increments must be >= 1, got incx = ", incx, ", incy = ", incy,
                    " (N = ", N, ", K = ", K, ")");
    const Shape w_shape = trans_w ? Shape{N, K} : Shape{K, N};
    const index_t w_min = std::max<index_t>(1, w_shape[1]);
    LLMBLOCKS_CHECK(ldw >= w_min, "gemv: ldw = ", ldw, " is too small for W ", w_shape, " (trans_w = ",
                    yes_no(trans_w), ", N = ", N, ", K = ", K, "): need ldw >= ", w_min);
    LLMBLOCKS_CHECK(N == 0 || K == 0 || (x != nullptr && W != nullptr), "gemv: null x or W for W ", w_shape);
    LLMBLOCKS_CHECK(N == 0 || y != nullptr, "gemv: null y for N = ", N);
}

// C = beta * C over M x N (C not read when beta == 0).
template <class T>
inline void scale_c(index_t M, index_t N, T beta, T* C, index_t ldc) {
    for (index_t i = 0; i < M; ++i) {
        T* c = C + i * ldc;
        if (beta == T(0)) {
            std::fill(c, c + N, T(0));
        } else if (beta != T(1)) {
            for (index_t j = 0; j < N; ++j) c[j] *= beta;
        }
    }
}

// Multiply-adds a thread should get at least, so that threads pay off.
inline constexpr index_t kMinWorkPerThread = index_t(1) << 20;

// Column slabs per thread (per block of MC rows) that the threaded GEMM hands
// out through an atomic counter: more slabs balance better; each costs a pass
// over the thread's packed A block.
inline constexpr index_t kSlabsPerThread = 4;

// y[n0:n1] = alpha * sum_k x[k] W[k, n] + beta * y, W is K x N (ldw), x and y contiguous.
// Streams 4 rows of W at a time over a tile of y kept in L1, so the hardware
// prefetcher sees a few long sequential streams.
template <class T>
inline void gemv_rows_kernel(index_t n0, index_t n1, index_t K, T alpha, const T* x, const T* W, index_t ldw,
                             T beta, T* y) {
    using Batch = simd::batch<T>;
    constexpr index_t Wd = simd::width<T>;
    constexpr index_t kTile = 8192 / static_cast<index_t>(sizeof(T));
    alignas(64) T acc[kTile];
    for (index_t t0 = n0; t0 < n1; t0 += kTile) {
        const index_t len = std::min(kTile, n1 - t0);
        const index_t vec_len = len / Wd * Wd;
        std::fill(acc, acc + len, T(0));
        index_t k = 0;
        for (; k + 4 <= K; k += 4) {
            const T* w0 = W + k * ldw + t0;
            const T* w1 = w0 + ldw;
            const T* w2 = w1 + ldw;
            const T* w3 = w2 + ldw;
            const Batch x0(x[k]), x1(x[k + 1]), x2(x[k + 2]), x3(x[k + 3]);
            for (index_t j = 0; j < vec_len; j += Wd) {
                Batch a = Batch::load_aligned(acc + j);
                a = xsimd::fma(x0, simd::load(w0 + j), a);
                a = xsimd::fma(x1, simd::load(w1 + j), a);
                a = xsimd::fma(x2, simd::load(w2 + j), a);
                a = xsimd::fma(x3, simd::load(w3 + j), a);
                a.store_aligned(acc + j);
            }
            for (index_t j = vec_len; j < len; ++j) {
                acc[j] += x[k] * w0[j] + x[k + 1] * w1[j] + x[k + 2] * w2[j] + x[k + 3] * w3[j];
            }
        }
        for (; k < K; ++k) {
            const T* w0 = W + k * ldw + t0;
            const Batch x0(x[k]);
            for (index_t j = 0; j < vec_len; j += Wd) {
                xsimd::fma(x0, simd::load(w0 + j), Batch::load_aligned(acc + j)).store_aligned(acc + j);
            }
            for (index_t j = vec_len; j < len; ++j) acc[j] += x[k] * w0[j];
        }
        T* out = y + t0;
        if (beta == T(0)) {
            for (index_t j = 0; j < len; ++j) out[j] = alpha * acc[j];
        } else {
            for (index_t j = 0; j < len; ++j) out[j] = alpha * acc[j] + beta * out[j];
        }
    }
}

// Sum of the lanes of v (through memory: one call per dot product).
template <class T>
inline T lane_sum(const simd::batch<T>& v) {
    alignas(64) T lanes[simd::width<T>];
    v.store_aligned(lanes);
    T s = T(0);
    for (index_t i = 0; i < simd::width<T>; ++i) s += lanes[i];
    return s;
}

// y[n0:n1] = alpha * sum_k W[n, k] x[k] + beta * y, W is N x K (ldw): one dot
// product per row, 4 rows at a time sharing each load of x.
template <class T>
inline void gemv_dots_kernel(index_t n0, index_t n1, index_t K, T alpha, const T* x, const T* W, index_t ldw,
                             T beta, T* y) {
    using Batch = simd::batch<T>;
    constexpr index_t Wd = simd::width<T>;
    const index_t vec_k = K / Wd * Wd;
    auto finish = [&](index_t n, T dot) { y[n] = beta == T(0) ? alpha * dot : alpha * dot + beta * y[n]; };
    index_t n = n0;
    for (; n + 4 <= n1; n += 4) {
        const T* w0 = W + n * ldw;
        const T* w1 = w0 + ldw;
        const T* w2 = w1 + ldw;
        const T* w3 = w2 + ldw;
        Batch s0(T(0)), s1(T(0)), s2(T(0)), s3(T(0));
        for (index_t k = 0; k < vec_k; k += Wd) {
            const Batch xv = simd::load(x + k);
            s0 = xsimd::fma(simd::load(w0 + k), xv, s0);
            s1 = xsimd::fma(simd::load(w1 + k), xv, s1);
            s2 = xsimd::fma(simd::load(w2 + k), xv, s2);
            s3 = xsimd::fma(simd::load(w3 + k), xv, s3);
        }
        T d0 = lane_sum(s0), d1 = lane_sum(s1), d2 = lane_sum(s2), d3 = lane_sum(s3);
        for (index_t k = vec_k; k < K; ++k) {
            d0 += w0[k] * x[k];
            d1 += w1[k] * x[k];
            d2 += w2[k] * x[k];
            d3 += w3[k] * x[k];
        }
        finish(n, d0);
        finish(n + 1, d1);
        finish(n + 2, d2);
        finish(n + 3, d3);
    }
    for (; n < n1; ++n) {
        const T* w0 = W + n * ldw;
        Batch s0(T(0));
        for (index_t k = 0; k < vec_k; k += Wd) s0 = xsimd::fma(simd::load(w0 + k), simd::load(x + k), s0);
        T d0 = lane_sum(s0);
        for (index_t k = vec_k; k < K; ++k) d0 += w0[k] * x[k];
        finish(n, d0);
    }
}

// gemv without argument checks.
template <class T>
inline void gemv_unchecked(bool trans_w, index_t N, index_t K, T alpha, const T* x, index_t incx, const T* W,
                           index_t ldw, T beta, T* y, index_t incy) {
    if (N == 0) return;
    if (K == 0 || alpha == T(0)) {
        for (index_t n = 0; n < N; ++n) y[n * incy] = beta == T(0) ? T(0) : beta * y[n * incy];
        return;
    }
    // Strided vectors go through contiguous scratch of the calling thread.
    T* buffer = (incx != 1 || incy != 1) ? scratch<T>(2, K + N) : nullptr;
    const T* xs = x;
    if (incx != 1) {
        for (index_t k = 0; k < K; ++k) buffer[k] = x[k * incx];
        xs = buffer;
    }
    T* ys = y;
    if (incy != 1) {
        ys = buffer + K;
        if (beta != T(0)) {
            for (index_t n = 0; n < N; ++n) ys[n] = y[n * incy];
        }
    }
    // Units of 4 vectors (rows kernel) or 4 rows (dots kernel) per thread chunk.
    // (Smaller chunks from an atomic counter, as in the GEMM, were slower on
    // 1 x 768 x 2304 in the runs of docs/performance.md.)
    const index_t unit = trans_w ? 4 : 4 * simd::width<T>;
    const index_t units = (N + unit - 1) / unit;
    const index_t grain = std::max<index_t>(1, (kMinWorkPerThread / 8) / (K * unit));
    parallel_for(0, units, grain, [&](index_t lo, index_t hi) {
        const index_t n0 = lo * unit;
        const index_t n1 = std::min(N, hi * unit);
        if (trans_w) {
            gemv_dots_kernel(n0, n1, K, alpha, xs, W, ldw, beta, ys);
        } else {
            gemv_rows_kernel(n0, n1, K, alpha, xs, W, ldw, beta, ys);
        }
    });
    if (incy != 1) {
        for (index_t n = 0; n < N; ++n) y[n * incy] = ys[n];
    }
}

// Largest packed A (MC rows x all of K) a thread keeps for all its slabs:
// 4 MiB (256 x 3072 floats); beyond that it repacks per slab.
template <class T>
inline constexpr index_t kMaxCachedA = (index_t(4) << 20) / static_cast<index_t>(sizeof(T));

// The blocked product on all threads, with M, N, K > 0 and alpha != 0.
// Wide C (N >= M): for each block of MC rows, the columns are cut into slabs
// of whole panel groups that the threads take from a shared atomic counter,
// so a thread the scheduler parks holds the call up by at most the slab it is
// on: the other one takes the remaining slabs. Each thread packs the MC x K
// block of op(A) once (into its scratch, kept across its slabs when it fits
// kMaxCachedA) and its own B panels. Each element of C is summed in the same
// order whichever thread computes it. Tall, narrow C: the threads split the
// rows in whole MR tiles instead.
template <class T, int MR, int NV>
inline void gemm_threaded(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A,
                          index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc, Blocking blk) {
    constexpr index_t NR = NV * simd::width<T>;
    constexpr index_t kGroup = std::max<index_t>(1, kPanelGroupColumns / NR) * NR;
    const index_t row_tiles = (M + MR - 1) / MR;
    const int threads_wanted = in_parallel_region() ? 1 : get_num_threads();
    const index_t max_threads = std::max<index_t>(1, M * N * K / kMinWorkPerThread);
    const int threads = static_cast<int>(std::min<index_t>(threads_wanted, max_threads));
    if (N >= M || row_tiles < threads) {
        const Blocking b = product_blocking<T, MR>(M, K, blk);
        const index_t mc_max = (std::min(b.mc, M) + MR - 1) / MR * MR;
        const bool cache_a = mc_max * K <= kMaxCachedA<T>;
        const index_t slab = threads <= 1 ? N
                                          : std::max(kGroup, ((N + threads * kSlabsPerThread - 1) /
                                                              (threads * kSlabsPerThread) + kGroup - 1) /
                                                                 kGroup * kGroup);
        const index_t slabs = (N + slab - 1) / slab;
        const index_t row_blocks = (M + b.mc - 1) / b.mc;
        std::vector<std::atomic<index_t>> next(static_cast<std::size_t>(row_blocks));
        for (auto& n : next) n.store(0, std::memory_order_relaxed);
        parallel_for(0, threads, 1, [&](index_t, index_t) {
            T* packed_a = scratch<T>(0, mc_max * (cache_a ? K : b.kc));
            for (index_t rb = 0; rb < row_blocks; ++rb) {
                const index_t ic = rb * b.mc;
                const index_t mc = std::min(b.mc, M - ic);
                bool packed = false;
                for (index_t s = next[rb].fetch_add(1); s < slabs; s = next[rb].fetch_add(1)) {
                    const index_t j0 = s * slab;
                    const index_t n = std::min(slab, N - j0);
                    for (index_t pc = 0; pc < K; pc += b.kc) {
                        const index_t kc = std::min(b.kc, K - pc);
                        T* a = cache_a ? packed_a + mc_max * pc : packed_a;
                        if (!cache_a || !packed) {
                            pack_a<T, MR>(trans_a, mc, kc, trans_a ? A + pc * lda + ic : A + ic * lda + pc, lda, a);
                        }
                        const T* b_block = trans_b ? B + j0 * ldb + pc : B + pc * ldb + j0;
                        multiply_packed_a<T, MR, NV>(trans_b, mc, n, kc, alpha, a, b_block, ldb,
                                                     pc == 0 ? beta : T(1), C + ic * ldc + j0, ldc);
                    }
                    packed = true;
                }
            }
        });
    } else {
        const index_t grain = std::max<index_t>(1, kMinWorkPerThread / (N * K * MR));
        parallel_for(0, row_tiles, grain, [&](index_t lo, index_t hi) {
            const index_t i0 = lo * MR;
            const index_t i1 = std::min(M, hi * MR);
            gemm_blocked<T, MR, NV>(trans_a, trans_b, i1 - i0, N, K, alpha, trans_a ? A + i0 : A + i0 * lda,
                                    lda, B, ldb, beta, C + i0 * ldc, ldc, blk);
        });
    }
}

// gemm without argument checks.
template <class T>
inline void gemm_unchecked(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A,
                           index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc) {
    if (M == 0 || N == 0) return;
    if (K == 0 || alpha == T(0)) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    if (M == 1) {  // C row = x · op(B): x is the row of op(A)
        gemv_unchecked(trans_b, N, K, alpha, A, trans_a ? lda : index_t(1), B, ldb, beta, C, index_t(1));
        return;
    }
    if (N == 1) {  // C column = op(A) · b, i.e. Cᵀ = bᵀ · op(A)ᵀ
        gemv_unchecked(!trans_a, M, K, alpha, B, trans_b ? index_t(1) : ldb, A, lda, beta, C, ldc);
        return;
    }
    using Tile = TileShape<T>;
    gemm_threaded<T, Tile::mr, Tile::nv>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                                         default_blocking<T>());
}

}  // namespace gemm_detail

// C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C, row-major.
// A: (M, K) with leading dim lda, or (K, M) when trans_a.
// B: (K, N) with leading dim ldb, or (N, K) when trans_b.
// C: (M, N) with leading dim ldc; not read when beta == 0.
template <class T>
void gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A, index_t lda, const T* B,
          index_t ldb, T beta, T* C, index_t ldc) {
    static_assert(std::is_floating_point_v<T>, "gemm: T must be float or double");
    gemm_detail::check_gemm("gemm", trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
    gemm_detail::gemm_unchecked(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// The definition: C[i, j] = alpha * sum_k op(A)[i, k] op(B)[k, j] + beta * C[i, j],
// summed in T in order k = 0 .. K-1.
template <class T>
void gemm_reference(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A, index_t lda,
                    const T* B, index_t ldb, T beta, T* C, index_t ldc) {
    gemm_detail::check_gemm("gemm", trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
    for (index_t i = 0; i < M; ++i) {
        for (index_t j = 0; j < N; ++j) {
            T sum = T(0);
            if (alpha != T(0)) {
                for (index_t k = 0; k < K; ++k) {
                    const T a = trans_a ? A[k * lda + i] : A[i * lda + k];
                    const T b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                    sum += a * b;
                }
            }
            T& c = C[i * ldc + j];
            c = beta == T(0) ? alpha * sum : alpha * sum + beta * c;
        }
    }
}

// `batch` independent products: matrix i uses A + i*stride_a, B + i*stride_b,
// C + i*stride_c. A stride of 0 shares one A or B across the batch; the C
// matrices must not overlap. Small products run one per thread, large ones
// one after the other with threaded gemm.
template <class T>
void gemm_batched(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A, index_t lda,
                  index_t stride_a, const T* B, index_t ldb, index_t stride_b, T beta, T* C, index_t ldc,
                  index_t stride_c, index_t batch) {
    static_assert(std::is_floating_point_v<T>, "gemm_batched: T must be float or double");
    gemm_detail::check_gemm("gemm_batched", trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, batch);
    LLMBLOCKS_CHECK(batch >= 0, "gemm_batched: negative batch ", batch, " (M = ", M, ", N = ", N, ", K = ", K, ")");
    LLMBLOCKS_CHECK(stride_a >= 0 && stride_b >= 0 && stride_c >= 0, "gemm_batched: negative stride: stride_a = ",
                    stride_a, ", stride_b = ", stride_b, ", stride_c = ", stride_c);
    if (batch == 0 || M == 0 || N == 0) return;
    const index_t c_extent = (M - 1) * ldc + N;
    LLMBLOCKS_CHECK(batch == 1 || stride_c >= c_extent, "gemm_batched: stride_c = ", stride_c,
                    " makes the C matrices ", Shape{M, N}, " (ldc = ", ldc, ") overlap: need stride_c >= ", c_extent);
    auto one = [&](index_t i) {
        gemm_detail::gemm_unchecked(trans_a, trans_b, M, N, K, alpha, A + i * stride_a, lda, B + i * stride_b, ldb,
                                    beta, C + i * stride_c, ldc);
    };
    const index_t work = M * N * K;
    if (batch >= get_num_threads() && work < (index_t(1) << 24)) {
        parallel_for(0, batch, 1, [&](index_t lo, index_t hi) {
            for (index_t i = lo; i < hi; ++i) one(i);
        });
    } else {
        for (index_t i = 0; i < batch; ++i) one(i);
    }
}

// y (N) = alpha * x (K) · op(W) (K, N) + beta * y, the one-row product of decoding.
// W: (K, N) with leading dim ldw (x·W), or (N, K) when trans_w (x·Wᵀ, PyTorch's
// Linear layout). x has K elements at stride incx, y has N at stride incy
// (not read when beta == 0). Threaded over the outputs.
template <class T>
void gemv(bool trans_w, index_t N, index_t K, T alpha, const T* x, index_t incx, const T* W, index_t ldw, T beta,
          T* y, index_t incy) {
    static_assert(std::is_floating_point_v<T>, "gemv: T must be float or double");
    gemm_detail::check_gemv(trans_w, N, K, x, incx, W, ldw, y, incy);
    gemm_detail::gemv_unchecked(trans_w, N, K, alpha, x, incx, W, ldw, beta, y, incy);
}

// The definition: y[n] = alpha * sum_k x[k] op(W)[k, n] + beta * y[n], summed in T.
template <class T>
void gemv_reference(bool trans_w, index_t N, index_t K, T alpha, const T* x, index_t incx, const T* W, index_t ldw,
                    T beta, T* y, index_t incy) {
    gemm_detail::check_gemv(trans_w, N, K, x, incx, W, ldw, y, incy);
    for (index_t n = 0; n < N; ++n) {
        T sum = T(0);
        if (alpha != T(0)) {
            for (index_t k = 0; k < K; ++k) sum += x[k * incx] * (trans_w ? W[n * ldw + k] : W[k * ldw + n]);
        }
        T& out = y[n * incy];
        out = beta == T(0) ? alpha * sum : alpha * sum + beta * out;
    }
}

}  // namespace llmblocks::kernels
