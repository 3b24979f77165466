// Tests for include/llmblocks/models/t5.hpp: T5 against the PyTorch fixtures of
// tests/reference/make_t5_fixtures.py (Hugging Face T5ForConditionalGeneration's math, written
// out in torch), loaded through load_checkpoint exactly as the CLI loads a model directory:
// logits to 1e-4 of the largest |logit|, loss to 1e-5 relative, every gradient to 1e-3 relative
// norm; cached decoding against the full forward; init -> save -> load bit-identical; the
// initialisation's scales; checkpoint name errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "llmblocks/io/checkpoint.hpp"
#include "llmblocks/io/safetensors.hpp"
#include "llmblocks/io/t5_checkpoint.hpp"
#include "llmblocks/models/t5.hpp"
#include "support/compare.hpp"
#include "support/fixture_math.hpp"
#include "support/temp_dir.hpp"

#ifndef LLMBLOCKS_TEST_DATA_DIR
#define LLMBLOCKS_TEST_DATA_DIR "tests/reference"
#endif

using namespace llmblocks;
namespace fs = std::filesystem;

namespace {

using llmblocks::testing::max_abs;
using llmblocks::testing::relative_error;

std::string t5_case_dir(const std::string& name) { return std::string(LLMBLOCKS_TEST_DATA_DIR) + "/models/t5_" + name; }

// The fixtures' configurations, written from the numbers in make_t5_fixtures.py (and its
// config.json files, where absent keys take HF's defaults).
T5Config t5_case_config(const std::string& name) {
    T5Config c;
    if (name == "relu_tied") {  // absent keys: num_decoder_layers, buckets, eps, feed_forward_proj, tie
        c.vocab_size = 37, c.d_model = 16, c.d_kv = 4, c.num_heads = 4, c.d_ff = 24, c.num_layers = 2;
    } else if (name == "gated_untied") {
        c.vocab_size = 41, c.d_model = 20, c.d_kv = 6, c.num_heads = 3, c.d_ff = 28, c.num_layers = 2;
        c.num_decoder_layers = 3;
        c.relative_attention_num_buckets = 8, c.relative_attention_max_distance = 12;
        c.feed_forward_proj = T5FeedForward::GatedGELU;
        c.tie_word_embeddings = false;
    } else if (name == "half") {
        c.vocab_size = 29, c.d_model = 12, c.d_kv = 5, c.num_heads = 2, c.d_ff = 16, c.num_layers = 1;
        c.num_decoder_layers = 2;
        c.relative_attention_num_buckets = 6, c.relative_attention_max_distance = 9;
        c.layer_norm_epsilon = 1e-5;
    } else {
        FAIL("unknown T5 case " << name);
    }
    return c;
}

// A fixture's inputs and expected results (expected.safetensors).
struct T5Expected {
    SafetensorsFile file;
    TensorI encoder_ids, decoder_ids, targets;  // (B, Te), (B, Td), (B, Td)
    std::vector<std::uint8_t> encoder_mask;     // (B, Te) or empty

    explicit T5Expected(const std::string& name)
        : file(t5_case_dir(name) + "/expected.safetensors"), encoder_ids(ids("encoder_ids")),
          decoder_ids(ids("decoder_ids")), targets(ids("targets")) {
        if (file.contains("encoder_mask")) {
            const TensorF m = file.load<float>("encoder_mask");
            for (index_t i = 0; i < m.numel(); ++i) encoder_mask.push_back(m.data()[i] != 0.0f ? 1 : 0);
        }
    }
    TensorF get(const std::string& name) const { return file.load<float>(name); }

private:
    TensorI ids(const std::string& name) const {
        const TensorF f = file.load<float>(name);  // small integers, stored exactly as F32
        TensorI out = TensorI::empty(f.shape());
        for (index_t i = 0; i < f.numel(); ++i) out.data()[i] = static_cast<std::int32_t>(f.data()[i]);
        return out;
    }
};

// Loads the case through load_checkpoint and checks logits, loss and every gradient.
template <class T>
void check_t5_case(const std::string& name) {
    INFO("T5 case " << name);
    const T5Expected ex(name);
    Rng rng(7);
    T5Model<T> model(t5_case_config(name), rng);
    const CheckpointSchema<T> schema = checkpoint_schema(model);
    load_checkpoint(t5_case_dir(name) + "/model.safetensors", schema);

    // logits: within 1e-4 of the largest |logit|
    const TensorF want_logits = ex.get("logits");
    const Variable<T> logits = model.forward(ex.encoder_ids, ex.decoder_ids, ex.encoder_mask);
    CHECK_TENSOR_CLOSE(logits.value().template to<float>(), want_logits, 0.0, 1e-4 * max_abs(want_logits));

    // loss: 1e-5 relative
    Variable<T> loss = model.loss(ex.encoder_ids, ex.decoder_ids, ex.targets, ex.encoder_mask);
    const double want_loss = ex.get("loss").item();
    CHECK(loss.shape() == Shape{});
    CHECK(std::abs(static_cast<double>(loss.item()) - want_loss) <= 1e-5 * std::abs(want_loss));

    // every gradient, under its checkpoint name: 1e-3 relative norm
    loss.backward();
    std::set<std::string> schema_names, fixture_names;
    for (const auto& n : ex.file.names())
        if (n.rfind("grad.", 0) == 0) fixture_names.insert(n.substr(5));
    for (const auto& e : schema.entries) {
        schema_names.insert(e.name);
        INFO("gradient of " << e.name);
        REQUIRE(e.variable.grad().defined());
        const double err = relative_error(e.variable.grad(), ex.get("grad." + e.name));
        CHECK(err <= 1e-3);
    }
    CHECK(schema_names == fixture_names);
}

using llmblocks::testing::TempDir;

std::string load_error(const T5Model<float>& model, const std::string& path) {
    try {
        load_checkpoint(path, checkpoint_schema(model));
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// Sample standard deviation of a parameter's entries.
double sample_std(const VariableF& v) {
    const TensorF t = v.value().contiguous();
    double s = 0, s2 = 0;
    for (index_t i = 0; i < t.numel(); ++i) s += t.data()[i], s2 += double(t.data()[i]) * t.data()[i];
    const double n = static_cast<double>(t.numel()), mean = s / n;
    return std::sqrt(s2 / n - mean * mean);
}

}  // namespace

TEST_CASE("t5: relu, tied head, HF defaults, HF extras in the file (embed_tokens copies, tied lm_head)") {
    check_t5_case<float>("relu_tied");
}

TEST_CASE("t5: gated-gelu, untied head, d_kv * heads != d_model, 3 decoder layers, padded batch of 2") {
    check_t5_case<float>("gated_untied");
}

TEST_CASE("t5: F16 and BF16 tensors in the checkpoint, eps 1e-5, causal log buckets") { check_t5_case<float>("half"); }

TEST_CASE("t5: double precision matches the fixtures too") {
    check_t5_case<double>("relu_tied");
    check_t5_case<double>("gated_untied");
}

TEST_CASE("t5: cached decoding gives the full forward's logits") {
    for (const std::string name : {"relu_tied", "gated_untied", "half"}) {
        INFO("T5 case " << name);
        const T5Expected ex(name);
        Rng rng(3);
        T5Model<float> model(t5_case_config(name), rng);
        load_checkpoint(t5_case_dir(name) + "/model.safetensors", checkpoint_schema(model));
        auto guard = no_grad();
        const TensorF full = model.forward(ex.encoder_ids, ex.decoder_ids, ex.encoder_mask).value();  // (B, Td, V)
        const index_t Td = ex.decoder_ids.size(1);
        const double atol = 1e-5 * max_abs(full);

        // one token per step
        T5DecodeState<float> state = model.start_decoding(ex.encoder_ids, Td, ex.encoder_mask);
        for (index_t t = 0; t < Td; ++t) {
            const TensorI step = ex.decoder_ids.narrow(1, t, 1).contiguous();
            const TensorF got = model.decode_step(state, step);  // (B, 1, V)
            INFO("position " << t);
            CHECK_TENSOR_CLOSE(got, full.narrow(1, t, 1).contiguous(), 0.0, atol);
        }
        CHECK(state.length() == Td);

        // a prompt of 3 tokens at once, then the rest one by one
        T5DecodeState<float> chunked = model.start_decoding(ex.encoder_ids, Td, ex.encoder_mask);
        const TensorF first = model.decode_step(chunked, ex.decoder_ids.narrow(1, 0, 3).contiguous());
        CHECK_TENSOR_CLOSE(first, full.narrow(1, 0, 3).contiguous(), 0.0, atol);
        for (index_t t = 3; t < Td; ++t) {
            const TensorF got = model.decode_step(chunked, ex.decoder_ids.narrow(1, t, 1).contiguous());
            CHECK_TENSOR_CLOSE(got, full.narrow(1, t, 1).contiguous(), 0.0, atol);
        }
        // more tokens than the cache holds: an error, not an overflow
        CHECK_THROWS_AS(model.decode_step(chunked, ex.decoder_ids.narrow(1, 0, 1).contiguous()), Error);
    }
}

TEST_CASE("t5: init -> save -> load is bit-identical") {
    for (const bool tied : {true, false}) {
        T5Config c = T5Config::preset("tiny");
        c.num_decoder_layers = 3;
        c.d_kv = 12;  // inner 48 != d_model 64
        c.tie_word_embeddings = tied;
        c.feed_forward_proj = tied ? T5FeedForward::ReLU : T5FeedForward::GatedGELU;
        Rng rng_a(11), rng_b(12);
        const T5Model<float> a(c, rng_a);
        T5Model<float> b(c, rng_b);
        TempDir dir;
        const std::string path = (dir.path / "model.safetensors").string();
        save_checkpoint(path, checkpoint_schema(a));
        load_checkpoint(path, checkpoint_schema(b));
        const auto sa = checkpoint_schema(a), sb = checkpoint_schema(b);
        REQUIRE(sa.entries.size() == sb.entries.size());
        for (std::size_t i = 0; i < sa.entries.size(); ++i) {
            INFO(sa.entries[i].name);
            const TensorF x = sa.entries[i].variable.value().contiguous();
            const TensorF y = sb.entries[i].variable.value().contiguous();
            REQUIRE(x.shape() == y.shape());
            CHECK(std::memcmp(x.data(), y.data(), sizeof(float) * static_cast<std::size_t>(x.numel())) == 0);
        }
        const TensorI enc = TensorI::from_vector({1, 5}, {3, 1, 4, 1, 5});
        const TensorI dec = TensorI::from_vector({1, 3}, {0, 9, 2});
        auto guard = no_grad();
        const TensorF la = a.forward(enc, dec).value(), lb = b.forward(enc, dec).value();
        CHECK(std::memcmp(la.data(), lb.data(), sizeof(float) * static_cast<std::size_t>(la.numel())) == 0);
        // parameter lists: the schema covers every parameter once
        CHECK(named_parameters<float>(a).size() == sa.entries.size());
    }
}

TEST_CASE("t5: initialisation follows HF's _init_weights scales") {
    T5Config c = T5Config::preset("tiny");  // d_model 64, d_kv 16, 4 heads, d_ff 128
    c.tie_word_embeddings = false;
    c.feed_forward_proj = T5FeedForward::GatedGELU;
    Rng rng(5);
    const T5Model<float> m(c, rng);
    const double d = 64, dkv = 16, inner = 64, dff = 128;
    auto near = [](double got, double want) { return std::abs(got / want - 1.0) < 0.1; };
    CHECK(near(sample_std(m.shared.weight), 1.0));
    CHECK(near(sample_std(m.lm_head.weight), 1.0));
    for (const auto* attn : {&m.encoder[0].attn, &m.decoder[1].self_attn, &m.decoder[0].cross_attn}) {
        CHECK(near(sample_std(attn->q_proj.weight), 1.0 / std::sqrt(d * dkv)));
        CHECK(near(sample_std(attn->k_proj.weight), 1.0 / std::sqrt(d)));
        CHECK(near(sample_std(attn->v_proj.weight), 1.0 / std::sqrt(d)));
        CHECK(near(sample_std(attn->o_proj.weight), 1.0 / std::sqrt(inner)));
    }
    CHECK(near(sample_std(m.decoder[1].mlp.gate.weight), 1.0 / std::sqrt(d)));
    CHECK(near(sample_std(m.decoder[1].mlp.up.weight), 1.0 / std::sqrt(d)));
    CHECK(near(sample_std(m.decoder[1].mlp.down.weight), 1.0 / std::sqrt(dff)));
    // 32 x 4 entries: a looser check
    CHECK(std::abs(sample_std(m.encoder_position.weight) * std::sqrt(d) - 1.0) < 0.3);
    CHECK(m.encoder_norm.weight.value().at({5}) == 1.0f);
    CHECK(m.decoder[0].ln_3.weight.value().at({0}) == 1.0f);
}

TEST_CASE("t5: checkpoint mismatches are reported by name") {
    // a gated model reading a relu file: wi is unexpected, wi_0 / wi_1 are missing
    T5Config gated = t5_case_config("relu_tied");
    gated.feed_forward_proj = T5FeedForward::GatedGELU;
    Rng rng(1);
    const std::string relu_file = t5_case_dir("relu_tied") + "/model.safetensors";
    std::string msg = load_error(T5Model<float>(gated, rng), relu_file);
    CHECK(msg.find("encoder.block.0.layer.1.DenseReluDense.wi_0.weight") != std::string::npos);
    CHECK(msg.find("'encoder.block.0.layer.1.DenseReluDense.wi.weight'") != std::string::npos);

    // an untied model needs lm_head.weight; the "half" file (tied) has none
    T5Config untied = t5_case_config("half");
    untied.tie_word_embeddings = false;
    msg = load_error(T5Model<float>(untied, rng), t5_case_dir("half") + "/model.safetensors");
    CHECK(msg.find("missing 'lm_head.weight'") != std::string::npos);

    // wrong d_ff: every feed-forward tensor has the wrong shape
    T5Config wide = t5_case_config("half");
    wide.d_ff = 17;
    msg = load_error(T5Model<float>(wide, rng), t5_case_dir("half") + "/model.safetensors");
    CHECK(msg.find("wrong shape") != std::string::npos);
    CHECK(msg.find("decoder.block.1.layer.2.DenseReluDense.wo.weight") != std::string::npos);

    // one decoder layer fewer than the file: its tensors are unexpected
    T5Config shallow = t5_case_config("relu_tied");
    shallow.num_decoder_layers = 1;
    msg = load_error(T5Model<float>(shallow, rng), relu_file);
    CHECK(msg.find("unexpected") != std::string::npos);
    CHECK(msg.find("decoder.block.1.") != std::string::npos);
}

TEST_CASE("t5: bad input throws naming the problem") {
    const T5Config c = t5_case_config("half");
    Rng rng(2);
    const T5Model<float> m(c, rng);
    const TensorI enc = TensorI::from_vector({1, 3}, {1, 2, 3});
    const TensorI dec = TensorI::from_vector({1, 2}, {0, 4});
    CHECK_THROWS_AS(m.forward(enc, TensorI::from_vector({1, 2}, {0, 29})), Error);  // id == vocab
    CHECK_THROWS_AS(m.forward(TensorI::from_vector({3}, {1, 2, 3}), dec), Error);     // not (B, T)
    CHECK_THROWS_AS(m.forward(enc, TensorI::from_vector({2, 1}, {0, 4})), Error);     // batch differs
    CHECK_THROWS_AS(m.forward(enc, dec, {1, 1}), Error);                               // mask size
    CHECK_THROWS_AS(m.loss(enc, dec, TensorI::from_vector({1, 3}, {1, 2, 3})), Error); // targets shape
    CHECK_THROWS_AS(m.start_decoding(enc, 0), Error);
}
