// llmblocks/ops/embedding.hpp — differentiable embedding lookup: token and
// position embeddings (GPT-2's wte/wpe, PaLM's and T5's shared embedding).
// The gradient of a row used several times is the sum of its uses (kernel
// embedding_backward), and a tied LM head adds its own use on top.
#pragma once

#include <vector>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/kernels/embedding.hpp"
#include "llmblocks/ops/common.hpp"

namespace llmblocks {

// out (..., C) = weight[ids] for ids (...) of int32 and weight (V, C).
template <class T>
Variable<T> embedding(const TensorI& ids, const Variable<T>& weight) {
    detail::require_defined("embedding", weight, "weight");
    LLMBLOCKS_CHECK(ids.defined(), "embedding: ids tensor is undefined");
    LLMBLOCKS_CHECK(weight.dim() == 2, "embedding: weight must be (V, C), got ", weight.shape(), " for ids ", ids.shape());
    const index_t V = weight.size(0), C = weight.size(1);
    const TensorI I = ids.contiguous();  // (n)
    const Tensor<T> W = weight.value().contiguous();
    Shape out_shape = ids.shape();
    out_shape.push_back(C);
    Tensor<T> out = Tensor<T>::empty(out_shape);  // (n, C)
    const index_t n = I.numel();
    kernels::embedding_forward(out.data(), I.data(), W.data(), n, V, C);
    return record_op<T>("embedding", out, {weight}, [I, n, V, C](const Tensor<T>& dout, const std::vector<T*>& d) {
        // out[i, :] = weight[ids[i], :]  =>  dweight[ids[i], :] += dout[i, :]
        if (d[0]) kernels::embedding_backward(d[0], dout.data(), I.data(), n, V, C);
    });
}

}  // namespace llmblocks
