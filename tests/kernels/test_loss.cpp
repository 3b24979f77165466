// Tests for include/llmblocks/kernels/loss.hpp: the fused cross-entropy +
// z-loss kernels against their scalar references at awkward vocabulary sizes
// and unaligned pointers, in float and double, with ignored rows.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "llmblocks/core/tensor.hpp"
#include "llmblocks/kernels/loss.hpp"
#include "support/compare.hpp"

using namespace llmblocks;

namespace {

const index_t kSizes[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 127, 257, 1000};

template <class T>
void check_against_reference(index_t rows, index_t vocab, index_t offset, T z_loss, double rtol) {
    Rng rng(static_cast<std::uint64_t>(vocab * 131 + rows + offset));
    // logits with an offset so the kernels see unaligned pointers
    Tensor<T> storage = Tensor<T>::randn({rows * vocab + offset}, rng, 0.0, 3.0);
    const T* logits = storage.data() + offset;
    std::vector<std::int32_t> targets(static_cast<std::size_t>(rows));
    for (index_t r = 0; r < rows; ++r) targets[r] = r % 3 == 1 ? -100 : static_cast<std::int32_t>(rng.randint(0, vocab));

    Tensor<T> loss = Tensor<T>::zeros({rows}), lse = Tensor<T>::zeros({rows});
    Tensor<T> loss_ref = Tensor<T>::zeros({rows}), lse_ref = Tensor<T>::zeros({rows});
    kernels::cross_entropy_forward(loss.data(), lse.data(), logits, targets.data(), rows, vocab, z_loss, -100);
    kernels::cross_entropy_forward_reference(loss_ref.data(), lse_ref.data(), logits, targets.data(), rows, vocab, z_loss, -100);
    CHECK_TENSOR_CLOSE(lse, lse_ref, rtol, rtol);
    CHECK_TENSOR_CLOSE(loss, loss_ref, rtol, rtol);

    // backward accumulates into an existing gradient
    Tensor<T> dstore = Tensor<T>::randn({rows * vocab + offset}, rng);
    Tensor<T> dref = dstore.clone();
    const Tensor<T> dloss = Tensor<T>::randn({rows}, rng);
    kernels::cross_entropy_backward(dstore.data() + offset, dloss.data(), logits, lse_ref.data(), targets.data(), rows, vocab,
                                    z_loss, -100);
    kernels::cross_entropy_backward_reference(dref.data() + offset, dloss.data(), logits, lse_ref.data(), targets.data(), rows,
                                              vocab, z_loss, -100);
    CHECK_TENSOR_CLOSE(dstore, dref, rtol, rtol);
}

}  // namespace

TEST_CASE("kernels/loss: cross_entropy matches the reference at awkward sizes") {
    for (index_t vocab : kSizes)
        for (index_t offset : {0, 1}) {
            INFO("vocab " << vocab << ", offset " << offset);
            check_against_reference<float>(5, vocab, offset, 0.0f, 2e-5);
            check_against_reference<float>(4, vocab, offset, 1e-2f, 2e-5);
            check_against_reference<double>(5, vocab, offset, 1e-4, 1e-12);
        }
    // many rows: the threaded path
    check_against_reference<float>(300, 257, 1, 1e-4f, 2e-5);
    // no rows
    kernels::cross_entropy_forward<float>(nullptr, nullptr, nullptr, nullptr, 0, 10, 0.0f, -100);
}

TEST_CASE("kernels/loss: values, stability at large logits, ignored rows, bad targets") {
    // uniform logits over V: loss = log V, lse = c + log V
    const index_t V = 37;
    std::vector<double> x(V, 1000.0);  // exp(1000) overflows: the max shift must hold
    std::int32_t t = 5;
    double loss = 0, lse = 0;
    kernels::cross_entropy_forward(&loss, &lse, x.data(), &t, 1, V, 0.0, -100);
    CHECK(loss == doctest::Approx(std::log(37.0)).epsilon(1e-12));
    CHECK(lse == doctest::Approx(1000.0 + std::log(37.0)).epsilon(1e-12));
    // z-loss adds z * lse^2
    kernels::cross_entropy_forward(&loss, &lse, x.data(), &t, 1, V, 1e-4, -100);
    CHECK(loss == doctest::Approx(std::log(37.0) + 1e-4 * lse * lse).epsilon(1e-12));
    // the gradient of a row sums to 2 z lse dloss (softmax sums to 1, minus the one-hot)
    std::vector<double> d(V, 0.0);
    const double dl = 1.0;
    kernels::cross_entropy_backward(d.data(), &dl, x.data(), &lse, &t, 1, V, 1e-4, -100);
    double s = 0;
    for (double v : d) s += v;
    CHECK(s == doctest::Approx(2e-4 * lse).epsilon(1e-9));
    // an ignored row: loss 0, no gradient
    std::int32_t ignored = -100;
    std::fill(d.begin(), d.end(), 0.0);
    kernels::cross_entropy_forward(&loss, &lse, x.data(), &ignored, 1, V, 0.0, -100);
    CHECK(loss == 0.0);
    kernels::cross_entropy_backward(d.data(), &dl, x.data(), &lse, &ignored, 1, V, 0.0, -100);
    for (double v : d) CHECK(v == 0.0);
    // out-of-range targets throw
    std::int32_t bad = 37;
    CHECK_THROWS_AS(kernels::cross_entropy_forward(&loss, &lse, x.data(), &bad, 1, V, 0.0, -100), Error);
    CHECK_THROWS_AS(kernels::cross_entropy_forward_reference(&loss, &lse, x.data(), &bad, 1, V, 0.0, -100), Error);
}
