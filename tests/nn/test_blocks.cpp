// Tests include/llmblocks/nn/blocks.hpp: the serial (GPT-2, T5 encoder) and
// parallel (PaLM) blocks built from their presets against PyTorch fixtures
// (tests/reference/make_nn_fixtures.py; forward and all gradients to 1e-5
// relative in float32), gradchecks in double of SerialBlock, ParallelBlock and
// the T5 decoder block with cross-attention, parameter names, and the T5
// decoder block decoding with self- and cross-attention caches.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "llmblocks/nn/blocks.hpp"
#include "llmblocks/nn/relative_position_bias.hpp"
#include "nn/module_gradcheck.hpp"
#include "nn/nn_fixture.hpp"
#include "support/compare.hpp"

using namespace llmblocks;
using llmblocks::test::check_module_gradients;

namespace {

TensorD randn(Shape s, std::uint64_t seed, double scale = 1.0) {
    Rng rng(seed);
    return TensorD::randn(std::move(s), rng, 0.0, scale);
}

// Sets every parameter to N(0, 0.3^2) (norm weights to 1 + N(0, 0.2^2)) so that no term vanishes.
template <class T>
void randomise(const ParameterList<T>& params, std::uint64_t seed) {
    Rng rng(seed);
    for (const auto& p : params) {
        Tensor<T> v = p.variable.value();
        const bool norm_weight = p.name.find("ln_") != std::string::npos || p.name.find("norm") != std::string::npos;
        const Tensor<T> r = Tensor<T>::randn(v.shape(), rng, norm_weight && p.name.ends_with("weight") ? 1.0 : 0.0,
                                             norm_weight ? 0.2 : 0.3);
        v.copy_(r);
    }
}

}  // namespace

TEST_CASE("nn::SerialBlock (GPT-2 preset) matches PyTorch") {
    const test::NnFixture fx("block_serial_gpt2");
    Rng rng(1);
    const BlockConfig c = gpt2_block_config(fx.meta_int("d_model"), fx.meta_int("n_heads"), 12);
    CHECK(c.feed_forward.hidden == fx.meta_int("hidden"));
    SerialBlock<float> block(c, rng);
    const auto params = named_parameters<float>(block);
    std::vector<std::string> names;
    for (const auto& p : params) names.push_back(p.name);
    CHECK(names == std::vector<std::string>{"ln_1.weight", "ln_1.bias", "attn.qkv_proj.weight", "attn.qkv_proj.bias",
                                            "attn.o_proj.weight", "attn.o_proj.bias", "ln_2.weight", "ln_2.bias",
                                            "mlp.up.weight", "mlp.up.bias", "mlp.down.weight", "mlp.down.bias"});
    fx.check(params, [&](const VariableF& x) { return block(x); });
}

TEST_CASE("nn::ParallelBlock (PaLM preset: MQA, RoPE, SwiGLU, scale-only LayerNorm) matches PyTorch") {
    const test::NnFixture fx("block_parallel_palm");
    Rng rng(2);
    const BlockConfig c = palm_block_config(fx.meta_int("d_model"), fx.meta_int("n_heads"), fx.meta_int("n_kv_heads"),
                                            fx.meta_int("head_dim"), fx.meta_int("hidden"));
    ParallelBlock<float> block(c, rng);
    RotaryEmbedding<float> rope({fx.meta_int("head_dim"), fx.meta_double("rope_theta"), RopeStyle::rotate_half, 16});
    const auto params = named_parameters<float>(block);
    CHECK(params.size() == 8);  // one norm weight, q/k/v/o, gate/up/down: no biases
    AttentionContext<float> ctx;
    ctx.rope = &rope;
    fx.check(params, [&](const VariableF& x) { return block(x, ctx); });
}

TEST_CASE("nn::SerialBlock (T5 encoder preset: RMSNorm, relative bias, no scaling, ReLU) matches PyTorch") {
    const test::NnFixture fx("block_serial_t5");
    Rng rng(3);
    const BlockConfig c = t5_block_config(fx.meta_int("d_model"), fx.meta_int("n_heads"), fx.meta_int("head_dim"),
                                          fx.meta_int("hidden"));
    SerialBlock<float> block(c, rng);
    RelativePositionBias<float> rel(c.attention.n_heads, {true, fx.meta_int("num_buckets"), fx.meta_int("max_distance")},
                                    rng);
    ParameterList<float> params = named_parameters<float>(block);
    rel.collect_parameters(params, "rel");
    fx.check(params, [&](const VariableF& x) {
        AttentionContext<float> ctx;
        ctx.mask = AttentionMask::bidirectional;
        ctx.bias = rel(x.size(1), x.size(1));
        return block(x, ctx);
    });
}

TEST_CASE("nn blocks gradcheck (double): serial GPT-2, serial T5, parallel PaLM with GQA") {
    SUBCASE("GPT-2 serial, fused QKV, Conv1D layout") {
        Rng rng(10);
        SerialBlock<double> block(gpt2_block_config(6, 2), rng);
        const auto params = named_parameters<double>(block);
        randomise(params, 11);
        check_module_gradients("gpt2 block", params, {randn({2, 3, 6}, 12)},
                               [&](const std::vector<VariableD>& in) { return block(in[0]); });
    }
    SUBCASE("T5 encoder serial, gated-gelu, relative bias") {
        Rng rng(13);
        SerialBlock<double> block(t5_block_config(6, 2, 4, 5, true), rng);
        RelativePositionBias<double> rel(2, {true, 8, 10}, rng);
        ParameterList<double> params = named_parameters<double>(block);
        randomise(params, 14);
        rel.collect_parameters(params, "rel");
        check_module_gradients("t5 block", params, {randn({2, 3, 6}, 15)}, [&](const std::vector<VariableD>& in) {
            AttentionContext<double> ctx;
            ctx.mask = AttentionMask::bidirectional;
            ctx.bias = rel(3, 3);
            return block(in[0], ctx);
        });
    }
    SUBCASE("PaLM parallel, GQA, RoPE, rms_norm variant") {
        Rng rng(16);
        BlockConfig c = palm_block_config(8, 4, 2, 2, 6);
        c.norm.kind = NormKind::rms_norm;
        ParallelBlock<double> block(c, rng);
        RotaryEmbedding<double> rope({2, 10000.0, RopeStyle::rotate_half, 0});
        const auto params = named_parameters<double>(block);
        randomise(params, 17);
        AttentionContext<double> ctx;
        ctx.rope = &rope;
        check_module_gradients("palm block", params, {randn({2, 3, 8}, 18)},
                               [&](const std::vector<VariableD>& in) { return block(in[0], ctx); });
    }
}

TEST_CASE("nn::T5DecoderBlock gradcheck (double): causal self-attention with bias, cross-attention, FFN") {
    for (bool gated : {false, true}) {
        Rng rng(20);
        T5DecoderBlock<double> block(t5_block_config(6, 2, 4, 5, gated), rng);
        RelativePositionBias<double> rel(2, {false, 6, 10}, rng);
        ParameterList<double> params = named_parameters<double>(block, "dec");
        CHECK(params.front().name == "dec.ln_1.weight");
        CHECK(params[1].name == "dec.self_attn.q_proj.weight");
        CHECK(params[6].name == "dec.cross_attn.q_proj.weight");
        CHECK(params.size() == (gated ? 14u : 13u));  // 3 norms, 4 + 4 attention projections, 2 or 3 FFN
        randomise(params, 21);
        rel.collect_parameters(params, "rel");
        INFO("gated " << gated);
        check_module_gradients("t5 decoder block", params, {randn({2, 3, 6}, 22), randn({2, 5, 6}, 23)},
                               [&](const std::vector<VariableD>& in) {
                                   AttentionContext<double> self_ctx, cross_ctx;
                                   self_ctx.mask = AttentionMask::causal;
                                   self_ctx.bias = rel(3, 3);
                                   cross_ctx.mask = AttentionMask::bidirectional;
                                   cross_ctx.key_lengths = {5, 4};
                                   return block(in[0], in[1], self_ctx, cross_ctx);
                               });
    }
}

TEST_CASE("nn::T5DecoderBlock: decoding with self- and cross-attention caches equals the full pass") {
    const index_t B = 2, T = 6, T_enc = 5, C = 8;
    Rng rng(30);
    BlockConfig c = t5_block_config(C, 2, 4, 12, true);
    c.attention.init_std = c.attention.out_init_std = 0.3;
    T5DecoderBlock<float> block(c, rng);
    RelativePositionBias<float> rel(2, {false, 8, 16}, rng);
    const TensorF x = TensorF::randn({B, T, C}, rng), enc = TensorF::randn({B, T_enc, C}, rng);
    auto guard = no_grad();
    AttentionContext<float> self_ctx, cross_ctx;
    self_ctx.bias = rel(T, T);
    cross_ctx.mask = AttentionMask::bidirectional;
    const TensorF full = block(VariableF(x), VariableF(enc), self_ctx, cross_ctx).value();

    LayerKVCache<float> self_cache = block.self_attn.make_cache(B, T), cross_cache = block.cross_attn.make_cache(B, T_enc);
    self_ctx.cache = &self_cache;
    cross_ctx.cache = &cross_cache;
    TensorF decoded = TensorF::zeros({B, T, C});
    for (index_t t = 0; t < T; ++t) {
        self_ctx.bias = rel(1, t + 1, t);
        const VariableF y = block(VariableF(x.narrow(1, t, 1).contiguous()), t == 0 ? VariableF(enc) : VariableF(),
                                  self_ctx, cross_ctx);
        decoded.narrow(1, t, 1).copy_(y.value());
    }
    CHECK(compare(decoded, full, 0.0, 1e-5).ok);
}
