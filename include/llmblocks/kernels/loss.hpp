// llmblocks/kernels/loss.hpp — fused softmax cross-entropy with PaLM's z-loss,
// one row of logits at a time (the language-model loss of GPT-2, GPT-3, PaLM
// and T5).
//
// For a row x (V logits) with target t:
//   lse  = log sum_j exp(x_j)                       (computed as m + log sum_j exp(x_j - m), m = max_j x_j)
//   loss = lse - x_t + z * lse^2                    (z-loss: PaLM, Chowdhery et al. 2022, sec. 5, z = 1e-4;
//                                                    it pulls log Z towards 0 for stability)
//   dloss/dx_j = p_j * (1 + 2 z lse) - [j == t],    p_j = exp(x_j - lse)
// A row whose target equals ignore_index (PyTorch's -100) has loss 0 and gets
// no gradient. The forward saves lse per row so the backward needs no second
// max/sum pass. Fusing avoids materialising the (rows, V) softmax: for GPT-2's
// 50257-word vocabulary that is the largest activation of the model.
// Targets outside [0, V) (other than ignore_index) throw llmblocks::Error.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/simd.hpp"

namespace llmblocks::kernels {

namespace detail {
inline void check_targets(const char* op, const std::int32_t* targets, index_t rows, index_t vocab,
                          std::int32_t ignore_index) {
    for (index_t r = 0; r < rows; ++r)
        LLMBLOCKS_CHECK(targets[r] == ignore_index || (targets[r] >= 0 && targets[r] < vocab), op, ": target ",
                        targets[r], " at row ", r, " is outside [0, ", vocab, ") and is not ignore_index ",
                        ignore_index);
}
inline constexpr index_t kLossGrain = 1 << 14;  // logits per thread, at least
}  // namespace detail

template <class T>
void cross_entropy_forward_reference(T* losses,                     // (R)
                                     T* lse,                        // (R)
                                     const T* logits,               // (R, V)
                                     const std::int32_t* targets,   // (R)
                                     index_t rows, index_t vocab, T z_loss, std::int32_t ignore_index) {
    detail::check_targets("cross_entropy_forward", targets, rows, vocab, ignore_index);
    LLMBLOCKS_CHECK(vocab > 0 || rows == 0, "cross_entropy_forward: empty vocabulary");
    for (index_t r = 0; r < rows; ++r) {
        const T* x = logits + r * vocab;
        T m = x[0];
        for (index_t j = 1; j < vocab; ++j) m = std::max(m, x[j]);
        T s = 0;
        for (index_t j = 0; j < vocab; ++j) s += std::exp(x[j] - m);
        lse[r] = m + std::log(s);
        losses[r] = targets[r] == ignore_index ? T(0) : lse[r] - x[targets[r]] + z_loss * lse[r] * lse[r];
    }
}

template <class T>
void cross_entropy_backward_reference(T* dlogits,                    // (R, V)
                                      const T* dlosses,              // (R)
                                      const T* logits,               // (R, V)
                                      const T* lse,                  // (R)
                                      const std::int32_t* targets,   // (R)
                                      index_t rows, index_t vocab, T z_loss, std::int32_t ignore_index) {
    detail::check_targets("cross_entropy_backward", targets, rows, vocab, ignore_index);
    for (index_t r = 0; r < rows; ++r) {
        if (targets[r] == ignore_index) continue;
        // loss = lse - x_t + z lse^2  =>  dx_j = dloss * (p_j (1 + 2 z lse) - [j == t])
        const T c = dlosses[r] * (T(1) + T(2) * z_loss * lse[r]);
        for (index_t j = 0; j < vocab; ++j) dlogits[r * vocab + j] += c * std::exp(logits[r * vocab + j] - lse[r]);
        dlogits[r * vocab + targets[r]] -= dlosses[r];
    }
}

template <class T>
void cross_entropy_forward(T* losses,                     // (R)
                           T* lse,                        // (R)
                           const T* logits,               // (R, V)
                           const std::int32_t* targets,   // (R)
                           index_t rows, index_t vocab, T z_loss, std::int32_t ignore_index) {
    detail::check_targets("cross_entropy_forward", targets, rows, vocab, ignore_index);
    LLMBLOCKS_CHECK(vocab > 0 || rows == 0, "cross_entropy_forward: empty vocabulary");
    using B = simd::batch<T>;
    constexpr index_t W = simd::width<T>;
    parallel_for(0, rows, std::max<index_t>(1, detail::kLossGrain / std::max<index_t>(vocab, 1)), [&](index_t lo, index_t hi) {
        for (index_t r = lo; r < hi; ++r) {
            const T* x = logits + r * vocab;
            // m = max_j x_j
            T m = x[0];
            index_t j = 0;
            if (vocab >= W) {
                B vm = simd::load(x);
                for (j = W; j + W <= vocab; j += W) vm = xsimd::max(vm, simd::load(x + j));
                alignas(64) T lanes[W];
                vm.store_aligned(lanes);
                m = *std::max_element(lanes, lanes + W);
            }
            for (; j < vocab; ++j) m = std::max(m, x[j]);
            // s = sum_j exp(x_j - m)
            const B vmax(m);
            B vs(T(0));
            for (j = 0; j + W <= vocab; j += W) vs += xsimd::exp(simd::load(x + j) - vmax);
            T s = xsimd::hadd(vs);
            for (; j < vocab; ++j) s += std::exp(x[j] - m);
            lse[r] = m + std::log(s);
            losses[r] = targets[r] == ignore_index ? T(0) : lse[r] - x[targets[r]] + z_loss * lse[r] * lse[r];
        }
    });
}

template <class T>
void cross_entropy_backward(T* dlogits,                    // (R, V)
                            const T* dlosses,              // (R)
                            const T* logits,               // (R, V)
                            const T* lse,                  // (R)
                            const std::int32_t* targets,   // (R)
                            index_t rows, index_t vocab, T z_loss, std::int32_t ignore_index) {
    detail::check_targets("cross_entropy_backward", targets, rows, vocab, ignore_index);
    using B = simd::batch<T>;
    constexpr index_t W = simd::width<T>;
    parallel_for(0, rows, std::max<index_t>(1, detail::kLossGrain / std::max<index_t>(vocab, 1)), [&](index_t lo, index_t hi) {
        for (index_t r = lo; r < hi; ++r) {
            if (targets[r] == ignore_index) continue;
            const T* x = logits + r * vocab;
            T* dx = dlogits + r * vocab;
            // loss = lse - x_t + z lse^2  =>  dx_j = dloss * (p_j (1 + 2 z lse) - [j == t])
            const T c = dlosses[r] * (T(1) + T(2) * z_loss * lse[r]);
            const B vc(c), vl(lse[r]);
            index_t j = 0;
            for (; j + W <= vocab; j += W) simd::store(dx + j, simd::load(dx + j) + vc * xsimd::exp(simd::load(x + j) - vl));
            for (; j < vocab; ++j) dx[j] += c * std::exp(x[j] - lse[r]);
            dx[targets[r]] -= dlosses[r];
        }
    });
}

}  // namespace llmblocks::kernels
