// llmblocks/ops/linear.hpp — differentiable matmul and linear (y = x W + b),
// every transformer's projections (GPT-2's Conv1D in the [in, out] layout,
// PyTorch's nn.Linear, PaLM and T5 in the [out, in] layout).
//
// Leading dimensions fold into GEMM rows: (B, T, C) x (C, N) is ONE gemm over
// B*T rows. Batched products (B, H, T, D) x (B, H, D, T') are one
// gemm_batched. A right operand that is a transposed view of a contiguous
// tensor (transpose(k, -2, -1), or transpose(wte, 0, 1) for a tied LM head)
// is passed to the GEMM with its transpose flag, without a copy.
#pragma once

#include <algorithm>
#include <vector>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/kernels/gemm.hpp"
#include "llmblocks/ops/common.hpp"

namespace llmblocks {

// How a weight matrix is stored.
enum class WeightLayout {
    OutIn,  // (out, in): PyTorch nn.Linear, PaLM, T5, Llama;  y = x W^T + b
    InOut,  // (in, out): GPT-2's Conv1D;                      y = x W + b
};

namespace detail {

// The last two dimensions of a tensor as a GEMM operand: row-major (trans =
// false) or a transposed view of a row-major matrix (trans = true), with a
// fixed stride between consecutive matrices; anything else is copied.
template <class T>
struct GemmOperand {
    Tensor<T> storage;  // keeps the data alive (a copy when the layout needed one)
    bool trans = false;
    index_t ld = 1;
    index_t batch_stride = 0;
};

template <class T>
GemmOperand<T> gemm_operand(const Tensor<T>& t) {
    const index_t rows = t.size(-2), cols = t.size(-1);
    GemmOperand<T> op;
    if (!t.is_contiguous() && t.transpose(-2, -1).is_contiguous()) {
        op.storage = t;
        op.trans = true;
        op.ld = std::max<index_t>(rows, 1);
    } else {
        op.storage = t.contiguous();
        op.trans = false;
        op.ld = std::max<index_t>(cols, 1);
    }
    op.batch_stride = rows * cols;
    return op;
}

}  // namespace detail

// a (..., M, K) x b (K, N) -> (..., M, N), or batched: a (B.., M, K) x b (B.., K, N) -> (B.., M, N).
template <class T>
Variable<T> matmul(const Variable<T>& a, const Variable<T>& b) {
    detail::require_defined("matmul", a, "a");
    detail::require_defined("matmul", b, "b");
    const Shape& as = a.shape();
    const Shape& bs = b.shape();
    LLMBLOCKS_CHECK(as.size() >= 1 && bs.size() >= 2, "matmul: need a with >= 1 and b with >= 2 dimensions: a ", as,
                    " vs b ", bs);
    const index_t K = as.back(), N = bs.back();
    LLMBLOCKS_CHECK(bs[bs.size() - 2] == K, "matmul: inner sizes differ: a ", as, " vs b ", bs);

    if (bs.size() == 2) {
        // (rows, K) x (K, N): one gemm over all leading positions.
        const Tensor<T> A = a.value().contiguous();  // (rows, K)
        const auto B = detail::gemm_operand(b.value());  // (K, N), maybe a transposed view
        const index_t rows = detail::rows_of(as);
        Shape out_shape(as.begin(), as.end() - 1);
        out_shape.push_back(N);
        Tensor<T> C = Tensor<T>::zeros(out_shape);  // (rows, N)
        // C = A op(B)
        if (rows > 0 && N > 0)
            kernels::gemm(false, B.trans, rows, N, K, T(1), A.data(), std::max<index_t>(K, 1), B.storage.data(), B.ld,
                          T(0), C.data(), N);
        return record_op<T>("matmul", C, {a, b}, [A, B, rows, K, N](const Tensor<T>& dC, const std::vector<T*>& d) {
            if (rows == 0 || K == 0 || N == 0) return;
            // dA (rows, K) += dC (rows, N) op(B)^T
            if (d[0])
                kernels::gemm(false, !B.trans, rows, K, N, T(1), dC.data(), N, B.storage.data(), B.ld, T(1), d[0], K);
            // dB (K, N) += A^T (K, rows) dC (rows, N)
            if (d[1]) kernels::gemm(true, false, K, N, rows, T(1), A.data(), K, dC.data(), N, T(1), d[1], N);
        });
    }

    LLMBLOCKS_CHECK(as.size() == bs.size() && std::equal(as.begin(), as.end() - 2, bs.begin()),
                    "matmul: batched operands need equal batch dimensions: a ", as, " vs b ", bs);
    const index_t M = as[as.size() - 2];
    const index_t batch = shape_numel(Shape(as.begin(), as.end() - 2));
    const auto A = detail::gemm_operand(a.value());  // (batch, M, K)
    const auto B = detail::gemm_operand(b.value());  // (batch, K, N)
    Shape out_shape(as.begin(), as.end() - 1);
    out_shape.push_back(N);
    Tensor<T> C = Tensor<T>::zeros(out_shape);  // (batch, M, N)
    // C[i] = op(A[i]) op(B[i])
    if (batch > 0 && M > 0 && N > 0)
        kernels::gemm_batched(A.trans, B.trans, M, N, K, T(1), A.storage.data(), A.ld, A.batch_stride, B.storage.data(),
                              B.ld, B.batch_stride, T(0), C.data(), std::max<index_t>(N, 1), M * N, batch);
    return record_op<T>("matmul", C, {a, b}, [A, B, batch, M, K, N](const Tensor<T>& dC, const std::vector<T*>& d) {
        if (batch == 0 || M == 0 || K == 0 || N == 0) return;
        // dA[i] (M, K) += dC[i] (M, N) op(B[i])^T
        if (d[0])
            kernels::gemm_batched(false, !B.trans, M, K, N, T(1), dC.data(), N, M * N, B.storage.data(), B.ld,
                                  B.batch_stride, T(1), d[0], K, M * K, batch);
        // dB[i] (K, N) += op(A[i])^T (K, M) dC[i] (M, N)
        if (d[1])
            kernels::gemm_batched(!A.trans, false, K, N, M, T(1), A.storage.data(), A.ld, A.batch_stride, dC.data(), N,
                                  M * N, T(1), d[1], N, K * N, batch);
    });
}

// y (..., out) = x (..., in) W + b, with W stored as `layout` says and b (out) optional
// (pass an undefined Variable for none).
template <class T>
Variable<T> linear(const Variable<T>& x, const Variable<T>& weight, const Variable<T>& bias,
                   WeightLayout layout = WeightLayout::OutIn) {
    detail::require_defined("linear", x, "input");
    detail::require_defined("linear", weight, "weight");
    const Shape& xs = x.shape();
    const Shape& ws = weight.shape();
    LLMBLOCKS_CHECK(xs.size() >= 1 && ws.size() == 2, "linear: need an input with >= 1 and a 2-D weight: input ", xs,
                    " vs weight ", ws);
    const bool out_in = layout == WeightLayout::OutIn;
    const index_t K = out_in ? ws[1] : ws[0];  // in
    const index_t N = out_in ? ws[0] : ws[1];  // out
    LLMBLOCKS_CHECK(xs.back() == K, "linear: input features differ from the weight's: input ", xs, " vs weight ", ws,
                    out_in ? " (layout [out, in])" : " (layout [in, out])");
    if (bias.defined())
        LLMBLOCKS_CHECK(bias.shape() == Shape{N}, "linear: bias shape ", bias.shape(), " does not match weight ", ws,
                        " (expected (", N, "))");

    const Tensor<T> X = x.value().contiguous();       // (rows, K)
    const Tensor<T> W = weight.value().contiguous();  // (N, K) or (K, N)
    const index_t rows = detail::rows_of(xs);
    Shape out_shape(xs.begin(), xs.end() - 1);
    out_shape.push_back(N);
    Tensor<T> Y = Tensor<T>::empty(out_shape);  // (rows, N)
    T beta = T(0);
    if (bias.defined()) {
        // Y = b (each row), then Y += X W: the bias add rides on the GEMM's beta.
        const Tensor<T> bv = bias.value().contiguous();
        for (index_t r = 0; r < rows; ++r) std::copy(bv.data(), bv.data() + N, Y.data() + r * N);
        beta = T(1);
    } else if (K == 0) {
        Y.zero_();
    }
    // Y (rows, N) = X (rows, K) W  [InOut: W (K, N)]  or  X W^T  [OutIn: W (N, K)]
    if (rows > 0 && N > 0 && K > 0)
        kernels::gemm(false, out_in, rows, N, K, T(1), X.data(), K, W.data(), out_in ? K : N, beta, Y.data(), N);
    return record_op<T>("linear", Y, {x, weight, bias}, [X, W, rows, K, N, out_in](const Tensor<T>& dY,
                                                                                    const std::vector<T*>& d) {
        if (rows == 0 || N == 0) return;
        if (K > 0) {
            // dX (rows, K) += dY (rows, N) W^T [InOut]  or  dY W [OutIn]
            if (d[0]) kernels::gemm(false, !out_in, rows, K, N, T(1), dY.data(), N, W.data(), out_in ? K : N, T(1), d[0], K);
            if (d[1]) {
                if (out_in)  // dW (N, K) += dY^T (N, rows) X (rows, K)
                    kernels::gemm(true, false, N, K, rows, T(1), dY.data(), N, X.data(), K, T(1), d[1], K);
                else  // dW (K, N) += X^T (K, rows) dY (rows, N)
                    kernels::gemm(true, false, K, N, rows, T(1), X.data(), K, dY.data(), N, T(1), d[1], N);
            }
        }
        // db (N) += sum over rows of dY
        if (d[2]) detail::add_column_sums(d[2], dY.data(), rows, N);
    });
}

// y = x W (+ nothing): linear without a bias.
template <class T>
Variable<T> linear(const Variable<T>& x, const Variable<T>& weight, WeightLayout layout = WeightLayout::OutIn) {
    return linear(x, weight, Variable<T>(), layout);
}

}  // namespace llmblocks
