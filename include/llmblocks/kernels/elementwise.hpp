// llmblocks/kernels/elementwise.hpp — elementwise kernels: arithmetic (add, sub,
// mul, scale, axpy), exp, and the activations of the models with their
// gradients: exact GELU (BERT, T5 "gated-gelu"), tanh GELU (GPT-2/GPT-3
// "gelu_new"), SiLU/Swish (PaLM's SwiGLU) and ReLU (the original T5 and
// Transformer feed-forward).
//
// Every kernel `foo` has a plain scalar `foo_reference` with the same signature:
// it is the spec the tests hold the SIMD path to. The SIMD path runs whole
// simd::batch<T> registers and then one explicit tail batch: the last n % width
// elements are copied into a padded register and written back lane by lane, so
// every element goes through the same vector code whatever its position (a value
// does not change with n or with the chunking of the threads).
//
// All pointers are contiguous arrays of n elements. `out` may be the same array
// as an input (in-place), but must not overlap it partially. Backward kernels
// accumulate: dinp += dout * f'(inp). Loops longer than the grains below are
// split over threads with parallel_for; shorter ones stay on the calling thread.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <type_traits>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/simd.hpp"

namespace llmblocks::kernels {

// Elements per thread below which a cheap (memory-bound) elementwise loop stays
// on one thread: the OpenMP fork/join (a few microseconds) costs more than it saves.
inline constexpr index_t kArithmeticGrain = index_t{1} << 16;
// The same for the transcendental kernels (exp, GELU, SiLU), about ten times
// more work per element, so they are split from half the size on.
inline constexpr index_t kTranscendentalGrain = index_t{1} << 15;

namespace detail {

template <class T>
inline constexpr bool is_kernel_type_v = std::is_same_v<T, float> || std::is_same_v<T, double>;

// Lane access for the whole batches of a loop: plain unaligned loads and stores.
template <class T>
struct FullLanes {
    simd::batch<T> load(const T* p, T /*fill*/ = T(0)) const { return simd::load(p); }
    void store(T* p, const simd::batch<T>& v) const { simd::store(p, v); }
};

// Lane access for the last, partial batch: the first `count` lanes come from
// memory and the others hold `fill` (chosen by the caller to be neutral, e.g.
// 0 for a sum, -inf for a max); a store writes back only the first `count` lanes.
template <class T>
struct TailLanes {
    index_t count;
    simd::batch<T> load(const T* p, T fill = T(0)) const {
        alignas(64) T buf[simd::width<T>];
        for (index_t k = 0; k < simd::width<T>; ++k) buf[k] = k < count ? p[k] : fill;
        return simd::batch<T>::load_aligned(buf);
    }
    void store(T* p, const simd::batch<T>& v) const {
        alignas(64) T buf[simd::width<T>];
        v.store_aligned(buf);
        for (index_t k = 0; k < count; ++k) p[k] = buf[k];
    }
};

// Calls step(i, lanes) for i = begin, begin + width, ... over [begin, end):
// with FullLanes for the whole batches and TailLanes for the partial last one.
// `step` is a generic lambda written once for both.
template <class T, class Step>
inline void for_each_batch(index_t begin, index_t end, Step&& step) {
    constexpr index_t W = simd::width<T>;
    index_t i = begin;
    for (; i + W <= end; i += W) step(i, FullLanes<T>{});
    if (i < end) step(i, TailLanes<T>{end - i});
}

// for_each_batch over [0, n), split over threads when n exceeds `grain`. The
// chunks are cut at whole batches, so only the last chunk has a partial batch.
template <class T, class Step>
inline void parallel_for_each_batch(index_t n, index_t grain, const Step& step) {
    constexpr index_t W = simd::width<T>;
    const index_t batches = (n + W - 1) / W;
    parallel_for(0, batches, std::max<index_t>(1, grain / W), [&](index_t lo, index_t hi) {
        for_each_batch<T>(lo * W, std::min(hi * W, n), step);
    });
}

// n >= 0 and, when n > 0, no null array.
template <class T, class... Ptrs>
inline void check_elementwise(const char* op, index_t n, const Ptrs*... ptrs) {
    static_assert(is_kernel_type_v<T>, "llmblocks kernels: T must be float or double");
    LLMBLOCKS_CHECK(n >= 0, op, ": n must be >= 0, got n = ", n);
    LLMBLOCKS_CHECK(n == 0 || ((ptrs != nullptr) && ...), op, ": null array for n = ", n);
}

// Constants of the GELU variants.
template <class T>
inline constexpr T inv_sqrt2 = std::numbers::sqrt2_v<T> / T(2);                                  // 1/sqrt(2)
template <class T>
inline constexpr T inv_sqrt_2pi = std::numbers::inv_sqrtpi_v<T> / std::numbers::sqrt2_v<T>;     // 1/sqrt(2 pi)
template <class T>
inline constexpr T sqrt_2_over_pi = std::numbers::sqrt2_v<T> * std::numbers::inv_sqrtpi_v<T>;   // sqrt(2/pi)
template <class T>
inline constexpr T gelu_tanh_cubic = T(0.044715);

}  // namespace detail

// ---- arithmetic ----------------------------------------------------------------

// out = a + b.
template <class T>
void add(T* out, const T* a, const T* b, index_t n) {
    detail::check_elementwise<T>("add", n, out, a, b);
    detail::parallel_for_each_batch<T>(n, kArithmeticGrain, [=](index_t i, const auto& lanes) {
        lanes.store(out + i, lanes.load(a + i) + lanes.load(b + i));
    });
}
template <class T>
void add_reference(T* out, const T* a, const T* b, index_t n) {
    detail::check_elementwise<T>("add_reference", n, out, a, b);
    for (index_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

// out = a - b.
template <class T>
void sub(T* out, const T* a, const T* b, index_t n) {
    detail::check_elementwise<T>("sub", n, out, a, b);
    detail::parallel_for_each_batch<T>(n, kArithmeticGrain, [=](index_t i, const auto& lanes) {
        lanes.store(out + i, lanes.load(a + i) - lanes.load(b + i));
    });
}
template <class T>
void sub_reference(T* out, const T* a, const T* b, index_t n) {
    detail::check_elementwise<T>("sub_reference", n, out, a, b);
    for (index_t i = 0; i < n; ++i) out[i] = a[i] - b[i];
}

// out = a * b.
template <class T>
void mul(T* out, const T* a, const T* b, index_t n) {
    detail::check_elementwise<T>("mul", n, out, a, b);
    detail::parallel_for_each_batch<T>(n, kArithmeticGrain, [=](index_t i, const auto& lanes) {
        lanes.store(out + i, lanes.load(a + i) * lanes.load(b + i));
    });
}
template <class T>
void mul_reference(T* out, const T* a, const T* b, index_t n) {
    detail::check_elementwise<T>("mul_reference", n, out, a, b);
    for (index_t i = 0; i < n; ++i) out[i] = a[i] * b[i];
}

// out = s * a.
template <class T>
void scale(T* out, const T* a, std::type_identity_t<T> s, index_t n) {
    detail::check_elementwise<T>("scale", n, out, a);
    const simd::batch<T> vs(s);
    detail::parallel_for_each_batch<T>(n, kArithmeticGrain, [=](index_t i, const auto& lanes) {
        lanes.store(out + i, vs * lanes.load(a + i));
    });
}
template <class T>
void scale_reference(T* out, const T* a, std::type_identity_t<T> s, index_t n) {
    detail::check_elementwise<T>("scale_reference", n, out, a);
    for (index_t i = 0; i < n; ++i) out[i] = s * a[i];
}

// y += alpha * x (BLAS axpy; one fused multiply-add where the target has FMA).
template <class T>
void axpy(T* y, std::type_identity_t<T> alpha, const T* x, index_t n) {
    detail::check_elementwise<T>("axpy", n, y, x);
    const simd::batch<T> va(alpha);
    detail::parallel_for_each_batch<T>(n, kArithmeticGrain, [=](index_t i, const auto& lanes) {
        lanes.store(y + i, xsimd::fma(va, lanes.load(x + i), lanes.load(y + i)));
    });
}
template <class T>
void axpy_reference(T* y, std::type_identity_t<T> alpha, const T* x, index_t n) {
    detail::check_elementwise<T>("axpy_reference", n, y, x);
    for (index_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// out = exp(a). xsimd's exp (range reduction by ln 2 and a polynomial) is
// within 1.5 ulp of the true value; exp(-inf) = 0 and overflow gives +inf.
template <class T>
void exp(T* out, const T* a, index_t n) {
    detail::check_elementwise<T>("exp", n, out, a);
    detail::parallel_for_each_batch<T>(n, kTranscendentalGrain, [=](index_t i, const auto& lanes) {
        lanes.store(out + i, xsimd::exp(lanes.load(a + i)));
    });
}
template <class T>
void exp_reference(T* out, const T* a, index_t n) {
    detail::check_elementwise<T>("exp_reference", n, out, a);
    for (index_t i = 0; i < n; ++i) out[i] = std::exp(a[i]);
}

// ---- GELU, exact (Hendrycks & Gimpel 2016; BERT, T5 v1.1 "gated-gelu") ----------
//
// gelu(x) = x Phi(x),  Phi(x) = (1 + erf(x / sqrt 2)) / 2,  Phi'(x) = exp(-x^2/2) / sqrt(2 pi).
// The SIMD path writes Phi(x) = erfc(-x / sqrt 2) / 2, the same function, which
// keeps its relative accuracy for x << 0 where 1 + erf(...) cancels (at x = -5
// the erf form has lost every float digit of Phi; the erfc form has them all).
// The reference is the literal erf formula, as PyTorch computes it.

// out = x Phi(x).
template <class T>
void gelu_forward(T* out, const T* inp, index_t n) {
    detail::check_elementwise<T>("gelu_forward", n, out, inp);
    using B = simd::batch<T>;
    detail::parallel_for_each_batch<T>(n, kTranscendentalGrain, [=](index_t i, const auto& lanes) {
        const B x = lanes.load(inp + i);
        const B cdf = B(T(0.5)) * xsimd::erfc(x * B(-detail::inv_sqrt2<T>));
        lanes.store(out + i, x * cdf);
    });
}
template <class T>
void gelu_forward_reference(T* out, const T* inp, index_t n) {
    detail::check_elementwise<T>("gelu_forward_reference", n, out, inp);
    for (index_t i = 0; i < n; ++i) {
        const T x = inp[i];
        out[i] = T(0.5) * x * (T(1) + std::erf(x * detail::inv_sqrt2<T>));
    }
}

// dinp += dout * (Phi(x) + x Phi'(x)).
template <class T>
void gelu_backward(T* dinp, const T* inp, const T* dout, index_t n) {
    detail::check_elementwise<T>("gelu_backward", n, dinp, inp, dout);
    using B = simd::batch<T>;
    detail::parallel_for_each_batch<T>(n, kTranscendentalGrain, [=](index_t i, const auto& lanes) {
        const B x = lanes.load(inp + i);
        const B cdf = B(T(0.5)) * xsimd::erfc(x * B(-detail::inv_sqrt2<T>));
        const B pdf = B(detail::inv_sqrt_2pi<T>) * xsimd::exp(B(T(-0.5)) * x * x);
        const B grad = xsimd::fma(x, pdf, cdf);
        lanes.store(dinp + i, xsimd::fma(lanes.load(dout + i), grad, lanes.load(dinp + i)));
    });
}
template <class T>
void gelu_backward_reference(T* dinp, const T* inp, const T* dout, index_t n) {
    detail::check_elementwise<T>("gelu_backward_reference", n, dinp, inp, dout);
    for (index_t i = 0; i < n; ++i) {
        const T x = inp[i];
        const T cdf = T(0.5) * (T(1) + std::erf(x * detail::inv_sqrt2<T>));
        const T pdf = detail::inv_sqrt_2pi<T> * std::exp(T(-0.5) * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}

// ---- GELU, tanh approximation (GPT-2, GPT-3: Hugging Face "gelu_new") -----------
//
// gelu_tanh(x) = x (1 + tanh(u)) / 2,  u = sqrt(2/pi) (x + 0.044715 x^3).
// The SIMD path uses (1 + tanh(u)) / 2 = sigmoid(2u) = 1 / (1 + exp(-2u)): one
// exp and one division instead of tanh (itself an exp, a division and a
// polynomial), and no cancellation in 1 + tanh(u) for x << 0. With s = sigmoid(2u):
//   d/dx = s + x s (1 - s) 2 u',  u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
// The reference is the literal tanh formula of the GPT-2 code.

// out = x (1 + tanh(u)) / 2.
template <class T>
void gelu_tanh_forward(T* out, const T* inp, index_t n) {
    detail::check_elementwise<T>("gelu_tanh_forward", n, out, inp);
    using B = simd::batch<T>;
    detail::parallel_for_each_batch<T>(n, kTranscendentalGrain, [=](index_t i, const auto& lanes) {
        const B x = lanes.load(inp + i);
        const B x3 = x * x * x;
        const B minus_2u = B(T(-2) * detail::sqrt_2_over_pi<T>) * xsimd::fma(B(detail::gelu_tanh_cubic<T>), x3, x);
        lanes.store(out + i, x / (B(T(1)) + xsimd::exp(minus_2u)));
    });
}
template <class T>
void gelu_tanh_forward_reference(T* out, const T* inp, index_t n) {
    detail::check_elementwise<T>("gelu_tanh_forward_reference", n, out, inp);
    for (index_t i = 0; i < n; ++i) {
        const T x = inp[i];
        const T u = detail::sqrt_2_over_pi<T> * (x + detail::gelu_tanh_cubic<T> * x * x * x);
        out[i] = T(0.5) * x * (T(1) + std::tanh(u));
    }
}

// dinp += dout * gelu_tanh'(x).
template <class T>
void gelu_tanh_backward(T* dinp, const T* inp, const T* dout, index_t n) {
    detail::check_elementwise<T>("gelu_tanh_backward", n, dinp, inp, dout);
    using B = simd::batch<T>;
    detail::parallel_for_each_batch<T>(n, kTranscendentalGrain, [=](index_t i, const auto& lanes) {
        const B x = lanes.load(inp + i);
        const B x2 = x * x;
        const B minus_2u = B(T(-2) * detail::sqrt_2_over_pi<T>) * xsimd::fma(B(detail::gelu_tanh_cubic<T>) * x2, x, x);
        const B s = B(T(1)) / (B(T(1)) + xsimd::exp(minus_2u));
        const B two_du = B(T(2) * detail::sqrt_2_over_pi<T>) * xsimd::fma(B(T(3) * detail::gelu_tanh_cubic<T>), x2, B(T(1)));
        const B grad = xsimd::fma(x * s * (B(T(1)) - s), two_du, s);
        lanes.store(dinp + i, xsimd::fma(lanes.load(dout + i), grad, lanes.load(dinp + i)));
    });
}
template <class T>
void gelu_tanh_backward_reference(T* dinp, const T* inp, const T* dout, index_t n) {
    detail::check_elementwise<T>("gelu_tanh_backward_reference", n, dinp, inp, dout);
    for (index_t i = 0; i < n; ++i) {
        const T x = inp[i];
        const T u = detail::sqrt_2_over_pi<T> * (x + detail::gelu_tanh_cubic<T> * x * x * x);
        const T t = std::tanh(u);
        const T du = detail::sqrt_2_over_pi<T> * (T(1) + T(3) * detail::gelu_tanh_cubic<T> * x * x);
        dinp[i] += dout[i] * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du);
    }
}

// ---- SiLU / Swish-1 (Ramachandran et al. 2017; PaLM's SwiGLU) ---------------------
//
// silu(x) = x sigmoid(x) = x / (1 + exp(-x));  silu'(x) = s (1 + x (1 - s)), s = sigmoid(x).
// For x << 0, exp(-x) overflows to +inf and the quotients give 0, not NaN.

template <class T>
void silu_forward(T* out, const T* inp, index_t n) {
    detail::check_elementwise<T>("silu_forward", n, out, inp);
    using B = simd::batch<T>;
    detail::parallel_for_each_batch<T>(n, kTranscendentalGrain, [=](index_t i, const auto& lanes) {
        const B x = lanes.load(inp + i);
        lanes.store(out + i, x / (B(T(1)) + xsimd::exp(-x)));
    });
}
template <class T>
void silu_forward_reference(T* out, const T* inp, index_t n) {
    detail::check_elementwise<T>("silu_forward_reference", n, out, inp);
    for (index_t i = 0; i < n; ++i) out[i] = inp[i] / (T(1) + std::exp(-inp[i]));
}

// dinp += dout * s (1 + x (1 - s)).
template <class T>
void silu_backward(T* dinp, const T* inp, const T* dout, index_t n) {
    detail::check_elementwise<T>("silu_backward", n, dinp, inp, dout);
    using B = simd::batch<T>;
    detail::parallel_for_each_batch<T>(n, kTranscendentalGrain, [=](index_t i, const auto& lanes) {
        const B x = lanes.load(inp + i);
        const B one(T(1));
        const B s = one / (one + xsimd::exp(-x));
        const B grad = s * xsimd::fma(x, one - s, one);
        lanes.store(dinp + i, xsimd::fma(lanes.load(dout + i), grad, lanes.load(dinp + i)));
    });
}
template <class T>
void silu_backward_reference(T* dinp, const T* inp, const T* dout, index_t n) {
    detail::check_elementwise<T>("silu_backward_reference", n, dinp, inp, dout);
    for (index_t i = 0; i < n; ++i) {
        const T x = inp[i];
        const T s = T(1) / (T(1) + std::exp(-x));
        dinp[i] += dout[i] * (s * (T(1) + x * (T(1) - s)));
    }
}

// ---- ReLU (Transformer, original T5 "relu" feed-forward) ---------------------------
//
// relu(x) = max(x, 0), NaN propagates (as torch.relu); relu'(x) = [x > 0], so
// relu'(0) = 0 as in PyTorch.

template <class T>
void relu_forward(T* out, const T* inp, index_t n) {
    detail::check_elementwise<T>("relu_forward", n, out, inp);
    using B = simd::batch<T>;
    detail::parallel_for_each_batch<T>(n, kArithmeticGrain, [=](index_t i, const auto& lanes) {
        const B x = lanes.load(inp + i);
        const B zero(T(0));
        lanes.store(out + i, xsimd::select(x <= zero, zero, x));  // NaN <= 0 is false: NaN stays
    });
}
template <class T>
void relu_forward_reference(T* out, const T* inp, index_t n) {
    detail::check_elementwise<T>("relu_forward_reference", n, out, inp);
    for (index_t i = 0; i < n; ++i) out[i] = inp[i] <= T(0) ? T(0) : inp[i];
}

// dinp += dout * [inp > 0].
template <class T>
void relu_backward(T* dinp, const T* inp, const T* dout, index_t n) {
    detail::check_elementwise<T>("relu_backward", n, dinp, inp, dout);
    using B = simd::batch<T>;
    detail::parallel_for_each_batch<T>(n, kArithmeticGrain, [=](index_t i, const auto& lanes) {
        const B x = lanes.load(inp + i);
        const B zero(T(0));
        lanes.store(dinp + i, lanes.load(dinp + i) + xsimd::select(x > zero, lanes.load(dout + i), zero));
    });
}
template <class T>
void relu_backward_reference(T* dinp, const T* inp, const T* dout, index_t n) {
    detail::check_elementwise<T>("relu_backward_reference", n, dinp, inp, dout);
    for (index_t i = 0; i < n; ++i)
        if (inp[i] > T(0)) dinp[i] += dout[i];
}

}  // namespace llmblocks::kernels
