// llmblocks/kernels/attention.hpp — fused scaled dot-product attention
// (FlashAttention, Dao et al. 2022; FlashAttention-2, Dao 2023), its backward,
// and the plain reference both are tested against.
//
// One kernel serves every attention of GPT-2, GPT-3, PaLM and T5:
//   out[b,h,i,:] = sum_j softmax_j(s[b,h,i,j]) v[b,kvh(h),j,:]
//   s[b,h,i,j]   = scale * q[b,h,i,:] . k[b,kvh(h),j,:] + bias[h,i,j]   if key j is visible to query i
//                = -inf                                                 otherwise
// with
//   - head layouts: n_kv_heads = n_heads (multi-head), 1 (multi-query, PaLM),
//     or a divisor of n_heads (grouped-query); query head h reads KV head
//     kvh(h) = h / (n_heads / n_kv_heads);
//   - self- or cross-attention (Tq != Tk);
//   - masks (AttentionMask): bidirectional (encoders, cross-attention), causal
//     (decoders), prefix-LM (keys j < P visible to every query, causal after),
//     local band of width W (query at position p sees p - W < j <= p: GPT-3's
//     locally banded sparse layers); plus key padding per batch element (a
//     valid key length and/or a boolean mask over keys);
//   - an optional additive bias (T5's relative position bias, (Hq, Tq, Tk),
//     broadcast over the batch);
//   - scale 1/sqrt(D) by default, any other (T5: 1);
//   - decode: query i has absolute position q_pos0 + i, so Tq new queries can
//     attend into a KV cache of Tk keys; q, k, v, out are strided views, so k/v
//     may be the filled part of a preallocated (B, Hkv, T_max, D) cache.
//
// Rows with no visible key (all keys padded, or masked by a -inf bias) are
// defined: their output is 0, their logsumexp is -inf, and they pass no
// gradient. Nothing produces NaN for them.
//
// Forward (fused). Work is split into tasks (batch, KV head, query tile); a
// query tile stacks the rows of every query head of the KV group (GQA/MQA: the
// G = Hq/Hkv heads that share K/V), so each K/V tile is read once per group
// and multiplied against all G heads at once — this is where multi-query
// saves memory traffic. For each key tile (64 keys) of the visible range:
//   S^T = K_tile Q_tile^T * scale (+ bias, mask)     (keys x rows; tiles wholly
//                                                     masked are never visited,
//                                                     the mask is applied only
//                                                     on tiles that straddle it)
//   m'  = max(m, max_j S), P = exp(S - m'), l = l e^(m - m') + sum_j P
//   O   = O e^(m - m') + P V                          (online softmax)
// and at the end out = O / l, lse = m + log l. The softmax statistics live in
// the transposed score tile, so the running max and sum are vertical SIMD
// operations over query rows (no horizontal reductions). The T x T score
// matrix is never formed: working memory is a few tiles per thread, constant
// in T (plus, when the queries are too few to keep every thread busy, e.g. a
// decode step, a split-K buffer of (B, Hq, Tq, splits, D + 2): each split
// handles a range of keys and the partial results are merged by log-sum-exp).
// Both matrix products use one register-blocked micro-kernel (4 rows x up to
// 4 SIMD vectors of accumulators; scalar broadcast of the left operand).
// With fewer query rows per tile than half a SIMD vector (decode with MHA or
// small groups) the tile is kept in row layout instead: scores are dot
// products along D and the softmax runs along the keys. Decode is bound by
// reading K and V; when B * Hkv * (query tiles) is below 4 tasks per thread,
// the keys are split across tasks as above so every thread streams its part.
//
// Backward (FlashAttention-2 style, recomputation): nothing but the forward's
// output and its per-row logsumexp is saved. With delta_i = dout_i . out_i and
// the score tiles recomputed from q, k and lse as P = exp(S - lse):
//   dV += P^T dO,  dP = dO V^T,  dS = P * (dP - delta),  dbias += dS,
//   dK += scale dS^T Q,  dQ += scale dS K.
// Two passes keep every output owned by one task (no atomics): one over
// (KV head, key tile) accumulates dK, dV and dbias (the group's query heads,
// summed, as GQA/MQA need), one over (batch, KV head, query tile) accumulates
// dQ; each recomputes its score tiles.
//
// Sizes: B batch, Hq query heads, Hkv KV heads, Tq queries, Tk keys, D head
// dimension (any D >= 1; the vector loops cover D in SIMD widths with a
// scalar tail, so D = 64 or 128 are fastest). Element types float and double.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <type_traits>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/memory.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/simd.hpp"

namespace llmblocks::kernels {

// Which keys a query sees (key padding comes on top, in AttentionConfig).
enum class AttentionMask {
    bidirectional,  // every key (encoders, cross-attention)
    causal,         // keys j <= p, p = q_pos0 + i the query's absolute position (decoders)
    prefix_lm,      // keys j < prefix_length, and j <= p (T5/UniLM-style prefix LM)
    local,          // keys p - window < j <= p (GPT-3's locally banded sparse layers)
};

inline const char* attention_mask_name(AttentionMask mask) {
    switch (mask) {
        case AttentionMask::bidirectional: return "bidirectional";
        case AttentionMask::causal: return "causal";
        case AttentionMask::prefix_lm: return "prefix_lm";
        case AttentionMask::local: return "local";
    }
    return "?";
}

// Sizes, mask and scale of one attention call.
struct AttentionConfig {
    index_t batch = 1;       // B
    index_t n_heads = 1;     // Hq
    index_t n_kv_heads = 1;  // Hkv: Hq (multi-head), 1 (multi-query) or a divisor of Hq (grouped-query)
    index_t q_len = 0;       // Tq
    index_t kv_len = 0;      // Tk
    index_t head_dim = 0;    // D
    AttentionMask mask = AttentionMask::causal;
    index_t prefix_length = 0;  // P, for prefix_lm
    index_t window = 0;         // W >= 1, for local
    index_t q_pos0 = 0;         // absolute position of query 0 (decode: the number of cached tokens before it)
    std::optional<double> scale;  // default 1/sqrt(D); T5: 1
    const index_t* key_lengths = nullptr;             // (B) keys j >= key_lengths[b] are padding; or null
    const std::uint8_t* key_padding_mask = nullptr;  // (B, Tk) contiguous, 0 = padding; or null

    double scale_value() const { return scale ? *scale : 1.0 / std::sqrt(static_cast<double>(head_dim)); }
    index_t group_size() const { return n_kv_heads > 0 ? n_heads / n_kv_heads : 0; }
};

// A (B, H, T, D) view with unit stride along D: element [b, h, t, d] sits at
// data[b * batch_stride + h * head_stride + t * row_stride + d]. T may be const.
template <class T>
struct HeadsView {
    T* data = nullptr;
    index_t batch_stride = 0;
    index_t head_stride = 0;
    index_t row_stride = 0;

    HeadsView() = default;
    HeadsView(T* data_, index_t batch_stride_, index_t head_stride_, index_t row_stride_)
        : data(data_), batch_stride(batch_stride_), head_stride(head_stride_), row_stride(row_stride_) {}
    // A mutable view converts to a read-only one.
    template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
    HeadsView(const HeadsView<U>& other)  // NOLINT(google-explicit-constructor)
        : data(other.data), batch_stride(other.batch_stride), head_stride(other.head_stride),
          row_stride(other.row_stride) {}

    T* row(index_t b, index_t h, index_t t) const { return data + b * batch_stride + h * head_stride + t * row_stride; }
};

// The view of a contiguous (B, H, T, D) array.
template <class T>
HeadsView<T> contiguous_heads(T* data, index_t H, index_t T_, index_t D) {
    return HeadsView<T>(data, H * T_ * D, T_ * D, D);
}

// An (Hq, Tq, Tk) view with unit stride along Tk (the additive bias, broadcast
// over the batch, or its gradient): element [h, i, j] sits at
// data[h * head_stride + i * row_stride + j]. A null data means "no bias" /
// "gradient not wanted".
template <class T>
struct BiasView {
    T* data = nullptr;
    index_t head_stride = 0;
    index_t row_stride = 0;

    BiasView() = default;
    BiasView(T* data_, index_t head_stride_, index_t row_stride_)
        : data(data_), head_stride(head_stride_), row_stride(row_stride_) {}
    template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
    BiasView(const BiasView<U>& other)  // NOLINT(google-explicit-constructor)
        : data(other.data), head_stride(other.head_stride), row_stride(other.row_stride) {}

    T* row(index_t h, index_t i) const { return data + h * head_stride + i * row_stride; }
};

// The view of a contiguous (Hq, Tq, Tk) array.
template <class T>
BiasView<T> contiguous_bias(T* data, index_t Tq, index_t Tk) {
    return BiasView<T>(data, Tq * Tk, Tk);
}

namespace detail {

template <class T>
using Same = std::type_identity_t<T>;

inline Shape attn_q_shape(const AttentionConfig& c) { return {c.batch, c.n_heads, c.q_len, c.head_dim}; }
inline Shape attn_kv_shape(const AttentionConfig& c) { return {c.batch, c.n_kv_heads, c.kv_len, c.head_dim}; }

// Throws unless the sizes, mask parameters and key padding are valid.
inline void check_attention_config(const char* op, const AttentionConfig& c) {
    const Shape qs = attn_q_shape(c), ks = attn_kv_shape(c);
    LLMBLOCKS_CHECK(c.batch >= 0 && c.n_heads >= 1 && c.n_kv_heads >= 1 && c.q_len >= 0 && c.kv_len >= 0 &&
                        c.head_dim >= 1,
                    op, ": sizes must be B, Tq, Tk >= 0 and Hq, Hkv, D >= 1: q ", qs, ", k/v ", ks);
    LLMBLOCKS_CHECK(c.n_heads % c.n_kv_heads == 0, op, ": n_heads ", c.n_heads,
                    " is not a multiple of n_kv_heads ", c.n_kv_heads, ": q ", qs, ", k/v ", ks);
    LLMBLOCKS_CHECK(c.q_pos0 >= 0 && c.q_pos0 <= (index_t{1} << 48), op, ": q_pos0 ", c.q_pos0,
                    " out of range: q ", qs, ", k/v ", ks);
    LLMBLOCKS_CHECK(c.mask != AttentionMask::local || c.window >= 1, op, ": local mask needs window >= 1, got ",
                    c.window, ": q ", qs, ", k/v ", ks);
    LLMBLOCKS_CHECK(c.mask != AttentionMask::prefix_lm || c.prefix_length >= 0, op,
                    ": prefix_lm mask needs prefix_length >= 0, got ", c.prefix_length, ": q ", qs, ", k/v ", ks);
    LLMBLOCKS_CHECK(c.mask == AttentionMask::bidirectional || c.mask == AttentionMask::causal ||
                        c.mask == AttentionMask::prefix_lm || c.mask == AttentionMask::local,
                    op, ": unknown mask ", static_cast<int>(c.mask));
    const double scale = c.scale_value();
    LLMBLOCKS_CHECK(std::isfinite(scale), op, ": scale must be finite, got ", scale);
    if (c.key_lengths) {
        for (index_t b = 0; b < c.batch; ++b)
            LLMBLOCKS_CHECK(c.key_lengths[b] >= 0 && c.key_lengths[b] <= c.kv_len, op, ": key_lengths[", b,
                            "] = ", c.key_lengths[b], " outside [0, Tk]: k/v ", ks);
    }
}

template <class T>
void check_heads(const char* op, const char* name, const HeadsView<T>& v, index_t H, index_t Tn, index_t D,
                 bool output) {
    LLMBLOCKS_CHECK(v.data != nullptr, op, ": ", name, " is null (shape (B, ", H, ", ", Tn, ", ", D, "))");
    LLMBLOCKS_CHECK(v.batch_stride >= 0 && v.head_stride >= 0 && v.row_stride >= 0, op, ": ", name,
                    " strides must be >= 0, got (", v.batch_stride, ", ", v.head_stride, ", ", v.row_stride, ", 1)");
    if (output) {
        LLMBLOCKS_CHECK(Tn <= 1 || v.row_stride >= D, op, ": output ", name, " row stride ", v.row_stride,
                        " < head_dim ", D, " (rows would overlap)");
    }
}

// The keys query i sees form one interval [lo, hi) (before the boolean key
// mask): every mask kind gives an interval, and key padding by length clips it.
struct MaskRule {
    AttentionMask kind;
    index_t prefix, window, q_pos0;

    void interval(index_t i, index_t kend, index_t& lo, index_t& hi) const {
        const index_t p = q_pos0 + i;
        lo = 0;
        hi = kend;
        switch (kind) {
            case AttentionMask::bidirectional: break;
            case AttentionMask::causal: hi = std::min(kend, p + 1); break;
            case AttentionMask::prefix_lm: hi = std::min(kend, std::max(prefix, p + 1)); break;
            case AttentionMask::local:
                lo = std::max<index_t>(0, p - window + 1);
                hi = std::min(kend, p + 1);
                break;
        }
        if (hi < lo) hi = lo;
    }
};

inline index_t round_up(index_t n, index_t m) { return (n + m - 1) / m * m; }

// ---- the one matrix micro-kernel -----------------------------------------
// C (M x N, row-major, ldc) += A (M x K) X (K x N, row-major, ldx), where
// A[m, k] = a[m * a_sm + k * a_sk] is broadcast as a scalar (so A may be read
// in any layout) and X rows are loaded as SIMD vectors. A register block holds
// MR rows x NV vectors of C.
template <class T, int MR, int NV>
inline void mm_block(T* c, index_t ldc, const T* a, index_t a_sm, index_t a_sk, const T* x, index_t ldx,
                     index_t K) {
    using B = simd::batch<T>;
    constexpr index_t W = simd::width<T>;
    B acc[MR][NV];
    for (int m = 0; m < MR; ++m)
        for (int v = 0; v < NV; ++v) acc[m][v] = simd::load(c + m * ldc + v * W);
    for (index_t k = 0; k < K; ++k) {
        B xv[NV];
        const T* xk = x + k * ldx;
        for (int v = 0; v < NV; ++v) xv[v] = simd::load(xk + v * W);
        const T* ak = a + k * a_sk;
        for (int m = 0; m < MR; ++m) {
            const B am(ak[m * a_sm]);
            for (int v = 0; v < NV; ++v) acc[m][v] = xsimd::fma(am, xv[v], acc[m][v]);
        }
    }
    for (int m = 0; m < MR; ++m)
        for (int v = 0; v < NV; ++v) simd::store(c + m * ldc + v * W, acc[m][v]);
}

// Vectors of C per register block: 4 with 32 vector registers (AVX-512), 2 with 16.
template <class T>
inline constexpr int kBlockVectors = (simd::width<T> * static_cast<index_t>(sizeof(T)) >= 64) ? 4 : 2;

template <class T, int MR>
inline void mm_rows(T* c, index_t ldc, index_t nvec, const T* a, index_t a_sm, index_t a_sk, const T* x,
                    index_t ldx, index_t K) {
    constexpr index_t W = simd::width<T>;
    constexpr int NV = kBlockVectors<T>;
    index_t v0 = 0;
    for (; v0 + NV <= nvec; v0 += NV) mm_block<T, MR, NV>(c + v0 * W, ldc, a, a_sm, a_sk, x + v0 * W, ldx, K);
    switch (nvec - v0) {
        case 3: mm_block<T, MR, 3>(c + v0 * W, ldc, a, a_sm, a_sk, x + v0 * W, ldx, K); break;
        case 2: mm_block<T, MR, 2>(c + v0 * W, ldc, a, a_sm, a_sk, x + v0 * W, ldx, K); break;
        case 1: mm_block<T, MR, 1>(c + v0 * W, ldc, a, a_sm, a_sk, x + v0 * W, ldx, K); break;
        default: break;
    }
}

template <class T>
void mm_acc(T* c, index_t ldc, index_t M, index_t N, const T* a, index_t a_sm, index_t a_sk, const T* x,
            index_t ldx, index_t K) {
    constexpr index_t W = simd::width<T>;
    const index_t nvec = N / W;
    index_t m0 = 0;
    for (; m0 + 4 <= M; m0 += 4) mm_rows<T, 4>(c + m0 * ldc, ldc, nvec, a + m0 * a_sm, a_sm, a_sk, x, ldx, K);
    switch (M - m0) {
        case 3: mm_rows<T, 3>(c + m0 * ldc, ldc, nvec, a + m0 * a_sm, a_sm, a_sk, x, ldx, K); break;
        case 2: mm_rows<T, 2>(c + m0 * ldc, ldc, nvec, a + m0 * a_sm, a_sm, a_sk, x, ldx, K); break;
        case 1: mm_rows<T, 1>(c + m0 * ldc, ldc, nvec, a + m0 * a_sm, a_sm, a_sk, x, ldx, K); break;
        default: break;
    }
    // Columns past the last full vector (N % W of them), scalar.
    for (index_t n = nvec * W; n < N; ++n)
        for (index_t m = 0; m < M; ++m) {
            T s = c[m * ldc + n];
            for (index_t k = 0; k < K; ++k) s += a[m * a_sm + k * a_sk] * x[k * ldx + n];
            c[m * ldc + n] = s;
        }
}

// dot(x, y) over n elements.
template <class T>
inline T dot(const T* x, const T* y, index_t n) {
    using B = simd::batch<T>;
    constexpr index_t W = simd::width<T>;
    B acc(T(0));
    index_t d = 0;
    for (; d + W <= n; d += W) acc = xsimd::fma(simd::load(x + d), simd::load(y + d), acc);
    T s = xsimd::hadd(acc);
    for (; d < n; ++d) s += x[d] * y[d];
    return s;
}

// The query rows of one task, packed. Rows r = g * nq + i stack the G heads
// of a KV group (head h = kvh * G + g) over the tile's nq query positions.
template <class T>
struct QueryTile {
    index_t b = 0, kvh = 0, i0 = 0, nq = 0, rows = 0, Rp = 0;  // Rp: rows rounded up to the SIMD width
    bool wide = true;  // scores by the micro-kernel (rows >= W/2), else by dot products
};

// Packs `rows` rows of src (one per (g, i)) times `mul`: transposed (D x Rp,
// zero-padded lanes) for the wide path, row-major (rows x D) for dot products.
template <class T>
void pack_rows(T* dst, const QueryTile<T>& t, const HeadsView<const T>& src, index_t G, index_t D, T mul,
               bool transposed) {
    for (index_t g = 0; g < G; ++g)
        for (index_t i = 0; i < t.nq; ++i) {
            const index_t r = g * t.nq + i;
            const T* s = src.row(t.b, t.kvh * G + g, t.i0 + i);
            if (transposed) {
                for (index_t d = 0; d < D; ++d) dst[d * t.Rp + r] = s[d] * mul;
            } else {
                for (index_t d = 0; d < D; ++d) dst[r * D + d] = s[d] * mul;
            }
        }
    if (transposed)
        for (index_t d = 0; d < D; ++d)
            for (index_t r = t.rows; r < t.Rp; ++r) dst[d * t.Rp + r] = T(0);
}

// st (nk x Rp) = keys (nk x D, row stride ldk) . packed rows^T.
template <class T>
void score_tile(T* st, const QueryTile<T>& t, const T* packed, const T* keys, index_t ldk, index_t nk, index_t D) {
    if (t.wide) {
        std::fill(st, st + nk * t.Rp, T(0));
        mm_acc(st, t.Rp, nk, t.Rp, keys, ldk, index_t{1}, packed, t.Rp, D);
    } else {
        for (index_t j = 0; j < nk; ++j) {
            const T* kj = keys + j * ldk;
            T* sj = st + j * t.Rp;
            for (index_t r = 0; r < t.rows; ++r) sj[r] = dot(packed + r * D, kj, D);
            for (index_t r = t.rows; r < t.Rp; ++r) sj[r] = T(0);
        }
    }
}

// Adds the bias and applies the mask to a score tile of keys [j0, j0 + nk)
// whose element (row r, key j) sits at st[j * sj + r * sr].
template <class T>
void bias_and_mask(T* st, index_t sj, index_t sr, const QueryTile<T>& t, index_t G, index_t j0, index_t nk,
                   const BiasView<const T>& bias, bool mask_needed, const MaskRule& rule, index_t kend,
                   const std::uint8_t* key_mask) {
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    if (bias.data) {
        for (index_t g = 0; g < G; ++g)
            for (index_t i = 0; i < t.nq; ++i) {
                const index_t r = g * t.nq + i;
                const T* brow = bias.row(t.kvh * G + g, t.i0 + i) + j0;
                for (index_t j = 0; j < nk; ++j) st[j * sj + r * sr] += brow[j];
            }
    }
    if (!mask_needed) return;
    for (index_t i = 0; i < t.nq; ++i) {
        index_t lo, hi;
        rule.interval(t.i0 + i, kend, lo, hi);
        for (index_t j = 0; j < nk; ++j) {
            const index_t key = j0 + j;
            const bool visible = key >= lo && key < hi && (!key_mask || key_mask[key] != 0);
            if (!visible)
                for (index_t g = 0; g < G; ++g) st[j * sj + (g * t.nq + i) * sr] = neg_inf;
        }
    }
}

// Few query rows (decode): scores in row layout, s (rows x nk, row stride
// lds), by dot products along D, so that the softmax below runs along the
// keys. (Not xsimd::haddp: in xsimd 8.1 its AVX-512 float version returns
// the sums in a permuted lane order.)
template <class T>
void score_rows(T* s, index_t lds, index_t rows, const T* packed, const T* keys, index_t ldk, index_t nk, index_t D) {
    for (index_t r = 0; r < rows; ++r) {
        const T* qr = packed + r * D;
        T* sr = s + r * lds;
        for (index_t j = 0; j < nk; ++j) sr[j] = dot(qr, keys + j * ldk, D);
    }
}

// Online softmax along the keys of each row (row layout, see score_rows).
template <class T>
void online_softmax_rows(T* s, index_t lds, index_t rows, index_t nk, T* m, T* l, T* alpha) {
    using B = simd::batch<T>;
    constexpr index_t W = simd::width<T>;
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    for (index_t r = 0; r < rows; ++r) {
        T* sr = s + r * lds;
        index_t j = 0;
        B mxv(neg_inf);
        for (; j + W <= nk; j += W) mxv = xsimd::max(mxv, simd::load(sr + j));
        alignas(64) T lanes[W];
        mxv.store_aligned(lanes);
        T mx = neg_inf;
        for (index_t c = 0; c < W; ++c) mx = std::max(mx, lanes[c]);
        for (; j < nk; ++j) mx = std::max(mx, sr[j]);
        const T m_new = std::max(m[r], mx);
        const T m_use = m_new == neg_inf ? T(0) : m_new;
        const T a = std::exp(m[r] - m_use);
        const B mv(m_use);
        B sumv(T(0));
        j = 0;
        for (; j + W <= nk; j += W) {
            const B p = xsimd::exp(simd::load(sr + j) - mv);
            simd::store(sr + j, p);
            sumv += p;
        }
        T sum = xsimd::hadd(sumv);
        for (; j < nk; ++j) {
            sr[j] = std::exp(sr[j] - m_use);
            sum += sr[j];
        }
        l[r] = l[r] * a + sum;
        m[r] = m_new;
        alpha[r] = a;
    }
}

// True when every row of the tile sees every key of [j0, j1) (by interval).
inline bool tile_fully_visible(const MaskRule& rule, index_t i0, index_t nq, index_t j0, index_t j1, index_t kend) {
    index_t lo_last, hi_last, lo_first, hi_first;
    rule.interval(i0 + nq - 1, kend, lo_last, hi_last);
    rule.interval(i0, kend, lo_first, hi_first);
    return lo_last <= j0 && hi_first >= j1;
}

constexpr index_t kKeyTile = 64;      // keys per tile
constexpr index_t kRowsPerTile = 64;  // query rows (all heads of a group) per tile

// Query positions per tile so that a tile holds about kRowsPerTile rows.
inline index_t queries_per_tile(index_t G) { return std::max<index_t>(1, kRowsPerTile / G); }

// Below this many multiply-adds a call stays on the calling thread: starting
// a thread team costs more than it saves (small gradchecks, tiny decode steps).
inline constexpr double kMinParallelWork = 1 << 18;

// Multiply-adds of the score and value products if every key were visible: an
// upper bound used only to decide whether threads pay.
inline double attention_work(const AttentionConfig& c) {
    return 2.0 * static_cast<double>(c.batch) * static_cast<double>(c.n_heads) * static_cast<double>(c.q_len) *
           static_cast<double>(c.kv_len) * static_cast<double>(c.head_dim);
}

// Runs fn(task) for task in [0, n) on all threads, each thread taking the
// next task when it finishes one (causal tiles differ in cost). fn receives
// its thread's scratch, made by make_scratch() once the thread has a task.
// `work` (multiply-adds) below kMinParallelWork keeps it on one thread.
template <class MakeScratch, class Fn>
void run_tasks(index_t n, double work, MakeScratch&& make_scratch, Fn&& fn) {
    if (n <= 0) return;
    const index_t threads = work < kMinParallelWork ? 1 : std::min<index_t>(get_num_threads(), n);
    std::atomic<index_t> next{0};
    parallel_for(0, threads, 1, [&](index_t, index_t) {
        index_t task = next.fetch_add(1);
        if (task >= n) return;
        auto scratch = make_scratch();
        for (; task < n; task = next.fetch_add(1)) fn(task, scratch);
    });
}

template <class T>
struct ForwardScratch {
    AlignedBuffer<T> packed;  // (D, Rp) or (rows, D) scaled queries
    AlignedBuffer<T> st;      // (Bc, Rp) scores, then probabilities
    AlignedBuffer<T> o;       // (rows, Dp) unnormalised output
    AlignedBuffer<T> m, l, alpha;  // (Rp) running max, running sum, rescale factor
};

// Online softmax over one tile: updates m and l, writes P into st and the
// rescale factor exp(m_old - m_new) into alpha.
template <class T>
void online_softmax(T* st, index_t nk, index_t Rp, T* m, T* l, T* alpha) {
    using B = simd::batch<T>;
    constexpr index_t W = simd::width<T>;
    const B neg_inf(-std::numeric_limits<T>::infinity());
    for (index_t c = 0; c < Rp; c += W) {
        const B m_old = simd::load(m + c);
        B mx = neg_inf;
        for (index_t j = 0; j < nk; ++j) mx = xsimd::max(mx, simd::load(st + j * Rp + c));
        const B m_new = xsimd::max(m_old, mx);
        // A row that has seen no visible key yet keeps m = -inf; exponentiate
        // against 0 then, so that exp(-inf - (-inf)) never appears.
        const B m_use = xsimd::select(m_new == neg_inf, B(T(0)), m_new);
        const B a = xsimd::exp(m_old - m_use);
        B sum(T(0));
        for (index_t j = 0; j < nk; ++j) {
            const B p = xsimd::exp(simd::load(st + j * Rp + c) - m_use);
            simd::store(st + j * Rp + c, p);
            sum += p;
        }
        simd::store(l + c, xsimd::fma(simd::load(l + c), a, sum));
        simd::store(m + c, m_new);
        simd::store(alpha + c, a);
    }
}

template <class T>
inline void scale_row(T* x, index_t n, T s) {
    using B = simd::batch<T>;
    constexpr index_t W = simd::width<T>;
    const B sv(s);
    index_t d = 0;
    for (; d + W <= n; d += W) simd::store(x + d, simd::load(x + d) * sv);
    for (; d < n; ++d) x[d] *= s;
}

template <class T>
void forward_impl(const HeadsView<T>& out, T* lse, const HeadsView<const T>& q, const HeadsView<const T>& k,
                  const HeadsView<const T>& v, const BiasView<const T>& bias, const AttentionConfig& c) {
    constexpr index_t W = simd::width<T>;
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    static_assert(kKeyTile % W == 0, "attention: key tile must be a multiple of the SIMD width");
    const index_t Bn = c.batch, Hq = c.n_heads, Hkv = c.n_kv_heads, Tq = c.q_len, Tk = c.kv_len, D = c.head_dim;
    const index_t G = Hq / Hkv;
    if (Bn == 0 || Tq == 0) return;
    const T scale = static_cast<T>(c.scale_value());
    const MaskRule rule{c.mask, c.prefix_length, c.window, c.q_pos0};
    const index_t Br = queries_per_tile(G);
    const index_t n_qtiles = (Tq + Br - 1) / Br;
    const index_t rows_max = G * std::min(Br, Tq);
    const index_t Rp_max = round_up(rows_max, W);
    const index_t Dp = round_up(D, W);

    // Split the keys when the query tiles alone cannot keep the threads busy
    // (decode: one query per head), each split at least two key tiles long.
    const index_t base_tasks = Bn * Hkv * n_qtiles;
    const index_t threads = get_num_threads();
    index_t splits = 1;
    if (base_tasks < 4 * threads && Tk > 2 * kKeyTile) {
        splits = std::min((4 * threads + base_tasks - 1) / base_tasks, (Tk + 2 * kKeyTile - 1) / (2 * kKeyTile));
        splits = std::max<index_t>(splits, 1);
    }
    // Partial results of the splits: (B, Hq, Tq, splits, D + 2) = (O, m, l).
    const index_t part_len = D + 2;
    AlignedBuffer<T> partial(splits > 1 ? Bn * Hq * Tq * splits * part_len : 0);

    auto make_scratch = [&] {
        ForwardScratch<T> s;
        s.packed = AlignedBuffer<T>(std::max(D * Rp_max, rows_max * D));
        s.st = AlignedBuffer<T>(kKeyTile * Rp_max);
        s.o = AlignedBuffer<T>(rows_max * Dp);
        s.m = AlignedBuffer<T>(Rp_max);
        s.l = AlignedBuffer<T>(Rp_max);
        s.alpha = AlignedBuffer<T>(Rp_max);
        return s;
    };

    // Task order: last query tiles first (under a causal mask they are the
    // most expensive), then batch, KV head, split.
    const index_t n_tasks = base_tasks * splits;
    run_tasks(n_tasks, attention_work(c), make_scratch, [&](index_t task, ForwardScratch<T>& s) {
        const index_t split = task % splits;
        index_t rest = task / splits;
        const index_t kvh = rest % Hkv;
        rest /= Hkv;
        const index_t b = rest % Bn;
        const index_t qt = n_qtiles - 1 - rest / Bn;

        QueryTile<T> t;
        t.b = b;
        t.kvh = kvh;
        t.i0 = qt * Br;
        t.nq = std::min(Br, Tq - t.i0);
        t.rows = G * t.nq;
        t.Rp = round_up(t.rows, W);
        t.wide = 2 * t.rows >= W;

        const index_t kend = c.key_lengths ? c.key_lengths[b] : Tk;
        const std::uint8_t* key_mask = c.key_padding_mask ? c.key_padding_mask + b * Tk : nullptr;
        index_t klo, khi_first, klo_last, khi;
        rule.interval(t.i0, kend, klo, khi_first);
        rule.interval(t.i0 + t.nq - 1, kend, klo_last, khi);
        index_t ks = klo, ke = std::max(klo, khi);
        if (splits > 1) {
            const index_t chunk = round_up((ke - ks + splits - 1) / splits, kKeyTile);
            ks = std::min(ke, klo + split * chunk);
            ke = std::min(ke, ks + chunk);
        }

        pack_rows(s.packed.data(), t, q, G, D, scale, t.wide);
        std::fill(s.m.data(), s.m.data() + t.Rp, neg_inf);
        std::fill(s.l.data(), s.l.data() + t.Rp, T(0));
        std::fill(s.o.data(), s.o.data() + t.rows * Dp, T(0));

        for (index_t j0 = ks; j0 < ke; j0 += kKeyTile) {
            const index_t nk = std::min(kKeyTile, ke - j0);
            const bool mask_needed = key_mask || !tile_fully_visible(rule, t.i0, t.nq, j0, j0 + nk, kend);
            // P[r, j] sits at st[j * pj + r * pr]: transposed (keys x Rp) for
            // the wide path, row layout (rows x kKeyTile) for few rows.
            const index_t pj = t.wide ? t.Rp : 1, pr = t.wide ? 1 : kKeyTile;
            if (t.wide) {
                score_tile(s.st.data(), t, s.packed.data(), k.row(b, kvh, j0), k.row_stride, nk, D);
                bias_and_mask(s.st.data(), pj, pr, t, G, j0, nk, bias, mask_needed, rule, kend, key_mask);
                online_softmax(s.st.data(), nk, t.Rp, s.m.data(), s.l.data(), s.alpha.data());
            } else {
                score_rows(s.st.data(), kKeyTile, t.rows, s.packed.data(), k.row(b, kvh, j0), k.row_stride, nk, D);
                bias_and_mask(s.st.data(), pj, pr, t, G, j0, nk, bias, mask_needed, rule, kend, key_mask);
                online_softmax_rows(s.st.data(), kKeyTile, t.rows, nk, s.m.data(), s.l.data(), s.alpha.data());
            }
            for (index_t r = 0; r < t.rows; ++r)
                if (s.alpha.data()[r] != T(1)) scale_row(s.o.data() + r * Dp, D, s.alpha.data()[r]);
            // O (rows x D) += P (rows x nk) V (nk x D)
            mm_acc(s.o.data(), Dp, t.rows, D, s.st.data(), pr, pj, v.row(b, kvh, j0), v.row_stride, nk);
        }

        for (index_t g = 0; g < G; ++g)
            for (index_t i = 0; i < t.nq; ++i) {
                const index_t r = g * t.nq + i, h = kvh * G + g, iq = t.i0 + i;
                const T* o = s.o.data() + r * Dp;
                if (splits > 1) {
                    T* p = partial.data() + (((b * Hq + h) * Tq + iq) * splits + split) * part_len;
                    std::copy(o, o + D, p);
                    p[D] = s.m.data()[r];
                    p[D + 1] = s.l.data()[r];
                } else {
                    const T lv = s.l.data()[r];
                    const T inv = lv > T(0) ? T(1) / lv : T(0);
                    T* dst = out.row(b, h, iq);
                    std::copy(o, o + D, dst);
                    scale_row(dst, D, inv);
                    if (lse) lse[(b * Hq + h) * Tq + iq] = lv > T(0) ? s.m.data()[r] + std::log(lv) : neg_inf;
                }
            }
    });

    if (splits > 1) {
        // out = sum_s O_s e^(m_s - M) / sum_s l_s e^(m_s - M), M = max_s m_s.
        const index_t n_rows = Bn * Hq * Tq;
        parallel_for(0, n_rows, 64, [&](index_t lo, index_t hi) {
            for (index_t row = lo; row < hi; ++row) {
                const index_t iq = row % Tq, h = (row / Tq) % Hq, b = row / (Tq * Hq);
                const T* p = partial.data() + row * splits * part_len;
                T M = neg_inf;
                for (index_t sp = 0; sp < splits; ++sp) M = std::max(M, p[sp * part_len + D]);
                T* dst = out.row(b, h, iq);
                std::fill(dst, dst + D, T(0));
                T L = 0;
                if (M != neg_inf) {
                    for (index_t sp = 0; sp < splits; ++sp) {
                        const T* ps = p + sp * part_len;
                        if (ps[D + 1] == T(0)) continue;
                        const T w = std::exp(ps[D] - M);
                        L += ps[D + 1] * w;
                        for (index_t d = 0; d < D; ++d) dst[d] += ps[d] * w;
                    }
                }
                scale_row(dst, D, L > T(0) ? T(1) / L : T(0));
                if (lse) lse[row] = L > T(0) ? M + std::log(L) : neg_inf;
            }
        });
    }
}

// Checks the config and the q, k, v views (and out, when given).
template <class T>
void check_forward_args(const char* op, const HeadsView<T>* out, const HeadsView<const T>& q,
                        const HeadsView<const T>& k, const HeadsView<const T>& v, const AttentionConfig& c) {
    check_attention_config(op, c);
    if (c.batch == 0) return;
    if (c.q_len > 0) {
        if (out) check_heads(op, "out", *out, c.n_heads, c.q_len, c.head_dim, true);
        check_heads(op, "q", q, c.n_heads, c.q_len, c.head_dim, false);
    }
    if (c.kv_len > 0) {
        check_heads(op, "k", k, c.n_kv_heads, c.kv_len, c.head_dim, false);
        check_heads(op, "v", v, c.n_kv_heads, c.kv_len, c.head_dim, false);
    }
}

template <class T>
void check_bias(const char* op, const char* name, const BiasView<T>& bias, const AttentionConfig& c, bool output) {
    if (!bias.data) return;
    LLMBLOCKS_CHECK(bias.head_stride >= 0 && bias.row_stride >= 0, op, ": ", name, " (Hq, Tq, Tk) = (", c.n_heads,
                    ", ", c.q_len, ", ", c.kv_len, ") strides must be >= 0, got (", bias.head_stride, ", ",
                    bias.row_stride, ", 1)");
    if (output) {
        LLMBLOCKS_CHECK((c.q_len <= 1 || bias.row_stride >= c.kv_len) &&
                            (c.n_heads <= 1 || bias.head_stride >= c.q_len * bias.row_stride),
                        op, ": output ", name, " (Hq, Tq, Tk) = (", c.n_heads, ", ", c.q_len, ", ", c.kv_len,
                        ") strides (", bias.head_stride, ", ", bias.row_stride, ", 1) overlap");
    }
}

// Precomputed rows of one backward query tile.
template <class T>
struct BackwardScratch {
    AlignedBuffer<T> qpack;   // (D, Rp) or (rows, D) scaled queries (for S)
    AlignedBuffer<T> dopack;  // (D, Rp) or (rows, D) dout (for dP)
    AlignedBuffer<T> qrows;   // (rows, D) queries (for dK)
    AlignedBuffer<T> dorows;  // (rows, D) dout (for dV)
    AlignedBuffer<T> lse;     // (Rp) logsumexp, +inf where the row passes no gradient
    AlignedBuffer<T> delta;   // (Rp) delta_i = dout_i . out_i
    AlignedBuffer<T> st;      // (Bc, Rp) scores -> P
    AlignedBuffer<T> dpt;     // (Bc, Rp) dP -> dS
    AlignedBuffer<T> acc1;    // pass A: dK tile (Bc, Dp); pass B: dQ rows (rows, Dp)
    AlignedBuffer<T> acc2;    // pass A: dV tile (Bc, Dp)
};

}  // namespace detail

// ---- forward ---------------------------------------------------------------

// Fused attention forward. Writes out and, if lse is not null, the per-row
// logsumexp of the scores (natural log; -inf for a row with no visible key,
// whose output is 0). Memory: a few tiles per thread, independent of T.
template <class T>
void attention_forward(HeadsView<T> out,                        // (B, Hq, Tq, D)
                       detail::Same<T*> lse,                                   // (B, Hq, Tq) contiguous, or null
                       detail::Same<HeadsView<const T>> q,       // (B, Hq, Tq, D)
                       detail::Same<HeadsView<const T>> k,       // (B, Hkv, Tk, D)
                       detail::Same<HeadsView<const T>> v,       // (B, Hkv, Tk, D)
                       detail::Same<BiasView<const T>> bias,     // (Hq, Tq, Tk) or null data
                       const AttentionConfig& config) {
    detail::check_forward_args("attention_forward", &out, q, k, v, config);
    detail::check_bias("attention_forward", "bias", bias, config, false);
    detail::forward_impl(out, lse, q, k, v, bias, config);
}

// ---- backward --------------------------------------------------------------

// Fused attention backward, recomputing the score tiles from q, k and the
// forward's lse (FlashAttention-2); out is the forward's output. Accumulates
// (+=) into dq, dk, dv and dbias; a null data pointer means "not wanted".
// For GQA/MQA, dk and dv sum over the query heads of each group; dbias sums
// over the batch (the bias is broadcast over it).
template <class T>
void attention_backward(HeadsView<T> dq,                          // (B, Hq, Tq, D)
                        detail::Same<HeadsView<T>> dk,            // (B, Hkv, Tk, D)
                        detail::Same<HeadsView<T>> dv,            // (B, Hkv, Tk, D)
                        detail::Same<BiasView<T>> dbias,          // (Hq, Tq, Tk) or null data
                        detail::Same<HeadsView<const T>> dout,    // (B, Hq, Tq, D)
                        detail::Same<HeadsView<const T>> out,     // (B, Hq, Tq, D)
                        detail::Same<const T*> lse,                             // (B, Hq, Tq) contiguous
                        detail::Same<HeadsView<const T>> q,       // (B, Hq, Tq, D)
                        detail::Same<HeadsView<const T>> k,       // (B, Hkv, Tk, D)
                        detail::Same<HeadsView<const T>> v,       // (B, Hkv, Tk, D)
                        detail::Same<BiasView<const T>> bias,     // (Hq, Tq, Tk) or null data
                        const AttentionConfig& config) {
    using namespace detail;
    const char* op = "attention_backward";
    const AttentionConfig& c = config;
    check_forward_args<T>(op, nullptr, q, k, v, c);
    check_bias(op, "bias", bias, c, false);
    check_bias(op, "dbias", dbias, c, true);
    const index_t Bn = c.batch, Hq = c.n_heads, Hkv = c.n_kv_heads, Tq = c.q_len, Tk = c.kv_len, D = c.head_dim;
    if (Bn == 0 || Tq == 0 || Tk == 0) return;
    check_heads(op, "dout", dout, Hq, Tq, D, false);
    check_heads(op, "out", out, Hq, Tq, D, false);
    LLMBLOCKS_CHECK(lse != nullptr, op, ": lse (B, Hq, Tq) = ", Shape{Bn, Hq, Tq}, " is null");
    if (dq.data) check_heads(op, "dq", dq, Hq, Tq, D, true);
    if (dk.data) check_heads(op, "dk", dk, Hkv, Tk, D, true);
    if (dv.data) check_heads(op, "dv", dv, Hkv, Tk, D, true);

    constexpr index_t W = simd::width<T>;
    constexpr T inf = std::numeric_limits<T>::infinity();
    const index_t G = Hq / Hkv;
    const T scale = static_cast<T>(c.scale_value());
    const MaskRule rule{c.mask, c.prefix_length, c.window, c.q_pos0};
    const index_t Br = queries_per_tile(G);
    const index_t n_qtiles = (Tq + Br - 1) / Br;
    const index_t n_ktiles = (Tk + kKeyTile - 1) / kKeyTile;
    const index_t rows_max = G * std::min(Br, Tq);
    const index_t Rp_max = round_up(rows_max, W);
    const index_t Dp = round_up(D, W);

    auto make_scratch = [&] {
        BackwardScratch<T> s;
        s.qpack = AlignedBuffer<T>(std::max(D * Rp_max, rows_max * D));
        s.dopack = AlignedBuffer<T>(std::max(D * Rp_max, rows_max * D));
        s.qrows = AlignedBuffer<T>(rows_max * D);
        s.dorows = AlignedBuffer<T>(rows_max * D);
        s.lse = AlignedBuffer<T>(Rp_max);
        s.delta = AlignedBuffer<T>(Rp_max);
        s.st = AlignedBuffer<T>(kKeyTile * Rp_max);
        s.dpt = AlignedBuffer<T>(kKeyTile * Rp_max);
        s.acc1 = AlignedBuffer<T>(std::max(kKeyTile, rows_max) * Dp);
        s.acc2 = AlignedBuffer<T>(kKeyTile * Dp);
        return s;
    };

    auto make_tile = [&](index_t b, index_t kvh, index_t qt) {
        QueryTile<T> t;
        t.b = b;
        t.kvh = kvh;
        t.i0 = qt * Br;
        t.nq = std::min(Br, Tq - t.i0);
        t.rows = G * t.nq;
        t.Rp = round_up(t.rows, W);
        t.wide = 2 * t.rows >= W;
        return t;
    };

    // Packs one query tile: scaled q and dout for the score products, plain
    // rows for dK/dV, lse and delta_i per row.
    auto prepare = [&](const QueryTile<T>& t, BackwardScratch<T>& s, bool need_rows) {
        pack_rows(s.qpack.data(), t, q, G, D, scale, t.wide);
        pack_rows(s.dopack.data(), t, dout, G, D, T(1), t.wide);
        if (need_rows) {
            pack_rows(s.qrows.data(), t, q, G, D, T(1), false);
            pack_rows(s.dorows.data(), t, dout, G, D, T(1), false);
        }
        std::fill(s.lse.data(), s.lse.data() + t.Rp, inf);
        std::fill(s.delta.data(), s.delta.data() + t.Rp, T(0));
        for (index_t g = 0; g < G; ++g)
            for (index_t i = 0; i < t.nq; ++i) {
                const index_t r = g * t.nq + i, h = t.kvh * G + g;
                const T l = lse[(t.b * Hq + h) * Tq + t.i0 + i];
                // A row with no visible key (lse = -inf) passes no gradient:
                // with lse = +inf every P of the row is exp(-inf) = 0.
                s.lse.data()[r] = l == -inf ? inf : l;
                s.delta.data()[r] = dot(dout.row(t.b, h, t.i0 + i), out.row(t.b, h, t.i0 + i), D);
            }
    };

    // P and dS for keys [j0, j0 + nk): st <- P, dpt <- dS (unscaled).
    auto recompute = [&](const QueryTile<T>& t, BackwardScratch<T>& s, index_t j0, index_t nk) {
        using Bt = simd::batch<T>;
        const index_t kend = c.key_lengths ? c.key_lengths[t.b] : Tk;
        const std::uint8_t* key_mask = c.key_padding_mask ? c.key_padding_mask + t.b * Tk : nullptr;
        score_tile(s.st.data(), t, s.qpack.data(), k.row(t.b, t.kvh, j0), k.row_stride, nk, D);
        const bool mask_needed = key_mask || !tile_fully_visible(rule, t.i0, t.nq, j0, j0 + nk, kend);
        bias_and_mask(s.st.data(), t.Rp, index_t{1}, t, G, j0, nk, bias, mask_needed, rule, kend, key_mask);
        score_tile(s.dpt.data(), t, s.dopack.data(), v.row(t.b, t.kvh, j0), v.row_stride, nk, D);
        for (index_t cc = 0; cc < t.Rp; cc += W) {
            const Bt l = simd::load(s.lse.data() + cc), dl = simd::load(s.delta.data() + cc);
            for (index_t j = 0; j < nk; ++j) {
                const Bt p = xsimd::exp(simd::load(s.st.data() + j * t.Rp + cc) - l);
                simd::store(s.st.data() + j * t.Rp + cc, p);
                simd::store(s.dpt.data() + j * t.Rp + cc, p * (simd::load(s.dpt.data() + j * t.Rp + cc) - dl));
            }
        }
    };

    // Key range [lo, hi) that some row of the tile sees.
    auto key_range = [&](const QueryTile<T>& t, index_t& lo, index_t& hi) {
        const index_t kend = c.key_lengths ? c.key_lengths[t.b] : Tk;
        index_t a, bb;
        rule.interval(t.i0, kend, lo, a);
        rule.interval(t.i0 + t.nq - 1, kend, bb, hi);
        hi = std::max(lo, hi);
    };

    // Pass A: dK, dV, dbias; a task owns (KV head, key tile) for every batch element.
    if (dk.data || dv.data || dbias.data) {
        run_tasks(Hkv * n_ktiles, attention_work(c), make_scratch, [&](index_t task, BackwardScratch<T>& s) {
            const index_t kvh = task / n_ktiles;
            const index_t j0 = (task % n_ktiles) * kKeyTile;
            const index_t nk = std::min(kKeyTile, Tk - j0);
            for (index_t b = 0; b < Bn; ++b) {
                std::fill(s.acc1.data(), s.acc1.data() + nk * Dp, T(0));
                std::fill(s.acc2.data(), s.acc2.data() + nk * Dp, T(0));
                bool touched = false;
                for (index_t qt = 0; qt < n_qtiles; ++qt) {
                    const QueryTile<T> t = make_tile(b, kvh, qt);
                    index_t lo, hi;
                    key_range(t, lo, hi);
                    if (hi <= j0 || lo >= j0 + nk) continue;
                    touched = true;
                    prepare(t, s, true);
                    recompute(t, s, j0, nk);
                    T* P = s.st.data();
                    T* dS = s.dpt.data();
                    // dV (nk x D) += P^T (nk x rows) dO (rows x D)
                    mm_acc(s.acc2.data(), Dp, nk, D, P, t.Rp, index_t{1}, s.dorows.data(), D, t.rows);
                    if (dbias.data) {
                        for (index_t g = 0; g < G; ++g)
                            for (index_t i = 0; i < t.nq; ++i) {
                                const index_t r = g * t.nq + i;
                                T* db = dbias.row(kvh * G + g, t.i0 + i) + j0;
                                for (index_t j = 0; j < nk; ++j) db[j] += dS[j * t.Rp + r];
                            }
                    }
                    // dK (nk x D) += scale dS^T (nk x rows) Q (rows x D)
                    for (index_t j = 0; j < nk; ++j) scale_row(dS + j * t.Rp, t.Rp, scale);
                    mm_acc(s.acc1.data(), Dp, nk, D, dS, t.Rp, index_t{1}, s.qrows.data(), D, t.rows);
                }
                if (!touched) continue;
                for (index_t j = 0; j < nk; ++j) {
                    if (dk.data) {
                        T* dst = dk.row(b, kvh, j0 + j);
                        const T* src = s.acc1.data() + j * Dp;
                        for (index_t d = 0; d < D; ++d) dst[d] += src[d];
                    }
                    if (dv.data) {
                        T* dst = dv.row(b, kvh, j0 + j);
                        const T* src = s.acc2.data() + j * Dp;
                        for (index_t d = 0; d < D; ++d) dst[d] += src[d];
                    }
                }
            }
        });
    }

    // Pass B: dQ; a task owns (batch, KV head, query tile).
    if (dq.data) {
        run_tasks(Bn * Hkv * n_qtiles, attention_work(c), make_scratch, [&](index_t task, BackwardScratch<T>& s) {
            const index_t kvh = task % Hkv;
            const index_t b = (task / Hkv) % Bn;
            const index_t qt = n_qtiles - 1 - task / (Hkv * Bn);
            const QueryTile<T> t = make_tile(b, kvh, qt);
            index_t lo, hi;
            key_range(t, lo, hi);
            if (hi <= lo) return;
            prepare(t, s, false);
            std::fill(s.acc1.data(), s.acc1.data() + t.rows * Dp, T(0));
            for (index_t j0 = lo; j0 < hi; j0 += kKeyTile) {
                const index_t nk = std::min(kKeyTile, hi - j0);
                recompute(t, s, j0, nk);
                // dQ (rows x D) += scale dS (rows x nk) K (nk x D)
                for (index_t j = 0; j < nk; ++j) scale_row(s.dpt.data() + j * t.Rp, t.Rp, scale);
                mm_acc(s.acc1.data(), Dp, t.rows, D, s.dpt.data(), index_t{1}, t.Rp, k.row(b, kvh, j0), k.row_stride,
                       nk);
            }
            for (index_t g = 0; g < G; ++g)
                for (index_t i = 0; i < t.nq; ++i) {
                    T* dst = dq.row(b, kvh * G + g, t.i0 + i);
                    const T* src = s.acc1.data() + (g * t.nq + i) * Dp;
                    for (index_t d = 0; d < D; ++d) dst[d] += src[d];
                }
        });
    }
}

// ---- reference -------------------------------------------------------------
// The plain definition: materialises each (b, h) score matrix (Tq x Tk),
// accumulates in double, takes a two-pass softmax. The spec the fused kernels
// are tested against; O(Tq * Tk) memory and serial, so for tests and
// benchmarks only.

namespace detail {

// Whether query i sees key j in batch element b (written from the mask
// definitions, independently of MaskRule).
inline bool reference_visible(const AttentionConfig& c, index_t b, index_t i, index_t j) {
    const index_t p = c.q_pos0 + i;
    bool visible = true;
    switch (c.mask) {
        case AttentionMask::bidirectional: break;
        case AttentionMask::causal: visible = j <= p; break;
        case AttentionMask::prefix_lm: visible = j < c.prefix_length || j <= p; break;
        case AttentionMask::local: visible = p - c.window < j && j <= p; break;
    }
    if (c.key_lengths && j >= c.key_lengths[b]) visible = false;
    if (c.key_padding_mask && c.key_padding_mask[b * c.kv_len + j] == 0) visible = false;
    return visible;
}

// probs (Tq x Tk) <- softmax rows of the scores of (b, h); lse_row (Tq).
template <class T>
void reference_probs(double* probs, double* lse_row, const HeadsView<const T>& q, const HeadsView<const T>& k,
                     const BiasView<const T>& bias, const AttentionConfig& c, index_t b, index_t h) {
    const index_t Tq = c.q_len, Tk = c.kv_len, D = c.head_dim, kvh = h / c.group_size();
    const double scale = c.scale_value();
    const double neg_inf = -std::numeric_limits<double>::infinity();
    for (index_t i = 0; i < Tq; ++i) {
        double* s = probs + i * Tk;
        double mx = neg_inf;
        for (index_t j = 0; j < Tk; ++j) {
            s[j] = neg_inf;
            if (!reference_visible(c, b, i, j)) continue;
            const T* qi = q.row(b, h, i);
            const T* kj = k.row(b, kvh, j);
            double acc = 0;
            for (index_t d = 0; d < D; ++d) acc += static_cast<double>(qi[d]) * static_cast<double>(kj[d]);
            s[j] = scale * acc + (bias.data ? static_cast<double>(bias.row(h, i)[j]) : 0.0);
            mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (index_t j = 0; j < Tk; ++j) {
            s[j] = mx == neg_inf ? 0.0 : std::exp(s[j] - mx);
            sum += s[j];
        }
        for (index_t j = 0; j < Tk; ++j) s[j] = sum > 0 ? s[j] / sum : 0.0;
        lse_row[i] = sum > 0 ? mx + std::log(sum) : neg_inf;
    }
}

}  // namespace detail

// Reference forward: same contract as attention_forward.
template <class T>
void attention_reference(HeadsView<T> out,                      // (B, Hq, Tq, D)
                         detail::Same<T*> lse,                                 // (B, Hq, Tq) contiguous, or null
                         detail::Same<HeadsView<const T>> q,     // (B, Hq, Tq, D)
                         detail::Same<HeadsView<const T>> k,     // (B, Hkv, Tk, D)
                         detail::Same<HeadsView<const T>> v,     // (B, Hkv, Tk, D)
                         detail::Same<BiasView<const T>> bias,   // (Hq, Tq, Tk) or null data
                         const AttentionConfig& c) {
    detail::check_forward_args("attention_reference", &out, q, k, v, c);
    detail::check_bias("attention_reference", "bias", bias, c, false);
    const index_t Tq = c.q_len, Tk = c.kv_len, D = c.head_dim;
    if (c.batch == 0 || Tq == 0) return;
    AlignedBuffer<double> probs(Tq * Tk);  // (Tq, Tk)
    AlignedBuffer<double> lse_row(Tq);
    for (index_t b = 0; b < c.batch; ++b)
        for (index_t h = 0; h < c.n_heads; ++h) {
            const index_t kvh = h / c.group_size();
            detail::reference_probs(probs.data(), lse_row.data(), q, k, bias, c, b, h);
            for (index_t i = 0; i < Tq; ++i) {
                T* o = out.row(b, h, i);
                for (index_t d = 0; d < D; ++d) {
                    double acc = 0;
                    for (index_t j = 0; j < Tk; ++j)
                        acc += probs.data()[i * Tk + j] * static_cast<double>(v.row(b, kvh, j)[d]);
                    o[d] = static_cast<T>(acc);
                }
                if (lse) lse[(b * c.n_heads + h) * Tq + i] = static_cast<T>(lse_row.data()[i]);
            }
        }
}

// Reference backward: same contract as attention_backward, but recomputes the
// softmax from q, k and bias itself (out and lse are only checked for null).
//   dV[j] += sum_i P[i,j] dO[i]          dP[i,j] = dO[i] . V[j]
//   dS[i,j] = P[i,j] (dP[i,j] - sum_j' P[i,j'] dP[i,j'])
//   dQ[i] += scale sum_j dS[i,j] K[j]    dK[j] += scale sum_i dS[i,j] Q[i]    dbias[h,i,j] += dS[i,j]
template <class T>
void attention_backward_reference(HeadsView<T> dq,                         // (B, Hq, Tq, D)
                                  detail::Same<HeadsView<T>> dk,           // (B, Hkv, Tk, D)
                                  detail::Same<HeadsView<T>> dv,           // (B, Hkv, Tk, D)
                                  detail::Same<BiasView<T>> dbias,         // (Hq, Tq, Tk) or null data
                                  detail::Same<HeadsView<const T>> dout,   // (B, Hq, Tq, D)
                                  detail::Same<HeadsView<const T>> out,    // (B, Hq, Tq, D)
                                  detail::Same<const T*> lse,                            // (B, Hq, Tq)
                                  detail::Same<HeadsView<const T>> q,      // (B, Hq, Tq, D)
                                  detail::Same<HeadsView<const T>> k,      // (B, Hkv, Tk, D)
                                  detail::Same<HeadsView<const T>> v,      // (B, Hkv, Tk, D)
                                  detail::Same<BiasView<const T>> bias,    // (Hq, Tq, Tk) or null data
                                  const AttentionConfig& c) {
    const char* op = "attention_backward_reference";
    detail::check_forward_args<T>(op, nullptr, q, k, v, c);
    detail::check_bias(op, "bias", bias, c, false);
    detail::check_bias(op, "dbias", dbias, c, true);
    const index_t Tq = c.q_len, Tk = c.kv_len, D = c.head_dim;
    if (c.batch == 0 || Tq == 0 || Tk == 0) return;
    detail::check_heads(op, "dout", dout, c.n_heads, Tq, D, false);
    detail::check_heads(op, "out", out, c.n_heads, Tq, D, false);
    LLMBLOCKS_CHECK(lse != nullptr, op, ": lse (B, Hq, Tq) = ", Shape{c.batch, c.n_heads, Tq}, " is null");
    const double scale = c.scale_value();
    AlignedBuffer<double> probs(Tq * Tk), dS(Tq * Tk);  // (Tq, Tk) each
    AlignedBuffer<double> lse_row(Tq);
    for (index_t b = 0; b < c.batch; ++b)
        for (index_t h = 0; h < c.n_heads; ++h) {
            const index_t kvh = h / c.group_size();
            detail::reference_probs(probs.data(), lse_row.data(), q, k, bias, c, b, h);
            const double* P = probs.data();
            for (index_t i = 0; i < Tq; ++i) {
                const T* doi = dout.row(b, h, i);
                double rowdot = 0;
                for (index_t j = 0; j < Tk; ++j) {
                    double dp = 0;
                    for (index_t d = 0; d < D; ++d)
                        dp += static_cast<double>(doi[d]) * static_cast<double>(v.row(b, kvh, j)[d]);
                    dS.data()[i * Tk + j] = dp;
                    rowdot += P[i * Tk + j] * dp;
                }
                for (index_t j = 0; j < Tk; ++j)
                    dS.data()[i * Tk + j] = P[i * Tk + j] * (dS.data()[i * Tk + j] - rowdot);
            }
            for (index_t i = 0; i < Tq; ++i)
                for (index_t j = 0; j < Tk; ++j) {
                    const double p = P[i * Tk + j], ds = dS.data()[i * Tk + j];
                    if (dv.data) {
                        T* dvj = dv.row(b, kvh, j);
                        for (index_t d = 0; d < D; ++d) dvj[d] += static_cast<T>(p * dout.row(b, h, i)[d]);
                    }
                    if (dk.data) {
                        T* dkj = dk.row(b, kvh, j);
                        for (index_t d = 0; d < D; ++d) dkj[d] += static_cast<T>(scale * ds * q.row(b, h, i)[d]);
                    }
                    if (dq.data) {
                        T* dqi = dq.row(b, h, i);
                        for (index_t d = 0; d < D; ++d) dqi[d] += static_cast<T>(scale * ds * k.row(b, kvh, j)[d]);
                    }
                    if (dbias.data) dbias.row(h, i)[j] += static_cast<T>(ds);
                }
        }
}

}  // namespace llmblocks::kernels
