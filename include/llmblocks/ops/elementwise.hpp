// llmblocks/ops/elementwise.hpp — differentiable add, sub, mul (with NumPy
// broadcasting) and scale by a constant: residual connections, biases, gates,
// attention masks, T5's d_model**-0.5 logit rescaling.
//
// Broadcasting follows NumPy/PyTorch: shapes align at the right, a size-1 (or
// missing) dimension repeats. Two layouts take the kernels directly: equal
// shapes, and one operand repeated along the leading dimensions of the other
// (a bias (C) on (B, T, C), a mask (T, T) on (B, H, T, T)). Any other pattern
// (e.g. (B, T, 1) * (B, T, C)) runs a strided loop. The gradient of a
// broadcast operand is summed over the positions it was repeated at.
#pragma once

#include <type_traits>
#include <vector>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/kernels/elementwise.hpp"
#include "llmblocks/ops/common.hpp"

namespace llmblocks {

namespace detail {

enum class Binary { Add, Sub, Mul };

inline const char* binary_name(Binary op) {
    switch (op) {
        case Binary::Add: return "add";
        case Binary::Sub: return "sub";
        default: return "mul";
    }
}

// The broadcast shape of a and b, or an Error naming the op and both shapes.
inline Shape broadcast_shape(const char* op, const Shape& a, const Shape& b) {
    const std::size_t n = std::max(a.size(), b.size());
    Shape out(n);
    for (std::size_t i = 0; i < n; ++i) {
        const index_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
        const index_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
        LLMBLOCKS_CHECK(da == db || da == 1 || db == 1, op, ": shapes do not broadcast: a ", a, " vs b ", b);
        out[i] = da == 1 ? db : da;
    }
    return out;
}

// True when `small` (leading 1s ignored) equals the trailing dimensions of `big`:
// `big` is then (rows, numel(small)) with `small` repeated on every row.
inline bool is_trailing_block(const Shape& small, const Shape& big) {
    std::size_t lead = 0;
    while (lead < small.size() && small[lead] == 1) ++lead;
    const std::size_t n = small.size() - lead;
    if (n > big.size()) return false;
    return std::equal(small.begin() + static_cast<std::ptrdiff_t>(lead), small.end(), big.end() - static_cast<std::ptrdiff_t>(n));
}

// Strides of a contiguous `shape` expanded to `out` (0 where it repeats).
inline Shape broadcast_strides(const Shape& shape, const Shape& out) {
    const Shape s = contiguous_strides(shape);
    Shape r(out.size(), 0);
    const std::size_t lead = out.size() - shape.size();
    for (std::size_t i = 0; i < shape.size(); ++i) r[lead + i] = shape[i] == 1 ? 0 : s[i];
    return r;
}

// Calls fn(offset in a, offset in b, flat output index) over the output shape.
template <class Fn>
void broadcast_walk(const Shape& out, const Shape& sa, const Shape& sb, Fn&& fn) {
    const index_t n = shape_numel(out);
    if (n == 0) return;
    std::vector<index_t> idx(out.size(), 0);
    index_t oa = 0, ob = 0;
    for (index_t i = 0; i < n; ++i) {
        fn(oa, ob, i);
        for (std::size_t k = out.size(); k-- > 0;) {
            if (++idx[k] < out[k]) {
                oa += sa[k];
                ob += sb[k];
                break;
            }
            oa -= sa[k] * (out[k] - 1);
            ob -= sb[k] * (out[k] - 1);
            idx[k] = 0;
        }
    }
}

template <class T>
void binary_kernel(Binary op, T* out, const T* a, const T* b, index_t n) {
    switch (op) {
        case Binary::Add: kernels::add(out, a, b, n); break;
        case Binary::Sub: kernels::sub(out, a, b, n); break;
        case Binary::Mul: kernels::mul(out, a, b, n); break;
    }
}

template <class T>
Variable<T> binary(Binary op, const Variable<T>& a, const Variable<T>& b) {
    const char* name = binary_name(op);
    require_defined(name, a, "a");
    require_defined(name, b, "b");
    const Shape out_shape = broadcast_shape(name, a.shape(), b.shape());
    const Tensor<T> A = a.value().contiguous();
    const Tensor<T> B = b.value().contiguous();
    Tensor<T> out = Tensor<T>::empty(out_shape);
    const index_t n = out.numel();
    const T sign_b = op == Binary::Sub ? T(-1) : T(1);

    // Layout 1: equal shapes.
    if (A.shape() == out_shape && B.shape() == out_shape) {
        binary_kernel(op, out.data(), A.data(), B.data(), n);
        return record_op<T>(name, out, {a, b}, [op, A, B, n, sign_b](const Tensor<T>& dout, const std::vector<T*>& d) {
            if (op != Binary::Mul) {
                if (d[0]) kernels::axpy(d[0], T(1), dout.data(), n);    // out = a + b  =>  da += dout
                if (d[1]) kernels::axpy(d[1], sign_b, dout.data(), n);  // out = a -+ b =>  db +-= dout
                return;
            }
            // out = a * b  =>  da += dout * b,  db += dout * a
            Tensor<T> tmp = Tensor<T>::empty({n});
            if (d[0]) {
                kernels::mul(tmp.data(), dout.data(), B.data(), n);
                kernels::axpy(d[0], T(1), tmp.data(), n);
            }
            if (d[1]) {
                kernels::mul(tmp.data(), dout.data(), A.data(), n);
                kernels::axpy(d[1], T(1), tmp.data(), n);
            }
        });
    }

    // Layout 2: one operand is a block repeated along the other's leading dimensions.
    const bool b_small = A.shape() == out_shape && is_trailing_block(B.shape(), out_shape);
    const bool a_small = !b_small && B.shape() == out_shape && is_trailing_block(A.shape(), out_shape);
    if (a_small || b_small) {
        const Tensor<T>& big = b_small ? A : B;
        const Tensor<T>& small = b_small ? B : A;
        const index_t cols = small.numel();
        const index_t rows = cols == 0 ? 0 : n / cols;
        parallel_for(0, rows, std::max<index_t>(1, kParallelGrain / std::max<index_t>(cols, 1)), [&](index_t lo, index_t hi) {
            for (index_t r = lo; r < hi; ++r) {
                const T* x = big.data() + r * cols;
                binary_kernel(op, out.data() + r * cols, b_small ? x : small.data(), b_small ? small.data() : x, cols);
            }
        });
        return record_op<T>(name, out, {a, b}, [op, big, small, b_small, rows, cols, sign_b](const Tensor<T>& dout,
                                                                                            const std::vector<T*>& d) {
            T* dbig = b_small ? d[0] : d[1];
            T* dsmall = b_small ? d[1] : d[0];
            const T big_sign = b_small ? T(1) : sign_b, small_sign = b_small ? sign_b : T(1);
            const index_t n = rows * cols;
            if (op != Binary::Mul) {
                // out = big +- small[repeated]  =>  dbig +-= dout,  dsmall +-= sum over rows of dout
                if (dbig) kernels::axpy(dbig, big_sign, dout.data(), n);
                if (dsmall) {
                    if (small_sign == T(1)) {
                        add_column_sums(dsmall, dout.data(), rows, cols);
                    } else {
                        Tensor<T> sums = Tensor<T>::zeros({cols});
                        add_column_sums(sums.data(), dout.data(), rows, cols);
                        kernels::axpy(dsmall, small_sign, sums.data(), cols);
                    }
                }
                return;
            }
            // out = big * small[repeated]  =>  dbig += dout * small,  dsmall += sum over rows of dout * big
            Tensor<T> tmp = Tensor<T>::empty({n});
            parallel_for(0, rows, std::max<index_t>(1, kParallelGrain / std::max<index_t>(cols, 1)), [&](index_t lo, index_t hi) {
                for (index_t r = lo; r < hi; ++r) {
                    if (dbig) {
                        kernels::mul(tmp.data() + r * cols, dout.data() + r * cols, small.data(), cols);
                        kernels::axpy(dbig + r * cols, T(1), tmp.data() + r * cols, cols);
                    }
                    if (dsmall) kernels::mul(tmp.data() + r * cols, dout.data() + r * cols, big.data() + r * cols, cols);
                }
            });
            if (dsmall) add_column_sums(dsmall, tmp.data(), rows, cols);
        });
    }

    // Layout 3: general broadcasting, a strided loop.
    const Shape sa = broadcast_strides(A.shape(), out_shape);
    const Shape sb = broadcast_strides(B.shape(), out_shape);
    broadcast_walk(out_shape, sa, sb, [&](index_t ia, index_t ib, index_t i) {
        const T x = A.data()[ia], y = B.data()[ib];
        out.data()[i] = op == Binary::Add ? x + y : op == Binary::Sub ? x - y : x * y;
    });
    return record_op<T>(name, out, {a, b}, [op, A, B, out_shape, sa, sb, sign_b](const Tensor<T>& dout,
                                                                                 const std::vector<T*>& d) {
        // Repeated positions of a broadcast operand sum their gradients (serial: no races).
        broadcast_walk(out_shape, sa, sb, [&](index_t ia, index_t ib, index_t i) {
            const T g = dout.data()[i];
            if (op == Binary::Mul) {
                if (d[0]) d[0][ia] += g * B.data()[ib];  // out = a * b
                if (d[1]) d[1][ib] += g * A.data()[ia];
            } else {
                if (d[0]) d[0][ia] += g;  // out = a +- b
                if (d[1]) d[1][ib] += sign_b * g;
            }
        });
    });
}

}  // namespace detail

// a + b with broadcasting.
template <class T>
Variable<T> add(const Variable<T>& a, const Variable<T>& b) {
    return detail::binary(detail::Binary::Add, a, b);
}
// a - b with broadcasting.
template <class T>
Variable<T> sub(const Variable<T>& a, const Variable<T>& b) {
    return detail::binary(detail::Binary::Sub, a, b);
}
// a * b (elementwise) with broadcasting.
template <class T>
Variable<T> mul(const Variable<T>& a, const Variable<T>& b) {
    return detail::binary(detail::Binary::Mul, a, b);
}

// s * x for a constant s.
template <class T>
Variable<T> scale(const Variable<T>& x, std::type_identity_t<T> s) {
    detail::require_defined("scale", x, "input");
    const Tensor<T> X = x.value().contiguous();
    Tensor<T> out = Tensor<T>::empty(X.shape());
    const index_t n = out.numel();
    kernels::scale(out.data(), X.data(), s, n);
    return record_op<T>("scale", out, {x}, [s, n](const Tensor<T>& dout, const std::vector<T*>& d) {
        if (d[0]) kernels::axpy(d[0], s, dout.data(), n);  // out = s * x  =>  dx += s * dout
    });
}

// Operators, so that a block reads like the paper: x = x + attn(ln_1(x)).
template <class T>
Variable<T> operator+(const Variable<T>& a, const Variable<T>& b) {
    return add(a, b);
}
template <class T>
Variable<T> operator-(const Variable<T>& a, const Variable<T>& b) {
    return sub(a, b);
}
template <class T>
Variable<T> operator*(const Variable<T>& a, const Variable<T>& b) {
    return mul(a, b);
}
template <class T>
Variable<T> operator*(const Variable<T>& x, std::type_identity_t<T> s) {
    return scale(x, s);
}
template <class T>
Variable<T> operator*(std::type_identity_t<T> s, const Variable<T>& x) {
    return scale(x, s);
}

}  // namespace llmblocks
