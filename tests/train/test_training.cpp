// Tests of whole training runs with the train/ building blocks and of
// include/llmblocks/train/checkpoint.hpp:
//   - a tiny GPT-2 overfits one fixed batch (loss < 0.05 within 100 AdamW steps);
//   - a tiny T5 trained 100 steps on span corruption of a synthetic corpus
//     (words drawn from a 12-word vocabulary) beats, on held-out text, the
//     unigram entropy of the target tokens by a margin (val loss < 0.7 * that
//     entropy) and reaches < 0.35 * ln(vocab);
//   - resume is bit-exact: 2N steps straight equal N steps, a checkpoint, a
//     fresh model + optimizer + sampler loaded from it, and N more steps
//     (AdamW, warmup-cosine, clipping active, gradient accumulation):
//     parameters and optimizer state compared with memcmp;
//   - Rng snapshots round-trip exactly through trainer_state.json; loading
//     refuses mismatched and inconsistent checkpoints naming the file and
//     tensor, and leaves model and optimizer untouched.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "llmblocks/io/gpt2_checkpoint.hpp"
#include "llmblocks/io/t5_checkpoint.hpp"
#include "llmblocks/models/gpt2.hpp"
#include "llmblocks/models/t5.hpp"
#include "llmblocks/ops/loss.hpp"
#include "llmblocks/train.hpp"
#include "support/temp_dir.hpp"

// Everything of this file in its own namespace: the test build compiles the files that
// instantiate the whole model stack as one unity group (tests/CMakeLists.txt).
namespace test_training {

using namespace llmblocks;
using llmblocks::testing::TempDir;

namespace {

GPT2Config tiny_gpt2() {
    GPT2Config c = GPT2Config::gpt2_preset("tiny");  // vocab 256, 64 wide, 2 layers, 4 heads
    c.n_positions = 32;
    return c;
}

GPT2Model<float> make_gpt2(std::uint64_t seed) {
    Rng rng(seed);
    return GPT2Model<float>(tiny_gpt2(), rng);
}

// Text of words drawn from a small vocabulary: learnable structure (spelling, spaces).
std::string synthetic_text(std::size_t words, std::uint64_t seed) {
    static const char* kWords[] = {"the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "red", "big", "house"};
    Rng rng(seed);
    std::string s;
    for (std::size_t i = 0; i < words; ++i) {
        s += kWords[rng.randint(0, 12)];
        s += (i % 9 == 8) ? ". " : " ";
    }
    return s;
}

// Bitwise equality of two float tensors (same shape).
bool same_bits(const TensorF& a, const TensorF& b) {
    if (a.shape() != b.shape()) return false;
    const TensorF ac = a.contiguous(), bc = b.contiguous();
    return std::memcmp(ac.data(), bc.data(), static_cast<std::size_t>(ac.numel()) * sizeof(float)) == 0;
}

// One run of the GPT-2 training loop used by the resume test.
struct Gpt2Run {
    GPT2Model<float> model;
    CheckpointSchema<float> schema;
    ParameterList<float> params;
    std::unique_ptr<AdamW<float>> opt;
    WindowSampler sampler;
    double max_norm_seen = 0;

    Gpt2Run(std::uint64_t init_seed, const TokenDataset& data, std::uint64_t data_seed)
        : model(make_gpt2(init_seed)), schema(checkpoint_schema(model)),
          params(checkpoint_parameters(schema)), sampler(data, 4, 16, data_seed) {
        AdamWOptions o;
        o.lr = 3e-3, o.beta2 = 0.95, o.weight_decay = 0.1;
        opt = std::make_unique<AdamW<float>>(params, o);
    }

    void train(std::int64_t until, const WarmupCosine& schedule) {
        for (std::int64_t step = opt->step_count(); step < until; ++step) {
            opt->zero_grad();
            accumulate_gradients<float>(2, [&](index_t) {
                const TokenBatch b = sampler.next();
                return cross_entropy(model.forward(b.inputs), b.targets);
            });
            max_norm_seen = std::max(max_norm_seen, clip_grad_norm(params, 0.5));
            opt->set_lr(schedule(step));
            opt->step();
        }
    }
};

}  // namespace

TEST_CASE("training: a tiny GPT-2 overfits one fixed batch (loss < 0.05 in 100 AdamW steps)") {
    Rng rng(3);
    GPT2Model<float> model(tiny_gpt2(), rng);
    const ParameterList<float> params = named_parameters<float>(model);
    AdamWOptions o;
    o.lr = 1e-2, o.weight_decay = 0.0;
    AdamW<float> opt(params, o);
    TensorI ids = TensorI::empty({2, 17});
    for (index_t i = 0; i < ids.numel(); ++i) ids.data()[i] = static_cast<std::int32_t>(rng.randint(0, 256));
    const TensorI inputs = ids.narrow(1, 0, 16).contiguous(), targets = ids.narrow(1, 1, 16).contiguous();
    double first = 0, last = 0;
    for (int step = 0; step < 100; ++step) {
        opt.zero_grad();
        Variable<float> loss = model.loss(inputs, targets);
        loss.backward();
        if (step == 0) first = loss.item();
        last = loss.item();
        clip_grad_norm(params, 1.0);
        opt.step();
    }
    INFO("first loss ", first, ", last ", last);
    CHECK(first > 5.0);  // about ln(256) = 5.55 at initialisation
    CHECK(last < 0.05);  // seen: 6e-4
}

TEST_CASE("training: a tiny T5 learns span corruption of a synthetic corpus (held-out loss < 0.7 x unigram entropy)") {
    T5Config c = T5Config::preset("tiny");  // vocab 256, d_model 64, 2 + 2 layers
    Rng init(5);
    T5Model<float> model(c, init);
    const ParameterList<float> params = named_parameters<float>(model);
    AdamWOptions o;
    o.lr = 3e-3, o.beta2 = 0.95, o.weight_decay = 0.0;
    AdamW<float> opt(params, o);
    const WarmupCosine schedule{1e-2, 1e-3, 10, 100};

    const TokenDataset train(byte_tokens(synthetic_text(6000, 1)));
    const TokenDataset val(byte_tokens(synthetic_text(600, 2)));
    const index_t B = 8, T = 32;
    SpanCorruptionOptions span;
    span.first_sentinel = static_cast<std::int32_t>(c.vocab_size - 1);

    // Windows (B, T) -> encoder inputs, decoder inputs (targets shifted right after 0), targets.
    auto corrupt = [&](const TensorI& windows, Rng& rng, TensorI& enc, TensorI& dec, TensorI& tgt) {
        std::vector<SpanCorruptionExample> rows;
        for (index_t r = 0; r < B; ++r)
            rows.push_back(span_corruption(std::span<const std::int32_t>(windows.data() + r * T, T), span, rng));
        const auto Te = static_cast<index_t>(rows[0].inputs.size()), Td = static_cast<index_t>(rows[0].targets.size());
        enc = TensorI::empty({B, Te}), dec = TensorI::empty({B, Td}), tgt = TensorI::empty({B, Td});
        for (index_t r = 0; r < B; ++r) {
            const auto& ex = rows[static_cast<std::size_t>(r)];
            if (static_cast<index_t>(ex.inputs.size()) != Te || static_cast<index_t>(ex.targets.size()) != Td)
                FAIL("span corruption rows of different lengths");  // fixed-length windows give fixed lengths
            for (index_t t = 0; t < Te; ++t) enc.data()[r * Te + t] = ex.inputs[t];
            for (index_t t = 0; t < Td; ++t) {
                tgt.data()[r * Td + t] = ex.targets[t];
                dec.data()[r * Td + t] = t == 0 ? 0 : ex.targets[t - 1];
            }
        }
    };

    WindowSampler sampler(train, B, T, 11);
    Rng noise(12);
    for (std::int64_t step = 0; step < 100; ++step) {
        TensorI enc, dec, tgt;
        corrupt(sampler.next().inputs, noise, enc, dec, tgt);
        opt.zero_grad();
        Variable<float> loss = model.loss(enc, dec, tgt);
        loss.backward();
        clip_grad_norm(params, 1.0);
        opt.set_lr(schedule(step));
        opt.step();
    }

    // Held-out loss over every sequential batch of the validation text, and the
    // unigram entropy of the same targets (the best loss without context).
    auto guard = no_grad();
    Rng val_noise(13);
    double loss_sum = 0;
    std::map<std::int32_t, double> counts;
    double n_targets = 0;
    const index_t batches = num_sequential_batches(val, B, T);
    REQUIRE(batches >= 4);
    for (index_t i = 0; i < batches; ++i) {
        TensorI enc, dec, tgt;
        corrupt(sequential_batch(val, i, B, T).inputs, val_noise, enc, dec, tgt);
        loss_sum += model.loss(enc, dec, tgt).item();
        for (index_t k = 0; k < tgt.numel(); ++k) counts[tgt.data()[k]] += 1, n_targets += 1;
    }
    const double val_loss = loss_sum / static_cast<double>(batches);
    double unigram = 0;
    for (const auto& [id, n] : counts) unigram -= n / n_targets * std::log(n / n_targets);
    INFO("val loss ", val_loss, ", unigram entropy of the targets ", unigram, ", ln(vocab) ", std::log(256.0));
    CHECK(val_loss < 0.7 * unigram);  // seen: 1.56 vs 2.58 (ratio 0.61)
    CHECK(val_loss < 0.35 * std::log(256.0));
}

TEST_CASE("training checkpoint: 2N steps straight == N, save, fresh load, N more (bit for bit)") {
    TempDir tmp("train_ckpt");
    const TokenDataset data(byte_tokens(synthetic_text(3000, 4)));
    const WarmupCosine schedule{3e-3, 3e-4, 3, 12};  // N = 6: warmup, then cosine over the rest

    Gpt2Run straight(1, data, 7);
    straight.train(12, schedule);

    Gpt2Run first(1, data, 7);
    first.train(6, schedule);
    TrainerState state;
    state.step = 6;
    state.rngs["sampler"] = first.sampler.snapshot();
    state.settings["--batch"] = "4";
    save_training_checkpoint(tmp.path, ModelConfig(tiny_gpt2()), first.schema, *first.opt, state);
    for (const char* f : {"config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"})
        CHECK_MESSAGE(std::filesystem::exists(tmp / f), f);

    Gpt2Run resumed(99, data, 1234);  // other initial weights and sampler seed: everything must come from the files
    const TrainerState loaded = load_training_checkpoint(tmp.path, resumed.schema, *resumed.opt);
    CHECK(loaded.step == 6);
    CHECK(loaded.settings == state.settings);
    resumed.sampler.restore(loaded.rngs.at("sampler"));
    CHECK(resumed.opt->step_count() == 6);
    resumed.train(12, schedule);

    CHECK(straight.max_norm_seen > 0.5);  // clipping was active
    REQUIRE(straight.params.size() == resumed.params.size());
    std::size_t params_equal = 0;
    for (std::size_t i = 0; i < straight.params.size(); ++i)
        params_equal += same_bits(straight.params[i].variable.value(), resumed.params[i].variable.value());
    CHECK(params_equal == straight.params.size());
    const OptimizerState<float> a = straight.opt->state(), b = resumed.opt->state();
    CHECK(a.step == b.step);
    REQUIRE(a.tensors.size() == b.tensors.size());
    std::size_t state_equal = 0;
    for (std::size_t i = 0; i < a.tensors.size(); ++i)
        state_equal += a.tensors[i].name == b.tensors[i].name && same_bits(a.tensors[i].tensor, b.tensors[i].tensor);
    CHECK(state_equal == a.tensors.size());
    // The run that did not resume differs from its own step-6 state (the test is not vacuous).
    CHECK_FALSE(same_bits(first.params[0].variable.value(), resumed.params[0].variable.value()));
}

TEST_CASE("training checkpoint: Rng snapshots round-trip exactly through trainer_state.json") {
    TempDir tmp("train_state");
    Rng rng(42);
    for (int i = 0; i < 7; ++i) rng.next_u64();
    rng.normal();  // leaves a spare normal pending: a double that must survive bit for bit
    TrainerState s;
    s.step = 123456789012LL;
    s.rngs["objective"] = rng.snapshot();
    s.rngs["zero"] = Rng::Snapshot{};
    s.settings = {{"--lr", "0.003"}, {"--data", "10 tokens"}};
    std::ofstream(tmp / "trainer_state.json") << trainer_state_to_string(s);
    const TrainerState t = load_trainer_state(tmp / "trainer_state.json");
    CHECK(t.step == s.step);
    CHECK(t.settings == s.settings);
    REQUIRE(t.rngs.size() == 2);
    const Rng::Snapshot& a = s.rngs.at("objective");
    const Rng::Snapshot& b = t.rngs.at("objective");
    CHECK(a.words == b.words);
    CHECK(a.has_spare_normal == b.has_spare_normal);
    CHECK(std::memcmp(&a.spare_normal, &b.spare_normal, sizeof(double)) == 0);
    Rng copy(0);
    copy.restore(b);
    for (int i = 0; i < 5; ++i) CHECK(copy.normal() == rng.normal());

    CHECK(settings_difference(s.settings, s.settings).empty());
    CHECK(settings_difference(s.settings, {{"--lr", "0.01"}, {"--data", "10 tokens"}}) == "--lr 0.01 (checkpoint: 0.003)");

    std::ofstream(tmp / "bad.json") << R"({"format": "llmblocks trainer state", "version": 1, "step": 1, "rngs": {"s": {"words": [1, 2, 3, 4], "has_spare_normal": false, "spare_normal_bits": "0000000000000000"}}, "settings": {}})";
    CHECK_THROWS_WITH_AS(load_trainer_state(tmp / "bad.json"), doctest::Contains("rngs.s.words[0]"), Error);
}

TEST_CASE("training checkpoint: mismatches are refused by file and tensor, and change nothing") {
    TempDir tmp("train_bad");
    Rng rng(1);
    GPT2Model<float> model(tiny_gpt2(), rng);
    const CheckpointSchema<float> schema = checkpoint_schema(model);
    AdamW<float> opt(checkpoint_parameters(schema));
    TrainerState state;
    state.step = 3;
    save_training_checkpoint(tmp.path, ModelConfig(tiny_gpt2()), schema, opt, state);

    // A wider model: model.safetensors names the tensor and both shapes.
    GPT2Config wide = tiny_gpt2();
    wide.n_embd = 128;
    GPT2Model<float> other(wide, rng);
    const CheckpointSchema<float> other_schema = checkpoint_schema(other);
    AdamW<float> other_opt(checkpoint_parameters(other_schema));
    const TensorF before = other.wte.weight.value().clone();
    CHECK_THROWS_WITH_AS(load_training_checkpoint(tmp.path, other_schema, other_opt),
                         doctest::Contains("optimizer.safetensors': AdamW::load_state: state tensor 'wte.weight.exp_avg' has shape (256, 64), expected (256, 128)"),
                         Error);
    CHECK(same_bits(other.wte.weight.value(), before));
    CHECK(other_opt.step_count() == 0);

    // Another optimizer kind: its state tensors are missing.
    Sgd<float> sgd(checkpoint_parameters(schema), {.lr = 0.1, .momentum = 0.9});
    CHECK_THROWS_WITH_AS(load_training_checkpoint(tmp.path, schema, sgd),
                         doctest::Contains("momentum_buffer' is missing"), Error);

    // A save interrupted after the optimizer file: steps disagree.
    {
        TempDir torn("train_torn");
        save_training_checkpoint(torn.path, ModelConfig(tiny_gpt2()), schema, opt, state);
        const std::vector<std::pair<std::string, TensorF>> none;
        save_safetensors(torn / "optimizer.safetensors", none, {{"step", "4"}, {"optimizer_step", "4"}});
        CHECK_THROWS_WITH_AS(load_training_checkpoint(torn.path, schema, opt),
                             doctest::Contains("optimizer.safetensors' is from step 4 but"), Error);
        std::filesystem::remove(torn / "trainer_state.json");
        CHECK_THROWS_WITH_AS(load_training_checkpoint(torn.path, schema, opt),
                             doctest::Contains("trainer_state.json' is missing"), Error);
    }
    // Model weights without the step metadata (not a training checkpoint's).
    save_checkpoint(tmp / "model.safetensors", schema);
    CHECK_THROWS_WITH_AS(load_training_checkpoint(tmp.path, schema, opt), doctest::Contains("has no \"step\""), Error);
}

}  // namespace test_training
