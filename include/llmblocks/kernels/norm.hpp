// llmblocks/kernels/norm.hpp — LayerNorm (Ba et al. 2016; GPT-2, GPT-3, and
// PaLM's scale-only variant without bias) and RMSNorm (Zhang & Sennrich 2019;
// T5's "T5LayerNorm", PaLM's rmsnorm option), forward and backward.
//
// Row kernels over `rows` rows (B * T tokens) of `cols` (C) features:
//   LayerNorm: mean = sum(x)/C, var = sum((x - mean)^2)/C (biased), rstd = 1/sqrt(var + eps),
//              out = (x - mean) * rstd * weight + bias
//   RMSNorm:   rstd = 1/sqrt(sum(x^2)/C + eps),  out = x * rstd * weight
// The variance takes a second pass over the row (sum of squared deviations)
// instead of E[x^2] - mean^2, which cancels catastrophically when |mean| >> std.
// A null weight means 1 (no scale), a null bias 0 (PaLM: no biases anywhere).
// The forward saves mean and rstd (per row) for the backward; pass null to skip
// them (inference).
//
// The backward kernels accumulate (+=) into dinp, dweight, dbias; a null
// gradient pointer is skipped. dweight and dbias sum over all rows. When threaded,
// the rows are cut into at most kNormMaxBlocks fixed blocks (from the shape only,
// never the thread count): each block sums into its own scratch row, then the
// block rows are added into dweight / dbias in block order. So the gradients are
// deterministic, bit for bit, for any thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/memory.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/elementwise.hpp"
#include "llmblocks/kernels/reduce.hpp"
#include "llmblocks/kernels/simd.hpp"

namespace llmblocks::kernels {

// The type of a pointer argument that may be null (weight, bias, saved
// statistics, wanted gradients): not used to deduce T, so a literal nullptr
// can be passed without spelling out the template argument.
template <class T>
using Nullable = std::type_identity_t<T>;

// Most blocks a norm backward cuts its rows into for the dweight/dbias partial sums.
inline constexpr index_t kNormMaxBlocks = 32;

namespace detail {

template <class T>
inline void check_norm(const char* op, index_t rows, index_t cols) {
    static_assert(is_kernel_type_v<T>, "llmblocks kernels: T must be float or double");
    LLMBLOCKS_CHECK(rows >= 0 && cols >= 0, op, ": rows and cols must be >= 0, got (rows, cols) = ", Shape{rows, cols});
    LLMBLOCKS_CHECK(rows == 0 || cols > 0, op, ": rows of zero features cannot be normalized, (rows, cols) = ",
                    Shape{rows, cols});
}

template <class T>
inline void check_norm_forward(const char* op, index_t rows, index_t cols, const T* out, const T* inp, T eps) {
    check_norm<T>(op, rows, cols);
    LLMBLOCKS_CHECK(rows == 0 || (out != nullptr && inp != nullptr), op, ": null out or inp for (rows, cols) = ",
                    Shape{rows, cols});
    LLMBLOCKS_CHECK(eps >= T(0), op, ": eps must be >= 0, got ", eps);
}

// The scale and shift of one batch of features: weight (or 1) and bias (or 0).
template <class T, class Lanes>
inline simd::batch<T> load_or(const Lanes& lanes, const T* p, T fallback) {
    return p ? lanes.load(p) : simd::batch<T>(fallback);
}

// Adds the gradient of the rows [lo, hi) into dweight/dbias (either may be
// null), and into dinp, for a norm whose per-row backward is
// row_fn(r, dweight_acc, dbias_acc). Threads as described at the top of the file.
template <class T, class RowFn>
inline void norm_backward_rows(T* dweight, T* dbias, index_t rows, index_t cols, const RowFn& row_fn) {
    const index_t grain = row_grain(cols);
    if (!dweight && !dbias) {
        parallel_for(0, rows, grain, [&](index_t lo, index_t hi) {
            for (index_t r = lo; r < hi; ++r) row_fn(r, static_cast<T*>(nullptr), static_cast<T*>(nullptr));
        });
        return;
    }
    const index_t blocks = std::min(kNormMaxBlocks, (rows + grain - 1) / grain);
    if (blocks <= 1) {
        for (index_t r = 0; r < rows; ++r) row_fn(r, dweight, dbias);
        return;
    }
    const index_t per_block = cols * ((dweight ? 1 : 0) + (dbias ? 1 : 0));
    AlignedBuffer<T> scratch(blocks * per_block);
    std::fill(scratch.data(), scratch.data() + blocks * per_block, T(0));
    auto block_dweight = [&](index_t blk) { return dweight ? scratch.data() + blk * per_block : nullptr; };
    auto block_dbias = [&](index_t blk) { return dbias ? scratch.data() + blk * per_block + (dweight ? cols : 0) : nullptr; };
    parallel_for(0, blocks, 1, [&](index_t lo, index_t hi) {
        for (index_t blk = lo; blk < hi; ++blk) {
            T* dw = block_dweight(blk);
            T* db = block_dbias(blk);
            for (index_t r = rows * blk / blocks; r < rows * (blk + 1) / blocks; ++r) row_fn(r, dw, db);
        }
    });
    // dweight[c] += block 0 [c], then block 1 [c], ...: the same order whatever the column split.
    parallel_for(0, cols, std::max<index_t>(1, kRowGrainElements / blocks), [&](index_t lo, index_t hi) {
        for (index_t blk = 0; blk < blocks; ++blk) {
            for (T* acc : {dweight, dbias}) {
                if (!acc) continue;
                const T* part = acc == dweight ? block_dweight(blk) : block_dbias(blk);
                for_each_batch<T>(lo, hi, [&](index_t i, const auto& lanes) {
                    lanes.store(acc + i, lanes.load(acc + i) + lanes.load(part + i));
                });
            }
        }
    });
}

}  // namespace detail

// ---- LayerNorm -----------------------------------------------------------------

template <class T>
void layernorm_forward(T* out, Nullable<T>* mean, Nullable<T>* rstd, const T* inp, const Nullable<T>* weight,
                       const Nullable<T>* bias, index_t rows, index_t cols, std::type_identity_t<T> eps) {
    // out, inp: (rows, C); mean, rstd: (rows), may be null; weight, bias: (C), may be null
    detail::check_norm_forward<T>("layernorm_forward", rows, cols, out, inp, eps);
    using B = simd::batch<T>;
    parallel_for(0, rows, detail::row_grain(cols), [=](index_t lo, index_t hi) {
        for (index_t r = lo; r < hi; ++r) {
            const T* x = inp + r * cols;
            T* y = out + r * cols;
            const T m = detail::sum_serial(x, cols) / T(cols);
            const B vm(m);
            const T s = T(1) / std::sqrt(detail::sum_squared_deviation_serial(x, cols, m) / T(cols) + eps);
            const B vs(s);
            detail::for_each_batch<T>(0, cols, [&](index_t i, const auto& lanes) {
                const B norm = (lanes.load(x + i) - vm) * vs;
                lanes.store(y + i, xsimd::fma(norm, detail::load_or(lanes, weight ? weight + i : nullptr, T(1)),
                                              detail::load_or(lanes, bias ? bias + i : nullptr, T(0))));
            });
            if (mean) mean[r] = m;
            if (rstd) rstd[r] = s;
        }
    });
}
template <class T>
void layernorm_forward_reference(T* out, Nullable<T>* mean, Nullable<T>* rstd, const T* inp, const Nullable<T>* weight,
                                 const Nullable<T>* bias, index_t rows, index_t cols, std::type_identity_t<T> eps) {
    detail::check_norm_forward<T>("layernorm_forward_reference", rows, cols, out, inp, eps);
    for (index_t r = 0; r < rows; ++r) {
        const T* x = inp + r * cols;
        T* y = out + r * cols;
        T m = T(0);
        for (index_t i = 0; i < cols; ++i) m += x[i];
        m /= T(cols);
        T v = T(0);
        for (index_t i = 0; i < cols; ++i) v += (x[i] - m) * (x[i] - m);
        v /= T(cols);
        const T s = T(1) / std::sqrt(v + eps);
        for (index_t i = 0; i < cols; ++i) {
            const T norm = (x[i] - m) * s;
            y[i] = norm * (weight ? weight[i] : T(1)) + (bias ? bias[i] : T(0));
        }
        if (mean) mean[r] = m;
        if (rstd) rstd[r] = s;
    }
}

// With norm = (x - mean) * rstd and dnorm = dout * weight (the forward line
// out = norm * weight + bias):
//   dbias += dout,  dweight += dout * norm,
//   dinp  += rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm))
// (the two means over the row are the gradients through mean and rstd).
template <class T>
void layernorm_backward(Nullable<T>* dinp, Nullable<T>* dweight, Nullable<T>* dbias, const T* dout, const T* inp,
                        const Nullable<T>* weight, const T* mean, const T* rstd, index_t rows, index_t cols) {
    // dinp, dout, inp: (rows, C); dweight, dbias, weight: (C); mean, rstd: (rows)
    detail::check_norm<T>("layernorm_backward", rows, cols);
    const bool any_grad = dinp || dweight || dbias;
    LLMBLOCKS_CHECK(rows == 0 || !any_grad || (dout && inp && mean && rstd),
                    "layernorm_backward: dout, inp, mean and rstd must not be null, (rows, cols) = ", Shape{rows, cols});
    if (!any_grad) return;
    using B = simd::batch<T>;
    auto row_fn = [=](index_t r, T* dw, T* db) {
        const T* x = inp + r * cols;
        const T* dy = dout + r * cols;
        const B vm(mean[r]), vs(rstd[r]);
        if (dinp) {
            B acc_dnorm(T(0)), acc_dnorm_norm(T(0));
            detail::for_each_batch<T>(0, cols, [&](index_t i, const auto& lanes) {
                const B norm = (lanes.load(x + i) - vm) * vs;
                const B dnorm = lanes.load(dy + i) * detail::load_or(lanes, weight ? weight + i : nullptr, T(1));  // 0 in padding
                acc_dnorm += dnorm;
                acc_dnorm_norm = xsimd::fma(dnorm, norm, acc_dnorm_norm);
            });
            const B dnorm_mean(xsimd::hadd(acc_dnorm) / T(cols));
            const B dnorm_norm_mean(xsimd::hadd(acc_dnorm_norm) / T(cols));
            T* dx = dinp + r * cols;
            detail::for_each_batch<T>(0, cols, [&](index_t i, const auto& lanes) {
                const B norm = (lanes.load(x + i) - vm) * vs;
                const B dnorm = lanes.load(dy + i) * detail::load_or(lanes, weight ? weight + i : nullptr, T(1));
                const B g = xsimd::fnma(norm, dnorm_norm_mean, dnorm - dnorm_mean) * vs;
                lanes.store(dx + i, lanes.load(dx + i) + g);
            });
        }
        if (dw || db) {
            detail::for_each_batch<T>(0, cols, [&](index_t i, const auto& lanes) {
                const B g = lanes.load(dy + i);
                if (dw) lanes.store(dw + i, xsimd::fma(g, (lanes.load(x + i) - vm) * vs, lanes.load(dw + i)));
                if (db) lanes.store(db + i, lanes.load(db + i) + g);
            });
        }
    };
    detail::norm_backward_rows<T>(dweight, dbias, rows, cols, row_fn);
}
template <class T>
void layernorm_backward_reference(Nullable<T>* dinp, Nullable<T>* dweight, Nullable<T>* dbias, const T* dout,
                                  const T* inp, const Nullable<T>* weight, const T* mean, const T* rstd, index_t rows,
                                  index_t cols) {
    detail::check_norm<T>("layernorm_backward_reference", rows, cols);
    const bool any_grad = dinp || dweight || dbias;
    LLMBLOCKS_CHECK(rows == 0 || !any_grad || (dout && inp && mean && rstd),
                    "layernorm_backward_reference: dout, inp, mean and rstd must not be null, (rows, cols) = ",
                    Shape{rows, cols});
    if (!any_grad) return;
    for (index_t r = 0; r < rows; ++r) {
        const T* x = inp + r * cols;
        const T* dy = dout + r * cols;
        T dnorm_mean = T(0), dnorm_norm_mean = T(0);
        for (index_t i = 0; i < cols; ++i) {
            const T norm = (x[i] - mean[r]) * rstd[r];
            const T dnorm = dy[i] * (weight ? weight[i] : T(1));
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= T(cols);
        dnorm_norm_mean /= T(cols);
        for (index_t i = 0; i < cols; ++i) {
            const T norm = (x[i] - mean[r]) * rstd[r];
            const T dnorm = dy[i] * (weight ? weight[i] : T(1));
            if (dinp) dinp[r * cols + i] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * rstd[r];
            if (dweight) dweight[i] += dy[i] * norm;
            if (dbias) dbias[i] += dy[i];
        }
    }
}

// ---- RMSNorm -------------------------------------------------------------------

template <class T>
void rmsnorm_forward(T* out, Nullable<T>* rstd, const T* inp, const Nullable<T>* weight, index_t rows, index_t cols,
                     std::type_identity_t<T> eps) {
    // out, inp: (rows, C); rstd: (rows), may be null; weight: (C), may be null
    detail::check_norm_forward<T>("rmsnorm_forward", rows, cols, out, inp, eps);
    using B = simd::batch<T>;
    parallel_for(0, rows, detail::row_grain(cols), [=](index_t lo, index_t hi) {
        for (index_t r = lo; r < hi; ++r) {
            const T* x = inp + r * cols;
            T* y = out + r * cols;
            const T s = T(1) / std::sqrt(detail::dot_serial(x, x, cols) / T(cols) + eps);
            const B vs(s);
            detail::for_each_batch<T>(0, cols, [&](index_t i, const auto& lanes) {
                const B norm = lanes.load(x + i) * vs;
                lanes.store(y + i, weight ? norm * lanes.load(weight + i) : norm);
            });
            if (rstd) rstd[r] = s;
        }
    });
}
template <class T>
void rmsnorm_forward_reference(T* out, Nullable<T>* rstd, const T* inp, const Nullable<T>* weight, index_t rows,
                               index_t cols, std::type_identity_t<T> eps) {
    detail::check_norm_forward<T>("rmsnorm_forward_reference", rows, cols, out, inp, eps);
    for (index_t r = 0; r < rows; ++r) {
        const T* x = inp + r * cols;
        T ss = T(0);
        for (index_t i = 0; i < cols; ++i) ss += x[i] * x[i];
        const T s = T(1) / std::sqrt(ss / T(cols) + eps);
        for (index_t i = 0; i < cols; ++i) out[r * cols + i] = x[i] * s * (weight ? weight[i] : T(1));
        if (rstd) rstd[r] = s;
    }
}

// With norm = x * rstd and dnorm = dout * weight (the forward line out = norm * weight):
//   dweight += dout * norm,  dinp += rstd * (dnorm - norm * mean(dnorm * norm)).
template <class T>
void rmsnorm_backward(Nullable<T>* dinp, Nullable<T>* dweight, const T* dout, const T* inp, const Nullable<T>* weight,
                      const T* rstd, index_t rows, index_t cols) {
    // dinp, dout, inp: (rows, C); dweight, weight: (C); rstd: (rows)
    detail::check_norm<T>("rmsnorm_backward", rows, cols);
    const bool any_grad = dinp || dweight;
    LLMBLOCKS_CHECK(rows == 0 || !any_grad || (dout && inp && rstd),
                    "rmsnorm_backward: dout, inp and rstd must not be null, (rows, cols) = ", Shape{rows, cols});
    if (!any_grad) return;
    using B = simd::batch<T>;
    auto row_fn = [=](index_t r, T* dw, T*) {
        const T* x = inp + r * cols;
        const T* dy = dout + r * cols;
        const B vs(rstd[r]);
        if (dinp) {
            B acc(T(0));
            detail::for_each_batch<T>(0, cols, [&](index_t i, const auto& lanes) {
                const B dnorm = lanes.load(dy + i) * detail::load_or(lanes, weight ? weight + i : nullptr, T(1));
                acc = xsimd::fma(dnorm, lanes.load(x + i) * vs, acc);
            });
            const B dnorm_norm_mean(xsimd::hadd(acc) / T(cols));
            T* dx = dinp + r * cols;
            detail::for_each_batch<T>(0, cols, [&](index_t i, const auto& lanes) {
                const B norm = lanes.load(x + i) * vs;
                const B dnorm = lanes.load(dy + i) * detail::load_or(lanes, weight ? weight + i : nullptr, T(1));
                lanes.store(dx + i, xsimd::fma(xsimd::fnma(norm, dnorm_norm_mean, dnorm), vs, lanes.load(dx + i)));
            });
        }
        if (dw) {
            detail::for_each_batch<T>(0, cols, [&](index_t i, const auto& lanes) {
                lanes.store(dw + i, xsimd::fma(lanes.load(dy + i), lanes.load(x + i) * vs, lanes.load(dw + i)));
            });
        }
    };
    detail::norm_backward_rows<T>(dweight, static_cast<T*>(nullptr), rows, cols, row_fn);
}
template <class T>
void rmsnorm_backward_reference(Nullable<T>* dinp, Nullable<T>* dweight, const T* dout, const T* inp,
                                const Nullable<T>* weight, const T* rstd, index_t rows, index_t cols) {
    detail::check_norm<T>("rmsnorm_backward_reference", rows, cols);
    const bool any_grad = dinp || dweight;
    LLMBLOCKS_CHECK(rows == 0 || !any_grad || (dout && inp && rstd),
                    "rmsnorm_backward_reference: dout, inp and rstd must not be null, (rows, cols) = ",
                    Shape{rows, cols});
    if (!any_grad) return;
    for (index_t r = 0; r < rows; ++r) {
        const T* x = inp + r * cols;
        const T* dy = dout + r * cols;
        T dnorm_norm_mean = T(0);
        for (index_t i = 0; i < cols; ++i) dnorm_norm_mean += dy[i] * (weight ? weight[i] : T(1)) * x[i] * rstd[r];
        dnorm_norm_mean /= T(cols);
        for (index_t i = 0; i < cols; ++i) {
            const T norm = x[i] * rstd[r];
            const T dnorm = dy[i] * (weight ? weight[i] : T(1));
            if (dinp) dinp[r * cols + i] += (dnorm - norm * dnorm_norm_mean) * rstd[r];
            if (dweight) dweight[i] += dy[i] * norm;
        }
    }
}

}  // namespace llmblocks::kernels
