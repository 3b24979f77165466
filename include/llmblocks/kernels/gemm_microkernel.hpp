// llmblocks/kernels/gemm_microkernel.hpp — the inner machinery of the blocked
// GEMM in gemm.hpp: operand packing, the register-blocked micro-kernel and the
// cache-blocked loop nest for one thread. Every linear layer, attention
// product and LM head of GPT-2/GPT-3/PaLM/T5 ends up here.
//
// The design is the one of Goto & van de Geijn, "Anatomy of High-Performance
// Matrix Multiplication" (2008), as refined by BLIS (Van Zee & van de Geijn,
// 2015): C += op(A) op(B) is cut into KC-deep rank-KC updates; op(B) is packed
// into NR-wide column panels and a transposed op(A) into MR-tall row panels,
// so that the micro-kernel reads both with unit stride from cache. A
// non-transposed A needs no packing: the micro-kernel broadcasts from its MR
// rows in place (MR sequential streams; packing it cost ~4% of the time). The micro-kernel keeps
// an MR x NR tile of C in MR * NV registers (NR = NV * simd::width<T>) and
// performs, for each k, MR broadcasts of A, NV vector loads of B and MR * NV
// fused multiply-adds. alpha and beta are applied once, when the tile is
// written back. The loop order (gemm_blocked) differs from BLIS's; see there.
// For a non-transposed B the first tile of each panel also packs that panel
// (loads it from B's rows, stores it packed), so B gets no packing pass of
// its own.
//
// Everything is generic over simd::batch<T>: the tile shape is chosen from the
// register width at compile time (AVX-512: 32 registers, AVX2/SSE2: 16).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <utility>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/memory.hpp"
#include "llmblocks/kernels/simd.hpp"

namespace llmblocks::kernels::gemm_detail {

// Cache blocks: KC (depth of one micro-kernel call), MC (rows of op(A) packed
// together).
struct Blocking {
    index_t kc;
    index_t mc;
};

// Largest packed A block: 1 MiB, half of this CPU's L2, so that the A panels
// re-read for every B panel stay in L2.
template <class T>
inline constexpr index_t kMaxPackedA = (index_t(1) << 20) / static_cast<index_t>(sizeof(T));

// Columns of B packed together, about (one long read per row of B when it is
// not transposed), and how many rows ahead that packing prefetches.
inline constexpr index_t kPanelGroupColumns = 192;
inline constexpr index_t kPrefetchRows = 8;
// The micro-kernel that packs a panel of B as it goes reads B's rows this
// many k steps ahead (one of its k steps is short next to a miss to L3 or
// memory: 16-64 measured 3-8% faster than 8 on 256 x 3072 x 768, single thread).
inline constexpr index_t kPackPrefetchRows = 24;
// The micro-kernel prefetches the packed B panel this many k steps ahead
// (measured: 4 or 8 steps gain ~8% over none; the panel streams from L2).
inline constexpr index_t kPrefetchK = 8;

// A block of B, in B's own memory layout (rows `ld` elements apart), that the
// micro-kernels prefetch into L2 while they work on the block before it, a
// few cache lines per call, so that the next packing of B reads from L2
// rather than L3 or memory. Packing B is little work but much traffic (the
// tile that packs a panel ran 3-4 times slower than the other tiles of that
// panel); measured on 2 threads, this gained 2-3% on 1024 x 768 x 3072 and
// was within noise (+-5%) on the other issue-2 shapes.
template <class T>
struct NextBlock {
    const T* data = nullptr;  // first element; nullptr: nothing to prefetch
    index_t rows = 0;         // rows of B's memory layout
    index_t row_elems = 0;    // contiguous elements per row
    index_t ld = 0;           // elements between rows
};

// Walks the cache lines of a NextBlock, `budget` lines at a time. Addresses
// are kept as integers: the walk may step past the block's last row.
struct PrefetchCursor {
    std::uintptr_t row = 0;
    std::uintptr_t ld_bytes = 0;
    index_t lines_per_row = 0;
    index_t col = 0;       // next line in the current row
    index_t lines_left = 0;
    index_t budget = 0;    // lines the next micro-kernel call prefetches

    template <class T>
    static PrefetchCursor over(const NextBlock<T>& next) {
        PrefetchCursor c;
        if (next.data == nullptr || next.rows <= 0 || next.row_elems <= 0) return c;
        const auto first = reinterpret_cast<std::uintptr_t>(next.data);
        const auto last = first + static_cast<std::uintptr_t>(next.row_elems) * sizeof(T) - 1;
        c.row = first & ~std::uintptr_t(63);
        c.ld_bytes = static_cast<std::uintptr_t>(next.ld) * sizeof(T);
        c.lines_per_row = static_cast<index_t>((last >> 6) - (first >> 6) + 1);
        c.lines_left = next.rows * c.lines_per_row;
        return c;
    }
    // Spreads the lines evenly over `calls` micro-kernel calls.
    void spread_over(index_t calls) { budget = calls > 0 ? (lines_left + calls - 1) / calls : lines_left; }
};

template <class T>
struct TileShape {
    static constexpr index_t register_bytes = simd::width<T> * static_cast<index_t>(sizeof(T));
    // 32 vector registers with AVX-512: an 8 x 3-vector tile uses 24
    // accumulators, 3 for B and 1 broadcast (11 loads per 24 FMAs). Its 8 rows
    // divide the usual M (256, 1024: no edge tile) and each k step streams
    // 3 lines of packed B from L2 instead of 4. Against 6 x 4, timed call by
    // call in alternation (150 pairs, medians of the pairs' ratios), it was
    // 0.5-2.2% faster on the 256-row issue-2 products with N <= 3072, NN and
    // NT, on one and two threads, within 0.6% on 1024 x 768 x 3072, and 2-3%
    // slower on the 256 x 768 x 50257 / NN LM head. KC = 512 instead of 768
    // was not better with it, nor were groups of 288 columns or prefetching
    // B 12 k steps ahead. Earlier interleaved runs: 12 x 2
    // slower, 14 x 2 10-30% slower at K = 3072 (its 14 rows of A, read in place
    // 12 KB apart, share one L1 set). 16 registers (AVX2, SSE2): 6 x 2 = 12
    // accumulators (4 x 2 without FMA, which needs a temporary).
    static constexpr int mr = register_bytes >= 64 ? 8 : (register_bytes >= 32 ? 6 : 4);
    static constexpr int nv = register_bytes >= 64 ? 3 : 2;
};

// Cache blocks measured on a Xeon with AVX-512 (48 KiB L1d, 2 MiB L2 per core),
// single-threaded, interleaved runs over the issue-2 shapes: KC = 768 floats
// (a whole GPT-2 d_model; the 768 x 48 B panel sits in L2, the 8 x 768 A panel
// in L1) and MC = 256 rows (a packed 256 x 768 A block in L2) were best;
// KC 512..1024 and MC 256..512 were within noise (+-2%), MC = 128 lost 8%.
template <class T>
inline Blocking default_blocking() {
    constexpr index_t bytes = static_cast<index_t>(sizeof(T));
    return Blocking{768 * 4 / bytes, 256};
}

// Calls f(std::integral_constant<int, I>{}) for I = 0 .. N-1, unrolled.
template <int N, class F>
inline void static_for(F&& f) {
    [&]<int... I>(std::integer_sequence<int, I...>) {
        (f(std::integral_constant<int, I>{}), ...);
    }(std::make_integer_sequence<int, N>{});
}

// Splits n into parts of at most `block` (rounded up to a multiple of `unit`),
// all about equal: 768 with block 320 becomes 3 x 256 rather than 320+320+128.
inline index_t balanced_block(index_t n, index_t block, index_t unit) {
    if (n <= block) return n;
    const index_t parts = (n + block - 1) / block;
    const index_t size = (n + parts - 1) / parts;
    return (size + unit - 1) / unit * unit;
}

// Scratch of the calling thread, grown on demand and kept for the next call.
// slot 0: packed A, slot 1: packed B, slot 2: GEMV vectors.
template <class T>
inline T* scratch(int slot, index_t n) {
    thread_local AlignedBuffer<T> buffers[3];
    if (buffers[slot].size() < n) buffers[slot] = AlignedBuffer<T>(n);
    return buffers[slot].data();
}

// Transposes a W x W block (W = simd::width<T>): dst[c * ldd + r] = src[r * lds + c].
// Packing a transposed operand is the one place where GEMM needs a transpose;
// done element by element it would cost a quarter of an NT product's time.
// With GCC's generic vector extension the block goes through log2(W) rounds of
// full-width interleaves ("perfect shuffle": row 2i <- zip_lo(row i, row i + W/2),
// row 2i+1 <- zip_hi(...)), which transpose any power-of-two width; xsimd 8
// offers no width-independent interleave (its zip_lo works within 128-bit lanes).
// Other compilers take the scalar loop.
template <class T>
inline void transpose_block(const T* src, index_t lds, T* dst, index_t ldd) {
    constexpr int W = static_cast<int>(simd::width<T>);
#if defined(__GNUC__) && !defined(__clang__)
    if constexpr (W >= 2) {
        using I = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
        typedef T V __attribute__((vector_size(W * sizeof(T))));
        typedef I Mask __attribute__((vector_size(W * sizeof(T))));
        V row[W], next[W];
        for (int i = 0; i < W; ++i) std::memcpy(&row[i], src + i * lds, sizeof(V));
        Mask lo, hi;
        for (int i = 0; i < W / 2; ++i) {
            lo[2 * i] = i;
            lo[2 * i + 1] = i + W;
            hi[2 * i] = i + W / 2;
            hi[2 * i + 1] = i + W / 2 + W;
        }
        for (int round = 1; round < W; round *= 2) {
            for (int i = 0; i < W / 2; ++i) {
                next[2 * i] = __builtin_shuffle(row[i], row[i + W / 2], lo);
                next[2 * i + 1] = __builtin_shuffle(row[i], row[i + W / 2], hi);
            }
            for (int i = 0; i < W; ++i) row[i] = next[i];
        }
        for (int i = 0; i < W; ++i) std::memcpy(dst + i * ldd, &row[i], sizeof(V));
        return;
    }
#endif
    for (int r = 0; r < W; ++r) {
        for (int c = 0; c < W; ++c) dst[c * ldd + r] = src[r * lds + c];
    }
}

// Packs op(A)[0:mc, 0:kc] into ceil(mc / MR) panels of kc * MR values: panel p
// holds op(A)[p*MR + r, k] at k*MR + r. Rows past mc are zero.
// op(A)[i, k] is A[i*lda + k], or A[k*lda + i] when trans_a.
template <class T, int MR>
LLMBLOCKS_FLATTEN inline void pack_a(bool trans_a, index_t mc, index_t kc, const T* A, index_t lda, T* dst) {
    constexpr index_t W = simd::width<T>;
    index_t i0 = 0;
    if (!trans_a) {
        // L = lcm(MR, W) rows (L / MR whole panels) at a time: W x W block
        // transposes turn W columns of those rows into W rows of L values
        // (row kk holds op(A)[i0 .. i0+L, k0+kk]), each of which is L / MR
        // MR-long runs, one per panel. Vector loads instead of MR strided
        // scalar reads per k (MR = 6, the AVX2 tile, does not divide W).
        constexpr index_t L = std::lcm(static_cast<index_t>(MR), W);
        constexpr index_t P = L / MR;
        alignas(64) T block[W * L];
        for (; i0 + L <= mc; i0 += L, dst += P * kc * MR) {
            index_t k0 = 0;
            for (; k0 + W <= kc; k0 += W) {
                for (index_t b = 0; b < L / W; ++b) {
                    transpose_block(A + (i0 + b * W) * lda + k0, lda, block + b * W, L);
                }
                for (index_t kk = 0; kk < W; ++kk) {
                    static_for<static_cast<int>(P)>([&](auto p) {
                        std::memcpy(dst + p * kc * MR + (k0 + kk) * MR, block + kk * L + p * MR, MR * sizeof(T));
                    });
                }
            }
            for (; k0 < kc; ++k0) {
                for (index_t p = 0; p < P; ++p) {
                    for (index_t r = 0; r < MR; ++r) dst[p * kc * MR + k0 * MR + r] = A[(i0 + p * MR + r) * lda + k0];
                }
            }
        }
    }
    for (; i0 < mc; i0 += MR, dst += kc * MR) {
        const index_t rows = std::min<index_t>(MR, mc - i0);
        if (!trans_a && rows == MR) {
            const T* src[MR];
            for (int r = 0; r < MR; ++r) src[r] = A + (i0 + r) * lda;
            for (index_t k = 0; k < kc; ++k) {
#pragma GCC unroll 16
                for (int r = 0; r < MR; ++r) dst[k * MR + r] = src[r][k];
            }
        } else if (!trans_a) {
            for (index_t k = 0; k < kc; ++k) {
                for (index_t r = 0; r < MR; ++r) dst[k * MR + r] = r < rows ? A[(i0 + r) * lda + k] : T(0);
            }
        } else if (rows == MR) {
            for (index_t k = 0; k < kc; ++k) std::memcpy(dst + k * MR, A + k * lda + i0, MR * sizeof(T));
        } else {
            for (index_t k = 0; k < kc; ++k) {
                const T* src = A + k * lda + i0;
                for (index_t r = 0; r < MR; ++r) dst[k * MR + r] = r < rows ? src[r] : T(0);
            }
        }
    }
}

// Packs op(B)[0:kc, 0:nc] into ceil(nc / NR) panels of kc * NR values: panel q
// holds op(B)[k, q*NR + j] at k*NR + j. Columns past nc are zero.
// op(B)[k, j] is B[k*ldb + j], or B[j*ldb + k] when trans_b.
template <class T, int NV>
LLMBLOCKS_FLATTEN inline void pack_b(bool trans_b, index_t kc, index_t nc, const T* B, index_t ldb, T* dst) {
    constexpr index_t W = simd::width<T>;
    constexpr index_t NR = NV * W;
    if (!trans_b) {
        // Row k of op(B) is contiguous: copy it across all the full panels at
        // once, so that each row is read as one long run, and prefetch the row
        // a few k ahead (rows are ldb apart, too far for the hardware prefetcher).
        const index_t full = nc / NR;
        for (index_t k = 0; k < kc; ++k) {
            const T* src = B + k * ldb;
#if defined(__GNUC__)
            if (k + kPrefetchRows < kc) {
                const T* ahead = src + kPrefetchRows * ldb;
                for (index_t j = 0; j < nc; j += 64 / static_cast<index_t>(sizeof(T))) __builtin_prefetch(ahead + j);
            }
#endif
            for (index_t q = 0; q < full; ++q) {
                static_for<NV>([&](auto v) {
                    simd::load(src + q * NR + v * W).store_aligned(dst + q * kc * NR + k * NR + v * W);
                });
            }
            if (full * NR < nc) {
                T* edge = dst + full * kc * NR + k * NR;
                const index_t cols = nc - full * NR;
                for (index_t j = 0; j < NR; ++j) edge[j] = j < cols ? src[full * NR + j] : T(0);
            }
        }
        return;
    }
    for (index_t j0 = 0; j0 < nc; j0 += NR, dst += kc * NR) {
        const index_t cols = std::min<index_t>(NR, nc - j0);
        if (cols == NR) {
            // A transpose: row j of B becomes column j of the panel, W x W at a time.
            index_t k0 = 0;
            for (; k0 + W <= kc; k0 += W) {
                for (index_t v = 0; v < NV; ++v) {
                    transpose_block(B + (j0 + v * W) * ldb + k0, ldb, dst + k0 * NR + v * W, NR);
                }
            }
            for (; k0 < kc; ++k0) {
                for (index_t j = 0; j < NR; ++j) dst[k0 * NR + j] = B[(j0 + j) * ldb + k0];
            }
        } else {
            // Edge panel: blocks of 16 k keep the touched lines of the panel in L1.
            for (index_t k0 = 0; k0 < kc; k0 += 16) {
                const index_t k1 = std::min<index_t>(kc, k0 + 16);
                for (index_t j = 0; j < cols; ++j) {
                    const T* src = B + (j0 + j) * ldb;
                    for (index_t k = k0; k < k1; ++k) dst[k * NR + j] = src[k];
                }
                for (index_t j = cols; j < NR; ++j) {
                    for (index_t k = k0; k < k1; ++k) dst[k * NR + j] = T(0);
                }
            }
        }
    }
}

// C[0:R, 0:n] = alpha * a_panel * b_panel + beta * C  (C not read when beta == 0)
// a: packed A panel (kc x MR, only the first R rows used), b: packed B panel
// (kc x NR), n <= NR valid columns. R is a template parameter so that an edge
// tile of R < MR rows costs R / MR of a full one.
// With kPackB (full panels of a non-transposed B only), b is instead op(B)'s
// rows themselves (row k at b + k * ldb) and the kernel packs the panel into
// b_packed as it goes: the first tile of each panel packs it. That tile runs
// 3-4 times slower than the others (it moves the panel from L3 through L1),
// which still measured no slower than a separate packing pass over B, or
// than copying the next group between the micro-kernel calls of this one.
// pf (optional, full panels without kPackB) names lines of the next block of
// B to prefetch into L2, one per k step, up to pf->budget of them.
// With kDirectA, a is not packed: row r of the tile is op(A)'s row at
// a + r * lda, read in place (a non-transposed A has its rows contiguous in k).
template <class T, int R, int MR, int NV, bool kPackB = false, bool kDirectA = false>
LLMBLOCKS_FLATTEN inline void micro_kernel(index_t kc, const T* a, const T* b, T* C, index_t ldc, index_t n, T alpha,
                                           T beta, index_t ldb = 0, T* b_packed = nullptr,
                                           PrefetchCursor* pf = nullptr, index_t lda = 0) {
    using Batch = simd::batch<T>;
    constexpr index_t W = simd::width<T>;
    constexpr index_t NR = NV * W;
    // Cache lines of one row of the tile; the prefetches below are unrolled
    // at compile time (with run-time loops, GCC's -O3 loop peeling made it
    // spill a B vector to the stack inside the k loop).
    constexpr int kLines = static_cast<int>((NR * static_cast<index_t>(sizeof(T)) + 63) / 64);
    constexpr index_t kLine = 64 / static_cast<index_t>(sizeof(T));
    Batch acc[R][NV];
    static_for<R>([&](auto r) { static_for<NV>([&](auto v) { acc[r][v] = Batch(T(0)); }); });
#if defined(__GNUC__)
    static_for<R>([&](auto r) { static_for<kLines>([&](auto l) { __builtin_prefetch(C + r * ldc + l * kLine, 1); }); });
    std::uintptr_t pf_row = 0, pf_ld = 0;
    index_t pf_col = 0, pf_lines = 0, pf_count = 0;
    if (pf != nullptr) {
        pf_row = pf->row;
        pf_ld = pf->ld_bytes;
        pf_col = pf->col;
        pf_lines = pf->lines_per_row;
        pf_count = std::min(pf->budget, pf->lines_left);
    }
#endif
    for (index_t k = 0; k < kc; ++k, a += kDirectA ? 1 : MR) {
        Batch bv[NV];
        if constexpr (kPackB) {
#if defined(__GNUC__)
            if (k + kPackPrefetchRows < kc) {
                static_for<kLines>([&](auto l) { __builtin_prefetch(b + kPackPrefetchRows * ldb + l * kLine); });
            }
#endif
            static_for<NV>([&](auto v) {
                bv[v] = simd::load(b + v * W);
                bv[v].store_aligned(b_packed + v * W);
            });
            b += ldb;
            b_packed += NR;
        } else {
#if defined(__GNUC__)
            static_for<kLines>([&](auto l) { __builtin_prefetch(b + kPrefetchK * NR + l * kLine); });
            if (k < pf_count) {
                __builtin_prefetch(reinterpret_cast<const char*>(pf_row + static_cast<std::uintptr_t>(pf_col) * 64), 0,
                                   2);
                if (++pf_col == pf_lines) {
                    pf_col = 0;
                    pf_row += pf_ld;
                }
            }
#endif
            static_for<NV>([&](auto v) { bv[v] = Batch::load_aligned(b + v * W); });
            b += NR;
        }
        static_for<R>([&](auto r) {
            const Batch ar(kDirectA ? a[r * lda] : a[r]);
            static_for<NV>([&](auto v) { acc[r][v] = xsimd::fma(ar, bv[v], acc[r][v]); });
        });
    }
#if defined(__GNUC__)
    if (pf != nullptr) {
        const index_t done = std::min(pf_count, kc);
        pf->row = pf_row;
        pf->col = pf_col;
        pf->lines_left -= done;
    }
#endif
    const Batch va(alpha);
    if (n == NR) {
        if (beta == T(0)) {
            static_for<R>([&](auto r) {
                static_for<NV>([&](auto v) { simd::store(C + r * ldc + v * W, va * acc[r][v]); });
            });
        } else {
            const Batch vb(beta);
            static_for<R>([&](auto r) {
                static_for<NV>([&](auto v) {
                    T* c = C + r * ldc + v * W;
                    simd::store(c, xsimd::fma(va, acc[r][v], vb * simd::load(c)));
                });
            });
        }
        return;
    }
    // Edge tile: spill the registers, write back the n valid columns.
    alignas(64) T tile[R * NR];
    static_for<R>([&](auto r) { static_for<NV>([&](auto v) { acc[r][v].store_aligned(tile + r * NR + v * W); }); });
    for (int r = 0; r < R; ++r) {
        T* c = C + r * ldc;
        if (beta == T(0)) {
            for (index_t j = 0; j < n; ++j) c[j] = alpha * tile[r * NR + j];
        } else {
            for (index_t j = 0; j < n; ++j) c[j] = alpha * tile[r * NR + j] + beta * c[j];
        }
    }
}

// Dispatches an m-row tile (1 <= m <= MR) to the micro-kernel instantiated for m rows.
template <class T, int MR, int NV, bool kPackB = false, bool kDirectA = false>
inline void run_tile(index_t m, index_t kc, const T* a, const T* b, T* C, index_t ldc, index_t n, T alpha, T beta,
                     index_t ldb = 0, T* b_packed = nullptr, PrefetchCursor* pf = nullptr, index_t lda = 0) {
    if (m == MR) {
        micro_kernel<T, MR, MR, NV, kPackB, kDirectA>(kc, a, b, C, ldc, n, alpha, beta, ldb, b_packed, pf, lda);
        return;
    }
    static_for<MR - 1>([&](auto r) {
        if (m == decltype(r)::value + 1) {
            micro_kernel<T, decltype(r)::value + 1, MR, NV, kPackB, kDirectA>(kc, a, b, C, ldc, n, alpha, beta, ldb,
                                                                             b_packed, nullptr, lda);
        }
    });
}

// The part of B's memory that holds op(B)[0:kc, j0:j0+nc] (B points at
// op(B)'s element (0, 0)).
template <class T>
inline NextBlock<T> b_region(bool trans_b, const T* B, index_t ldb, index_t kc, index_t j0, index_t nc) {
    return trans_b ? NextBlock<T>{B + j0 * ldb, nc, kc, ldb} : NextBlock<T>{B + j0, kc, nc, ldb};
}

// C[0:mc, 0:n] = alpha * Ap * op(B)[0:kc, 0:n] + beta * C, where Ap is an
// already packed mc x kc block of op(A) (pack_a layout). B points at op(B)'s
// element (0, 0) of this block. Packs op(B) in groups of kGroup
// columns right before use; the tiles of one group run MR rows at a time
// across the group's panels, so each MR x kc panel of A stays in L1 while the
// group's B panels stream from L2 (BLIS's order, with the roles of A and B
// swapped because here A is the broadcast operand).
// A transposed B is packed by pack_b (W x W transposes); a non-transposed one
// by the first tile of each full panel (micro_kernel with kPackB), which
// measured 2-3% faster (single thread) than a separate packing pass.
// While a group is computed, the micro-kernels prefetch the B of the next
// group into L2, or, after the last group, `next` (the block of B the caller
// multiplies next, if it knows it).
template <class T, int MR, int NV, bool kDirectA>
inline void multiply_block(bool trans_b, index_t mc, index_t n, index_t kc, T alpha, const T* a, index_t lda,
                           const T* B, index_t ldb, T beta, T* C, index_t ldc, NextBlock<T> next) {
    constexpr index_t NR = NV * simd::width<T>;
    constexpr index_t kGroup = std::max<index_t>(1, kPanelGroupColumns / NR) * NR;
    T* packed_b = scratch<T>(1, kGroup * kc);
    const index_t row_tiles = (mc + MR - 1) / MR;
    for (index_t jg = 0; jg < n; jg += kGroup) {
        const index_t ng = std::min(kGroup, n - jg);
        const index_t panels = (ng + NR - 1) / NR;
        // Non-transposed B: the full panels are packed by their first tile
        // (micro_kernel with kPackB), only a partial last panel here.
        const index_t fused = trans_b ? 0 : ng / NR * NR;
        if (fused < ng) {
            pack_b<T, NV>(trans_b, kc, ng - fused, trans_b ? B + (jg + fused) * ldb : B + jg + fused, ldb,
                          packed_b + fused * kc);
        }
        PrefetchCursor pf = PrefetchCursor::over(
            jg + ng < n ? b_region(trans_b, B, ldb, kc, jg + ng, std::min(kGroup, n - jg - ng)) : next);
        pf.spread_over(row_tiles * panels - fused / NR);
        // The first MR rows pack the group's full panels as they go.
        index_t ir = 0;
        if (fused > 0) {
            const index_t m = std::min<index_t>(MR, mc);
            for (index_t jr = 0; jr < ng; jr += NR) {
                const index_t nr = std::min(NR, ng - jr);
                if (jr < fused) {
                    run_tile<T, MR, NV, true, kDirectA>(m, kc, a, B + jg + jr, C + jg + jr, ldc, nr, alpha, beta,
                                                        ldb, packed_b + jr * kc, nullptr, lda);
                } else {
                    run_tile<T, MR, NV, false, kDirectA>(m, kc, a, packed_b + jr * kc, C + jg + jr, ldc, nr, alpha,
                                                         beta, 0, nullptr, &pf, lda);
                }
            }
            ir = MR;
        }
        for (; ir < mc; ir += MR) {
            const index_t m = std::min<index_t>(MR, mc - ir);
            for (index_t jr = 0; jr < ng; jr += NR) {
                run_tile<T, MR, NV, false, kDirectA>(m, kc, kDirectA ? a + ir * lda : a + ir * kc,
                                                     packed_b + jr * kc, C + ir * ldc + jg + jr, ldc,
                                                     std::min(NR, ng - jr), alpha, beta, 0, nullptr, &pf, lda);
            }
        }
    }
}

// C[0:mc, 0:n] = alpha * op(A)[0:mc, 0:kc] * op(B)[0:kc, 0:n] + beta * C, with
// op(A) either packed (lda == 0: a is an mc x kc block in pack_a's layout) or
// read in place (lda > 0: a non-transposed A, row i at a + i * lda).
template <class T, int MR, int NV>
inline void multiply_packed_a(bool trans_b, index_t mc, index_t n, index_t kc, T alpha, const T* a, index_t lda,
                              const T* B, index_t ldb, T beta, T* C, index_t ldc, NextBlock<T> next = {}) {
    if (lda > 0) {
        multiply_block<T, MR, NV, true>(trans_b, mc, n, kc, alpha, a, lda, B, ldb, beta, C, ldc, next);
    } else {
        multiply_block<T, MR, NV, false>(trans_b, mc, n, kc, alpha, a, 0, B, ldb, beta, C, ldc, next);
    }
}

// A non-transposed A is read in place, not packed, so its block of rows needs
// no buffer and need not fit L2: each MR-row panel is read once per group of B
// panels (from L3 if need be: 6 floats per 24 FMAs are a trickle), and every
// packed group of B serves more rows. MC is then this many times blk.mc
// (1024 x 768 x 3072 packed its B four times with MC = 256).
inline constexpr index_t kDirectRows = 8;

// The KC and MC of a product: KC = K cut into equal parts of at most blk.kc;
// MC = M cut into equal parts of at most blk.mc rows, with a packed A block of
// at most kMaxPackedA elements (kDirectRows * blk.mc rows when A is read in place).
template <class T, int MR>
inline Blocking product_blocking(index_t M, index_t K, Blocking blk, bool trans_a) {
    const index_t KC = balanced_block(K, blk.kc, 1);
    if (!trans_a) return Blocking{KC, balanced_block(M, kDirectRows * blk.mc, MR)};
    const index_t mc_cap = std::max<index_t>(MR, kMaxPackedA<T> / KC / MR * MR);
    return Blocking{KC, balanced_block(M, std::min(blk.mc, mc_cap), MR)};
}

// One thread's C (M x N) = alpha * op(A) op(B) + beta * C, with M, N, K > 0.
// Loop nest: MC rows -> KC depth (pack that MC x KC block of a transposed A:
// it stays in L2) -> groups of kGroup columns (pack that KC-deep
// group of B) -> MR rows -> NR columns -> micro-kernel. Against the textbook BLIS order (pack
// a KC x NC block of B, then loop over MC blocks of A) the B panels are packed
// right before use and consumed from L1/L2 by all MC rows, and KC is large
// (a whole GPT-2 d_model), so for the 256 x 768 x 50257 LM head the wide C is
// written once, by a single pass, instead of once per KC step and NC block.
// beta applies at the first KC step only.
template <class T, int MR, int NV>
inline void gemm_blocked(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha, const T* A,
                         index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc, Blocking blk) {
    const Blocking b = product_blocking<T, MR>(M, K, blk, trans_a);
    // A non-transposed A is read in place (see micro_kernel's kDirectA).
    T* packed_a = trans_a ? scratch<T>(0, (std::min(b.mc, M) + MR - 1) / MR * MR * b.kc) : nullptr;
    for (index_t ic = 0; ic < M; ic += b.mc) {
        const index_t mc = std::min(b.mc, M - ic);
        for (index_t pc = 0; pc < K; pc += b.kc) {
            const index_t kc = std::min(b.kc, K - pc);
            if (trans_a) pack_a<T, MR>(true, mc, kc, A + pc * lda + ic, lda, packed_a);
            // Next: the first group of the next KC block (or, after the last
            // one, of the first KC block, for the next MC rows).
            const index_t pn = pc + kc < K ? pc + kc : 0;
            const index_t kn = std::min(b.kc, K - pn);
            const NextBlock<T> next =
                pc + kc < K || ic + b.mc < M
                    ? b_region(trans_b, trans_b ? B + pn : B + pn * ldb, ldb, kn, 0, std::min(N, kPanelGroupColumns))
                    : NextBlock<T>{};
            multiply_packed_a<T, MR, NV>(trans_b, mc, N, kc, alpha, trans_a ? packed_a : A + ic * lda + pc,
                                         trans_a ? 0 : lda, trans_b ? B + pc : B + pc * ldb, ldb,
                                         pc == 0 ? beta : T(1), C + ic * ldc, ldc, next);
        }
    }
}

}  // namespace llmblocks::kernels::gemm_detail
