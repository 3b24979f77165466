// Tests for include/llmblocks/analysis/counts.hpp against published parameter counts.
#include <doctest/doctest.h>

#include "llmblocks/analysis/counts.hpp"

using namespace llmblocks;

TEST_CASE("counts: GPT-2 presets have Hugging Face's exact parameter counts") {
    // num_parameters() of Hugging Face's GPT2Model for gpt2, gpt2-medium, gpt2-large, gpt2-xl.
    CHECK(count(GPT2Config::gpt2_preset("124M")).parameters == 124439808);
    CHECK(count(GPT2Config::gpt2_preset("355M")).parameters == 354823168);
    CHECK(count(GPT2Config::gpt2_preset("774M")).parameters == 774030080);
    CHECK(count(GPT2Config::gpt2_preset("1.5B")).parameters == 1557611200);
}

TEST_CASE("counts: GPT-3, PaLM and T5 presets match their papers") {
    const auto gpt3 = count(GPT2Config::gpt3_preset("175B"));
    CHECK(gpt3.parameters == doctest::Approx(175e9).epsilon(0.01));
    CHECK(count(GPT2Config::gpt3_preset("125M")).parameters == doctest::Approx(125e6).epsilon(0.02));
    CHECK(count(GPT2Config::gpt3_preset("13B")).parameters == doctest::Approx(13e9).epsilon(0.02));
    CHECK(count(PaLMConfig::preset("540B")).parameters == doctest::Approx(540.35e9).epsilon(0.005));
    CHECK(count(PaLMConfig::preset("62B")).parameters == doctest::Approx(62.50e9).epsilon(0.005));
    CHECK(count(PaLMConfig::preset("8B")).parameters == doctest::Approx(8.63e9).epsilon(0.005));
    // T5 v1.0 released checkpoints: t5-small 60.5M, t5-base 222.9M, t5-11b 11.3B (paper: "about 11 billion").
    CHECK(count(T5Config::preset("small")).parameters == 60506624);
    CHECK(count(T5Config::preset("base")).parameters == 222903552);
    CHECK(count(T5Config::preset("11B")).parameters == doctest::Approx(11.3e9).epsilon(0.01));
}

TEST_CASE("counts: FLOPs and KV cache follow the formulas") {
    const GPT2Config g = GPT2Config::gpt2_preset("124M");
    const auto c = count(g, 1024);
    // 2 * matmul weights + 4 * n_layer * n_embd * T
    const double matmul = 12.0 * 12 * 768 * 768 + 50257.0 * 768;
    CHECK(c.forward_flops_per_token == doctest::Approx(2 * matmul + 4.0 * 12 * 768 * 1024));
    CHECK(c.training_flops_per_token == doctest::Approx(3 * c.forward_flops_per_token));
    CHECK(c.kv_cache_bytes_per_token == 2 * 12 * 768 * 4);
    // multi-query stores num_attention_heads times less than multi-head
    PaLMConfig mqa = PaLMConfig::preset("8B"), mha = mqa;
    mha.num_key_value_heads = mha.num_attention_heads;
    CHECK(count(mha).kv_cache_bytes_per_token == mqa.num_attention_heads * count(mqa).kv_cache_bytes_per_token);
    // GPT-3's local layers see at most window_size keys
    GPT2Config local = GPT2Config::gpt3_preset("125M");
    GPT2Config dense = local;
    dense.attention_layers.clear();
    CHECK(count(local, 2048).forward_flops_per_token < count(dense, 2048).forward_flops_per_token);
    CHECK(model_flops_utilization(6e9, 100.0, 1.2e12) == doctest::Approx(0.5));
}

TEST_CASE("counts: invalid configs are refused with the offending sizes") {
    GPT2Config g = GPT2Config::gpt2_preset("tiny");
    g.n_head = 5;
    CHECK_THROWS_WITH_AS(count(g), doctest::Contains("n_embd 64 is not divisible by n_head 5"), Error);
    PaLMConfig p = PaLMConfig::preset("tiny");
    p.num_key_value_heads = 3;
    CHECK_THROWS_WITH_AS(count(p), doctest::Contains("num_key_value_heads 3"), Error);
    CHECK_THROWS_AS(T5Config::preset("huge"), Error);
}
