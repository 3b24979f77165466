// Tests for include/llmblocks/autograd/gradcheck.hpp and the backward of every
// differentiable op in include/llmblocks/ops/: central finite differences in
// double on odd shapes, with broadcasting, transposed views, repeated
// embedding ids, ignored targets and z-loss. Also checks that gradcheck
// rejects a deliberately wrong backward.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "llmblocks/autograd/gradcheck.hpp"
#include "llmblocks/ops.hpp"

using namespace llmblocks;
using Inputs = std::vector<VariableD>;

namespace {

TensorD randn(Shape shape, std::uint64_t seed, double std = 1.0) {
    Rng rng(seed);
    return TensorD::randn(std::move(shape), rng, 0.0, std);
}

// Normal draws pushed at least `gap` away from 0 (for ReLU's kink).
TensorD randn_away_from_zero(Shape shape, std::uint64_t seed, double gap = 0.05) {
    TensorD t = randn(std::move(shape), seed);
    for (index_t i = 0; i < t.numel(); ++i) t.data()[i] += t.data()[i] >= 0 ? gap : -gap;
    return t;
}

void check_gradients(const std::function<VariableD(const Inputs&)>& fn, const std::vector<TensorD>& inputs,
                     GradcheckOptions options = {}) {
    const GradcheckResult r = gradcheck(fn, inputs, options);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.checked > 0);
}

}  // namespace

TEST_CASE("gradcheck: matmul, 2-D, folded rows, batched, and transposed-view operands") {
    check_gradients([](const Inputs& v) { return matmul(v[0], v[1]); }, {randn({3, 5}, 1), randn({5, 4}, 2)});
    // (B, T, C) x (C, N): one GEMM over B*T rows
    check_gradients([](const Inputs& v) { return matmul(v[0], v[1]); }, {randn({2, 3, 5}, 3), randn({5, 7}, 4)});
    // batched (B, H, M, K) x (B, H, K, N)
    check_gradients([](const Inputs& v) { return matmul(v[0], v[1]); }, {randn({2, 3, 4, 5}, 5), randn({2, 3, 5, 3}, 6)});
    // attention scores q k^T with k transposed as a view (trans_b GEMM, no copy)
    check_gradients([](const Inputs& v) { return matmul(v[0], transpose(v[1], -2, -1)); },
                    {randn({2, 3, 5}, 7), randn({2, 4, 5}, 8)});
    // transposed left operand, batched
    check_gradients([](const Inputs& v) { return matmul(transpose(v[0], -2, -1), v[1]); },
                    {randn({2, 5, 3}, 9), randn({2, 5, 4}, 10)});
    // tied LM head: x E^T with E (V, C)
    check_gradients([](const Inputs& v) { return matmul(v[0], transpose(v[1], 0, 1)); },
                    {randn({2, 3, 5}, 11), randn({7, 5}, 12)});
    // the same tensor on both sides: gradients from both uses add up
    check_gradients([](const Inputs& v) { return matmul(v[0], v[0]); }, {randn({4, 4}, 13)});
}

TEST_CASE("gradcheck: linear in both weight layouts, with and without bias") {
    const auto x = randn({2, 3, 5}, 20);
    check_gradients([](const Inputs& v) { return linear(v[0], v[1], v[2]); }, {x, randn({7, 5}, 21), randn({7}, 22)});
    check_gradients([](const Inputs& v) { return linear(v[0], v[1]); }, {x, randn({7, 5}, 23)});
    check_gradients([](const Inputs& v) { return linear(v[0], v[1], v[2], WeightLayout::InOut); },
                    {x, randn({5, 7}, 24), randn({7}, 25)});
    check_gradients([](const Inputs& v) { return linear(v[0], v[1], WeightLayout::InOut); }, {x, randn({5, 7}, 26)});
    // a single row, and a 1-D input
    check_gradients([](const Inputs& v) { return linear(v[0], v[1], v[2]); }, {randn({5}, 27), randn({3, 5}, 28), randn({3}, 29)});
}

TEST_CASE("gradcheck: add, sub, mul with broadcasting, and scale") {
    const auto a = randn({2, 3, 5}, 30);
    for (auto fn : {add<double>, sub<double>, mul<double>}) {
        // equal shapes
        check_gradients([fn](const Inputs& v) { return fn(v[0], v[1]); }, {a, randn({2, 3, 5}, 31)});
        // a bias or scale (C) repeated over (B, T)
        check_gradients([fn](const Inputs& v) { return fn(v[0], v[1]); }, {a, randn({5}, 32)});
        // the small operand first
        check_gradients([fn](const Inputs& v) { return fn(v[0], v[1]); }, {randn({1, 5}, 33), a});
        // an attention mask (T, T) on (B, H, T, T)
        check_gradients([fn](const Inputs& v) { return fn(v[0], v[1]); }, {randn({2, 2, 3, 3}, 34), randn({3, 3}, 35)});
        // general: a per-row factor (B, T, 1), and both operands broadcast
        check_gradients([fn](const Inputs& v) { return fn(v[0], v[1]); }, {randn({2, 3, 1}, 36), a});
        check_gradients([fn](const Inputs& v) { return fn(v[0], v[1]); }, {randn({3, 1}, 37), randn({1, 4}, 38)});
    }
    check_gradients([](const Inputs& v) { return scale(v[0], 0.37); }, {a});
    check_gradients([](const Inputs& v) { return v[0] * v[1] + v[0] - 2.5 * v[1]; }, {randn({3, 4}, 39), randn({3, 4}, 40)});
}

TEST_CASE("gradcheck: reshape, transpose, split/merge heads, slice, concat") {
    const auto x = randn({2, 3, 6}, 50);
    const auto w = randn({3, 6, 2}, 51);  // multiplies the reshaped result so order matters
    check_gradients([](const Inputs& v) { return mul(reshape(v[0], {3, -1, 2}), v[1]); }, {x, w});
    check_gradients([](const Inputs& v) { return transpose(v[0], 0, 2); }, {x});
    check_gradients([](const Inputs& v) { return split_heads(v[0], 3); }, {x});
    check_gradients([](const Inputs& v) { return merge_heads(v[0]); }, {randn({2, 3, 4, 5}, 52)});
    check_gradients([](const Inputs& v) { return merge_heads(split_heads(v[0], 2)); }, {x});
    check_gradients([](const Inputs& v) { return slice(v[0], 1, 1, 3); }, {x});
    check_gradients([](const Inputs& v) { return slice(v[0], -1, -4, -1); }, {x});
    check_gradients([](const Inputs& v) { return slice(v[0], 0, 1, 2); }, {x});
    check_gradients([](const Inputs& v) { return concat<double>({v[0], v[1], v[2]}, 1); },
                    {randn({2, 1, 3}, 53), randn({2, 4, 3}, 54), randn({2, 2, 3}, 55)});
    check_gradients([](const Inputs& v) { return concat<double>({v[0], v[1]}, -1); }, {randn({3, 2}, 56), randn({3, 5}, 57)});
    // a fused QKV projection split back into q, k, v
    check_gradients(
        [](const Inputs& v) {
            const auto qkv = linear(v[0], v[1], WeightLayout::InOut);  // (B, T, 3C)
            return slice(qkv, -1, 0, 4) * slice(qkv, -1, 4, 8) + slice(qkv, -1, 8, 12);
        },
        {randn({2, 3, 5}, 58), randn({5, 12}, 59)});
}

TEST_CASE("gradcheck: embedding with repeated ids sums the rows") {
    const auto ids = TensorI::from_vector({2, 5}, {1, 3, 1, 1, 0, 4, 3, 3, 2, 1});  // id 5 unused
    check_gradients([ids](const Inputs& v) { return embedding(ids, v[0]); }, {randn({6, 4}, 60)});
    // the analytic gradient of row 1 is the sum of the 4 output rows that used it
    VariableD table(randn({6, 4}, 61), true);
    sum(embedding(ids, table)).backward();
    CHECK(table.grad().at({1, 2}) == doctest::Approx(4.0));
    CHECK(table.grad().at({3, 0}) == doctest::Approx(3.0));
    CHECK(table.grad().at({5, 3}) == 0.0);
    // a tied table: input embedding and output projection x E^T share one gradient
    check_gradients([ids](const Inputs& v) { return matmul(embedding(ids, v[0]), transpose(v[0], 0, 1)); },
                    {randn({6, 4}, 62)});
}

TEST_CASE("gradcheck: activations and gated units") {
    const auto x = randn({3, 7}, 70);
    check_gradients([](const Inputs& v) { return gelu(v[0]); }, {x});
    check_gradients([](const Inputs& v) { return gelu_tanh(v[0]); }, {x});
    check_gradients([](const Inputs& v) { return relu(v[0]); }, {randn_away_from_zero({3, 7}, 71)});
    check_gradients([](const Inputs& v) { return silu(v[0]); }, {x});
    check_gradients([](const Inputs& v) { return swiglu(v[0], v[1]); }, {x, randn({3, 7}, 72)});
    check_gradients([](const Inputs& v) { return geglu(v[0], v[1]); }, {x, randn({3, 7}, 73)});
    check_gradients([](const Inputs& v) { return geglu(v[0], v[1], GeluKind::Exact); }, {x, randn({3, 7}, 74)});
}

TEST_CASE("gradcheck: softmax and log-softmax over the last axis") {
    check_gradients([](const Inputs& v) { return softmax(v[0]); }, {randn({3, 7}, 80)});
    check_gradients([](const Inputs& v) { return log_softmax(v[0]); }, {randn({2, 3, 5}, 81)});
    check_gradients([](const Inputs& v) { return softmax(v[0]); }, {randn({4, 1}, 82)});
}

TEST_CASE("gradcheck: LayerNorm (bias and scale-only) and RMSNorm") {
    const auto x = randn({2, 3, 7}, 90);
    check_gradients([](const Inputs& v) { return layer_norm(v[0], v[1], v[2]); }, {x, randn({7}, 91), randn({7}, 92)});
    check_gradients([](const Inputs& v) { return layer_norm(v[0], v[1]); }, {x, randn({7}, 93)});
    check_gradients([](const Inputs& v) { return rms_norm(v[0], v[1]); }, {x, randn({7}, 94)});
}

TEST_CASE("gradcheck: dropout with a seed, identity in eval") {
    const auto x = randn({3, 7}, 100);
    check_gradients(
        [](const Inputs& v) {
            Rng rng(5);  // the same mask on every evaluation
            return dropout(v[0], 0.3, rng);
        },
        {x});
    VariableD xv(x);
    Rng rng(5);
    CHECK(dropout(xv, 0.3, rng, /*training=*/false).node() == xv.node());
    // a seed fixes the mask; kept elements are scaled by 1/(1-p)
    Rng r1(9), r2(9);
    const auto y1 = dropout(xv, 0.5, r1).value(), y2 = dropout(xv, 0.5, r2).value();
    CHECK(y1.to_vector() == y2.to_vector());
    for (index_t i = 0; i < x.numel(); ++i)
        CHECK((y1.data()[i] == 0.0 || y1.data()[i] == doctest::Approx(2.0 * x.data()[i])));
}

TEST_CASE("gradcheck: cross-entropy with ignored positions and z-loss") {
    const auto logits = randn({2, 4, 7}, 110, 2.0);
    const auto targets = TensorI::from_vector({2, 4}, {3, -100, 0, 6, -100, 2, 2, 5});
    check_gradients([targets](const Inputs& v) { return cross_entropy(v[0], targets); }, {logits});
    check_gradients([targets](const Inputs& v) { return cross_entropy(v[0], targets, {.z_loss = 0.05}); }, {logits});
    const auto targets2 = TensorI::from_vector({2, 4}, {3, 2, 0, 6, 2, 1, 2, 5});  // 2 ignored instead
    check_gradients([targets2](const Inputs& v) { return cross_entropy(v[0], targets2, {.ignore_index = 2, .z_loss = 1e-4}); },
                    {logits});
    // the value: mean over the 6 counted rows of lse - x_t + z lse^2
    const double z = 0.05;
    double expected = 0.0;
    int counted = 0;
    for (index_t r = 0; r < 8; ++r) {
        const int t = targets.data()[r];
        if (t == -100) continue;
        double m = -1e300, s = 0.0;
        for (index_t j = 0; j < 7; ++j) m = std::max(m, logits.data()[r * 7 + j]);
        for (index_t j = 0; j < 7; ++j) s += std::exp(logits.data()[r * 7 + j] - m);
        const double lse = m + std::log(s);
        expected += lse - logits.data()[r * 7 + t] + z * lse * lse;
        ++counted;
    }
    CHECK(counted == 6);
    CHECK(cross_entropy(VariableD(logits), targets, {.z_loss = z}).item() == doctest::Approx(expected / counted).epsilon(1e-12));
    // every row ignored: loss 0, gradient 0
    VariableD lv(logits, true);
    auto none = cross_entropy(lv, TensorI::full({2, 4}, -100));
    CHECK(none.item() == 0.0);
    none.backward();
    for (double g : lv.grad().to_vector()) CHECK(g == 0.0);
}

TEST_CASE("gradcheck: sum and mean") {
    check_gradients([](const Inputs& v) { return sum(v[0]); }, {randn({3, 5}, 120)});
    check_gradients([](const Inputs& v) { return mean(v[0]); }, {randn({2, 3, 5}, 121)});
}

TEST_CASE("gradcheck: a causal attention head built from the ops") {
    // y = merge_heads(softmax(q k^T / sqrt(D) + mask) v) on x (B=2, T=3, C=4), 2 heads
    check_gradients(
        [](const Inputs& v) {
            const auto q = split_heads(linear(v[0], v[1]), 2), k = split_heads(linear(v[0], v[2]), 2),
                       val = split_heads(linear(v[0], v[3]), 2);
            auto mask = TensorD::zeros({3, 3});
            for (index_t i = 0; i < 3; ++i)
                for (index_t j = i + 1; j < 3; ++j) mask(i, j) = -1e9;
            const auto att = softmax(scale(matmul(q, transpose(k, -2, -1)), 1.0 / std::sqrt(2.0)) + VariableD(mask));
            return merge_heads(matmul(att, val));
        },
        {randn({2, 3, 4}, 130), randn({4, 4}, 131), randn({4, 4}, 132), randn({4, 4}, 133)});
}

TEST_CASE("gradcheck: fails on a deliberately wrong backward") {
    // y = x^3 recorded with the derivative 2x^2 instead of 3x^2
    const auto wrong_cube = [](const Inputs& v) {
        const TensorD x = v[0].value().contiguous();
        TensorD y = TensorD::empty(x.shape());
        for (index_t i = 0; i < x.numel(); ++i) y.data()[i] = x.data()[i] * x.data()[i] * x.data()[i];
        return record_op<double>("wrong_cube", y, {v[0]}, [x](const TensorD& dout, const std::vector<double*>& d) {
            for (index_t i = 0; i < x.numel(); ++i) d[0][i] += 2.0 * x.data()[i] * x.data()[i] * dout.data()[i];
        });
    };
    const GradcheckResult r = gradcheck(wrong_cube, {randn({3, 4}, 140)});
    CHECK_FALSE(r.ok);
    CHECK(r.message.find("input 0") != std::string::npos);

    // a bias gradient that forgets to sum over the rows it was broadcast to
    const auto forgetful_bias = [](const Inputs& v) {
        const TensorD x = v[0].value().contiguous();  // (R, C)
        const TensorD b = v[1].value().contiguous();  // (C)
        const index_t C = b.numel(), R = x.numel() / C;
        TensorD y = TensorD::empty(x.shape());
        for (index_t i = 0; i < x.numel(); ++i) y.data()[i] = x.data()[i] + b.data()[i % C];
        return record_op<double>("forgetful_bias", y, {v[0], v[1]}, [R, C](const TensorD& dout, const std::vector<double*>& d) {
            for (index_t i = 0; i < R * C; ++i) d[0][i] += dout.data()[i];
            for (index_t c = 0; c < C; ++c) d[1][c] += dout.data()[c];  // row 0 only
        });
    };
    CHECK_FALSE(gradcheck(forgetful_bias, {randn({3, 4}, 141), randn({4}, 142)}).ok);
    // and the correct ops pass the same check
    CHECK(gradcheck([](const Inputs& v) { return add(v[0], v[1]); }, {randn({3, 4}, 141), randn({4}, 142)}).ok);
}

TEST_CASE("ops: float scalars convert, braced concat deduces its type") {
    VariableF x(TensorF::ones({2, 3}), true);
    auto y = concat({scale(x, 0.5), x * 2.0}, 0);  // double constants on float Variables
    CHECK(y.shape() == Shape{4, 3});
    auto z = layer_norm(y, VariableF(TensorF::ones({3})), 1e-5);
    sum(z + rms_norm(y, VariableF(TensorF::ones({3})), 1e-6)).backward();
    CHECK(x.grad().defined());
}
