// Trains a two-layer MLP with plain SGD through the autograd (ops/linear.hpp,
// activation.hpp, loss.hpp) on a small synthetic task, and shows that a
// broken gradient could not reach the same loss.
//
// Task: XOR of signs. x is uniform in [-1, 1]^2 with both |x_i| >= 0.1, and
// the class is 1 when x0 * x1 > 0, else 0 (128 points, balanced by symmetry).
// Model: logits = W2 relu(W1 x + b1) + b2, hidden 16, full-batch SGD, lr 0.5,
// 400 steps, fixed seeds.
//
// Bound: final mean cross-entropy < 0.05 (from ln 2 = 0.693 at the start).
// Why a broken gradient cannot reach it:
//  - Every function linear in x (what the model is if no useful gradient
//    reaches the hidden layer's input side) has cross-entropy >= ln 2 on this
//    data: XOR is symmetric under x0 -> -x0, which flips the labels, so the
//    best linear logit is constant. Loss < 0.05 means a geometric-mean
//    probability of the right class above exp(-0.05) = 0.95, which needs the
//    hidden layer to have learned the quadrant features through relu's and
//    W1's backward.
//  - The test also runs the broken variants and checks that they stay above
//    the bound: the hidden layer's gradients dropped (W1, b1 frozen: a
//    random-features model), and every gradient's sign flipped (ascent).
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "llmblocks/ops.hpp"

using namespace llmblocks;

namespace {

constexpr double kBound = 0.05;

struct Data {
    VariableF x;  // (N, 2)
    TensorI y;    // (N)
};

Data make_xor(index_t n, std::uint64_t seed) {
    Rng rng(seed);
    TensorF x = TensorF::empty({n, 2});
    TensorI y = TensorI::empty({n});
    for (index_t i = 0; i < n; ++i) {
        double a = 0, b = 0;
        do {
            a = rng.uniform(-1.0, 1.0);
            b = rng.uniform(-1.0, 1.0);
        } while (std::abs(a) < 0.1 || std::abs(b) < 0.1);
        x(i, 0) = static_cast<float>(a);
        x(i, 1) = static_cast<float>(b);
        y(i) = a * b > 0 ? 1 : 0;
    }
    return {VariableF(x), y};
}

enum class Broken { None, HiddenLayerFrozen, SignFlipped };

// Final loss after training; also the starting loss through `initial`.
float train(const Data& data, Broken broken, float* initial = nullptr) {
    Rng rng(7);
    VariableF w1(TensorF::randn({16, 2}, rng, 0.0, 1.0), true);  // (hidden, in): nn.Linear layout
    VariableF b1(TensorF::randn({16}, rng, 0.0, 0.5), true);
    VariableF w2(TensorF::randn({16, 2}, rng, 0.0, 0.25), true);  // (hidden, classes): Conv1D layout
    VariableF b2(TensorF::zeros({2}), true);
    std::vector<VariableF> params{w1, b1, w2, b2};
    const float lr = 0.5f;
    float loss_value = 0.0f;
    for (int step = 0; step < 400; ++step) {
        zero_grad(params);
        auto logits = linear(relu(linear(data.x, w1, b1)), w2, b2, WeightLayout::InOut);  // (N, 2)
        auto loss = cross_entropy(logits, data.y);
        loss_value = loss.item();
        if (step == 0 && initial) *initial = loss_value;
        loss.backward();
        auto guard = no_grad();
        for (std::size_t p = 0; p < params.size(); ++p) {
            if (broken == Broken::HiddenLayerFrozen && p < 2) continue;
            const float sign = broken == Broken::SignFlipped ? -1.0f : 1.0f;
            // p -= lr * dp
            const TensorF& value = params[p].value();
            const TensorF& grad = params[p].grad();
            for (index_t i = 0; i < value.numel(); ++i) value.data()[i] -= sign * lr * grad.data()[i];
        }
    }
    return loss_value;
}

}  // namespace

TEST_CASE("mlp training: SGD through the autograd learns XOR below the bound") {
    const Data data = make_xor(128, 11);
    float initial = 0.0f;
    const float final_loss = train(data, Broken::None, &initial);
    MESSAGE("initial loss " << initial << ", final loss " << final_loss << ", bound " << kBound);
    CHECK(initial > 0.5f);  // near ln 2 at the start
    CHECK(final_loss < kBound);
}

TEST_CASE("mlp training: broken gradients stay above the bound") {
    const Data data = make_xor(128, 11);
    float initial = 0.0f;
    const float frozen = train(data, Broken::HiddenLayerFrozen, &initial);
    const float flipped = train(data, Broken::SignFlipped);
    MESSAGE("hidden layer frozen: " << frozen << ", signs flipped: " << flipped << " (initial " << initial << ")");
    CHECK(frozen > kBound);
    CHECK(!(flipped < initial));  // ascent: the loss grows (or overflows to inf/nan)
}
