// Tests for include/llmblocks/autograd/variable.hpp: the graph, gradient
// accumulation over several backward calls, zero_grad, no_grad (nothing
// recorded, no activations kept), freeing of the graph and its saved tensors
// after backward (measured with memory_stats()), retain_graph, and errors.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/ops.hpp"
#include "support/compare.hpp"

using namespace llmblocks;

namespace {

// A two-layer MLP with a cross-entropy loss: enough ops to hold real activations.
template <class T>
struct TinyMlp {
    Variable<T> w1, b1, w2, b2;
    explicit TinyMlp(std::uint64_t seed) {
        Rng rng(seed);
        w1 = Variable<T>(Tensor<T>::randn({16, 8}, rng, 0.0, 0.3), true);  // (hidden, in)
        b1 = Variable<T>(Tensor<T>::zeros({16}), true);
        w2 = Variable<T>(Tensor<T>::randn({16, 5}, rng, 0.0, 0.3), true);  // (hidden, classes): Conv1D layout
        b2 = Variable<T>(Tensor<T>::zeros({5}), true);
    }
    Variable<T> logits(const Variable<T>& x) const {
        return linear(gelu_tanh(linear(x, w1, b1)), w2, b2, WeightLayout::InOut);
    }
    std::vector<Variable<T>> params() const { return {w1, b1, w2, b2}; }
};

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("variable: leaves, op results and the recorded graph") {
    VariableD a(TensorD::from_vector({2}, {1.0, 2.0}), true);
    VariableD c(TensorD::from_vector({2}, {3.0, 4.0}));  // a constant
    CHECK(a.is_leaf());
    CHECK(a.requires_grad());
    CHECK_FALSE(c.requires_grad());
    CHECK(std::string(a.op()) == "leaf");

    auto y = a * c + a;  // y = a*c + a
    CHECK_FALSE(y.is_leaf());
    CHECK(y.requires_grad());
    CHECK(std::string(y.op()) == "add");
    auto loss = sum(y);
    CHECK(loss.item() == doctest::Approx(1 * 3 + 2 * 4 + 1 + 2));
    loss.backward();
    // d/da sum(a*c + a) = c + 1; the constant gets no gradient
    CHECK(a.grad().to_vector() == std::vector<double>{4.0, 5.0});
    CHECK_FALSE(c.grad().defined());
    // intermediate results do not keep their gradient
    CHECK_FALSE(y.grad().defined());

    // ops on constants only record nothing
    auto k = c * c;
    CHECK(k.is_leaf());
    CHECK_FALSE(k.requires_grad());
    CHECK_THROWS_AS(sum(k).backward(), Error);
}

TEST_CASE("variable: gradients accumulate across backward calls until zero_grad") {
    TinyMlp<double> mlp(1);
    Rng rng(2);
    const VariableD x(TensorD::randn({3, 8}, rng));
    const auto y = TensorI::from_vector({3}, {0, 4, 2});

    cross_entropy(mlp.logits(x), y).backward();
    std::vector<TensorD> once;
    for (const auto& p : mlp.params()) once.push_back(p.grad().clone());

    cross_entropy(mlp.logits(x), y).backward();
    cross_entropy(mlp.logits(x), y).backward();
    for (std::size_t i = 0; i < once.size(); ++i) {
        TensorD thrice = once[i].clone();
        for (index_t k = 0; k < thrice.numel(); ++k) thrice.data()[k] *= 3.0;
        CHECK_TENSOR_CLOSE(mlp.params()[i].grad(), thrice, 1e-12, 1e-14);
    }

    auto params = mlp.params();
    const double* buffer = params[0].grad().data();
    zero_grad(params);
    for (const auto& p : params)
        for (double g : p.grad().to_vector()) CHECK(g == 0.0);
    CHECK(params[0].grad().data() == buffer);  // zeroed in place, not reallocated

    cross_entropy(mlp.logits(x), y).backward();
    for (std::size_t i = 0; i < once.size(); ++i) CHECK_TENSOR_CLOSE(mlp.params()[i].grad(), once[i], 1e-12, 1e-14);

    // a value used twice gets both contributions: d/da sum(a * a) = 2a
    VariableD a(TensorD::from_vector({3}, {1.0, -2.0, 0.5}), true);
    sum(a * a).backward();
    CHECK(a.grad().to_vector() == std::vector<double>{2.0, -4.0, 1.0});
}

TEST_CASE("variable: no_grad records nothing and keeps no activations") {
    TinyMlp<float> mlp(3);
    Rng rng(4);
    const VariableF x(TensorF::randn({64, 8}, rng));
    {
        auto guard = no_grad();
        mlp.logits(x);  // warm-up: kernels may keep scratch buffers (counted) alive between calls
    }

    const auto base = memory_stats();
    {
        auto guard = no_grad();
        CHECK_FALSE(is_grad_enabled());
        auto logits = mlp.logits(x);
        CHECK(logits.is_leaf());
        CHECK_FALSE(logits.requires_grad());
        // only the result itself is alive: every intermediate was freed at once
        const auto during = memory_stats();
        CHECK(during.live_bytes - base.live_bytes == static_cast<std::int64_t>(logits.numel() * sizeof(float)));
        CHECK(during.live_buffers - base.live_buffers == 1);
        {
            auto inner = no_grad();  // guards nest
        }
        CHECK_FALSE(is_grad_enabled());
    }
    CHECK(is_grad_enabled());
    CHECK(memory_stats().live_bytes == base.live_bytes);

    // with gradients enabled the same forward keeps its activations in the graph
    auto logits = mlp.logits(x);
    CHECK(logits.requires_grad());
    CHECK(memory_stats().live_bytes - base.live_bytes > static_cast<std::int64_t>(logits.numel() * sizeof(float)));
}

TEST_CASE("variable: backward frees the graph and its saved tensors") {
    TinyMlp<float> mlp(5);
    Rng rng(6);
    const VariableF x(TensorF::randn({64, 8}, rng));
    const auto y = TensorI::rand({64}, rng, 0, 5);
    cross_entropy(mlp.logits(x), y).backward();  // allocates the parameter gradients once

    const auto before = memory_stats();
    {
        auto loss = cross_entropy(mlp.logits(x), y);
        const auto after_forward = memory_stats();
        // hidden (64, 16) twice (linear, gelu), logits (64, 5), per-row loss buffers ...
        CHECK(after_forward.live_bytes - before.live_bytes > 2 * 64 * 16 * static_cast<std::int64_t>(sizeof(float)));
        loss.backward();
        // only the loss value (one float) is left; its gradient was freed too
        const auto after_backward = memory_stats();
        CHECK(after_backward.live_bytes - before.live_bytes == static_cast<std::int64_t>(sizeof(float)));
        CHECK(after_backward.live_buffers - before.live_buffers == 1);
        CHECK(after_backward.peak_bytes >= after_forward.live_bytes);
    }
    CHECK(memory_stats().live_bytes == before.live_bytes);
    CHECK(memory_stats().live_buffers == before.live_buffers);
}

TEST_CASE("variable: retain_graph keeps the graph for a second backward") {
    VariableD w(TensorD::from_vector({2, 2}, {1.0, 2.0, 3.0, 4.0}), true);
    const VariableD x(TensorD::from_vector({1, 2}, {0.5, -1.0}));
    auto loss = sum(gelu(matmul(x, w)));

    const auto before = memory_stats();
    loss.backward(/*retain_graph=*/true);
    const TensorD first = w.grad().clone();
    // the saved activations are still there
    CHECK(memory_stats().live_bytes > before.live_bytes);
    loss.backward(/*retain_graph=*/false);  // accumulates a second time, then frees
    for (index_t i = 0; i < 4; ++i) CHECK(w.grad().data()[i] == doctest::Approx(2.0 * first.data()[i]));
    try {
        loss.backward();
        FAIL("a freed graph was reused");
    } catch (const Error& e) {
        CHECK(contains(e.what(), "freed"));
        CHECK(contains(e.what(), "retain_graph"));
    }
}

TEST_CASE("variable: backward of a non-scalar result takes the output gradient") {
    VariableD a(TensorD::from_vector({3}, {1.0, 2.0, 3.0}), true);
    auto y = scale(a, 2.0);
    CHECK_THROWS_AS(y.backward(), Error);  // not a scalar
    CHECK_THROWS_AS(y.backward(TensorD::ones({2})), Error);  // wrong shape
    y.backward(TensorD::from_vector({3}, {1.0, 10.0, 100.0}));
    CHECK(a.grad().to_vector() == std::vector<double>{2.0, 20.0, 200.0});

    // a leaf as the root: its gradient is the output gradient
    VariableD leaf(TensorD::zeros({2}), true);
    leaf.backward(TensorD::from_vector({2}, {3.0, 4.0}));
    CHECK(leaf.grad().to_vector() == std::vector<double>{3.0, 4.0});
}

TEST_CASE("variable: detach, set_requires_grad and misuse") {
    VariableD a(TensorD::ones({2}), true);
    auto b = scale(a, 3.0);
    auto d = b.detach();
    CHECK(d.is_leaf());
    CHECK_FALSE(d.requires_grad());
    CHECK(d.value().same_storage(b.value()));
    CHECK_THROWS_AS(b.set_requires_grad(false), Error);
    d.set_requires_grad(true);
    sum(scale(d, 2.0)).backward();
    CHECK(d.grad().to_vector() == std::vector<double>{2.0, 2.0});
    CHECK_FALSE(a.grad().defined());  // detached: nothing flowed back to a

    VariableD undefined;
    CHECK_FALSE(undefined.defined());
    CHECK_THROWS_AS(undefined.value(), Error);
    CHECK_THROWS_AS(VariableD{TensorD{}}, Error);
}

TEST_CASE("variable: a deep chain does not overflow the stack") {
    VariableD x(TensorD::from_vector({1}, {1.0}), true);
    VariableD y = x;
    for (int i = 0; i < 20000; ++i) y = scale(y, 1.0);
    sum(y).backward();
    CHECK(x.grad().item() == 1.0);

    // dropped without backward: released iteratively as well
    const auto before = memory_stats();
    {
        VariableD z = x;
        for (int i = 0; i < 20000; ++i) z = scale(z, 1.0);
    }
    CHECK(memory_stats().live_bytes == before.live_bytes);
}
