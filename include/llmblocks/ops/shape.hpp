// llmblocks/ops/shape.hpp — differentiable reshape, transpose, split_heads /
// merge_heads (multi-head attention's (B, T, C) <-> (B, H, T, D)), slice and
// concat (fused QKV projections, rotary halves, KV caches).
//
// reshape, transpose and slice return views that share the input's storage
// (values are never written in place, so sharing is safe); ops that need a
// contiguous input copy at their boundary. split_heads and merge_heads copy,
// so that attention's batched GEMMs read contiguous (B*H, T, D) matrices.
#pragma once

#include <algorithm>
#include <initializer_list>
#include <vector>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/kernels/elementwise.hpp"
#include "llmblocks/ops/common.hpp"

namespace llmblocks {

// Same elements in a new shape (one size may be -1).
template <class T>
Variable<T> reshape(const Variable<T>& x, Shape shape) {
    detail::require_defined("reshape", x, "input");
    const Tensor<T> out = x.value().reshape(std::move(shape));
    const index_t n = out.numel();
    return record_op<T>("reshape", out, {x}, [n](const Tensor<T>& dout, const std::vector<T*>& d) {
        if (d[0]) kernels::axpy(d[0], T(1), dout.data(), n);  // same elements, same order
    });
}

// Swaps dimensions d0 and d1 (a view).
template <class T>
Variable<T> transpose(const Variable<T>& x, index_t d0, index_t d1) {
    detail::require_defined("transpose", x, "input");
    const Tensor<T> out = x.value().transpose(d0, d1);
    return record_op<T>("transpose", out, {x}, [d0, d1](const Tensor<T>& dout, const std::vector<T*>& d) {
        // out = x.transpose(d0, d1)  =>  dx += dout.transpose(d0, d1)
        if (d[0]) {
            const Tensor<T> back = dout.transpose(d0, d1).contiguous();
            kernels::axpy(d[0], T(1), back.data(), back.numel());
        }
    });
}

// (B, T, H*D) -> (B, H, T, D): the heads of multi-head attention, contiguous.
template <class T>
Variable<T> split_heads(const Variable<T>& x, index_t n_head) {
    detail::require_defined("split_heads", x, "input");
    const Shape& s = x.shape();
    LLMBLOCKS_CHECK(s.size() == 3, "split_heads: expected a (B, T, C) input, got ", s);
    LLMBLOCKS_CHECK(n_head > 0 && s[2] % n_head == 0, "split_heads: ", n_head, " heads do not divide C of input ", s);
    const index_t B = s[0], T_ = s[1], C = s[2], H = n_head, D = C / n_head;
    const Tensor<T> X = x.value().contiguous();  // (B, T, C)
    Tensor<T> out = Tensor<T>::empty({B, H, T_, D});
    // out[b, h, t, :] = x[b, t, h*D:(h+1)*D]
    parallel_for(0, B * H, std::max<index_t>(1, detail::kParallelGrain / std::max<index_t>(T_ * D, 1)),
                 [&](index_t lo, index_t hi) {
                     for (index_t bh = lo; bh < hi; ++bh) {
                         const index_t b = bh / H, h = bh % H;
                         for (index_t t = 0; t < T_; ++t)
                             std::copy_n(X.data() + (b * T_ + t) * C + h * D, D, out.data() + (bh * T_ + t) * D);
                     }
                 });
    return record_op<T>("split_heads", out, {x}, [B, T_, C, H, D](const Tensor<T>& dout, const std::vector<T*>& d) {
        if (!d[0]) return;
        // dx[b, t, h*D:(h+1)*D] += dout[b, h, t, :]
        parallel_for(0, B * T_, std::max<index_t>(1, detail::kParallelGrain / std::max<index_t>(C, 1)),
                     [&](index_t lo, index_t hi) {
                         for (index_t bt = lo; bt < hi; ++bt) {
                             const index_t b = bt / T_, t = bt % T_;
                             for (index_t h = 0; h < H; ++h)
                                 kernels::axpy(d[0] + bt * C + h * D, T(1), dout.data() + ((b * H + h) * T_ + t) * D, D);
                         }
                     });
    });
}

// (B, H, T, D) -> (B, T, H*D): the inverse of split_heads.
template <class T>
Variable<T> merge_heads(const Variable<T>& x) {
    detail::require_defined("merge_heads", x, "input");
    const Shape& s = x.shape();
    LLMBLOCKS_CHECK(s.size() == 4, "merge_heads: expected a (B, H, T, D) input, got ", s);
    const index_t B = s[0], H = s[1], T_ = s[2], D = s[3], C = H * D;
    const Tensor<T> X = x.value().contiguous();  // (B, H, T, D)
    Tensor<T> out = Tensor<T>::empty({B, T_, C});
    // out[b, t, h*D:(h+1)*D] = x[b, h, t, :]
    parallel_for(0, B * T_, std::max<index_t>(1, detail::kParallelGrain / std::max<index_t>(C, 1)),
                 [&](index_t lo, index_t hi) {
                     for (index_t bt = lo; bt < hi; ++bt) {
                         const index_t b = bt / T_, t = bt % T_;
                         for (index_t h = 0; h < H; ++h)
                             std::copy_n(X.data() + ((b * H + h) * T_ + t) * D, D, out.data() + bt * C + h * D);
                     }
                 });
    return record_op<T>("merge_heads", out, {x}, [B, H, T_, D, C](const Tensor<T>& dout, const std::vector<T*>& d) {
        if (!d[0]) return;
        // dx[b, h, t, :] += dout[b, t, h*D:(h+1)*D]
        parallel_for(0, B * H, std::max<index_t>(1, detail::kParallelGrain / std::max<index_t>(T_ * D, 1)),
                     [&](index_t lo, index_t hi) {
                         for (index_t bh = lo; bh < hi; ++bh) {
                             const index_t b = bh / H, h = bh % H;
                             for (index_t t = 0; t < T_; ++t)
                                 kernels::axpy(d[0] + (bh * T_ + t) * D, T(1), dout.data() + (b * T_ + t) * C + h * D, D);
                         }
                     });
    });
}

// Elements [start, end) along dimension `dim` (a view; negative indices count from the end).
template <class T>
Variable<T> slice(const Variable<T>& x, index_t dim, index_t start, index_t end) {
    detail::require_defined("slice", x, "input");
    const index_t r = x.dim();
    const index_t k = dim < 0 ? dim + r : dim;
    LLMBLOCKS_CHECK(k >= 0 && k < r, "slice: dimension ", dim, " out of range for input ", x.shape());
    const index_t n = x.shape()[k];
    const index_t lo = start < 0 ? start + n : start, hi = end < 0 ? end + n : end;
    LLMBLOCKS_CHECK(0 <= lo && lo <= hi && hi <= n, "slice: range [", start, ", ", end, ") out of bounds for dim ", dim,
                    " of input ", x.shape());
    const Tensor<T> out = x.value().narrow(k, lo, hi - lo);
    // x viewed as (outer, n * inner): the slice is columns [lo*inner, hi*inner) of every row.
    index_t outer = 1, inner = 1;
    for (index_t q = 0; q < k; ++q) outer *= x.shape()[q];
    for (index_t q = k + 1; q < r; ++q) inner *= x.shape()[q];
    const index_t row = n * inner, width = (hi - lo) * inner, off = lo * inner;
    return record_op<T>("slice", out, {x}, [outer, row, width, off](const Tensor<T>& dout, const std::vector<T*>& d) {
        // out[o, :] = x[o, off : off + width]  =>  dx[o, off : off + width] += dout[o, :]
        if (!d[0]) return;
        for (index_t o = 0; o < outer; ++o) kernels::axpy(d[0] + o * row + off, T(1), dout.data() + o * width, width);
    });
}

// Joins `parts` along dimension `dim`; all other sizes must agree.
template <class T>
Variable<T> concat(const std::vector<Variable<T>>& parts, index_t dim) {
    LLMBLOCKS_CHECK(!parts.empty(), "concat: no inputs");
    for (const auto& p : parts) detail::require_defined("concat", p, "an input");
    const Shape& first = parts[0].shape();
    const index_t r = static_cast<index_t>(first.size());
    const index_t k = dim < 0 ? dim + r : dim;
    LLMBLOCKS_CHECK(k >= 0 && k < r, "concat: dimension ", dim, " out of range for input ", first);
    Shape out_shape = first;
    out_shape[k] = 0;
    for (const auto& p : parts) {
        const Shape& s = p.shape();
        bool ok = static_cast<index_t>(s.size()) == r;
        for (index_t q = 0; ok && q < r; ++q) ok = q == k || s[q] == first[q];
        LLMBLOCKS_CHECK(ok, "concat: shapes differ outside dimension ", dim, ": ", first, " vs ", s);
        out_shape[k] += s[k];
    }
    // out viewed as (outer, size_k * inner): part p fills columns [off_p*inner, (off_p+len_p)*inner) of every row.
    index_t outer = 1, inner = 1;
    for (index_t q = 0; q < k; ++q) outer *= out_shape[q];
    for (index_t q = k + 1; q < r; ++q) inner *= out_shape[q];
    const index_t row = out_shape[k] * inner;
    Tensor<T> out = Tensor<T>::empty(out_shape);
    std::vector<index_t> offsets, widths;
    index_t off = 0;
    for (const auto& p : parts) {
        const Tensor<T> P = p.value().contiguous();
        const index_t w = p.shape()[k] * inner;
        for (index_t o = 0; o < outer; ++o) std::copy_n(P.data() + o * w, w, out.data() + o * row + off);
        offsets.push_back(off);
        widths.push_back(w);
        off += w;
    }
    return record_op<T>("concat", out, parts, [offsets, widths, outer, row](const Tensor<T>& dout, const std::vector<T*>& d) {
        // out[o, off_p : off_p + w_p] = part_p[o, :]  =>  dpart_p[o, :] += dout[o, off_p : off_p + w_p]
        for (std::size_t p = 0; p < d.size(); ++p) {
            if (!d[p]) continue;
            for (index_t o = 0; o < outer; ++o)
                kernels::axpy(d[p] + o * widths[p], T(1), dout.data() + o * row + offsets[p], widths[p]);
        }
    });
}

// concat({q, k, v}, -1): the element type is deduced from a braced list.
template <class T>
Variable<T> concat(std::initializer_list<Variable<T>> parts, index_t dim) {
    return concat(std::vector<Variable<T>>(parts), dim);
}

}  // namespace llmblocks
