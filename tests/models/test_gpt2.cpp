// tests/models/test_gpt2.cpp — GPT2Model (include/llmblocks/models/gpt2.hpp), GPT-2 and GPT-3:
// - PyTorch fixtures (tests/reference/make_model_fixtures.py, Hugging Face names and math) loaded
//   through load_checkpoint, the CLI's path: logits to 1e-4 of the largest |logit|, the loss to
//   1e-5 relative, every gradient (under the file's names, tied wte = both uses) to 1e-3 in
//   relative norm; with and without "transformer.", with the mask buffers and a tied lm_head copy,
//   and GPT-3's banded layers with a window shorter than the sequence.
// - KV-cache decoding equals the full forward; batches and padding masks; initialisation
//   statistics; save -> load round trip bit for bit; load errors name the tensors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <variant>

#include "llmblocks/io/config.hpp"
#include "llmblocks/io/gpt2_checkpoint.hpp"
#include "llmblocks/models/gpt2.hpp"
#include "llmblocks/models/palm.hpp"
#include "support/compare.hpp"
#include "support/fixture_math.hpp"
#include "support/temp_dir.hpp"

#ifndef LLMBLOCKS_TEST_DATA_DIR
#define LLMBLOCKS_TEST_DATA_DIR "tests/reference"
#endif

using namespace llmblocks;

namespace {

const std::filesystem::path kModels = std::filesystem::path(LLMBLOCKS_TEST_DATA_DIR) / "models";

using llmblocks::testing::as_ids;
using llmblocks::testing::max_abs;
using llmblocks::testing::relative_error;
using llmblocks::testing::TempDir;

GPT2Config fixture_config(const std::string& name) {
    return std::get<GPT2Config>(load_config(kModels / name / "config.json"));
}

// Loads fixture `name` into a fresh model and checks logits, loss and every gradient.
void check_fixture(const std::string& name, const std::string& expected_prefix) {
    CAPTURE(name);
    const std::filesystem::path dir = kModels / name;
    Rng rng(7);
    const GPT2Model<float> model(fixture_config(name), rng);
    const CheckpointSchema<float> schema = checkpoint_schema(model);
    const CheckpointMatch match = load_checkpoint(dir / "model.safetensors", schema);
    CHECK(match.prefix == expected_prefix);

    const SafetensorsFile expected(dir / "expected.safetensors");
    const SafetensorsFile grads(dir / "grad.safetensors");
    const TensorI ids = as_ids(expected.load<float>("tokens"));
    const TensorI targets = as_ids(expected.load<float>("targets"));
    const TensorF ref_logits = expected.load<float>("logits");  // (T, V)

    {
        auto guard = no_grad();
        const TensorF logits = model.forward(ids).value().select(0, 0);  // (T, V)
        CHECK_TENSOR_CLOSE(logits, ref_logits, 0.0, 1e-4 * max_abs(ref_logits));
    }

    VariableF loss = model.loss(ids, targets);
    const double ref_loss = grads.load<float>("loss").item();
    CHECK(loss.shape().empty());
    CHECK(std::fabs(loss.item() - ref_loss) <= 1e-5 * std::fabs(ref_loss));
    loss.backward();

    // Every parameter has a gradient entry under its file name, and nothing else is there.
    std::set<std::string> names{"loss"};
    for (std::size_t i = 0; i < schema.entries.size(); ++i) {
        const std::string& file_name = match.file_names[i];
        CAPTURE(file_name);
        names.insert(file_name);
        REQUIRE(grads.contains(file_name));
        const TensorF ref = grads.load<float>(file_name);
        const TensorF& g = schema.entries[i].variable.grad();
        REQUIRE(g.defined());
        CHECK(relative_error(g, ref) <= 1e-3);
    }
    const auto file_names = grads.names();
    CHECK(std::set<std::string>(file_names.begin(), file_names.end()) == names);
}

// Bit-identical values of two models' schemas.
bool same_values(const CheckpointSchema<float>& a, const CheckpointSchema<float>& b) {
    if (a.entries.size() != b.entries.size()) return false;
    for (std::size_t i = 0; i < a.entries.size(); ++i) {
        const TensorF x = a.entries[i].variable.value().contiguous(), y = b.entries[i].variable.value().contiguous();
        if (a.entries[i].name != b.entries[i].name || x.shape() != y.shape() ||
            std::memcmp(x.data(), y.data(), static_cast<std::size_t>(x.numel()) * sizeof(float)) != 0)
            return false;
    }
    return true;
}

// DIR/<name>.safetensors in this test binary's own temporary directory (removed at exit).
std::filesystem::path temp_file(const std::string& name) {
    static const TempDir dir("test_gpt2");
    return dir / (name + ".safetensors");
}

// Random ids (B, T) below V.
TensorI random_ids(index_t B, index_t T, index_t V, Rng& rng) {
    TensorI ids = TensorI::empty({B, T});
    for (index_t i = 0; i < B * T; ++i) ids.data()[i] = static_cast<std::int32_t>(rng.randint(0, V - 1));
    return ids;
}

GPT2Config small_config(bool gpt3) {
    GPT2Config c = gpt3 ? GPT2Config::gpt3_preset("tiny") : GPT2Config::gpt2_preset("tiny");
    c.vocab_size = 37, c.n_positions = 24, c.n_embd = 32, c.n_layer = 2, c.n_head = 4;
    if (gpt3) c.window_size = 4;  // banded layer 1: window shorter than the sequences below
    return c;
}

}  // namespace

TEST_CASE("gpt2 fixtures: logits, loss and gradients match PyTorch") {
    SUBCASE("plain names") { check_fixture("gpt2_plain", ""); }
    SUBCASE("transformer. prefix, mask buffers, tied lm_head copy") { check_fixture("gpt2_prefixed_buffers", "transformer."); }
    SUBCASE("gpt3 local layers, window 3 < T") { check_fixture("gpt3_local", ""); }
}

TEST_CASE("gpt2 fixture configs read as expected") {
    const GPT2Config c = fixture_config("gpt3_local");
    CHECK(c.model_type == "gpt3");
    CHECK(c.window_size == 3);
    REQUIRE(c.attention_layers.size() == 3);
    CHECK(c.attention_layers[1] == AttentionSpan::Local);
    CHECK(fixture_config("gpt2_prefixed_buffers").layer_norm_epsilon == doctest::Approx(1e-3));
}

TEST_CASE("gpt2 kv cache: prefill + decode steps equal the full forward") {
    for (const bool gpt3 : {false, true}) {
        CAPTURE(gpt3);
        Rng rng(11);
        const GPT2Config c = small_config(gpt3);
        const GPT2Model<float> model(c, rng);
        const index_t B = 2, T = 13, prompt = 5;
        const TensorI ids = random_ids(B, T, c.vocab_size, rng);
        TensorF full;
        {
            auto guard = no_grad();
            full = model.forward(ids).value();  // (B, T, V)
        }
        KVCache<float> cache = model.make_cache(B, T);
        TensorF last = model.prefill(ids.narrow(1, 0, prompt), cache);  // (B, V)
        CHECK(last.shape() == Shape{B, c.vocab_size});
        CHECK_TENSOR_CLOSE(last, full.select(1, prompt - 1), 0.0, 1e-5);
        for (index_t t = prompt; t < T; ++t) {
            CAPTURE(t);
            last = model.decode_step(ids.select(1, t), cache);
            CHECK_TENSOR_CLOSE(last, full.select(1, t), 0.0, 1e-5);
        }
        CHECK(cache.length() == T);
        CHECK_THROWS_WITH_AS(model.decode_step(ids.select(1, 0), cache), doctest::Contains("exceed"), Error);
    }
}

TEST_CASE("gpt2 batch rows are independent; padding keys are ignored") {
    Rng rng(3);
    const GPT2Config c = small_config(true);
    const GPT2Model<float> model(c, rng);
    auto guard = no_grad();
    const TensorI ids = random_ids(2, 9, c.vocab_size, rng);
    const TensorF both = model.forward(ids).value();
    for (index_t b = 0; b < 2; ++b) {
        const TensorF one = model.forward(ids.narrow(0, b, 1)).value();
        CHECK_TENSOR_CLOSE(both.narrow(0, b, 1), one, 0.0, 1e-5);
    }
    // Row 0 keeps 6 real tokens then 3 pads (right padding: positions are unchanged).
    std::vector<std::uint8_t> mask(18, 1);
    for (index_t t = 6; t < 9; ++t) mask[static_cast<std::size_t>(t)] = 0;
    const TensorF padded = model.forward(ids, mask).value();
    const TensorF short_row = model.forward(ids.narrow(0, 0, 1).narrow(1, 0, 6)).value();
    CHECK_TENSOR_CLOSE(padded.narrow(0, 0, 1).narrow(1, 0, 6), short_row, 0.0, 1e-5);
    CHECK_TENSOR_CLOSE(padded.narrow(0, 1, 1), both.narrow(0, 1, 1), 0.0, 1e-5);
}

TEST_CASE("gpt2 init follows Hugging Face's _init_weights") {
    Rng rng(5);
    GPT2Config c = GPT2Config::gpt2_preset("tiny");
    c.n_layer = 8;
    const GPT2Model<float> model(c, rng);
    auto stddev = [](const VariableF& v) {
        const TensorF t = v.value().contiguous();
        double s = 0, s2 = 0;
        for (index_t i = 0; i < t.numel(); ++i) s += t.data()[i], s2 += static_cast<double>(t.data()[i]) * t.data()[i];
        const double n = static_cast<double>(t.numel());
        return std::sqrt(s2 / n - (s / n) * (s / n));
    };
    const double residual = 0.02 / std::sqrt(2.0 * 8);
    CHECK(stddev(model.wte.weight) == doctest::Approx(0.02).epsilon(0.05));
    CHECK(stddev(model.wpe.weight) == doctest::Approx(0.02).epsilon(0.05));
    CHECK(stddev(model.h[0].attn.qkv_proj.weight) == doctest::Approx(0.02).epsilon(0.05));
    CHECK(stddev(model.h[0].mlp.up.weight) == doctest::Approx(0.02).epsilon(0.05));
    CHECK(stddev(model.h[0].attn.o_proj.weight) == doctest::Approx(residual).epsilon(0.05));
    CHECK(stddev(model.h[0].mlp.down.weight) == doctest::Approx(residual).epsilon(0.05));
    CHECK(model.h[0].attn.qkv_proj.bias.value().at({0}) == 0.0f);
    CHECK(model.h[0].ln_1.weight.value().at({3}) == 1.0f);
    CHECK(model.ln_f.bias.value().at({3}) == 0.0f);
    // Contract shapes: Conv1D (in, out).
    CHECK(model.h[0].attn.qkv_proj.weight.shape() == Shape{64, 192});
    CHECK(model.h[0].mlp.down.weight.shape() == Shape{256, 64});
    CHECK(parameter_count(named_parameters<float>(model)) ==
          256 * 64 + 128 * 64 + 8 * (12 * 64 * 64 + 13 * 64) + 2 * 64);
}

TEST_CASE("gpt2 save_checkpoint -> load_checkpoint is bit-identical") {
    for (const std::string prefix : {"", "transformer."}) {
        CAPTURE(prefix);
        Rng rng(21), other(22);
        const GPT2Config c = small_config(true);
        const GPT2Model<float> a(c, rng);
        const GPT2Model<float> b(c, other);
        CHECK_FALSE(same_values(checkpoint_schema(a), checkpoint_schema(b)));
        const auto path = temp_file("roundtrip");
        save_checkpoint(path, checkpoint_schema(a), prefix);
        const CheckpointMatch m = load_checkpoint(path, checkpoint_schema(b));
        CHECK(m.prefix == prefix);
        CHECK(same_values(checkpoint_schema(a), checkpoint_schema(b)));
        std::filesystem::remove(path);
    }
}

TEST_CASE("gpt2 load errors name every missing, unexpected and wrongly shaped tensor") {
    Rng rng(1);
    const GPT2Config c = fixture_config("gpt2_plain");
    const GPT2Model<float> model(c, rng);
    const SafetensorsFile good(kModels / "gpt2_plain" / "model.safetensors");
    std::vector<std::pair<std::string, TensorF>> tensors;
    for (const auto& n : good.names()) {
        if (n == "h.1.mlp.c_fc.bias") continue;                                   // missing
        if (n == "h.0.attn.c_attn.weight") tensors.emplace_back(n, TensorF::zeros({48, 16}));  // transposed
        else tensors.emplace_back(n, good.load<float>(n));
    }
    tensors.emplace_back("h.0.attn.q_proj.weight", TensorF::zeros({16, 16}));  // unexpected
    tensors.emplace_back("h.5.attn.bias", TensorF::zeros({1, 1, 16, 16}));       // a buffer of a layer that does not exist
    const auto path = temp_file("broken");
    save_safetensors(path, tensors);
    const TensorF before = model.wte.weight.value().clone();
    try {
        load_checkpoint(path, checkpoint_schema(model));
        FAIL("load_checkpoint accepted a broken checkpoint");
    } catch (const Error& e) {
        const std::string msg = e.what();
        CAPTURE(msg);
        CHECK(msg.find("gpt2") != std::string::npos);
        CHECK(msg.find("missing 'h.1.mlp.c_fc.bias'") != std::string::npos);
        CHECK(msg.find("'h.0.attn.q_proj.weight'") != std::string::npos);
        CHECK(msg.find("'h.5.attn.bias'") != std::string::npos);
        CHECK(msg.find("'h.0.attn.c_attn.weight' is (48, 16) in the file but (16, 48) in the model") != std::string::npos);
    }
    CHECK(std::memcmp(before.data(), model.wte.weight.value().data(), sizeof(float) * before.numel()) == 0);
    std::filesystem::remove(path);
}

TEST_CASE("gpt2 misuse throws with the shapes") {
    Rng rng(2);
    const GPT2Config c = small_config(false);
    const GPT2Model<float> model(c, rng);
    CHECK_THROWS_WITH_AS(model.forward(TensorI::zeros({5})), doctest::Contains("(B, T)"), Error);
    CHECK_THROWS_WITH_AS(model.forward(TensorI::zeros({1, 25})), doctest::Contains("n_positions 24"), Error);
    CHECK_THROWS_AS(model.forward(TensorI::full({1, 3}, 37)), Error);  // id out of range
    CHECK_THROWS_WITH_AS(model.loss(TensorI::zeros({1, 4}), TensorI::zeros({1, 3})), doctest::Contains("targets"), Error);
    GPT2Config bad = c;
    bad.n_head = 5;
    CHECK_THROWS_AS(GPT2Model<float>(bad, rng), Error);
}

// Prefix LM (forward's prefix_length P): rows before P see the whole prefix, rows from P on
// stay causal. Changing token P - 1 must change row 0 with P and leave it alone without.
template <class Model>
void check_prefix_lm(const Model& model, index_t vocab) {
    auto guard = no_grad();
    Rng rng(4);
    const index_t T = 8, P = 5;
    TensorI ids = TensorI::rand({2, T}, rng, 0, static_cast<std::int32_t>(vocab));
    TensorI changed = ids.clone();
    changed.data()[P - 1] = (changed.data()[P - 1] + 1) % static_cast<std::int32_t>(vocab);
    const auto row = [](const Variable<float>& logits, index_t t) { return logits.value().select(0, 0).select(0, t).contiguous(); };
    const auto max_diff = [](const TensorF& a, const TensorF& b) { return compare(a, b, 0.0, 0.0).max_abs_diff; };
    const auto differs = [&](index_t prefix, index_t t) {
        const TensorF a = row(model.forward(ids, {}, prefix), t), b = row(model.forward(changed, {}, prefix), t);
        return max_diff(a, b) > 1e-6;
    };
    CHECK(differs(P, 0));       // the prefix sees its own later tokens ...
    CHECK_FALSE(differs(0, 0)); // ... a causal model does not
    CHECK(differs(P, P - 1));
    // Rows from P on: causal over the prefix and what follows; row P + 1 ignores token P + 2.
    TensorI later = ids.clone();
    later.data()[P + 2] = (later.data()[P + 2] + 1) % static_cast<std::int32_t>(vocab);
    CHECK(max_diff(row(model.forward(ids, {}, P), P + 1), row(model.forward(later, {}, P), P + 1)) == 0.0);
    // P = 0 is the plain causal model; P outside [0, T] is an error naming it.
    CHECK(max_diff(model.forward(ids, {}, 0).value(), model.forward(ids).value()) == 0.0);
    CHECK_THROWS_WITH_AS(model.forward(ids, {}, T + 1), doctest::Contains("prefix_length 9"), Error);
}

TEST_CASE("gpt2 and palm as prefix LMs: the prefix is fully visible, the rest causal") {
    Rng rng(3);
    const GPT2Config c = small_config(false);
    check_prefix_lm(GPT2Model<float>(c, rng), c.vocab_size);
    const PaLMConfig p = PaLMConfig::preset("tiny");
    check_prefix_lm(PaLMModel<float>(p, rng), p.vocab_size);
}
