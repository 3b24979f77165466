// llmblocks/kernels/embedding.hpp — embedding lookup (gather) and its
// gradient (scatter-add): token and position embeddings of GPT-2, GPT-3,
// PaLM and T5.
//
//   forward:  out[i, :] = weight[ids[i], :]
//   backward: dweight[ids[i], :] += dout[i, :]   (repeated ids sum their rows)
//
// The backward splits the C columns between threads, each thread walking all
// ids: no two threads touch the same element, so repeated ids need no atomics
// and the sum is in the same order (deterministic) for any thread count.
// Ids are checked against the vocabulary before any work: an id outside
// [0, vocab) throws llmblocks::Error.
#pragma once

#include <algorithm>
#include <cstdint>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/simd.hpp"

namespace llmblocks::kernels {

namespace detail {
inline void check_embedding_ids(const char* op, const std::int32_t* ids, index_t n, index_t vocab) {
    for (index_t i = 0; i < n; ++i)
        LLMBLOCKS_CHECK(ids[i] >= 0 && ids[i] < vocab, op, ": id ", ids[i], " at position ", i,
                        " is outside the vocabulary [0, ", vocab, ")");
}
inline constexpr index_t kEmbeddingGrain = 1 << 15;  // elements per thread, at least
}  // namespace detail

template <class T>
void embedding_forward_reference(T* out,                   // (n, C)
                                 const std::int32_t* ids,  // (n)
                                 const T* weight,          // (V, C)
                                 index_t n, index_t vocab, index_t C) {
    detail::check_embedding_ids("embedding_forward", ids, n, vocab);
    for (index_t i = 0; i < n; ++i)
        for (index_t c = 0; c < C; ++c) out[i * C + c] = weight[ids[i] * C + c];
}

template <class T>
void embedding_backward_reference(T* dweight,               // (V, C)
                                  const T* dout,            // (n, C)
                                  const std::int32_t* ids,  // (n)
                                  index_t n, index_t vocab, index_t C) {
    detail::check_embedding_ids("embedding_backward", ids, n, vocab);
    for (index_t i = 0; i < n; ++i)
        for (index_t c = 0; c < C; ++c) dweight[ids[i] * C + c] += dout[i * C + c];
}

template <class T>
void embedding_forward(T* out,                   // (n, C)
                       const std::int32_t* ids,  // (n)
                       const T* weight,          // (V, C)
                       index_t n, index_t vocab, index_t C) {
    detail::check_embedding_ids("embedding_forward", ids, n, vocab);
    const index_t grain = std::max<index_t>(1, detail::kEmbeddingGrain / std::max<index_t>(C, 1));
    parallel_for(0, n, grain, [&](index_t lo, index_t hi) {
        for (index_t i = lo; i < hi; ++i) std::copy_n(weight + ids[i] * C, C, out + i * C);
    });
}

template <class T>
void embedding_backward(T* dweight,               // (V, C)
                        const T* dout,            // (n, C)
                        const std::int32_t* ids,  // (n)
                        index_t n, index_t vocab, index_t C) {
    detail::check_embedding_ids("embedding_backward", ids, n, vocab);
    constexpr index_t W = simd::width<T>;
    const index_t grain = std::max<index_t>(W, detail::kEmbeddingGrain / std::max<index_t>(n, 1));
    parallel_for(0, C, grain, [&](index_t lo, index_t hi) {
        for (index_t i = 0; i < n; ++i) {
            T* d = dweight + ids[i] * C;
            const T* g = dout + i * C;
            index_t c = lo;
            for (; c + W <= hi; c += W) simd::store(d + c, simd::load(d + c) + simd::load(g + c));
            for (; c < hi; ++c) d[c] += g[c];
        }
    });
}

}  // namespace llmblocks::kernels
