// llmblocks/ops/rope.hpp — differentiable rotary position embedding (RoPE;
// RoFormer, Su et al. 2021), applied to queries and keys in GPT-J, GPT-NeoX,
// PaLM and Llama, over kernels/rope.hpp.
//
//   out = x*cos + rotate_half(x)*sin   (rotate-half convention; interleaved pairs
//   (x[2i], x[2i+1]) otherwise), row t of x at position pos0 + t.
// The rotation is orthogonal: the backward rotates dout by -angle. The cos/sin
// cache is shared (std::shared_ptr): a recorded graph keeps it alive, and a
// later reserve() only appends positions, so the backward reads the same values.
#pragma once

#include <memory>
#include <vector>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/kernels/rope.hpp"
#include "llmblocks/ops/common.hpp"

namespace llmblocks {

using kernels::RopeCache;
using kernels::RopeStyle;

// x (B, H, T, D) rotated at positions pos0 .. pos0+T-1 (the first cache->rot_dim() features
// of each head; the rest pass through). The cache must hold pos0 + T positions.
template <class T>
Variable<T> rope(const Variable<T>& x, std::shared_ptr<const RopeCache<T>> cache, RopeStyle style, index_t pos0 = 0) {
    detail::require_defined("rope", x, "input");
    LLMBLOCKS_CHECK(cache != nullptr, "rope: no RopeCache for input ", x.shape());
    LLMBLOCKS_CHECK(x.dim() == 4, "rope: expected a (B, H, T, D) input, got ", x.shape());
    const Shape s = x.shape();
    const Tensor<T> X = x.value().contiguous();
    Tensor<T> out = Tensor<T>::empty(s);
    kernels::rope_forward(out.data(), X.data(), *cache, style, s[0], s[1], s[2], s[3], pos0);
    return record_op<T>("rope", out, {x}, [cache, style, s, pos0](const Tensor<T>& dout, const std::vector<T*>& d) {
        // out = R(pos) x  =>  dx += R(pos)^T dout
        if (d[0]) kernels::rope_backward(d[0], dout.data(), *cache, style, s[0], s[1], s[2], s[3], pos0);
    });
}

}  // namespace llmblocks
