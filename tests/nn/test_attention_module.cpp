// Tests include/llmblocks/nn/attention.hpp with nn/kv_cache.hpp in float32:
// - decoding token by token (and a prefill then single tokens) through the KV
//   cache gives the outputs of one full forward pass (max abs diff <= 1e-5) for
//   MHA, MQA, GQA, RoPE (both conventions), T5 relative bias, the local band,
//   the prefix-LM mask, and cross-attention over a cached encoder K/V;
// - an MQA layer's cache is n_heads times smaller than the MHA one of the same
//   width (bytes and counted allocations), 2 n_layers Hkv D sizeof(T) per token;
// - PyTorch fixtures (tests/reference/make_nn_fixtures.py) for every attention
//   flavour: forward and gradients of x and all parameters to 1e-5 relative.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "llmblocks/core/memory.hpp"
#include "llmblocks/io/safetensors.hpp"
#include "llmblocks/nn.hpp"
#include "nn/nn_fixture.hpp"
#include "support/compare.hpp"

using namespace llmblocks;

namespace {

struct DecodeCase {
    const char* name;
    index_t n_heads, n_kv_heads;
    AttentionMask mask = AttentionMask::causal;
    bool rope = false;
    RopeStyle style = RopeStyle::rotate_half;
    bool t5_bias = false;
    index_t window = 0, prefix = 0;
};

// Largest |a - b| over all elements.
double max_abs_diff(const TensorF& a, const TensorF& b) {
    const Comparison c = compare(a, b, 0.0, 0.0);
    return c.max_abs_diff;
}

// Full forward over T tokens vs decoding with a KV cache: first `prefill` tokens at once,
// then one token per step.
void check_decode(const DecodeCase& dc, index_t prefill) {
    const index_t B = 2, T = 11, C = 24, D = 6;
    Rng rng(100);
    AttentionLayerConfig cfg;
    cfg.d_model = C;
    cfg.n_heads = dc.n_heads;
    cfg.n_kv_heads = dc.n_kv_heads;
    cfg.head_dim = D;
    cfg.bias = !dc.t5_bias;
    cfg.scaled = !dc.t5_bias;
    cfg.init_std = cfg.out_init_std = 0.3;
    Attention<float> attn(cfg, rng);
    RotaryEmbedding<float> rope({D, 10000.0, dc.style, 0});
    RelativePositionBias<float> rel(dc.n_heads, {false, 8, 16}, rng);
    const TensorF x = TensorF::randn({B, T, C}, rng);

    auto guard = no_grad();
    AttentionContext<float> ctx;
    ctx.mask = dc.mask;
    ctx.window = dc.window;
    ctx.prefix_length = dc.prefix;
    if (dc.rope) ctx.rope = &rope;
    if (dc.t5_bias) ctx.bias = rel(T, T);
    const TensorF full = attn(VariableF(x), ctx).value();  // (B, T, C)

    LayerKVCache<float> cache = attn.make_cache(B, T + 3);
    ctx.cache = &cache;
    TensorF decoded = TensorF::zeros({B, T, C});
    for (index_t t0 = 0; t0 < T;) {
        const index_t n = t0 == 0 ? prefill : 1;
        if (dc.t5_bias) ctx.bias = rel(n, t0 + n, t0);  // the new queries against every cached key
        const VariableF y = attn(VariableF(x.narrow(1, t0, n).contiguous()), ctx);
        CHECK(y.is_leaf());  // no graph under no_grad
        decoded.narrow(1, t0, n).copy_(y.value());
        t0 += n;
        CHECK(cache.length == t0);
    }
    const double diff = max_abs_diff(decoded, full);
    INFO(std::string(dc.name) << " prefill " << prefill << ": max abs diff " << diff);
    CHECK(diff <= 1e-5);
}

}  // namespace

TEST_CASE("nn::Attention: KV-cache decoding equals the full forward (MHA, MQA, GQA, RoPE, T5 bias, local, prefix)") {
    std::vector<DecodeCase> cases;
    cases.push_back({"MHA", 4, 4});
    cases.push_back({"MQA", 4, 1});
    cases.push_back({"GQA", 6, 2});
    DecodeCase rope_half{"RoPE rotate_half (MQA)", 4, 1};
    rope_half.rope = true;
    cases.push_back(rope_half);
    DecodeCase rope_inter{"RoPE interleaved (GQA)", 4, 2};
    rope_inter.rope = true;
    rope_inter.style = RopeStyle::interleaved;
    cases.push_back(rope_inter);
    DecodeCase t5{"T5 relative bias, no scaling (MHA)", 4, 4};
    t5.t5_bias = true;
    cases.push_back(t5);
    DecodeCase local{"local band W=3 (MHA)", 4, 4, AttentionMask::local};
    local.window = 3;
    cases.push_back(local);
    DecodeCase local_mqa{"local band W=4 with RoPE (MQA)", 4, 1, AttentionMask::local};
    local_mqa.window = 4;
    local_mqa.rope = true;
    cases.push_back(local_mqa);
    DecodeCase prefix{"prefix-LM P=5 (GQA)", 4, 2, AttentionMask::prefix_lm};
    prefix.prefix = 5;
    cases.push_back(prefix);
    for (const auto& dc : cases) {
        // Token by token; and a prefill of 5 tokens first, then token by token. A prefix-LM
        // query sees the whole prefix, so the prefix must be prefilled at once: its tokens
        // cannot be decoded one by one (an early query would miss later prefix keys).
        if (dc.mask != AttentionMask::prefix_lm) check_decode(dc, 1);
        check_decode(dc, 5);
    }
}

TEST_CASE("nn::Attention: cross-attention reuses the encoder K/V cached by the first step") {
    const index_t B = 2, T = 7, T_enc = 9, C = 12;
    Rng rng(200);
    AttentionLayerConfig cfg;
    cfg.d_model = C;
    cfg.n_heads = 3;
    cfg.cross = true;
    cfg.d_memory = 10;
    cfg.bias = false;
    cfg.scaled = false;  // T5
    cfg.init_std = cfg.out_init_std = 0.3;
    Attention<float> attn(cfg, rng);
    const TensorF x = TensorF::randn({B, T, C}, rng), enc = TensorF::randn({B, T_enc, 10}, rng);
    auto guard = no_grad();
    AttentionContext<float> ctx;
    ctx.mask = AttentionMask::bidirectional;
    ctx.key_lengths = {9, 6};  // the second encoder sequence is padded
    const TensorF full = attn(VariableF(x), VariableF(enc), ctx).value();

    LayerKVCache<float> cache = attn.make_cache(B, T_enc);
    ctx.cache = &cache;
    TensorF decoded = TensorF::zeros({B, T, C});
    for (index_t t = 0; t < T; ++t) {
        // Only the first step needs the encoder output; later steps read the cache.
        const VariableF memory = t == 0 ? VariableF(enc) : VariableF();
        decoded.narrow(1, t, 1).copy_(attn(VariableF(x.narrow(1, t, 1).contiguous()), memory, ctx).value());
        CHECK(cache.length == T_enc);
    }
    CHECK(max_abs_diff(decoded, full) <= 1e-5);
}

TEST_CASE("nn::KVCache: multi-query stores n_heads times less than multi-head") {
    const index_t d_model = 64, n_heads = 8, n_layers = 3, B = 2, T_max = 128;
    Rng rng(300);
    AttentionLayerConfig mha_cfg;
    mha_cfg.d_model = d_model;
    mha_cfg.n_heads = n_heads;
    AttentionLayerConfig mqa_cfg = mha_cfg;
    mqa_cfg.n_kv_heads = 1;
    AttentionLayerConfig gqa_cfg = mha_cfg;
    gqa_cfg.n_kv_heads = 2;
    const Attention<float> mha(mha_cfg, rng), mqa(mqa_cfg, rng), gqa(gqa_cfg, rng);
    const index_t D = mha.config.head_dim;
    CHECK(D == 8);
    CHECK(mqa.config.head_dim == D);  // same model width and head size, fewer K/V heads

    const auto live = [] { return memory_stats().live_bytes; };
    const auto before_mha = live();
    KVCache<float> mha_cache(n_layers, B, mha.config.n_kv_heads, T_max, D);
    const auto mha_bytes = live() - before_mha;
    const auto before_mqa = live();
    KVCache<float> mqa_cache(n_layers, B, mqa.config.n_kv_heads, T_max, D);
    const auto mqa_bytes = live() - before_mqa;
    KVCache<float> gqa_cache(n_layers, B, gqa.config.n_kv_heads, T_max, D);

    // bytes per token = 2 * n_layers * n_kv_heads * head_dim * sizeof(T)
    CHECK(KVCache<float>::bytes_per_token(n_layers, n_heads, D) == 2u * 3 * 8 * 8 * 4);
    CHECK(KVCache<float>::bytes_per_token(n_layers, 1, D) == 2u * 3 * 1 * 8 * 4);
    CHECK(mha_cache.bytes() == static_cast<std::size_t>(B * T_max) * KVCache<float>::bytes_per_token(n_layers, n_heads, D));
    CHECK(mqa_cache.bytes() == static_cast<std::size_t>(B * T_max) * KVCache<float>::bytes_per_token(n_layers, 1, D));
    CHECK(mha_cache.bytes() == static_cast<std::size_t>(n_heads) * mqa_cache.bytes());
    CHECK(mha_cache.bytes() == static_cast<std::size_t>(n_heads / 2) * gqa_cache.bytes());
    // What was really allocated (the counted aligned buffers) shows the same ratio.
    CHECK(mha_bytes == static_cast<std::int64_t>(mha_cache.bytes()));
    CHECK(mqa_bytes == static_cast<std::int64_t>(mqa_cache.bytes()));
    CHECK(mha_bytes == n_heads * mqa_bytes);

    // Decoding fills the preallocated buffers in place: no growth per token.
    auto guard = no_grad();
    const auto before_decode = mqa_cache.bytes();
    AttentionContext<float> ctx;
    ctx.cache = &mqa_cache[0];
    for (int t = 0; t < 5; ++t) mqa(VariableF(TensorF::randn({B, 1, d_model}, rng)), ctx);
    CHECK(mqa_cache[0].length == 5);
    CHECK(mqa_cache.bytes() == before_decode);
    // The cache refuses to overflow and to record gradients.
    LayerKVCache<float> tiny = mqa.make_cache(B, 2);
    ctx.cache = &tiny;
    CHECK_THROWS_AS(mqa(VariableF(TensorF::randn({B, 3, d_model}, rng)), ctx), Error);
}

TEST_CASE("nn::Attention: a KV cache with gradients enabled is refused") {
    Rng rng(400);
    AttentionLayerConfig cfg;
    cfg.d_model = 8;
    cfg.n_heads = 2;
    Attention<float> attn(cfg, rng);
    LayerKVCache<float> cache = attn.make_cache(1, 4);
    AttentionContext<float> ctx;
    ctx.cache = &cache;
    CHECK_THROWS_AS(attn(VariableF(TensorF::randn({1, 2, 8}, rng)), ctx), Error);
}

TEST_CASE("nn::Attention matches PyTorch: MHA, MQA, GQA; causal, prefix-LM, local band, bidirectional; T5 bias") {
    for (const char* name : {"attention_mha_causal", "attention_mqa_causal", "attention_gqa_causal",
                             "attention_mha_prefix", "attention_gqa_local", "attention_mqa_bidirectional",
                             "attention_t5_bias", "attention_t5_bias_causal"}) {
        const test::NnFixture fx(name);
        Rng rng(1);
        AttentionLayerConfig cfg;
        cfg.d_model = fx.meta_int("d_model");
        cfg.n_heads = fx.meta_int("n_heads");
        cfg.n_kv_heads = fx.meta_int("n_kv_heads");
        cfg.head_dim = fx.meta_int("head_dim");
        cfg.bias = fx.meta_int("bias") != 0;
        cfg.scaled = fx.meta_int("scaled") != 0;
        Attention<float> attn(cfg, rng);
        AttentionContext<float> ctx;
        ctx.mask = test::mask_from_name(fx.meta("mask"));
        ctx.prefix_length = fx.meta_int("prefix_length");
        ctx.window = fx.meta_int("window");
        ParameterList<float> params;
        attn.collect_parameters(params, "attn");
        const bool t5 = fx.has_meta("num_buckets");
        RelativePositionBias<float> rel;
        if (t5) {
            rel = RelativePositionBias<float>(
                cfg.n_heads, {fx.meta_int("bidirectional") != 0, fx.meta_int("num_buckets"), fx.meta_int("max_distance")},
                rng);
            rel.collect_parameters(params, "rel");
        }
        INFO(std::string(name));
        fx.check(params, [&](const VariableF& x) {
            AttentionContext<float> c = ctx;
            if (t5) c.bias = rel(x.size(1), x.size(1));
            return attn(x, c);
        });
    }
}
