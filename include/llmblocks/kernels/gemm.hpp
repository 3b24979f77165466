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
// The fast path (gemm_microkernel.hpp) packs op(B), and op(A) when A is
// transposed, into cache-sized panels and runs a register-blocked FMA
// micro-kernel (Goto & van de Geijn 2008; BLIS); a non-transposed A (x·W and
// x·Wᵀ, every forward product) is read in place. For wide C the threads take
// column slabs of C from an atomic counter (a thread the OS parks holds the
// call up by one slab at most, not by its whole share); a transposed A they
// pack together, once per call, into one shared buffer, and each packs the B
// panels of its slabs into thread-local scratch kept between calls; tall,
// narrow C is split by rows. One-row products
// (M == 1, and N == 1 by symmetry) are bound by the bandwidth of reading the
// weight once, so they go to the streaming GEMV kernels instead, whose chunks
// of W the threads also take from an atomic counter.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
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

// Rows of op(A) (in MR-row panels) that one thread packs at a time when the
// threads share one packed op(A), and the largest op(A) they share: 16 MiB
// (e.g. 1024 x 3072 floats); beyond that each thread packs its own blocks.
inline constexpr index_t kSharedAPanels = 8;
template <class T>
inline constexpr index_t kMaxSharedA = (index_t(16) << 20) / static_cast<index_t>(sizeof(T));

// Columns of y (16 KB of them) that gemv_rows_kernel keeps in L1 per pass.
template <class T>
inline constexpr index_t kGemvTile = 16384 / static_cast<index_t>(sizeof(T));

// y[n0:n1] = alpha * sum_{k0 <= k < k1} x[k] W[k, n] + beta * y, W is K x N
// (ldw), x and y contiguous. Streams kRows rows of W at a time over a tile of
// y kept in L1 (one load and one store of the tile per kRows FMAs), so the
// hardware prefetcher sees a few long sequential streams. kRows is 16 with 32
// vector registers (the 16 broadcasts of x stay in registers), 8 otherwise;
// leftover rows go 8, then 1, at a time. On 1 x 768 x 50257, where W streams
// from memory at 42-50 GB/s, 16 rows measured 1.4-2.6% faster than 8 in four
// paired runs of the kernel alone, and within noise in bench_gemm.
template <class T>
LLMBLOCKS_FLATTEN inline void gemv_rows_kernel(index_t n0, index_t n1, index_t k0, index_t k1, T alpha,
                                               const T* x, const T* W, index_t ldw, T beta, T* y) {
    using Batch = simd::batch<T>;
    constexpr index_t Wd = simd::width<T>;
    constexpr int kRows = simd::width<T> * static_cast<index_t>(sizeof(T)) >= 64 ? 16 : 8;
    constexpr index_t kTile = kGemvTile<T>;
    alignas(64) T acc[kTile];
    // acc[0:len] += sum over rows k .. k+R-1 of x[k] W[k, t0:t0+len].
    auto rows = [&]<int R>(std::integral_constant<int, R>, index_t k, index_t t0, index_t len) {
        const index_t vec_len = len / Wd * Wd;
        const T* w = W + k * ldw + t0;
        Batch xk[R];
        static_for<R>([&](auto r) { xk[r] = Batch(x[k + r]); });
        for (index_t j = 0; j < vec_len; j += Wd) {
            Batch a = Batch::load_aligned(acc + j);
            static_for<R>([&](auto r) { a = xsimd::fma(xk[r], simd::load(w + r * ldw + j), a); });
            a.store_aligned(acc + j);
        }
        for (index_t j = vec_len; j < len; ++j) {
            T a = acc[j];
            for (int r = 0; r < R; ++r) a += x[k + r] * w[r * ldw + j];
            acc[j] = a;
        }
    };
    for (index_t t0 = n0; t0 < n1; t0 += kTile) {
        const index_t len = std::min(kTile, n1 - t0);
        std::fill(acc, acc + len, T(0));
        index_t k = k0;
        for (; k + kRows <= k1; k += kRows) rows(std::integral_constant<int, kRows>{}, k, t0, len);
        if constexpr (kRows > 8) {
            for (; k + 8 <= k1; k += 8) rows(std::integral_constant<int, 8>{}, k, t0, len);
        }
        for (; k < k1; ++k) rows(std::integral_constant<int, 1>{}, k, t0, len);
        T* out = y + t0;
        if (beta == T(0)) {
            for (index_t j = 0; j < len; ++j) out[j] = alpha * acc[j];
        } else {
            for (index_t j = 0; j < len; ++j) out[j] = alpha * acc[j] + beta * out[j];
        }
    }
}

// y[n0:n1] = alpha * sum_k W[n, k] x[k] + beta * y, W is N x K (ldw): one dot
// product per row, simd::width<T> rows at a time (one accumulator each, all
// sharing each load of x), their lanes summed at the end by one in-register
// transpose and width<T> - 1 vector adds (xsimd 8.1's haddp, which would do
// the same, returns the AVX-512 float lanes out of order).
template <class T>
LLMBLOCKS_FLATTEN inline void gemv_dots_kernel(index_t n0, index_t n1, index_t K, T alpha, const T* x,
                                               const T* W, index_t ldw, T beta, T* y) {
    using Batch = simd::batch<T>;
    constexpr index_t Wd = simd::width<T>;
    const index_t vec_k = K / Wd * Wd;
    auto finish = [&](index_t n, T dot) { y[n] = beta == T(0) ? alpha * dot : alpha * dot + beta * y[n]; };
    index_t n = n0;
    for (; n + Wd <= n1; n += Wd) {
        const T* w = W + n * ldw;
        Batch s[Wd];
        static_for<static_cast<int>(Wd)>([&](auto r) { s[r] = Batch(T(0)); });
        for (index_t k = 0; k < vec_k; k += Wd) {
            const Batch xv = simd::load(x + k);
            static_for<static_cast<int>(Wd)>([&](auto r) { s[r] = xsimd::fma(simd::load(w + r * ldw + k), xv, s[r]); });
        }
        // Lane sums of the Wd accumulators: transpose them (row r of `lanes`
        // holds lane r of every accumulator) and add the rows.
        alignas(64) T sums[Wd * Wd], lanes[Wd * Wd];
        static_for<static_cast<int>(Wd)>([&](auto r) { s[r].store_aligned(sums + r * Wd); });
        transpose_block(sums, Wd, lanes, Wd);
        Batch total = Batch::load_aligned(lanes);
        for (index_t r = 1; r < Wd; ++r) total += Batch::load_aligned(lanes + r * Wd);
        alignas(64) T dots[Wd];
        total.store_aligned(dots);
        for (index_t r = 0; r < Wd; ++r) {
            T d = dots[r];
            for (index_t k = vec_k; k < K; ++k) d += w[r * ldw + k] * x[k];
            finish(n + r, d);
        }
    }
    for (; n < n1; ++n) {
        const T* w0 = W + n * ldw;
        Batch s0(T(0));
        for (index_t k = 0; k < vec_k; k += Wd) s0 = xsimd::fma(simd::load(w0 + k), simd::load(x + k), s0);
        T d0 = xsimd::hadd(s0);
        for (index_t k = vec_k; k < K; ++k) d0 += w0[k] * x[k];
        finish(n, d0);
    }
}

// How the threads share a GEMV. The work is cut into chunks that the threads
// take from an atomic counter, so that the calling thread starts at once and a
// thread that wakes late (or that the OS parks) takes fewer chunks instead of
// holding the call up. The chunks depend on the sizes only, never on the
// number of threads, and every output is summed in the same order whichever
// thread computes it.
//  - x·W with a short output (N <= kGemvSplitKColumns): chunks of rows of W,
//    each a contiguous block of memory (one long sequential read) summed into
//    its own partial y; the partials are then added in chunk order. Split over
//    N, a thread would read a short piece of every row (1.5 KB of each 3 KB
//    row for 768 x 768), which the prefetcher streams worse.
//  - x·W with a long output: chunks of whole tiles of gemv_rows_kernel
//    (kGemvTile columns, 16 KB pieces of each row of W), so that only the
//    last chunk ends in a narrower tile. Chunks of N / 12 columns (16.7 KB)
//    for 1 x 768 x 50257 each ended in a 92-column tile that took a pass over
//    all 768 rows for 2% of the columns; tile-aligned chunks measured 0.6-3.3%
//    faster (median 2%) in four runs of 300-400 alternating call pairs.
//  - x·Wᵀ: chunks of rows of W (= outputs), contiguous blocks again.
template <class T>
inline constexpr index_t kGemvSplitKColumns = 16384 / static_cast<index_t>(sizeof(T));
// Multiply-adds per chunk (about 40 us on one core here, W streamed from L3),
// and the most partial outputs a split-K product keeps.
inline constexpr index_t kGemvChunkWork = index_t(1) << 18;
inline constexpr index_t kGemvMaxPartials = 16;

// Runs fn(chunk) for chunk = 0 .. chunks-1 on up to get_num_threads()
// threads, which take the chunks from a shared counter; serially when the
// whole product is small.
template <class Fn>
inline void run_chunks(index_t chunks, index_t work, Fn&& fn) {
    const index_t useful = std::max<index_t>(1, work / (kMinWorkPerThread / 8));
    const index_t threads = in_parallel_region() ? 1 : std::min<index_t>({get_num_threads(), chunks, useful});
    if (threads <= 1) {
        for (index_t c = 0; c < chunks; ++c) fn(c);
        return;
    }
    std::atomic<index_t> next{0};
    parallel_for(0, threads, 1, [&](index_t, index_t) {
        for (index_t c = next.fetch_add(1); c < chunks; c = next.fetch_add(1)) fn(c);
    });
}

// gemv without argument checks.
template <class T>
inline void gemv_unchecked(bool trans_w, index_t N, index_t K, T alpha, const T* x, index_t incx, const T* W,
                           index_t ldw, T beta, T* y, index_t incy) {
    using Batch = simd::batch<T>;
    constexpr index_t Wd = simd::width<T>;
    if (N == 0) return;
    if (K == 0 || alpha == T(0)) {
        for (index_t n = 0; n < N; ++n) y[n * incy] = beta == T(0) ? T(0) : beta * y[n * incy];
        return;
    }
    const index_t work = N * K;
    const index_t even_chunks = std::max<index_t>(1, (work + kGemvChunkWork - 1) / kGemvChunkWork);
    // Split-K partials of x·W: an even number (two threads balance), rows in multiples of 8.
    const bool split_k = !trans_w && N <= kGemvSplitKColumns<T> && even_chunks > 1;
    const index_t k_chunks =
        split_k ? std::min<index_t>({kGemvMaxPartials, (even_chunks + 1) / 2 * 2, std::max<index_t>(1, K / 8)}) : 1;
    // Strided vectors and the partial sums go through scratch of the calling thread.
    const bool strided = incx != 1 || incy != 1;
    T* buffer = (strided || k_chunks > 1) ? scratch<T>(2, K + N + k_chunks * N) : nullptr;
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
    if (k_chunks > 1) {
        // Chunk c sums rows [k_begin(c), k_begin(c + 1)) of W into partial c;
        // then y = alpha * (partial 0 + ... + partial k_chunks-1) + beta * y.
        T* partial = buffer + K + N;
        auto k_begin = [&](index_t c) { return c == k_chunks ? K : (K / 8) * c / k_chunks * 8; };
        run_chunks(k_chunks, work, [&](index_t c) {
            gemv_rows_kernel(0, N, k_begin(c), k_begin(c + 1), T(1), xs, W, ldw, T(0), partial + c * N);
        });
        const index_t vec_n = N / Wd * Wd;
        const Batch va(alpha), vb(beta);
        for (index_t n = 0; n < vec_n; n += Wd) {
            Batch sum = simd::load(partial + n);
            for (index_t c = 1; c < k_chunks; ++c) sum += simd::load(partial + c * N + n);
            simd::store(ys + n, beta == T(0) ? va * sum : xsimd::fma(va, sum, vb * simd::load(ys + n)));
        }
        for (index_t n = vec_n; n < N; ++n) {
            T sum = partial[n];
            for (index_t c = 1; c < k_chunks; ++c) sum += partial[c * N + n];
            ys[n] = beta == T(0) ? alpha * sum : alpha * sum + beta * ys[n];
        }
    } else if (trans_w) {
        // Chunks of whole vectors of rows.
        const index_t groups = (N + Wd - 1) / Wd;
        const index_t chunks = std::min(groups, even_chunks);
        run_chunks(chunks, work, [&](index_t c) {
            const index_t n0 = groups * c / chunks * Wd;
            const index_t n1 = std::min(N, groups * (c + 1) / chunks * Wd);
            gemv_dots_kernel(n0, n1, K, alpha, xs, W, ldw, beta, ys);
        });
    } else {
        // Chunks of whole tiles: the first ones full, the last one the rest.
        const index_t tiles = (N + kGemvTile<T> - 1) / kGemvTile<T>;
        const index_t chunks = std::min(tiles, even_chunks);
        const index_t tiles_per_chunk = (tiles + chunks - 1) / chunks;
        const index_t chunk = tiles_per_chunk * kGemvTile<T>;
        run_chunks((N + chunk - 1) / chunk, work, [&](index_t c) {
            const index_t n0 = c * chunk;
            const index_t n1 = std::min(N, n0 + chunk);
            gemv_rows_kernel(n0, n1, index_t(0), K, alpha, xs, W, ldw, beta, ys);
        });
    }
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
// on: the other one takes the remaining slabs. A non-transposed A is read in
// place. A transposed one is packed: its MC x K blocks are
// packed once per call, by the threads together, into a shared buffer (when
// each fits kMaxCachedA and all of them kMaxSharedA; otherwise each thread
// packs its own copy, kept across its slabs or, beyond kMaxCachedA, repacked
// per slab); each thread packs its own B panels. Each element of C is summed
// in the same order whichever thread computes it. Tall, narrow C: the threads
// split the rows in whole MR tiles instead.
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
        const Blocking b = product_blocking<T, MR>(M, K, blk, trans_a);
        const index_t mc_max = (std::min(b.mc, M) + MR - 1) / MR * MR;
        // A non-transposed A is read in place; only a transposed one is packed.
        const bool cache_a = trans_a && mc_max * K <= kMaxCachedA<T>;
        const index_t slab = threads <= 1 ? N
                                          : std::max(kGroup, ((N + threads * kSlabsPerThread - 1) /
                                                              (threads * kSlabsPerThread) + kGroup - 1) /
                                                                 kGroup * kGroup);
        const index_t slabs = (N + slab - 1) / slab;
        const index_t row_blocks = (M + b.mc - 1) / b.mc;
        std::vector<std::atomic<index_t>> next(static_cast<std::size_t>(row_blocks));
        for (auto& n : next) n.store(0, std::memory_order_relaxed);
        // The threads pack op(A) together into one shared buffer (each block
        // of MC rows x all of K at rb * mc_max * K) instead of each packing
        // all of it: in chunks of kSharedAPanels MR-row panels per block of
        // rows and KC, which they claim through `state` (0: free, 1: being
        // packed, 2: packed) right before the first slab that needs them.
        const bool shared_a = trans_a && cache_a && threads > 1 && row_blocks * mc_max * K <= kMaxSharedA<T>;
        const index_t chunk_rows = kSharedAPanels * MR;
        const index_t a_chunks = (mc_max + chunk_rows - 1) / chunk_rows;
        const index_t k_blocks = (K + b.kc - 1) / b.kc;
        std::vector<std::atomic<int>> state(shared_a ? static_cast<std::size_t>(row_blocks * k_blocks * a_chunks) : 0);
        for (auto& st : state) st.store(0, std::memory_order_relaxed);
        T* shared_packed_a = shared_a ? scratch<T>(0, row_blocks * mc_max * K) : nullptr;
        auto pack_shared = [&](index_t rb, index_t mc, index_t pc, index_t kc) {
            std::atomic<int>* st = state.data() + (rb * k_blocks + pc / b.kc) * a_chunks;
            const index_t ic = rb * b.mc;
            T* dst = shared_packed_a + rb * mc_max * K + mc_max * pc;
            for (index_t q = 0; q < a_chunks; ++q) {
                const index_t r0 = q * chunk_rows;
                int expected = 0;
                if (r0 < mc && st[q].compare_exchange_strong(expected, 1, std::memory_order_acquire)) {
                    const index_t rows = std::min(chunk_rows, mc - r0);
                    pack_a<T, MR>(trans_a, rows, kc, trans_a ? A + pc * lda + ic + r0 : A + (ic + r0) * lda + pc,
                                  lda, dst + r0 * kc);
                    st[q].store(2, std::memory_order_release);
                }
            }
            for (index_t q = 0; q < a_chunks && q * chunk_rows < mc; ++q) {
                while (st[q].load(std::memory_order_acquire) != 2) std::this_thread::yield();
            }
        };
        parallel_for(0, threads, 1, [&](index_t, index_t) {
            T* packed_a = shared_a || !trans_a ? nullptr : scratch<T>(0, mc_max * (cache_a ? K : b.kc));
            for (index_t rb = 0; rb < row_blocks; ++rb) {
                const index_t ic = rb * b.mc;
                const index_t mc = std::min(b.mc, M - ic);
                if (shared_a) packed_a = shared_packed_a + rb * mc_max * K;
                bool packed = false;
                for (index_t s = next[rb].fetch_add(1); s < slabs; s = next[rb].fetch_add(1)) {
                    const index_t j0 = s * slab;
                    const index_t n = std::min(slab, N - j0);
                    for (index_t pc = 0; pc < K; pc += b.kc) {
                        const index_t kc = std::min(b.kc, K - pc);
                        const T* a = trans_a ? nullptr : A + ic * lda + pc;
                        if (trans_a) {
                            T* pa = cache_a ? packed_a + mc_max * pc : packed_a;
                            if (shared_a) {
                                if (!packed) pack_shared(rb, mc, pc, kc);
                            } else if (!cache_a || !packed) {
                                pack_a<T, MR>(true, mc, kc, A + pc * lda + ic, lda, pa);
                            }
                            a = pa;
                        }
                        const T* b_block = trans_b ? B + j0 * ldb + pc : B + pc * ldb + j0;
                        // The B this thread most likely packs next: this slab's
                        // next KC block, or the first of the slab `threads` on.
                        gemm_detail::NextBlock<T> next;
                        if (pc + kc < K) {
                            next = gemm_detail::b_region(trans_b, trans_b ? B + pc + kc : B + (pc + kc) * ldb, ldb,
                                                         std::min(b.kc, K - pc - kc), j0, std::min(kGroup, n));
                        } else if (s + threads < slabs) {
                            const index_t jn = (s + threads) * slab;
                            next = gemm_detail::b_region(trans_b, B, ldb, std::min(b.kc, K), jn,
                                                         std::min(kGroup, N - jn));
                        }
                        multiply_packed_a<T, MR, NV>(trans_b, mc, n, kc, alpha, a, trans_a ? 0 : lda, b_block, ldb,
                                                     pc == 0 ? beta : T(1), C + ic * ldc + j0, ldc, next);
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
// (not read when beta == 0). Threaded: the threads take chunks of W (see
// gemv_unchecked), and the result does not depend on their number.
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
