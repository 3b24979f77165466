// tests/infer/test_generate.cpp — token sampling (include/llmblocks/infer/sampling.hpp) and
// KV-cached generation (include/llmblocks/infer/generate.hpp):
// - sampling: temperature 0 / top_k 1 / a tiny top_p are argmax (first max on ties); the draw
//   frequencies over 20000 draws match the probabilities the test computes itself (chi-square
//   below the 0.1% critical value) for plain, tempered, top-k and top-p sampling; excluded ids
//   never come out; the same Rng state gives the same tokens; bad options and logits throw.
// - generate: greedy generation with the cache equals greedy decoding by repeated full forward
//   passes (no cache) on random tiny GPT-2, GPT-3 (banded layers, generation past the window),
//   PaLM and T5; a batch equals each prompt alone; prompts of different lengths; eos cuts a
//   sequence right after it; seeds; the callback; the error messages.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "llmblocks/infer.hpp"

// Everything of this file in its own namespace: the test build compiles the files that
// instantiate the whole model stack as one unity group (tests/CMakeLists.txt).
namespace test_generate {

using namespace llmblocks;

namespace {

using Tokens = std::vector<std::int32_t>;

std::int32_t argmax_of(const std::vector<float>& logits) { return argmax_token(std::span<const float>(logits)); }

std::int32_t draw(const std::vector<double>& logits, const SamplingOptions& o, Rng& rng) {
    return sample_token(std::span<const double>(logits), o, rng);
}

// The sampling distribution computed directly from the definition (test's own code):
// softmax(l / temperature) over the top-k ids, then the smallest most-probable set >= top_p.
std::vector<double> expected_probabilities(const std::vector<double>& logits, const SamplingOptions& o) {
    const std::size_t V = logits.size();
    std::vector<std::size_t> order(V);
    for (std::size_t i = 0; i < V; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return logits[a] > logits[b]; });
    const std::size_t k = o.top_k > 0 ? std::min<std::size_t>(V, static_cast<std::size_t>(o.top_k)) : V;
    std::vector<double> p(V, 0.0);
    double z = 0;
    for (std::size_t r = 0; r < k; ++r) z += std::exp(logits[order[r]] / o.temperature);
    for (std::size_t r = 0; r < k; ++r) p[order[r]] = std::exp(logits[order[r]] / o.temperature) / z;
    double cum = 0;
    std::size_t n = k;
    for (std::size_t r = 0; r < k; ++r) {
        cum += p[order[r]];
        if (cum >= o.top_p) {
            n = r + 1;
            break;
        }
    }
    double kept = 0;
    for (std::size_t r = 0; r < n; ++r) kept += p[order[r]];
    std::vector<double> q(V, 0.0);
    for (std::size_t r = 0; r < n; ++r) q[order[r]] = p[order[r]] / kept;
    return q;
}

std::vector<double> random_logits(std::size_t V, Rng& rng, double scale = 2.0) {
    std::vector<double> l(V);
    for (auto& x : l) x = rng.normal(0.0, scale);
    return l;
}

// Random weights N(0, std^2) for every matrix (norm weights stay 1, biases 0). At their own
// small initialisation the tiny models mostly repeat one token under greedy decoding, which
// would make "the cache gives the same tokens" a weak check; these weights give varied text.
template <class Model>
void scramble(const Model& model, Rng& rng, double std = 0.3) {
    for (const auto& p : named_parameters<float>(model)) {
        if (p.name.find("norm") != std::string::npos || p.name.find("ln") != std::string::npos ||
            p.name.find("bias") != std::string::npos)
            continue;
        Tensor<float> t = p.variable.value();
        for (index_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<float>(rng.normal(0.0, std));
    }
}

// The reference for generate(): repeated full forward passes (no cache) over the whole
// sequence, the next token from the last row with sample_token and the Rng generate() gives
// sequence `index` (greedy when the temperature is 0), stopping after eos.
template <class Model>
Tokens full_pass(const Model& model, Tokens seq, const GenerateOptions& o, index_t index = 0) {
    auto guard = no_grad();
    Rng rng(detail::sequence_seed(o.seed, index));
    Tokens out;
    for (index_t step = 0; step < o.max_new_tokens; ++step) {
        const index_t T_ = static_cast<index_t>(seq.size());
        TensorI ids = TensorI::empty({1, T_});
        for (index_t t = 0; t < T_; ++t) ids.data()[t] = seq[static_cast<std::size_t>(t)];
        const auto logits = model.forward(ids).value().select(0, 0).select(0, T_ - 1).contiguous();  // (V)
        const std::int32_t token = sample_token(
            std::span<const float>(logits.data(), static_cast<std::size_t>(logits.numel())), o.sampling, rng);
        out.push_back(token);
        seq.push_back(token);
        if (token == o.eos_id) break;
    }
    return out;
}

// T5: the decoder from the start token, full passes over encoder and decoder at each step.
Tokens full_pass_t5(const T5Model<float>& model, const Tokens& encoder_input, const GenerateOptions& o,
                    index_t index = 0) {
    auto guard = no_grad();
    Rng rng(detail::sequence_seed(o.seed, index));
    TensorI enc = TensorI::empty({1, static_cast<index_t>(encoder_input.size())});
    for (std::size_t t = 0; t < encoder_input.size(); ++t) enc.data()[t] = encoder_input[t];
    Tokens dec{static_cast<std::int32_t>(model.config.decoder_start_token_id)}, out;
    for (index_t step = 0; step < o.max_new_tokens; ++step) {
        const index_t Td = static_cast<index_t>(dec.size());
        TensorI ids = TensorI::empty({1, Td});
        for (index_t t = 0; t < Td; ++t) ids.data()[t] = dec[static_cast<std::size_t>(t)];
        const auto logits = model.forward(enc, ids).value().select(0, 0).select(0, Td - 1).contiguous();
        const std::int32_t token = sample_token(
            std::span<const float>(logits.data(), static_cast<std::size_t>(logits.numel())), o.sampling, rng);
        out.push_back(token);
        dec.push_back(token);
        if (token == o.eos_id) break;
    }
    return out;
}

// How many different ids a token list has.
std::size_t distinct(const Tokens& t) { return std::set<std::int32_t>(t.begin(), t.end()).size(); }

GenerateOptions greedy(index_t n) {
    GenerateOptions o;
    o.max_new_tokens = n;
    o.sampling.temperature = 0.0;
    return o;
}

Tokens prompt_of(index_t length, std::int32_t first, std::int32_t vocab) {
    Tokens p;
    for (index_t i = 0; i < length; ++i) p.push_back(static_cast<std::int32_t>((first + 37 * i) % vocab));
    return p;
}

// The error message of f(), or "" if it does not throw.
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Generation with the cache equals full passes, alone, in a batch and with mixed lengths,
// greedy and sampled; eos.
template <class Model>
void check_decoder_only(const Model& model, index_t vocab) {
    const auto V = static_cast<std::int32_t>(vocab);
    const Tokens a = prompt_of(5, 3, V), b = prompt_of(5, 11, V), c = prompt_of(2, 200, V), d = prompt_of(9, 7, V);
    const index_t n = 20;
    const GenerateOptions g = greedy(n);

    const Tokens ref_a = full_pass(model, a, g), ref_b = full_pass(model, b, g);
    const Tokens ref_c = full_pass(model, c, g), ref_d = full_pass(model, d, g);
    REQUIRE(ref_a.size() == static_cast<std::size_t>(n));
    CHECK(distinct(ref_a) >= 5);  // varied text, not one repeated token
    CHECK(distinct(ref_b) >= 5);

    const Generation alone = generate(model, {a}, g);
    CHECK(alone.tokens.at(0) == ref_a);
    CHECK(alone.new_tokens == n);
    CHECK(alone.tokens_per_second() > 0);

    const Generation batch = generate(model, {a, b}, g);
    CHECK(batch.tokens.at(0) == ref_a);
    CHECK(batch.tokens.at(1) == ref_b);
    CHECK(batch.new_tokens == 2 * n);

    const Generation mixed = generate(model, {d, a, c, b}, g);  // lengths 9, 5, 2, 5
    CHECK(mixed.tokens.at(0) == ref_d);
    CHECK(mixed.tokens.at(1) == ref_a);
    CHECK(mixed.tokens.at(2) == ref_c);
    CHECK(mixed.tokens.at(3) == ref_b);

    // sampled (temperature 1; and top-k + top-p) in a mixed batch: each sequence equals full
    // passes drawing from that sequence's Rng
    for (const SamplingOptions s : {SamplingOptions{.temperature = 1.0},
                                    SamplingOptions{.temperature = 0.7, .top_k = 40, .top_p = 0.9}}) {
        GenerateOptions o;
        o.max_new_tokens = n;
        o.sampling = s;
        o.seed = 77;
        const Generation sampled = generate(model, {c, a, b}, o);
        CHECK(sampled.tokens.at(0) == full_pass(model, c, o, 0));
        CHECK(sampled.tokens.at(1) == full_pass(model, a, o, 1));
        CHECK(sampled.tokens.at(2) == full_pass(model, b, o, 2));
        CHECK(distinct(sampled.tokens.at(1)) >= 5);
    }

    // eos: the token greedy produces at step 3 stops the sequence right after its first occurrence.
    GenerateOptions o = g;
    o.eos_id = ref_a.at(2);
    const Generation stopped = generate(model, {a, b}, o);
    const Tokens cut_a = full_pass(model, a, o), cut_b = full_pass(model, b, o);
    CHECK(cut_a.size() <= 3);
    CHECK(cut_a.back() == o.eos_id);
    CHECK(stopped.tokens.at(0) == cut_a);
    CHECK(stopped.tokens.at(1) == cut_b);
    CHECK(stopped.new_tokens == static_cast<index_t>(cut_a.size() + cut_b.size()));
}

}  // namespace

TEST_CASE("sampling: temperature 0, top_k 1 and a tiny top_p are argmax (first max on ties)") {
    const std::vector<float> ties{0.5f, 2.0f, -1.0f, 2.0f, 1.9f};
    CHECK(argmax_of(ties) == 1);
    CHECK(argmax_of({-std::numeric_limits<float>::infinity(), -3.0f}) == 1);
    Rng data(1), rng(2);
    for (int trial = 0; trial < 200; ++trial) {
        std::vector<double> l = random_logits(1 + static_cast<std::size_t>(trial % 70), data);
        if (trial % 3 == 0 && l.size() > 2) l[l.size() - 1] = l[0] = *std::max_element(l.begin(), l.end());  // a tie
        const std::int32_t best = argmax_token(std::span<const double>(l));
        CHECK(best == static_cast<std::int32_t>(std::max_element(l.begin(), l.end()) - l.begin()));
        CHECK(draw(l, {.temperature = 0.0}, rng) == best);
        for (const double t : {0.01, 0.7, 1.0, 5.0, 100.0}) {
            CHECK(draw(l, {.temperature = t, .top_k = 1}, rng) == best);
            CHECK(draw(l, {.temperature = t, .top_p = 1e-9}, rng) == best);
        }
    }
    // temperature 0 consumes no randomness
    Rng before(5), after(5);
    (void)draw({1.0, 2.0}, {.temperature = 0.0}, after);
    CHECK(before.next_u64() == after.next_u64());
}

TEST_CASE("sampling: draw frequencies match the probabilities (chi-square, 20000 draws)") {
    const std::vector<double> logits{1.0, 0.0, -0.5, 2.0};
    struct Case {
        SamplingOptions options;
        std::size_t kept;  // ids with non-zero probability
    };
    // chi-square critical values at p = 0.001 for 1, 2, 3 degrees of freedom
    const double critical[] = {0.0, 10.83, 13.82, 16.27};
    const std::vector<Case> cases{{{.temperature = 1.0}, 4},
                                  {{.temperature = 0.5}, 4},
                                  {{.temperature = 2.0, .top_k = 2}, 2},
                                  {{.temperature = 1.0, .top_k = 3}, 3},
                                  {{.temperature = 1.0, .top_p = 0.8}, 2},   // 0.631 + 0.232 >= 0.8
                                  {{.temperature = 1.0, .top_p = 0.9}, 3},   // + 0.085 = 0.948
                                  {{.temperature = 1.5, .top_k = 3, .top_p = 0.7}, 2}};
    for (std::size_t ci = 0; ci < cases.size(); ++ci) {
        CAPTURE(ci);
        const Case& c = cases[ci];
        const std::vector<double> p = expected_probabilities(logits, c.options);
        std::size_t nonzero = 0;
        for (const double x : p) nonzero += x > 0 ? 1 : 0;
        REQUIRE(nonzero == c.kept);

        const int draws = 20000;
        std::vector<int> counts(logits.size(), 0);
        Rng rng(100 + ci);
        for (int i = 0; i < draws; ++i) ++counts.at(static_cast<std::size_t>(draw(logits, c.options, rng)));
        double chi2 = 0;
        for (std::size_t i = 0; i < logits.size(); ++i) {
            if (p[i] == 0.0) {
                CHECK(counts[i] == 0);  // excluded by top-k / top-p: never drawn
                continue;
            }
            const double e = p[i] * draws;
            chi2 += (counts[i] - e) * (counts[i] - e) / e;
        }
        CHECK_MESSAGE(chi2 < critical[c.kept - 1], "chi-square ", chi2, " with ", c.kept - 1, " degrees of freedom");
    }
}

TEST_CASE("sampling: top-k and top-p never return an excluded id; seeds repeat") {
    Rng data(7);
    for (int trial = 0; trial < 40; ++trial) {
        const std::vector<double> l = random_logits(100, data, 3.0);
        for (const SamplingOptions o : {SamplingOptions{.temperature = 1.3, .top_k = 5},
                                        SamplingOptions{.temperature = 0.8, .top_p = 0.5},
                                        SamplingOptions{.temperature = 2.0, .top_k = 10, .top_p = 0.6}}) {
            const std::vector<double> p = expected_probabilities(l, o);
            Rng rng(static_cast<std::uint64_t>(trial));
            for (int i = 0; i < 200; ++i) {
                const std::int32_t id = draw(l, o, rng);
                REQUIRE(id >= 0);
                REQUIRE(id < 100);
                CHECK(p[static_cast<std::size_t>(id)] > 0);
            }
        }
    }
    // a nucleus of hundreds of ids (top-p sorts in growing blocks: 64, 256, 1024)
    for (int trial = 0; trial < 5; ++trial) {
        const std::vector<double> l = random_logits(1000, data, 0.3);
        const SamplingOptions o{.temperature = 1.0, .top_p = 0.9};
        const std::vector<double> p = expected_probabilities(l, o);
        std::size_t nucleus = 0;
        for (const double x : p) nucleus += x > 0 ? 1 : 0;
        CHECK(nucleus > 256);
        CHECK(nucleus < 1000);
        Rng rng(static_cast<std::uint64_t>(trial));
        for (int i = 0; i < 2000; ++i) CHECK(p[static_cast<std::size_t>(draw(l, o, rng))] > 0);
    }

    // -inf logits are never drawn
    const double ninf = -std::numeric_limits<double>::infinity();
    Rng rng(3);
    for (int i = 0; i < 1000; ++i) CHECK(draw({ninf, 0.0, ninf, 0.1}, {.temperature = 1.0}, rng) % 2 == 1);

    // the same Rng state gives the same tokens; another seed other tokens
    const std::vector<double> flat = random_logits(50, data, 0.5);
    Rng r1(42), r2(42), r3(43);
    std::vector<std::int32_t> s1, s2, s3;
    for (int i = 0; i < 64; ++i) {
        s1.push_back(draw(flat, {}, r1));
        s2.push_back(draw(flat, {}, r2));
        s3.push_back(draw(flat, {}, r3));
    }
    CHECK(s1 == s2);
    CHECK(s1 != s3);
}

TEST_CASE("sampling: bad options and non-finite logits throw") {
    CHECK_THROWS_AS(SamplingOptions{.temperature = -0.1}.validate(), Error);
    CHECK_THROWS_AS(SamplingOptions{.temperature = std::numeric_limits<double>::quiet_NaN()}.validate(), Error);
    CHECK_THROWS_AS(SamplingOptions{.temperature = std::numeric_limits<double>::infinity()}.validate(), Error);
    CHECK_THROWS_AS(SamplingOptions{.top_k = -1}.validate(), Error);
    CHECK_THROWS_AS(SamplingOptions{.top_p = 0.0}.validate(), Error);
    CHECK_THROWS_AS(SamplingOptions{.top_p = 1.5}.validate(), Error);
    CHECK_THROWS_AS(SamplingOptions{.top_p = std::numeric_limits<double>::quiet_NaN()}.validate(), Error);
    CHECK_NOTHROW(SamplingOptions{.temperature = 0.0, .top_k = 0, .top_p = 1.0}.validate());

    Rng rng(0);
    CHECK(contains(error_of([&] { draw({}, {}, rng); }), "empty"));
    CHECK(contains(error_of([&] { draw({0.0, std::numeric_limits<double>::quiet_NaN()}, {}, rng); }), "logit 1"));
    CHECK(contains(error_of([&] { argmax_of({0.0f, std::numeric_limits<float>::infinity()}); }), "logit 1"));
    const double ninf = -std::numeric_limits<double>::infinity();
    CHECK(contains(error_of([&] { draw({ninf, ninf}, {}, rng); }), "-inf"));
    CHECK(contains(error_of([&] { draw({0.0, 1.0}, {.top_p = 2.0}, rng); }), "top_p"));
}

TEST_CASE("generate: the KV cache gives the tokens of full passes for GPT-2, GPT-3 and PaLM") {
    Rng rng(11);
    SUBCASE("gpt2") {
        const GPT2Model<float> model(GPT2Config::gpt2_preset("tiny"), rng);
        scramble(model, rng);
        check_decoder_only(model, model.config.vocab_size);
    }
    SUBCASE("gpt3 (banded layers, window 16 < 29 positions)") {
        const GPT2Model<float> model(GPT2Config::gpt3_preset("tiny"), rng);
        REQUIRE(model.config.window_size < 29);
        scramble(model, rng);
        check_decoder_only(model, model.config.vocab_size);
    }
    SUBCASE("palm") {
        const PaLMModel<float> model(PaLMConfig::preset("tiny"), rng);
        scramble(model, rng);
        check_decoder_only(model, model.config.vocab_size);
    }
}

TEST_CASE("generate: T5 decodes from the start token like full passes; padded batches equal each input alone") {
    Rng rng(12);
    // T5 v1.1 style (gated GELU, untied head): with ReLU and the tied head the random tiny model
    // repeats one token whatever the input (the ReLU outputs share a direction), a weak check.
    T5Config config = T5Config::preset("tiny");
    config.feed_forward_proj = T5FeedForward::GatedGELU;
    config.tie_word_embeddings = false;
    const T5Model<float> model(config, rng);
    scramble(model, rng);
    const auto V = static_cast<std::int32_t>(model.config.vocab_size);
    const Tokens a = prompt_of(6, 5, V), b = prompt_of(3, 90, V), c = prompt_of(6, 17, V);
    const index_t n = 12;
    const GenerateOptions g = greedy(n);
    const Tokens ref_a = full_pass_t5(model, a, g), ref_b = full_pass_t5(model, b, g), ref_c = full_pass_t5(model, c, g);
    CHECK(distinct(ref_a) >= 4);
    CHECK(distinct(ref_b) >= 4);

    CHECK(generate(model, {a}, g).tokens.at(0) == ref_a);
    const Generation batch = generate(model, {a, b, c}, g);  // b is padded to 6 and masked
    CHECK(batch.tokens.at(0) == ref_a);
    CHECK(batch.tokens.at(1) == ref_b);
    CHECK(batch.tokens.at(2) == ref_c);
    CHECK(batch.new_tokens == 3 * n);

    GenerateOptions o = g;
    o.eos_id = ref_b.at(2);
    const Tokens cut_b = full_pass_t5(model, b, o);
    CHECK(cut_b.size() <= 3);
    CHECK(cut_b.back() == o.eos_id);
    CHECK(generate(model, {a, b}, o).tokens.at(1) == cut_b);

    // sampling: each input draws from its own stream, as full passes with that stream do
    GenerateOptions s;
    s.max_new_tokens = n;
    s.seed = 9;
    const Generation s1 = generate(model, {a, b}, s), s2 = generate(model, {a, b}, s);
    CHECK(s1.tokens == s2.tokens);
    CHECK(s1.tokens.at(0) == full_pass_t5(model, a, s, 0));
    CHECK(s1.tokens.at(1) == full_pass_t5(model, b, s, 1));
    CHECK(generate(model, {a}, s).tokens.at(0) == s1.tokens.at(0));

    // the released layout (ReLU, tied head) runs through the same path
    Rng rng_relu(15);
    const T5Model<float> relu(T5Config::preset("tiny"), rng_relu);
    CHECK(generate(relu, {a, b}, g).tokens.at(1) == full_pass_t5(relu, b, g));

    CHECK(contains(error_of([&] { generate(model, {a, {}}, g); }), "encoder input 1 is empty"));
    CHECK(contains(error_of([&] { generate(model, {{1, V}}, g); }), "position 1: token id 256"));
    CHECK(generate(model, {a}, greedy(0)).tokens.at(0).empty());
}

TEST_CASE("generate: seeds, streams, callback and double precision") {
    Rng rng(13);
    const GPT2Model<float> model(GPT2Config::gpt2_preset("tiny"), rng);
    const Tokens a = prompt_of(4, 1, 256), b = prompt_of(4, 2, 256), c = prompt_of(7, 3, 256);
    GenerateOptions o;
    o.max_new_tokens = 24;
    o.sampling = {.temperature = 1.0};
    o.seed = 5;

    const Generation g1 = generate(model, {a, b}, o), g2 = generate(model, {a, b}, o);
    CHECK(g1.tokens == g2.tokens);
    GenerateOptions other = o;
    other.seed = 6;
    const Generation g3 = generate(model, {a, b}, other);
    CHECK(g1.tokens.at(0) != g3.tokens.at(0));  // 24 draws from a nearly flat 256-way distribution
    CHECK(g1.tokens.at(1) != g3.tokens.at(1));
    CHECK(g1.tokens.at(0) != g1.tokens.at(1));  // the two sequences have their own streams

    // sequence i's stream depends on i only: batch mates and grouping do not change it
    CHECK(generate(model, {a}, o).tokens.at(0) == g1.tokens.at(0));
    CHECK(generate(model, {c, b}, o).tokens.at(1) == g1.tokens.at(1));

    // the callback sees every token once, in order per sequence
    std::map<index_t, Tokens> seen;
    index_t calls = 0;
    const Generation g4 = generate(model, {a, c}, o, [&](index_t s, std::int32_t t) {
        seen[s].push_back(t);
        ++calls;
    });
    CHECK(calls == g4.new_tokens);
    CHECK(seen[0] == g4.tokens.at(0));
    CHECK(seen[1] == g4.tokens.at(1));
    CHECK(g4.prefill_seconds > 0);
    CHECK(g4.decode_seconds > 0);

    // double precision runs the same code
    Rng rng_d(13);
    const GPT2Model<double> model_d(GPT2Config::gpt2_preset("tiny"), rng_d);
    CHECK(generate(model_d, {a}, greedy(8)).tokens.at(0).size() == 8);
}

TEST_CASE("generate: errors name the prompt and the lengths") {
    Rng rng(14);
    const GPT2Model<float> gpt2(GPT2Config::gpt2_preset("tiny"), rng);  // n_positions 128, vocab 256
    const PaLMModel<float> palm(PaLMConfig::preset("tiny"), rng);        // max_position_embeddings 128
    const Tokens ok = prompt_of(3, 1, 256);

    CHECK(contains(error_of([&] { generate(gpt2, {}, greedy(4)); }), "no prompts"));
    CHECK(contains(error_of([&] { generate(gpt2, {ok, {}}, greedy(4)); }), "prompt 1 is empty"));
    const std::string too_long = error_of([&] { generate(gpt2, {ok, prompt_of(100, 1, 256)}, greedy(29)); });
    CHECK(contains(too_long, "prompt 1 has 100 tokens"));
    CHECK(contains(too_long, "129 positions"));
    CHECK(contains(too_long, "128 (n_positions)"));
    CHECK(error_of([&] { generate(gpt2, {prompt_of(100, 1, 256)}, greedy(28)); }).empty());  // exactly the context
    CHECK(contains(error_of([&] { generate(palm, {prompt_of(120, 1, 256)}, greedy(9)); }),
                   "128 (max_position_embeddings)"));
    CHECK(contains(error_of([&] { generate(gpt2, {ok, {1, 2, 256}}, greedy(4)); }),
                   "prompt 1, position 2: token id 256 is outside the vocabulary [0, 256)"));
    CHECK(contains(error_of([&] { generate(palm, {{-1}}, greedy(4)); }), "token id -1"));
    GenerateOptions bad = greedy(4);
    bad.eos_id = 256;
    CHECK(contains(error_of([&] { generate(gpt2, {ok}, bad); }), "eos_id 256"));
    CHECK(contains(error_of([&] { generate(gpt2, {ok}, greedy(-1)); }), "max_new_tokens"));
    bad = greedy(4);
    bad.sampling.top_p = 0;
    CHECK(contains(error_of([&] { generate(gpt2, {ok}, bad); }), "top_p"));
    const Generation none = generate(gpt2, {ok}, greedy(0));
    CHECK(none.tokens.size() == 1);
    CHECK(none.tokens[0].empty());
    CHECK(none.tokens_per_second() == 0);
}

}  // namespace test_generate
