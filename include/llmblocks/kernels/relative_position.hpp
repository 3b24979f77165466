// llmblocks/kernels/relative_position.hpp — T5's bucketed relative position bias (Raffel et al.
// 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer").
//
// T5 adds no position embedding to its inputs. Instead every self-attention score gets a learned
// scalar per head that depends only on the bucket of the relative position key_pos - query_pos:
//     scores[h, i, k] += weight[bucket(k - (q0 + i)), h],   weight (num_buckets, H).
// Buckets are exact for small distances and logarithmically wider up to max_distance; everything
// farther shares the last bucket. The encoder's buckets are bidirectional (half of them for keys
// after the query), the decoder's causal (only keys at or before the query are distinguished).
// Hugging Face's T5Attention computes the bias once in the first layer and shares it with all
// layers; cross-attention has none.
//
// The bucket function reproduces Hugging Face's T5Attention._relative_position_bucket exactly,
// including its float32 arithmetic (see t5_relative_position_bucket).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/memory.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/simd.hpp"

namespace llmblocks::kernels {

// The bucketing of one attention stack (Hugging Face T5Config defaults).
struct T5BucketConfig {
    bool bidirectional = true;   // encoder self-attention: true; decoder self-attention: false
    index_t num_buckets = 32;    // relative_attention_num_buckets
    index_t max_distance = 128;  // relative_attention_max_distance
};

namespace detail {

// HF's formula needs max_exact >= 1 (it divides by max_exact and by log(max_distance / max_exact))
// and max_distance > max_exact (otherwise the logarithmic buckets run backwards or divide 0 by 0).
inline void t5_bucket_check(const char* op, bool bidirectional, index_t num_buckets, index_t max_distance) {
    LLMBLOCKS_CHECK(num_buckets >= (bidirectional ? 4 : 2), op, ": num_buckets must be >= ", bidirectional ? 4 : 2,
                    " for ", bidirectional ? "bidirectional" : "causal", " buckets, got ", num_buckets);
    const index_t max_exact = (bidirectional ? num_buckets / 2 : num_buckets) / 2;
    LLMBLOCKS_CHECK(max_distance > max_exact, op, ": max_distance ", max_distance, " must exceed max_exact = ",
                    max_exact, " (the distances with a bucket each) of num_buckets ", num_buckets);
}

// The bucket function without argument checks (see t5_relative_position_bucket).
inline index_t t5_bucket_unchecked(index_t relative_position, bool bidirectional, index_t num_buckets,
                                   index_t max_distance) {
    index_t bucket = 0;
    index_t n;  // distance in the direction that has its own buckets, >= 0
    if (bidirectional) {
        num_buckets /= 2;
        if (relative_position > 0) bucket += num_buckets;  // keys after the query: upper half
        // |relative_position|, saturating: INT64_MIN has no positive counterpart.
        n = relative_position >= 0 ? relative_position
            : relative_position == std::numeric_limits<index_t>::min() ? std::numeric_limits<index_t>::max()
                                                                       : -relative_position;
    } else {
        // Causal: keys after the query all land in bucket 0.
        n = relative_position >= 0 ? 0
            : relative_position == std::numeric_limits<index_t>::min() ? std::numeric_limits<index_t>::max()
                                                                       : -relative_position;
    }
    const index_t max_exact = num_buckets / 2;
    if (n < max_exact) return bucket + n;
    // HF: max_exact + (torch.log(n.float() / max_exact) / math.log(max_distance / max_exact)
    //                  * (num_buckets - max_exact)).to(torch.long)
    // Every operation is float32 as in PyTorch: the Python scalars are rounded to float first,
    // and .to(torch.long) truncates toward zero (the value is >= 0 here).
    const float ratio = static_cast<float>(n) / static_cast<float>(max_exact);
    const float log_base = static_cast<float>(std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)));
    const float scaled = std::log(ratio) / log_base * static_cast<float>(num_buckets - max_exact);
    // Clamp before converting: min(max_exact + trunc(scaled), num_buckets - 1).
    const index_t large = scaled >= static_cast<float>(num_buckets) ? num_buckets - 1
                                                                    : std::min(max_exact + static_cast<index_t>(scaled),
                                                                               num_buckets - 1);
    return bucket + large;
}

}  // namespace detail

// The T5 bucket of relative_position = key_pos - query_pos (Hugging Face's
// T5Attention._relative_position_bucket):
//   bidirectional: num_buckets /= 2; bucket = (rel > 0) * num_buckets; n = |rel|
//   causal:        bucket = 0; n = max(-rel, 0)
//   max_exact = num_buckets / 2
//   n <  max_exact: bucket += n
//   n >= max_exact: bucket += min(max_exact + int(log(n / max_exact) / log(max_distance / max_exact)
//                                                 * (num_buckets - max_exact)), num_buckets - 1)
// in float32, truncating toward zero. Needs num_buckets >= 4 (bidirectional) or >= 2 (causal) and
// max_distance > max_exact.
inline index_t t5_relative_position_bucket(index_t relative_position, bool bidirectional, index_t num_buckets,
                                           index_t max_distance) {
    detail::t5_bucket_check("t5_relative_position_bucket", bidirectional, num_buckets, max_distance);
    return detail::t5_bucket_unchecked(relative_position, bidirectional, num_buckets, max_distance);
}

// buckets[i, k] = bucket(k - (q0 + i)) for query positions q0 .. q0+Tq-1 and key positions
// 0 .. Tk-1 (q0 = the number of cached keys when a decoder extends a KV cache).
inline void t5_relative_position_buckets(index_t* buckets,  // (Tq, Tk)
                                         const T5BucketConfig& config, index_t Tq, index_t Tk, index_t q0) {
    detail::t5_bucket_check("t5_relative_position_buckets", config.bidirectional, config.num_buckets,
                            config.max_distance);
    LLMBLOCKS_CHECK(Tq >= 0 && Tk >= 0 && q0 >= 0, "t5_relative_position_buckets: negative size in (Tq, Tk) ",
                    Shape{Tq, Tk}, " or start position ", q0);
    if (Tq * Tk == 0) return;
    LLMBLOCKS_CHECK(buckets != nullptr, "t5_relative_position_buckets: null output for ", Shape{Tq, Tk});
    for (index_t i = 0; i < Tq; ++i)
        for (index_t k = 0; k < Tk; ++k)
            buckets[i * Tk + k] = detail::t5_bucket_unchecked(k - (q0 + i), config.bidirectional, config.num_buckets,
                                                              config.max_distance);
}

namespace detail {

inline void relative_bias_check(const char* op, const void* out, const void* inp, const T5BucketConfig& config,
                                index_t H, index_t Tq, index_t Tk, index_t q0) {
    t5_bucket_check(op, config.bidirectional, config.num_buckets, config.max_distance);
    LLMBLOCKS_CHECK(H >= 0 && Tq >= 0 && Tk >= 0, op, ": negative size in bias ", Shape{H, Tq, Tk});
    LLMBLOCKS_CHECK(q0 >= 0, op, ": negative start position ", q0);
    LLMBLOCKS_CHECK(H * Tq * Tk == 0 || (out != nullptr && inp != nullptr), op, ": null data pointer for bias ",
                    Shape{H, Tq, Tk}, " / weight ", Shape{config.num_buckets, H});
}

// The bucket depends only on the diagonal j = k - i + Tq - 1 (relative position k - q0 - i), so
// one (Tq + Tk - 1) vector of buckets describes the whole (Tq, Tk) table.
inline std::vector<index_t> diagonal_buckets(const T5BucketConfig& config, index_t Tq, index_t Tk, index_t q0) {
    std::vector<index_t> buckets(static_cast<std::size_t>(Tq + Tk - 1));
    for (index_t j = 0; j < Tq + Tk - 1; ++j)
        buckets[j] = t5_bucket_unchecked(j - (Tq - 1) - q0, config.bidirectional, config.num_buckets, config.max_distance);
    return buckets;
}

}  // namespace detail

// bias[h, i, k] = weight[bucket(k - (q0 + i)), h]: the additive attention bias of T5 for query
// positions q0 .. q0+Tq-1 and key positions 0 .. Tk-1 (HF T5Attention.compute_bias, without its
// leading batch dimension of 1).
// Toeplitz trick: bias[h] is constant along diagonals, so per head we gather one vector
// v[j] = weight[bucket(j), h] of the Tq + Tk - 1 diagonals, and row i of bias[h] is the slice
// v[Tq-1-i .. Tq-1-i+Tk): a contiguous copy instead of Tk gathers.
template <class T>
void relative_position_bias_forward(T* bias,          // (H, Tq, Tk)
                                    const T* weight,  // (num_buckets, H)
                                    const T5BucketConfig& config, index_t H, index_t Tq, index_t Tk, index_t q0) {
    detail::relative_bias_check("relative_position_bias_forward", bias, weight, config, H, Tq, Tk, q0);
    if (H * Tq * Tk == 0) return;
    const index_t L = Tq + Tk - 1;
    const std::vector<index_t> buckets = detail::diagonal_buckets(config, Tq, Tk, q0);
    AlignedBuffer<T> diagonals(H * L);  // (H, Tq + Tk - 1)
    for (index_t h = 0; h < H; ++h)
        for (index_t j = 0; j < L; ++j) diagonals.data()[h * L + j] = weight[buckets[j] * H + h];
    const T* v = diagonals.data();
    const index_t grain = std::max<index_t>(1, 16384 / Tk);
    parallel_for(0, H * Tq, grain, [&](index_t lo, index_t hi) {
        for (index_t r = lo; r < hi; ++r) {
            const index_t h = r / Tq, i = r % Tq;
            const T* src = v + h * L + (Tq - 1 - i);
            std::copy(src, src + Tk, bias + r * Tk);
        }
    });
}

// dweight[b, h] += sum of dbias[h, i, k] over the (i, k) with bucket(k - (q0 + i)) == b
// (the backward of the gather above: a scatter-add). A null dweight does nothing.
// Per head, first sum dbias along its Tq + Tk - 1 diagonals (each row of dbias added as one
// contiguous SIMD slice), then scatter the diagonal sums into the buckets. Threads split the heads.
template <class T>
void relative_position_bias_backward(T* dweight,       // (num_buckets, H)
                                     const T* dbias,   // (H, Tq, Tk)
                                     const T5BucketConfig& config, index_t H, index_t Tq, index_t Tk, index_t q0) {
    if (dweight == nullptr) return;
    detail::relative_bias_check("relative_position_bias_backward", dweight, dbias, config, H, Tq, Tk, q0);
    if (H * Tq * Tk == 0) return;
    const index_t L = Tq + Tk - 1;
    const std::vector<index_t> buckets = detail::diagonal_buckets(config, Tq, Tk, q0);
    const index_t grain = std::max<index_t>(1, 65536 / (Tq * Tk));
    parallel_for(0, H, grain, [&](index_t lo, index_t hi) {
        constexpr index_t W = simd::width<T>;
        AlignedBuffer<T> sums(L);  // (Tq + Tk - 1) diagonal sums of one head
        T* d = sums.data();
        for (index_t h = lo; h < hi; ++h) {
            std::fill(d, d + L, T(0));
            for (index_t i = 0; i < Tq; ++i) {
                const T* row = dbias + (h * Tq + i) * Tk;
                T* dst = d + (Tq - 1 - i);
                index_t k = 0;
                for (; k + W <= Tk; k += W) simd::store(dst + k, simd::load(dst + k) + simd::load(row + k));
                for (; k < Tk; ++k) dst[k] += row[k];
            }
            // Each thread owns whole heads, i.e. whole columns h of dweight: no two threads write
            // the same element.
            for (index_t j = 0; j < L; ++j) dweight[buckets[j] * H + h] += d[j];
        }
    });
}

// ---- references: plain scalar loops over (h, i, k), the spec of the kernels above ----

template <class T>
void relative_position_bias_forward_reference(T* bias, const T* weight, const T5BucketConfig& config, index_t H,
                                              index_t Tq, index_t Tk, index_t q0) {
    detail::relative_bias_check("relative_position_bias_forward_reference", bias, weight, config, H, Tq, Tk, q0);
    for (index_t h = 0; h < H; ++h)
        for (index_t i = 0; i < Tq; ++i)
            for (index_t k = 0; k < Tk; ++k) {
                const index_t b = t5_relative_position_bucket(k - (q0 + i), config.bidirectional, config.num_buckets,
                                                              config.max_distance);
                bias[(h * Tq + i) * Tk + k] = weight[b * H + h];
            }
}

template <class T>
void relative_position_bias_backward_reference(T* dweight, const T* dbias, const T5BucketConfig& config, index_t H,
                                               index_t Tq, index_t Tk, index_t q0) {
    if (dweight == nullptr) return;
    detail::relative_bias_check("relative_position_bias_backward_reference", dweight, dbias, config, H, Tq, Tk, q0);
    for (index_t h = 0; h < H; ++h)
        for (index_t i = 0; i < Tq; ++i)
            for (index_t k = 0; k < Tk; ++k) {
                const index_t b = t5_relative_position_bucket(k - (q0 + i), config.bidirectional, config.num_buckets,
                                                              config.max_distance);
                dweight[b * H + h] += dbias[(h * Tq + i) * Tk + k];
            }
}

}  // namespace llmblocks::kernels
