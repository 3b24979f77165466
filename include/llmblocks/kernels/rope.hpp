// llmblocks/kernels/rope.hpp — rotary position embeddings (RoPE; RoFormer, Su et al. 2021),
// the position encoding of GPT-J, GPT-NeoX, PaLM and Llama.
//
// RoPE rotates each pair (a, b) of features of a query or key at position p by the angle
// p * inv_freq[i], with inv_freq[i] = theta^(-2i / rot_dim) for i < rot_dim / 2:
//     a' = a cos - b sin,    b' = b cos + a sin.
// A dot product of a rotated query and key then depends only on the offset between their
// positions. Two conventions pair the features differently (same math, permuted features):
//   RopeStyle::rotate_half — Hugging Face Llama, GPT-NeoX, and PaLM in this library: pair i is
//       (x[i], x[i + rot_dim/2]); written out = x*cos + rotate_half(x)*sin with
//       rotate_half(x) = cat(-x[h:], x[:h]) and cos = cat(cos_i, cos_i) of length rot_dim.
//   RopeStyle::interleaved — the RoFormer paper, GPT-J, Meta's original Llama code (which
//       multiplies complex numbers x[2i] + i x[2i+1] by e^(i angle)): pair i is (x[2i], x[2i+1]).
// Interleaved feature 2i is rotate-half feature i and 2i+1 is i + rot_dim/2 (the permutation that
// Hugging Face applies to Meta's q/k projection weights when converting Llama checkpoints).
// Partial rotation (GPT-NeoX rotary_pct, GPT-J rotary_dim): only the first rot_dim <= head_dim
// features of each head rotate; the rest pass through unchanged.
//
// Layout: x is (B, H, T, D) (T = seq_len, D = head_dim) with the D features of a row contiguous;
// the B, H and T dimensions may have any strides (RopeStrides), so q and k can be read straight
// out of a (B, T, H, D) or fused (B, T, 3, H, D) projection. Row t is at position pos0 + t
// (pos0 > 0 when decoding with a KV cache).
//
// Numerics: RopeCache computes the angles, cos and sin in double and rounds once to T. (Hugging
// Face computes them in float32: p * inv_freq then carries an absolute error of about
// p * 2^-24 rad, 3e-5 at position 500, which this library does not reproduce.)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/memory.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/simd.hpp"

namespace llmblocks::kernels {

// Which features form a rotated pair (see the file comment).
enum class RopeStyle {
    rotate_half,  // (x[i], x[i + rot_dim/2]): HF Llama, GPT-NeoX, PaLM here
    interleaved,  // (x[2i], x[2i+1]): RoFormer, GPT-J, Meta's Llama
};

inline const char* rope_style_name(RopeStyle style) {
    return style == RopeStyle::rotate_half ? "rotate_half" : "interleaved";
}

// The cos and sin tables of RoPE: cos(p * inv_freq[i]) and sin(p * inv_freq[i]) for positions
// 0 .. positions()-1 and i < rot_dim/2, each a (positions, rot_dim/2) row-major table.
// Kernels take it const; grow it with reserve() before a call that needs more positions
// (reserve is not thread-safe and moves the tables).
template <class T>
class RopeCache {
public:
    // rot_dim: features rotated per head (even, >= 2). theta: the frequency base, 10000 in
    // RoFormer, GPT-NeoX and Llama 2, 500000 in Llama 3. positions: rows computed up front.
    explicit RopeCache(index_t rot_dim, double theta = 10000.0, index_t positions = 0)
        : rot_dim_(rot_dim), theta_(theta) {
        LLMBLOCKS_CHECK(rot_dim >= 2 && rot_dim % 2 == 0, "RopeCache: rot_dim must be even and >= 2, got ", rot_dim);
        LLMBLOCKS_CHECK(std::isfinite(theta) && theta > 0.0, "RopeCache: theta must be positive and finite, got ", theta);
        LLMBLOCKS_CHECK(positions >= 0, "RopeCache: negative positions ", positions);
        reserve(positions);
    }

    RopeCache(const RopeCache& other)
        : rot_dim_(other.rot_dim_), theta_(other.theta_), positions_(other.positions_),
          cos_(other.positions_ * other.half_dim()), sin_(other.positions_ * other.half_dim()) {
        std::copy_n(other.cos_.data(), cos_.size(), cos_.data());
        std::copy_n(other.sin_.data(), sin_.size(), sin_.data());
    }
    RopeCache& operator=(const RopeCache& other) {
        if (this != &other) *this = RopeCache(other);
        return *this;
    }
    RopeCache(RopeCache&&) noexcept = default;
    RopeCache& operator=(RopeCache&&) noexcept = default;

    // Makes positions 0 .. n-1 available. Grows at least geometrically (x2), so one decode step
    // at a time costs amortised O(rot_dim) per step.
    void reserve(index_t n) {
        LLMBLOCKS_CHECK(n >= 0, "RopeCache::reserve: negative positions ", n);
        if (n <= positions_) return;
        const index_t grown = std::max(n, 2 * positions_);
        const index_t h = half_dim();
        AlignedBuffer<T> cos(grown * h), sin(grown * h);
        std::copy_n(cos_.data(), positions_ * h, cos.data());
        std::copy_n(sin_.data(), positions_ * h, sin.data());
        for (index_t p = positions_; p < grown; ++p) {
            for (index_t i = 0; i < h; ++i) {
                const double angle = static_cast<double>(p) * inv_freq(i);
                cos.data()[p * h + i] = static_cast<T>(std::cos(angle));
                sin.data()[p * h + i] = static_cast<T>(std::sin(angle));
            }
        }
        cos_ = std::move(cos);
        sin_ = std::move(sin);
        positions_ = grown;
    }

    index_t rot_dim() const { return rot_dim_; }
    index_t half_dim() const { return rot_dim_ / 2; }
    double theta() const { return theta_; }
    index_t positions() const { return positions_; }
    // theta^(-2i / rot_dim), in double.
    double inv_freq(index_t i) const {
        return std::pow(theta_, -2.0 * static_cast<double>(i) / static_cast<double>(rot_dim_));
    }
    // Row `pos` of the tables: rot_dim/2 values each. Unchecked.
    const T* cos_row(index_t pos) const { return cos_.data() + pos * half_dim(); }  // (rot_dim/2)
    const T* sin_row(index_t pos) const { return sin_.data() + pos * half_dim(); }  // (rot_dim/2)

private:
    index_t rot_dim_ = 0;
    double theta_ = 10000.0;
    index_t positions_ = 0;
    AlignedBuffer<T> cos_;  // (positions, rot_dim/2)
    AlignedBuffer<T> sin_;  // (positions, rot_dim/2)
};

// Element strides of the B, H and T dimensions of a (B, H, T, D) tensor whose D features are
// contiguous. A contiguous (B, H, T, D) tensor has {H*T*D, T*D, D}; a (B, T, H, D) buffer read
// as (B, H, T, D) has {T*H*D, D, H*D}.
struct RopeStrides {
    index_t b = 0;
    index_t h = 0;
    index_t t = 0;
    bool operator==(const RopeStrides&) const = default;
};

inline RopeStrides rope_contiguous_strides(index_t H, index_t seq_len, index_t head_dim) {
    return {H * seq_len * head_dim, seq_len * head_dim, head_dim};
}

namespace detail {

// Argument checks shared by the forward and backward kernels and their references.
template <class T>
void rope_check(const char* op, const T* out, const T* inp, const RopeCache<T>& cache, index_t B, index_t H,
                index_t seq_len, index_t head_dim, index_t pos0) {
    LLMBLOCKS_CHECK(B >= 0 && H >= 0 && seq_len >= 0 && head_dim >= 0, op, ": negative size in x ",
                    Shape{B, H, seq_len, head_dim});
    LLMBLOCKS_CHECK(cache.rot_dim() <= head_dim, op, ": rot_dim ", cache.rot_dim(), " exceeds head_dim ", head_dim,
                    " of x ", Shape{B, H, seq_len, head_dim});
    LLMBLOCKS_CHECK(pos0 >= 0, op, ": negative start position ", pos0);
    if (B * H * seq_len == 0) return;
    LLMBLOCKS_CHECK(pos0 + seq_len <= cache.positions(), op, ": positions ", pos0, "..", pos0 + seq_len - 1,
                    " of x ", Shape{B, H, seq_len, head_dim}, " exceed the RopeCache (", cache.positions(),
                    " positions); call reserve(", pos0 + seq_len, ") first");
    LLMBLOCKS_CHECK(out != nullptr && inp != nullptr, op, ": null data pointer for x ", Shape{B, H, seq_len, head_dim});
}


// Rotate-half row, pairs (i, i + half): the cos/sin of W consecutive pairs are W contiguous
// lanes, so the row vectorises directly. Backward = false: dst = R src (dst may be src: each
// element is read before it is written). Backward = true: dst += R^T src (rotation by -angle).
template <bool Backward, class T>
void rope_rotate_half_row(T* dst, const T* src, const T* cos, const T* sin, index_t half) {
    using B = simd::batch<T>;
    constexpr index_t W = simd::width<T>;
    T* dst2 = dst + half;
    const T* src2 = src + half;
    index_t i = 0;
    for (; i + W <= half; i += W) {
        const B c = simd::load(cos + i), s = simd::load(sin + i);
        const B a = simd::load(src + i), b = simd::load(src2 + i);
        if constexpr (!Backward) {
            simd::store(dst + i, fms(a, c, b * s));   // a cos - b sin
            simd::store(dst2 + i, fma(b, c, a * s));  // b cos + a sin
        } else {
            simd::store(dst + i, simd::load(dst + i) + fma(a, c, b * s));   // += a cos + b sin
            simd::store(dst2 + i, simd::load(dst2 + i) + fms(b, c, a * s));  // += b cos - a sin
        }
    }
    for (; i < half; ++i) {
        const T c = cos[i], s = sin[i], a = src[i], b = src2[i];
        if constexpr (!Backward) {
            dst[i] = a * c - b * s;
            dst2[i] = b * c + a * s;
        } else {
            dst[i] += a * c + b * s;
            dst2[i] += b * c - a * s;
        }
    }
}

// Interleaved row, pairs (2i, 2i+1): a batch of W features holds W/2 pairs. The cos/sin of W
// pairs are loaded once and spread over two batches by lane permutations ([c0 c0 c1 c1 ...] and
// its upper half); each lane's partner comes from swapping neighbours, and a sign pattern
// [-1 +1 -1 +1 ...] (forward; flipped for the backward) gives y = x*cos + swap(x)*(sign*sin).
// Why SIMD here: GCC 12 -O3 vectorises the scalar pair loop by itself (de-interleaving with
// two-source permutes, which xsimd 8.1 does not expose) and was as fast as this path for 256 KB
// and 8 MB inputs, 1.3x faster for 16 KB (AVX-512, one thread); at -O2 it leaves the loop scalar
// and this path was 2.5-4.5x faster.
template <bool Backward, class T>
void rope_interleaved_row(T* dst, const T* src, const T* cos, const T* sin, index_t half) {
    using B = simd::batch<T>;
    constexpr index_t W = simd::width<T>;
    index_t i = 0;  // pair index
    if constexpr (W >= 2) {
        using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
        using UB = xsimd::batch<U, simd::arch>;
        struct SwapNeighbours {
            static constexpr U get(unsigned k, unsigned) { return static_cast<U>(k ^ 1u); }
        };
        struct SpreadLow {
            static constexpr U get(unsigned k, unsigned) { return static_cast<U>(k / 2); }
        };
        struct SpreadHigh {
            static constexpr U get(unsigned k, unsigned n) { return static_cast<U>(n / 2 + k / 2); }
        };
        constexpr auto swap = xsimd::make_batch_constant<UB, SwapNeighbours>();
        constexpr auto spread_low = xsimd::make_batch_constant<UB, SpreadLow>();
        constexpr auto spread_high = xsimd::make_batch_constant<UB, SpreadHigh>();
        alignas(64) T sign_lanes[W];
        for (index_t k = 0; k < W; ++k) sign_lanes[k] = ((k % 2 == 0) != Backward) ? T(-1) : T(1);
        const B sign = simd::load(sign_lanes);
        for (; i + W <= half; i += W) {
            const B c = simd::load(cos + i), s = simd::load(sin + i);
            const B x0 = simd::load(src + 2 * i), x1 = simd::load(src + 2 * i + W);
            const B y0 = fma(x0, swizzle(c, spread_low), swizzle(x0, swap) * (swizzle(s, spread_low) * sign));
            const B y1 = fma(x1, swizzle(c, spread_high), swizzle(x1, swap) * (swizzle(s, spread_high) * sign));
            if constexpr (!Backward) {
                simd::store(dst + 2 * i, y0);
                simd::store(dst + 2 * i + W, y1);
            } else {
                simd::store(dst + 2 * i, simd::load(dst + 2 * i) + y0);
                simd::store(dst + 2 * i + W, simd::load(dst + 2 * i + W) + y1);
            }
        }
    }
    for (; i < half; ++i) {
        const T c = cos[i], s = sin[i], a = src[2 * i], b = src[2 * i + 1];
        if constexpr (!Backward) {
            dst[2 * i] = a * c - b * s;
            dst[2 * i + 1] = b * c + a * s;
        } else {
            dst[2 * i] += a * c + b * s;
            dst[2 * i + 1] += b * c - a * s;
        }
    }
}

// dst += src over n elements.
template <class T>
void add_into(T* dst, const T* src, index_t n) {
    constexpr index_t W = simd::width<T>;
    index_t i = 0;
    for (; i + W <= n; i += W) simd::store(dst + i, simd::load(dst + i) + simd::load(src + i));
    for (; i < n; ++i) dst[i] += src[i];
}

// The body of rope_forward (Backward = false: dst = RoPE(src)) and rope_backward (Backward =
// true: dst += RoPE^T(src)), threaded over the B*H*T rows in (b, h, t) order; the row indices
// advance by counting (no divisions per row).
template <bool Backward, class T>
void rope_apply(T* dst, const T* src, const RopeCache<T>& cache, RopeStyle style, index_t B, index_t H,
                index_t seq_len, index_t head_dim, index_t pos0, RopeStrides dst_strides, RopeStrides src_strides) {
    const index_t rows = B * H * seq_len;
    if (rows == 0) return;
    const index_t half = cache.half_dim(), rot = cache.rot_dim();
    // About 16K features per chunk: a thread start costs a few microseconds, RoPE ~1 ns/feature.
    const index_t grain = std::max<index_t>(1, 16384 / std::max<index_t>(head_dim, 1));
    parallel_for(0, rows, grain, [&](index_t lo, index_t hi) {
        index_t t = lo % seq_len, h = (lo / seq_len) % H, b = lo / (seq_len * H);
        for (index_t r = lo; r < hi; ++r) {
            T* d = dst + b * dst_strides.b + h * dst_strides.h + t * dst_strides.t;
            const T* s = src + b * src_strides.b + h * src_strides.h + t * src_strides.t;
            const T* cos = cache.cos_row(pos0 + t);
            const T* sin = cache.sin_row(pos0 + t);
            if (style == RopeStyle::rotate_half)
                rope_rotate_half_row<Backward>(d, s, cos, sin, half);
            else
                rope_interleaved_row<Backward>(d, s, cos, sin, half);
            // Features rot_dim .. head_dim-1 pass through.
            if constexpr (Backward)
                add_into(d + rot, s + rot, head_dim - rot);
            else if (d != s)
                std::copy(s + rot, s + head_dim, d + rot);
            if (++t == seq_len) {
                t = 0;
                if (++h == H) {
                    h = 0;
                    ++b;
                }
            }
        }
    });
}

}  // namespace detail

// out = RoPE(inp): rotates the first rot_dim features of every row of x at positions
// pos0 .. pos0+seq_len-1; features rot_dim .. head_dim-1 are copied. out may be inp (in place,
// then with equal strides) but must not otherwise overlap it.
template <class T>
void rope_forward(T* out,                   // (B, H, T, D)
                  const T* inp,             // (B, H, T, D)
                  const RopeCache<T>& cache, RopeStyle style, index_t B, index_t H, index_t seq_len,
                  index_t head_dim, index_t pos0, RopeStrides out_strides, RopeStrides inp_strides) {
    detail::rope_check("rope_forward", out, static_cast<const T*>(inp), cache, B, H, seq_len, head_dim, pos0);
    LLMBLOCKS_CHECK(out != inp || out_strides == inp_strides,
                    "rope_forward: in place (out == inp) needs equal out and inp strides");
    detail::rope_apply<false>(out, inp, cache, style, B, H, seq_len, head_dim, pos0, out_strides, inp_strides);
}

// Contiguous (B, H, T, D) out and inp.
template <class T>
void rope_forward(T* out, const T* inp, const RopeCache<T>& cache, RopeStyle style, index_t B, index_t H,
                  index_t seq_len, index_t head_dim, index_t pos0) {
    const RopeStrides s = rope_contiguous_strides(H, seq_len, head_dim);
    rope_forward(out, inp, cache, style, B, H, seq_len, head_dim, pos0, s, s);
}

// dinp += RoPE^T(dout). The rotation is orthogonal, so its adjoint rotates by -angle:
//   forward  a' = a cos - b sin,  b' = b cos + a sin
//   backward da += da' cos + db' sin,  db += db' cos - da' sin;
// pass-through features: dinp += dout. A null dinp does nothing. dinp must not overlap dout.
template <class T>
void rope_backward(T* dinp,               // (B, H, T, D)
                   const T* dout,         // (B, H, T, D)
                   const RopeCache<T>& cache, RopeStyle style, index_t B, index_t H, index_t seq_len,
                   index_t head_dim, index_t pos0, RopeStrides dinp_strides, RopeStrides dout_strides) {
    if (dinp == nullptr) return;
    detail::rope_check("rope_backward", static_cast<const T*>(dinp), dout, cache, B, H, seq_len, head_dim, pos0);
    LLMBLOCKS_CHECK(dinp != dout, "rope_backward: dinp must not be dout (it accumulates)");
    detail::rope_apply<true>(dinp, dout, cache, style, B, H, seq_len, head_dim, pos0, dinp_strides, dout_strides);
}

// Contiguous (B, H, T, D) dinp and dout.
template <class T>
void rope_backward(T* dinp, const T* dout, const RopeCache<T>& cache, RopeStyle style, index_t B, index_t H,
                   index_t seq_len, index_t head_dim, index_t pos0) {
    const RopeStrides s = rope_contiguous_strides(H, seq_len, head_dim);
    rope_backward(dinp, dout, cache, style, B, H, seq_len, head_dim, pos0, s, s);
}

// ---- references: plain scalar loops, the spec the kernels above are tested against ----

namespace detail {
// The features of pair i: (i, i + half) or (2i, 2i+1).
inline void rope_pair(RopeStyle style, index_t half, index_t i, index_t& first, index_t& second) {
    first = style == RopeStyle::rotate_half ? i : 2 * i;
    second = style == RopeStyle::rotate_half ? i + half : 2 * i + 1;
}
}  // namespace detail

template <class T>
void rope_forward_reference(T* out, const T* inp, const RopeCache<T>& cache, RopeStyle style, index_t B, index_t H,
                            index_t seq_len, index_t head_dim, index_t pos0, RopeStrides out_strides,
                            RopeStrides inp_strides) {
    detail::rope_check("rope_forward_reference", out, static_cast<const T*>(inp), cache, B, H, seq_len, head_dim,
                       pos0);
    LLMBLOCKS_CHECK(out != inp || out_strides == inp_strides,
                    "rope_forward_reference: in place (out == inp) needs equal out and inp strides");
    const index_t half = cache.half_dim();
    for (index_t b = 0; b < B; ++b)
        for (index_t h = 0; h < H; ++h)
            for (index_t t = 0; t < seq_len; ++t) {
                T* o = out + b * out_strides.b + h * out_strides.h + t * out_strides.t;
                const T* x = inp + b * inp_strides.b + h * inp_strides.h + t * inp_strides.t;
                const T* cos = cache.cos_row(pos0 + t);
                const T* sin = cache.sin_row(pos0 + t);
                for (index_t i = 0; i < half; ++i) {
                    index_t j1, j2;
                    detail::rope_pair(style, half, i, j1, j2);
                    const T a = x[j1], bb = x[j2];
                    o[j1] = a * cos[i] - bb * sin[i];
                    o[j2] = bb * cos[i] + a * sin[i];
                }
                for (index_t j = cache.rot_dim(); j < head_dim; ++j) o[j] = x[j];
            }
}

template <class T>
void rope_forward_reference(T* out, const T* inp, const RopeCache<T>& cache, RopeStyle style, index_t B, index_t H,
                            index_t seq_len, index_t head_dim, index_t pos0) {
    const RopeStrides s = rope_contiguous_strides(H, seq_len, head_dim);
    rope_forward_reference(out, inp, cache, style, B, H, seq_len, head_dim, pos0, s, s);
}

template <class T>
void rope_backward_reference(T* dinp, const T* dout, const RopeCache<T>& cache, RopeStyle style, index_t B,
                             index_t H, index_t seq_len, index_t head_dim, index_t pos0, RopeStrides dinp_strides,
                             RopeStrides dout_strides) {
    if (dinp == nullptr) return;
    detail::rope_check("rope_backward_reference", static_cast<const T*>(dinp), dout, cache, B, H, seq_len, head_dim,
                       pos0);
    LLMBLOCKS_CHECK(dinp != dout, "rope_backward_reference: dinp must not be dout (it accumulates)");
    const index_t half = cache.half_dim();
    for (index_t b = 0; b < B; ++b)
        for (index_t h = 0; h < H; ++h)
            for (index_t t = 0; t < seq_len; ++t) {
                T* dx = dinp + b * dinp_strides.b + h * dinp_strides.h + t * dinp_strides.t;
                const T* dy = dout + b * dout_strides.b + h * dout_strides.h + t * dout_strides.t;
                const T* cos = cache.cos_row(pos0 + t);
                const T* sin = cache.sin_row(pos0 + t);
                for (index_t i = 0; i < half; ++i) {
                    index_t j1, j2;
                    detail::rope_pair(style, half, i, j1, j2);
                    dx[j1] += dy[j1] * cos[i] + dy[j2] * sin[i];
                    dx[j2] += dy[j2] * cos[i] - dy[j1] * sin[i];
                }
                for (index_t j = cache.rot_dim(); j < head_dim; ++j) dx[j] += dy[j];
            }
}

template <class T>
void rope_backward_reference(T* dinp, const T* dout, const RopeCache<T>& cache, RopeStyle style, index_t B,
                             index_t H, index_t seq_len, index_t head_dim, index_t pos0) {
    const RopeStrides s = rope_contiguous_strides(H, seq_len, head_dim);
    rope_backward_reference(dinp, dout, cache, style, B, H, seq_len, head_dim, pos0, s, s);
}

}  // namespace llmblocks::kernels
