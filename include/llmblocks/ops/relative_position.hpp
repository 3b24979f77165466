// llmblocks/ops/relative_position.hpp — T5's bucketed relative position bias
// (Raffel et al. 2020) as a differentiable op over kernels/relative_position.hpp.
//
//   bias[h, i, k] = weight[bucket(k - (q0 + i)), h]
// A gather from the (num_buckets, H) table; the backward scatter-adds dbias
// into the buckets. The result feeds attention()'s additive bias, whose
// gradient flows back here, so the table learns.
#pragma once

#include <vector>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/kernels/relative_position.hpp"
#include "llmblocks/ops/common.hpp"

namespace llmblocks {

using kernels::T5BucketConfig;

// bias (H, Tq, Tk) from weight (num_buckets, H) for queries at positions q0 .. q0+Tq-1 and
// keys at 0 .. Tk-1.
template <class T>
Variable<T> relative_position_bias(const Variable<T>& weight, const T5BucketConfig& config, index_t Tq, index_t Tk,
                                   index_t q0 = 0) {
    detail::require_defined("relative_position_bias", weight, "weight");
    LLMBLOCKS_CHECK(weight.dim() == 2 && weight.size(0) == config.num_buckets,
                    "relative_position_bias: weight ", weight.shape(), " is not (num_buckets = ", config.num_buckets,
                    ", H)");
    const index_t H = weight.size(1);
    const Tensor<T> W = weight.value().contiguous();
    Tensor<T> bias = Tensor<T>::empty({H, Tq, Tk});
    kernels::relative_position_bias_forward(bias.data(), W.data(), config, H, Tq, Tk, q0);
    return record_op<T>("relative_position_bias", bias, {weight},
                        [config, H, Tq, Tk, q0](const Tensor<T>& dbias, const std::vector<T*>& d) {
                            // bias[h, i, k] = weight[bucket, h]  =>  dweight[bucket, h] += dbias[h, i, k]
                            kernels::relative_position_bias_backward(d[0], dbias.data(), config, H, Tq, Tk, q0);
                        });
}

}  // namespace llmblocks
