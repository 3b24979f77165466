// Tests the modules of include/llmblocks/nn/ (linear.hpp, embedding.hpp,
// norm.hpp, feed_forward.hpp, rotary.hpp, relative_position_bias.hpp,
// attention.hpp) and the ops under them (ops/attention.hpp, ops/rope.hpp,
// ops/relative_position.hpp): finite-difference gradchecks in double of every
// module and option, with respect to inputs and all parameters, on small odd
// shapes; parameter names; misuse errors.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "llmblocks/nn.hpp"
#include "nn/module_gradcheck.hpp"
#include "support/compare.hpp"

using namespace llmblocks;
using llmblocks::test::check_module_gradients;

namespace {

std::vector<std::string> names_of(const ParameterList<double>& list) {
    std::vector<std::string> out;
    for (const auto& p : list) out.push_back(p.name);
    return out;
}

TensorD randn(Shape s, std::uint64_t seed, double scale = 1.0) {
    Rng rng(seed);
    return TensorD::randn(std::move(s), rng, 0.0, scale);
}

}  // namespace

TEST_CASE("nn::Linear gradcheck: bias on/off, both layouts; names") {
    for (bool bias : {true, false})
        for (WeightLayout layout : {WeightLayout::OutIn, WeightLayout::InOut}) {
            Rng rng(3);
            Linear<double> lin(5, 3, bias, rng, 0.5, layout);
            CHECK(lin.in_features() == 5);
            CHECK(lin.out_features() == 3);
            const auto params = named_parameters<double>(lin, "proj");
            CHECK(names_of(params) ==
                  (bias ? std::vector<std::string>{"proj.weight", "proj.bias"} : std::vector<std::string>{"proj.weight"}));
            check_module_gradients("Linear", params, {randn({2, 3, 5}, 1)},
                                   [&](const std::vector<VariableD>& in) { return lin(in[0]); });
        }
}

TEST_CASE("nn::Embedding and PositionEmbedding gradcheck") {
    Rng rng(4);
    Embedding<double> wte(7, 5, rng, 1.0);
    const TensorI ids = TensorI::from_vector({2, 3}, {1, 6, 1, 0, 3, 1});  // row 1 used three times
    CHECK(wte(ids).shape() == Shape{2, 3, 5});
    check_module_gradients("Embedding", named_parameters<double>(wte, "wte"), {},
                           [&](const std::vector<VariableD>&) { return wte(ids); });

    PositionEmbedding<double> wpe(9, 5, rng, 1.0);
    CHECK(wpe(3, 2).shape() == Shape{3, 5});
    CHECK_TENSOR_CLOSE(wpe(1, 4).value().select(0, 0), wpe.weight.value().select(0, 4), 0.0, 0.0);
    // GPT-2's input: token + position embeddings (the position table broadcasts over the batch).
    check_module_gradients("PositionEmbedding", named_parameters<double>(wpe, "wpe"), {randn({2, 3, 5}, 2)},
                           [&](const std::vector<VariableD>& in) { return in[0] + wpe(3, 2); });
    CHECK_THROWS_AS(wpe(3, 7), Error);
}

TEST_CASE("nn::Norm gradcheck: layer_norm, layer_norm_no_bias, rms_norm; eps") {
    for (NormKind kind : {NormKind::layer_norm, NormKind::layer_norm_no_bias, NormKind::rms_norm})
        for (double eps : {1e-5, 0.3}) {
            Norm<double> norm(7, {kind, eps});
            // Move the parameters off their initial 1 / 0 so that every term is exercised.
            TensorD(norm.weight.value()).copy_(randn({7}, 5, 0.3));  // shares the parameter's storage
            if (norm.bias.defined()) TensorD(norm.bias.value()).copy_(randn({7}, 6, 0.3));
            const auto params = named_parameters<double>(norm, "ln");
            CHECK(params.size() == (kind == NormKind::layer_norm ? 2u : 1u));
            INFO(std::string(norm_kind_name(kind)) << " eps " << eps);
            check_module_gradients(norm_kind_name(kind), params, {randn({2, 3, 7}, 7, 2.0)},
                                   [&](const std::vector<VariableD>& in) { return norm(in[0]); });
        }
    // eps matters: RMSNorm of a constant row c is c / sqrt(c^2 + eps).
    Norm<double> rms(3, {NormKind::rms_norm, 0.5});
    const VariableD y = rms(VariableD(TensorD::full({1, 3}, 1.0)));
    CHECK(y.value().at({0, 0}) == doctest::Approx(1.0 / std::sqrt(1.5)));
}

TEST_CASE("nn::FeedForward gradcheck: gelu, relu, swiglu, geglu; bias on/off; hidden") {
    for (FeedForwardKind kind : {FeedForwardKind::gelu, FeedForwardKind::relu, FeedForwardKind::swiglu,
                                 FeedForwardKind::geglu})
        for (bool bias : {true, false}) {
            Rng rng(8);
            FeedForwardConfig c;
            c.kind = kind;
            c.hidden = 7;
            c.bias = bias;
            c.init_std = c.out_init_std = 0.5;
            FeedForward<double> ffn(5, c, rng);
            const auto params = named_parameters<double>(ffn, "mlp");
            const std::size_t n_lin = is_gated(kind) ? 3 : 2;
            CHECK(params.size() == (bias ? 2 * n_lin : n_lin));
            CHECK(ffn.up.weight.shape() == Shape{7, 5});
            INFO(std::string(feed_forward_kind_name(kind)) << " bias " << bias);
            check_module_gradients(feed_forward_kind_name(kind), params, {randn({2, 3, 5}, 9)},
                                   [&](const std::vector<VariableD>& in) { return ffn(in[0]); });
        }
    // Default hidden = 4 d_model (GPT-2); the exact GELU is an option too.
    Rng rng(1);
    FeedForwardConfig exact;
    exact.gelu = GeluKind::Exact;
    FeedForward<double> ffn(3, exact, rng);
    CHECK(ffn.up.out_features() == 12);
    check_module_gradients("gelu exact", named_parameters<double>(ffn), {randn({1, 2, 3}, 10)},
                           [&](const std::vector<VariableD>& in) { return ffn(in[0]); });
}

TEST_CASE("nn::RotaryEmbedding: both conventions, theta, partial rotation, offset; gradcheck") {
    for (RopeStyle style : {RopeStyle::rotate_half, RopeStyle::interleaved})
        for (index_t rot_dim : {6, 4})
            for (index_t pos0 : {0, 5}) {
                RotaryEmbedding<double> rope({rot_dim, 500.0, style, 2});
                INFO(std::string(rope_style_name(style)) << " rot_dim " << rot_dim << " pos0 " << pos0);
                check_module_gradients("rope", {}, {randn({2, 3, 5, 6}, 11)},
                                       [&](const std::vector<VariableD>& in) { return rope(in[0], pos0); });
                CHECK(rope.cache->positions() >= pos0 + 5);  // grown on demand
            }
    // Rotate-half by hand at position 1: (a, b) -> (a cos - b sin, b cos + a sin), theta 100, D = 4.
    RotaryEmbedding<double> rope({4, 100.0, RopeStyle::rotate_half, 0});
    const TensorD x = TensorD::from_vector({1, 1, 2, 4}, {0, 0, 0, 0, 1, 2, 3, 4});
    const TensorD y = rope(VariableD(x)).value();
    const double f1 = std::pow(100.0, -0.5);
    CHECK(y.at({0, 0, 1, 0}) == doctest::Approx(1 * std::cos(1.0) - 3 * std::sin(1.0)));
    CHECK(y.at({0, 0, 1, 3}) == doctest::Approx(4 * std::cos(f1) + 2 * std::sin(f1)));
    CHECK_THROWS_AS(rope(VariableD(TensorD::zeros({2, 3, 4}))), Error);
}

TEST_CASE("nn::RelativePositionBias: bidirectional and causal buckets, offset; gradcheck") {
    for (bool bidirectional : {true, false})
        for (index_t q0 : {0, 3}) {
            Rng rng(12);
            RelativePositionBias<double> rel(3, {bidirectional, 8, 20}, rng);
            INFO("bidirectional " << bidirectional << " q0 " << q0);
            const VariableD b = rel(5, 7 + q0, q0);
            CHECK(b.shape() == Shape{3, 5, 7 + q0});
            // bias[h, i, k] = weight[bucket(k - (q0 + i)), h]
            const index_t bucket = kernels::t5_relative_position_bucket(6 - (q0 + 2), bidirectional, 8, 20);
            CHECK(b.value().at({1, 2, 6}) == rel.weight.value().at({bucket, 1}));
            check_module_gradients("relative bias", named_parameters<double>(rel, "rel"), {},
                                   [&](const std::vector<VariableD>&) { return rel(5, 7 + q0, q0); });
        }
}

namespace {

AttentionLayerConfig attention_config(index_t n_heads, index_t n_kv_heads, bool bias = true) {
    AttentionLayerConfig c;
    c.d_model = 6;
    c.n_heads = n_heads;
    c.n_kv_heads = n_kv_heads;
    c.head_dim = 3;
    c.bias = bias;
    c.init_std = c.out_init_std = 0.5;
    return c;
}

}  // namespace

TEST_CASE("nn::Attention gradcheck: MHA, MQA, GQA x causal, bidirectional, prefix-LM, local band") {
    const struct {
        index_t heads, kv_heads;
        const char* name;
    } layouts[] = {{4, 4, "MHA"}, {4, 1, "MQA"}, {4, 2, "GQA"}};
    for (const auto& layout : layouts)
        for (AttentionMask mask : {AttentionMask::causal, AttentionMask::bidirectional, AttentionMask::prefix_lm,
                                   AttentionMask::local}) {
            Rng rng(13);
            Attention<double> attn(attention_config(layout.heads, layout.kv_heads), rng);
            const auto params = named_parameters<double>(attn, "attn");
            CHECK(names_of(params) == std::vector<std::string>{"attn.q_proj.weight", "attn.q_proj.bias",
                                                               "attn.k_proj.weight", "attn.k_proj.bias",
                                                               "attn.v_proj.weight", "attn.v_proj.bias",
                                                               "attn.o_proj.weight", "attn.o_proj.bias"});
            CHECK(attn.k_proj.out_features() == layout.kv_heads * 3);
            AttentionContext<double> ctx;
            ctx.mask = mask;
            ctx.prefix_length = 2;
            ctx.window = 2;
            INFO(std::string(layout.name) << " " << std::string(kernels::attention_mask_name(mask)));
            check_module_gradients("attention", params, {randn({2, 5, 6}, 14)},
                                   [&](const std::vector<VariableD>& in) { return attn(in[0], ctx); });
        }
}

TEST_CASE("nn::Attention gradcheck: key padding, T5 bias (into the bucket table), no scaling, fused QKV, RoPE") {
    SUBCASE("key padding by length and by mask") {
        Rng rng(15);
        Attention<double> attn(attention_config(2, 1), rng);
        AttentionContext<double> ctx;
        ctx.mask = AttentionMask::bidirectional;
        ctx.key_lengths = {5, 3};
        ctx.key_padding_mask = {1, 0, 1, 1, 1, 1, 1, 1, 0, 1};
        check_module_gradients("key padding", named_parameters<double>(attn), {randn({2, 5, 6}, 16)},
                               [&](const std::vector<VariableD>& in) { return attn(in[0], ctx); });
    }
    SUBCASE("T5: relative position bias shared by two layers, no 1/sqrt(d), no biases") {
        Rng rng(17);
        AttentionLayerConfig c = attention_config(2, 2, false);
        c.scaled = false;
        c.init_std = c.out_init_std = 0.3;
        Attention<double> layer0(c, rng), layer1(c, rng);
        RelativePositionBias<double> rel(2, {false, 6, 12}, rng);
        ParameterList<double> params;
        layer0.collect_parameters(params, "layer0");
        layer1.collect_parameters(params, "layer1");
        rel.collect_parameters(params, "rel");
        CHECK(params.size() == 9);
        check_module_gradients("t5 bias", params, {randn({2, 5, 6}, 18)}, [&](const std::vector<VariableD>& in) {
            AttentionContext<double> ctx;
            ctx.bias = rel(5, 5);  // computed once, used by both layers
            const VariableD h = in[0] + layer0(in[0], ctx);
            return h + layer1(h, ctx);
        });
        // A bias given as an input passes its own gradient.
        Attention<double> attn(c, rng);
        check_module_gradients("bias input", named_parameters<double>(attn), {randn({2, 5, 6}, 19), randn({2, 5, 5}, 20)},
                               [&](const std::vector<VariableD>& in) {
                                   AttentionContext<double> ctx;
                                   ctx.bias = in[1];
                                   return attn(in[0], ctx);
                               });
    }
    SUBCASE("fused QKV (GPT-2's c_attn), Conv1D layout, GQA") {
        Rng rng(21);
        AttentionLayerConfig c = attention_config(4, 2);
        c.fused_qkv = true;
        c.layout = WeightLayout::InOut;
        Attention<double> attn(c, rng);
        const auto params = named_parameters<double>(attn, "attn");
        CHECK(names_of(params) == std::vector<std::string>{"attn.qkv_proj.weight", "attn.qkv_proj.bias",
                                                           "attn.o_proj.weight", "attn.o_proj.bias"});
        CHECK(attn.qkv_proj.weight.shape() == Shape{6, (4 + 2 * 2) * 3});
        check_module_gradients("fused qkv", params, {randn({2, 5, 6}, 22)},
                               [&](const std::vector<VariableD>& in) { return attn(in[0]); });
    }
    SUBCASE("RoPE on q and k, MQA, offset positions") {
        Rng rng(23);
        AttentionLayerConfig c = attention_config(2, 1, false);
        c.head_dim = 4;
        Attention<double> attn(c, rng);
        for (RopeStyle style : {RopeStyle::rotate_half, RopeStyle::interleaved}) {
            RotaryEmbedding<double> rope({4, 10000.0, style, 0});
            AttentionContext<double> ctx;
            ctx.rope = &rope;
            ctx.pos0 = 3;
            check_module_gradients("rope attention", named_parameters<double>(attn), {randn({2, 5, 6}, 24)},
                                   [&](const std::vector<VariableD>& in) { return attn(in[0], ctx); });
        }
    }
    SUBCASE("cross-attention (T5 decoder reading the encoder), memory of another width and length") {
        Rng rng(25);
        AttentionLayerConfig c = attention_config(2, 2, false);
        c.cross = true;
        c.d_memory = 5;
        c.scaled = false;
        Attention<double> attn(c, rng);
        CHECK(attn.k_proj.weight.shape() == Shape{6, 5});
        AttentionContext<double> ctx;
        ctx.mask = AttentionMask::bidirectional;
        ctx.key_lengths = {7, 4};
        check_module_gradients("cross", named_parameters<double>(attn), {randn({2, 3, 6}, 26), randn({2, 7, 5}, 27)},
                               [&](const std::vector<VariableD>& in) { return attn(in[0], in[1], ctx); });
        CHECK_THROWS_AS(attn(VariableD(TensorD::zeros({2, 3, 6})), ctx), Error);
    }
}

TEST_CASE("ops::attention matches the plain softmax(q k^T) v written with ops") {
    // q (B, Hq, Tq, D), k/v (B, Hkv, Tk, D), GQA with a bias; the expression with matmul/softmax.
    const TensorD q = randn({2, 4, 3, 5}, 30), k = randn({2, 2, 6, 5}, 31), v = randn({2, 2, 6, 5}, 32);
    const TensorD bias = randn({4, 3, 6}, 33);
    AttentionOptions o;
    o.mask = AttentionMask::bidirectional;
    const VariableD out = attention(VariableD(q), VariableD(k), VariableD(v), VariableD(bias), o);
    TensorD expected = TensorD::zeros({2, 4, 3, 5});
    for (index_t b = 0; b < 2; ++b)
        for (index_t h = 0; h < 4; ++h) {
            const index_t kvh = h / 2;
            for (index_t i = 0; i < 3; ++i) {
                std::vector<double> s(6);
                double mx = -1e300, sum = 0;
                for (index_t j = 0; j < 6; ++j) {
                    double dot = 0;
                    for (index_t d = 0; d < 5; ++d) dot += q.at({b, h, i, d}) * k.at({b, kvh, j, d});
                    s[j] = dot / std::sqrt(5.0) + bias.at({h, i, j});
                    mx = std::max(mx, s[j]);
                }
                for (auto& x : s) sum += (x = std::exp(x - mx));
                for (index_t d = 0; d < 5; ++d)
                    for (index_t j = 0; j < 6; ++j) expected.at({b, h, i, d}) += s[j] / sum * v.at({b, kvh, j, d});
            }
        }
    CHECK_TENSOR_CLOSE(out.value(), expected, 1e-12, 1e-12);
    // Misuse: bias of the wrong shape, heads that do not divide.
    CHECK_THROWS_AS(attention(VariableD(q), VariableD(k), VariableD(v), VariableD(randn({4, 3, 5}, 1)), o), Error);
    CHECK_THROWS_AS(attention(VariableD(randn({2, 3, 3, 5}, 1)), VariableD(k), VariableD(v), o), Error);
}

TEST_CASE("nn: inference under no_grad records no graph") {
    Rng rng(40);
    Attention<double> attn(attention_config(2, 1), rng);
    FeedForward<double> ffn(6, {}, rng);
    auto guard = no_grad();
    const VariableD y = ffn(attn(VariableD(randn({1, 4, 6}, 41))));
    CHECK(y.is_leaf());
    CHECK_FALSE(y.requires_grad());
}

TEST_CASE("nn: misuse throws with the shapes") {
    Rng rng(50);
    CHECK_THROWS_AS(Attention<double>(attention_config(4, 3), rng), Error);  // 3 does not divide 4
    AttentionLayerConfig c = attention_config(4, 4);
    c.head_dim = 0;
    c.d_model = 7;
    CHECK_THROWS_AS(Attention<double>(c, rng), Error);  // 4 heads do not divide 7
    Attention<double> attn(attention_config(2, 2), rng);
    CHECK_THROWS_AS(attn(VariableD(TensorD::zeros({2, 3, 5}))), Error);
    Linear<double> lin(3, 2, true, rng);
    CHECK_THROWS_AS(lin(VariableD(TensorD::zeros({2, 4}))), Error);
    CHECK_THROWS_AS(Norm<double>(0, {}), Error);
    CHECK_THROWS_AS(RelativePositionBias<double>(2, {true, 2, 8}, rng), Error);
}
