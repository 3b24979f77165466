// tests/models/test_palm.cpp — PaLMModel (include/llmblocks/models/palm.hpp):
// - PyTorch fixtures (tests/reference/make_model_fixtures.py) loaded through load_checkpoint:
//   multi-query, grouped-query and multi-head attention; parallel and serial blocks; LayerNorm
//   (scale only) and RMSNorm; tied and untied heads; a head_dim key (heads * head_dim != width)
//   and a non-default rope_theta. Logits to 1e-4 of the largest |logit|, the loss to 1e-5
//   relative, every gradient to 1e-3 in relative norm.
// - KV-cache decoding equals the full forward (and the cache holds num_key_value_heads heads);
//   initialisation; save -> load round trip; load errors; names per variant.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <variant>

#include "llmblocks/io/config.hpp"
#include "llmblocks/io/palm_checkpoint.hpp"
#include "llmblocks/models/palm.hpp"
#include "support/compare.hpp"
#include "support/fixture_math.hpp"
#include "support/temp_dir.hpp"

#ifndef LLMBLOCKS_TEST_DATA_DIR
#define LLMBLOCKS_TEST_DATA_DIR "tests/reference"
#endif

using namespace llmblocks;

namespace {

const std::filesystem::path kPalmModels = std::filesystem::path(LLMBLOCKS_TEST_DATA_DIR) / "models";

using llmblocks::testing::as_ids;
using llmblocks::testing::max_abs;
using llmblocks::testing::relative_error;
using llmblocks::testing::TempDir;

PaLMConfig palm_fixture_config(const std::string& name) {
    return std::get<PaLMConfig>(load_config(kPalmModels / name / "config.json"));
}

void check_palm_fixture(const std::string& name) {
    CAPTURE(name);
    const std::filesystem::path dir = kPalmModels / name;
    Rng rng(7);
    const PaLMModel<float> model(palm_fixture_config(name), rng);
    const CheckpointSchema<float> schema = checkpoint_schema(model);
    const CheckpointMatch match = load_checkpoint(dir / "model.safetensors", schema);
    CHECK(match.prefix.empty());

    const SafetensorsFile expected(dir / "expected.safetensors");
    const SafetensorsFile grads(dir / "grad.safetensors");
    const TensorI ids = as_ids(expected.load<float>("tokens"));
    const TensorI targets = as_ids(expected.load<float>("targets"));
    const TensorF ref_logits = expected.load<float>("logits");  // (T, V)
    {
        auto guard = no_grad();
        const TensorF logits = model.forward(ids).value().select(0, 0);
        CHECK_TENSOR_CLOSE(logits, ref_logits, 0.0, 1e-4 * max_abs(ref_logits));
    }
    VariableF loss = model.loss(ids, targets);
    const double ref_loss = grads.load<float>("loss").item();
    CHECK(std::fabs(loss.item() - ref_loss) <= 1e-5 * std::fabs(ref_loss));
    loss.backward();
    std::set<std::string> names{"loss"};
    for (std::size_t i = 0; i < schema.entries.size(); ++i) {
        const std::string& file_name = match.file_names[i];
        CAPTURE(file_name);
        names.insert(file_name);
        REQUIRE(grads.contains(file_name));
        const TensorF& g = schema.entries[i].variable.grad();
        REQUIRE(g.defined());
        CHECK(relative_error(g, grads.load<float>(file_name)) <= 1e-3);
    }
    const auto file_names = grads.names();
    CHECK(std::set<std::string>(file_names.begin(), file_names.end()) == names);
}

PaLMConfig small_palm(index_t kv_heads, bool parallel, bool tied, NormType norm) {
    PaLMConfig c = PaLMConfig::preset("tiny");
    c.vocab_size = 41, c.hidden_size = 32, c.num_hidden_layers = 2, c.num_attention_heads = 4;
    c.num_key_value_heads = kv_heads, c.head_dim = 10, c.intermediate_size = 48, c.max_position_embeddings = 32;
    c.parallel_block = parallel, c.tie_word_embeddings = tied, c.norm_type = norm;
    return c;
}

TensorI palm_random_ids(index_t B, index_t T, index_t V, Rng& rng) {
    TensorI ids = TensorI::empty({B, T});
    for (index_t i = 0; i < B * T; ++i) ids.data()[i] = static_cast<std::int32_t>(rng.randint(0, V - 1));
    return ids;
}

}  // namespace

TEST_CASE("palm fixtures: logits, loss and gradients match PyTorch") {
    SUBCASE("multi-query, parallel, layernorm, tied") { check_palm_fixture("palm_mqa_parallel_layernorm_tied"); }
    SUBCASE("grouped-query, serial, rmsnorm, untied") { check_palm_fixture("palm_gqa_serial_rmsnorm_untied"); }
    SUBCASE("multi-head, parallel, rmsnorm, untied, head_dim 12, theta 500") {
        check_palm_fixture("palm_mha_parallel_rmsnorm_untied_head_dim");
    }
    SUBCASE("grouped-query, serial, layernorm, tied") { check_palm_fixture("palm_gqa_serial_layernorm_tied"); }
}

TEST_CASE("palm kv cache: prefill + decode steps equal the full forward") {
    for (const index_t kv : {1, 2, 4}) {
        for (const bool parallel : {true, false}) {
            CAPTURE(kv);
            CAPTURE(parallel);
            Rng rng(13);
            const PaLMConfig c = small_palm(kv, parallel, kv != 2, kv == 1 ? NormType::LayerNorm : NormType::RMSNorm);
            const PaLMModel<float> model(c, rng);
            const index_t B = 2, T = 11, prompt = 4;
            const TensorI ids = palm_random_ids(B, T, c.vocab_size, rng);
            TensorF full;
            {
                auto guard = no_grad();
                full = model.forward(ids).value();
            }
            KVCache<float> cache = model.make_cache(B, T);
            CHECK(cache.bytes() == static_cast<std::size_t>(2 * 2 * B * kv * T * 10) * sizeof(float));
            TensorF last = model.prefill(ids.narrow(1, 0, prompt), cache);
            CHECK_TENSOR_CLOSE(last, full.select(1, prompt - 1), 0.0, 1e-5);
            for (index_t t = prompt; t < T; ++t) {
                CAPTURE(t);
                last = model.decode_step(ids.select(1, t), cache);
                CHECK_TENSOR_CLOSE(last, full.select(1, t), 0.0, 1e-5);
            }
        }
    }
}

TEST_CASE("palm checkpoint names follow the variant") {
    Rng rng(1);
    auto names_of = [&rng](const PaLMConfig& c) {
        std::set<std::string> s;
        for (const auto& e : checkpoint_schema(PaLMModel<float>(c, rng)).entries) s.insert(e.name);
        return s;
    };
    const auto parallel_tied = names_of(small_palm(1, true, true, NormType::LayerNorm));
    CHECK(parallel_tied.count("model.layers.1.input_layernorm.weight") == 1);
    CHECK(parallel_tied.count("model.layers.1.post_attention_layernorm.weight") == 0);
    CHECK(parallel_tied.count("lm_head.weight") == 0);
    CHECK(parallel_tied.size() == 1 + 2 * 8 + 1);
    const auto serial_untied = names_of(small_palm(2, false, false, NormType::RMSNorm));
    CHECK(serial_untied.count("model.layers.0.post_attention_layernorm.weight") == 1);
    CHECK(serial_untied.count("lm_head.weight") == 1);
    CHECK(serial_untied.size() == 1 + 2 * 9 + 2);
    // Shapes: Linear (out, in), heads * head_dim = 40 != width 32, 2 KV heads.
    const PaLMModel<float> m(small_palm(2, false, false, NormType::RMSNorm), rng);
    for (const auto& e : checkpoint_schema(m).entries) {
        if (e.name == "model.layers.0.self_attn.q_proj.weight") CHECK(e.variable.shape() == Shape{40, 32});
        if (e.name == "model.layers.0.self_attn.k_proj.weight") CHECK(e.variable.shape() == Shape{20, 32});
        if (e.name == "model.layers.0.self_attn.o_proj.weight") CHECK(e.variable.shape() == Shape{32, 40});
        if (e.name == "model.layers.0.mlp.down_proj.weight") CHECK(e.variable.shape() == Shape{32, 48});
        if (e.name == "lm_head.weight") CHECK(e.variable.shape() == Shape{41, 32});
    }
}

TEST_CASE("palm init: fan-in scaled kernels, unit norms, embedding N(0, 1/d_model)") {
    Rng rng(9);
    PaLMConfig c = PaLMConfig::preset("tiny");  // width 64, 4 heads of 16, hidden 256
    c.parallel_block = false;
    const PaLMModel<float> model(c, rng);
    auto stddev = [](const VariableF& v) {
        const TensorF t = v.value().contiguous();
        double s2 = 0;
        for (index_t i = 0; i < t.numel(); ++i) s2 += static_cast<double>(t.data()[i]) * t.data()[i];
        return std::sqrt(s2 / static_cast<double>(t.numel()));
    };
    CHECK(stddev(model.embed_tokens.weight) == doctest::Approx(1.0 / 8.0).epsilon(0.05));
    CHECK(stddev(model.serial_layers[0].attn.q_proj.weight) == doctest::Approx(1.0 / 8.0).epsilon(0.05));
    CHECK(stddev(model.serial_layers[0].mlp.down.weight) == doctest::Approx(1.0 / 16.0).epsilon(0.05));
    CHECK(model.serial_layers[0].ln_2.weight.value().at({5}) == 1.0f);
    CHECK_FALSE(model.norm.bias.defined());  // PaLM: no biases
    CHECK_FALSE(model.serial_layers[0].attn.q_proj.bias.defined());
}

TEST_CASE("palm save_checkpoint -> load_checkpoint is bit-identical; errors name tensors") {
    Rng rng(31), other(32);
    const PaLMConfig c = small_palm(2, false, false, NormType::RMSNorm);
    const PaLMModel<float> a(c, rng);
    const PaLMModel<float> b(c, other);
    const TempDir dir("test_palm");
    const auto path = dir / "roundtrip.safetensors";
    save_checkpoint(path, checkpoint_schema(a));
    load_checkpoint(path, checkpoint_schema(b));
    const auto ea = checkpoint_schema(a).entries, eb = checkpoint_schema(b).entries;
    REQUIRE(ea.size() == eb.size());
    for (std::size_t i = 0; i < ea.size(); ++i) {
        CAPTURE(ea[i].name);
        const TensorF x = ea[i].variable.value().contiguous(), y = eb[i].variable.value().contiguous();
        CHECK(std::memcmp(x.data(), y.data(), sizeof(float) * static_cast<std::size_t>(x.numel())) == 0);
    }

    // A serial, untied file read by a parallel, tied model: the second norms and the head are
    // unexpected; a model with 4 KV heads finds k_proj / v_proj wrongly shaped.
    PaLMConfig parallel = c;
    parallel.parallel_block = true, parallel.tie_word_embeddings = false;
    const PaLMModel<float> p(parallel, rng);
    CHECK_THROWS_WITH_AS(load_checkpoint(path, checkpoint_schema(p)),
                         doctest::Contains("unexpected 'model.layers.0.post_attention_layernorm.weight'"), Error);
    PaLMConfig mha = c;
    mha.num_key_value_heads = 4;
    const PaLMModel<float> m(mha, rng);
    CHECK_THROWS_WITH_AS(load_checkpoint(path, checkpoint_schema(m)),
                         doctest::Contains("'model.layers.0.self_attn.k_proj.weight' is (20, 32) in the file but (40, 32)"),
                         Error);
    PaLMConfig tied = c;
    tied.tie_word_embeddings = true;  // a tied model ignores a file's lm_head.weight
    const PaLMModel<float> t(tied, rng);
    CHECK_NOTHROW(load_checkpoint(path, checkpoint_schema(t)));
    PaLMConfig deeper = c;
    deeper.num_hidden_layers = 3;
    const PaLMModel<float> d(deeper, rng);
    CHECK_THROWS_WITH_AS(load_checkpoint(path, checkpoint_schema(d)),
                         doctest::Contains("missing 'model.layers.2.input_layernorm.weight'"), Error);
    std::filesystem::remove(path);
}
