// llmblocks/ops/attention.hpp — differentiable scaled dot-product attention
// over the fused kernel (kernels/attention.hpp: FlashAttention-style forward
// and backward), the core of every attention layer of GPT-2, GPT-3, PaLM and T5.
//
//   out[b,h,i,:] = sum_j softmax_j(scale q[b,h,i,:] . k[b,kvh(h),j,:] + bias[h,i,j]) v[b,kvh(h),j,:]
// over the keys the mask lets query i see; kvh(h) = h / (Hq / Hkv), so
// Hkv = Hq is multi-head, 1 multi-query and a divisor grouped-query attention.
// The forward saves only its output and the per-row logsumexp; the backward
// recomputes the scores (FlashAttention-2). The optional bias (T5's relative
// position bias, (Hq, Tq, Tk), shared by the batch) is a Variable whose
// gradient flows, so the bias table learns.
//
// q, k and v may be strided views with contiguous rows (k and v the filled
// part of a preallocated KV cache): they reach the kernel without a copy.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/kernels/attention.hpp"
#include "llmblocks/ops/common.hpp"

namespace llmblocks {

using kernels::AttentionMask;

// Which keys each query sees, and how scores are scaled (per call).
struct AttentionOptions {
    AttentionMask mask = AttentionMask::causal;
    index_t prefix_length = 0;         // prefix_lm: keys j < prefix_length are visible to every query
    index_t window = 0;                // local: query at position p sees p - window < j <= p (GPT-3)
    index_t q_pos0 = 0;                // absolute position of query 0 (decoding: tokens already cached)
    std::optional<double> scale;       // default 1/sqrt(head_dim); T5: 1 (no scaling)
    std::vector<index_t> key_lengths;  // (B) keys j >= key_lengths[b] are padding; empty: none
    std::vector<std::uint8_t> key_padding_mask;  // (B, Tk), 0 = padding; empty: none
};

namespace detail {

// A (B, H, T, D) tensor as the kernel's view: strided as it is when its rows
// are contiguous, otherwise copied first (`keep` owns the copy).
template <class T>
kernels::HeadsView<const T> heads_view(const Tensor<T>& t, Tensor<T>& keep) {
    keep = t.stride(3) == 1 || t.size(3) <= 1 ? t : t.contiguous();
    return kernels::HeadsView<const T>(keep.data(), keep.stride(0), keep.stride(1), keep.stride(2));
}

}  // namespace detail

// out (B, Hq, Tq, D) = attention(q (B, Hq, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, D))
// with an optional additive bias (Hq, Tq, Tk) (an undefined Variable for none).
template <class T>
Variable<T> attention(const Variable<T>& q, const Variable<T>& k, const Variable<T>& v, const Variable<T>& bias,
                      const AttentionOptions& options = {}) {
    detail::require_defined("attention", q, "q");
    detail::require_defined("attention", k, "k");
    detail::require_defined("attention", v, "v");
    const Shape &qs = q.shape(), &ks = k.shape(), &vs = v.shape();
    LLMBLOCKS_CHECK(qs.size() == 4 && ks.size() == 4 && vs.size() == 4,
                    "attention: q, k, v must be (B, H, T, D): q ", qs, ", k ", ks, ", v ", vs);
    LLMBLOCKS_CHECK(ks == vs, "attention: k and v shapes differ: k ", ks, " vs v ", vs);
    LLMBLOCKS_CHECK(qs[0] == ks[0] && qs[3] == ks[3], "attention: batch or head_dim differ: q ", qs, " vs k ", ks);
    LLMBLOCKS_CHECK(ks[1] >= 1 && qs[1] % ks[1] == 0, "attention: ", qs[1], " query heads are not a multiple of ",
                    ks[1], " KV heads: q ", qs, " vs k ", ks);
    kernels::AttentionConfig c;
    c.batch = qs[0];
    c.n_heads = qs[1];
    c.n_kv_heads = ks[1];
    c.q_len = qs[2];
    c.kv_len = ks[2];
    c.head_dim = qs[3];
    c.mask = options.mask;
    c.prefix_length = options.prefix_length;
    c.window = options.window;
    c.q_pos0 = options.q_pos0;
    c.scale = options.scale;
    if (bias.defined())
        LLMBLOCKS_CHECK(bias.shape() == (Shape{c.n_heads, c.q_len, c.kv_len}), "attention: bias ", bias.shape(),
                        " is not (Hq, Tq, Tk) for q ", qs, " and k ", ks);
    // Padding lists live in the closure: the kernel reads them by pointer.
    auto key_lengths = std::make_shared<const std::vector<index_t>>(options.key_lengths);
    auto key_mask = std::make_shared<const std::vector<std::uint8_t>>(options.key_padding_mask);
    LLMBLOCKS_CHECK(key_lengths->empty() || static_cast<index_t>(key_lengths->size()) == c.batch,
                    "attention: key_lengths has ", key_lengths->size(), " entries for batch ", c.batch, " (q ", qs, ")");
    LLMBLOCKS_CHECK(key_mask->empty() || static_cast<index_t>(key_mask->size()) == c.batch * c.kv_len,
                    "attention: key_padding_mask has ", key_mask->size(), " entries, expected (B, Tk) = ",
                    Shape{c.batch, c.kv_len});
    c.key_lengths = key_lengths->empty() ? nullptr : key_lengths->data();
    c.key_padding_mask = key_mask->empty() ? nullptr : key_mask->data();

    Tensor<T> Q, K, V;
    const auto qv = detail::heads_view(q.value(), Q);
    const auto kv = detail::heads_view(k.value(), K);
    const auto vv = detail::heads_view(v.value(), V);
    const Tensor<T> Bias = bias.defined() ? bias.value().contiguous() : Tensor<T>();
    const kernels::BiasView<const T> bv =
        Bias.defined() ? kernels::contiguous_bias<const T>(Bias.data(), c.q_len, c.kv_len) : kernels::BiasView<const T>();
    Tensor<T> out = Tensor<T>::empty(qs);                        // (B, Hq, Tq, D)
    Tensor<T> lse = Tensor<T>::empty({c.batch, c.n_heads, c.q_len});  // (B, Hq, Tq)
    const auto ov = kernels::contiguous_heads(out.data(), c.n_heads, c.q_len, c.head_dim);
    kernels::attention_forward<T>(ov, lse.data(), qv, kv, vv, bv, c);

    return record_op<T>("attention", out, {q, k, v, bias},
                        [c, Q, K, V, Bias, out, lse, key_lengths, key_mask](const Tensor<T>& dout,
                                                                            const std::vector<T*>& d) {
                            const index_t Hq = c.n_heads, Hkv = c.n_kv_heads, Tq = c.q_len, Tk = c.kv_len,
                                          D = c.head_dim;
                            auto view = [](const Tensor<T>& t) {
                                return kernels::HeadsView<const T>(t.data(), t.stride(0), t.stride(1), t.stride(2));
                            };
                            auto grad = [D](T* g, index_t H, index_t Tn) {
                                return g ? kernels::contiguous_heads(g, H, Tn, D) : kernels::HeadsView<T>();
                            };
                            const kernels::BiasView<const T> bv =
                                Bias.defined() ? kernels::contiguous_bias<const T>(Bias.data(), Tq, Tk)
                                               : kernels::BiasView<const T>();
                            const kernels::BiasView<T> dbias =
                                d[3] ? kernels::contiguous_bias(d[3], Tq, Tk) : kernels::BiasView<T>();
                            // (dq, dk, dv, dbias) += attention^T(dout): FlashAttention-2 recomputation
                            kernels::attention_backward<T>(grad(d[0], Hq, Tq), grad(d[1], Hkv, Tk), grad(d[2], Hkv, Tk),
                                                           dbias, kernels::contiguous_heads<const T>(dout.data(), Hq, Tq, D),
                                                           view(out), lse.data(), view(Q), view(K), view(V), bv, c);
                        });
}

// Without a bias.
template <class T>
Variable<T> attention(const Variable<T>& q, const Variable<T>& k, const Variable<T>& v,
                      const AttentionOptions& options = {}) {
    return attention(q, k, v, Variable<T>(), options);
}

}  // namespace llmblocks
