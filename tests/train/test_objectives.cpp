// Tests of include/llmblocks/train/objectives.hpp: causal LM, prefix LM and
// T5 span corruption (a hand-worked example, T5's counts, determinism).
#include <doctest/doctest.h>

#include <cstdint>
#include <algorithm>
#include <map>
#include <numeric>
#include <vector>

#include "llmblocks/train/objectives.hpp"

using namespace llmblocks;

namespace {
std::vector<std::int32_t> iota_tokens(index_t n, std::int32_t first) {
    std::vector<std::int32_t> v(static_cast<std::size_t>(n));
    std::iota(v.begin(), v.end(), first);
    return v;
}
}  // namespace

TEST_CASE("causal_lm: inputs x[0..T-1], targets x[1..T]") {
    const std::vector<std::int32_t> x{5, 6, 7, 8};
    const LmExample ex = causal_lm(x);
    CHECK(ex.inputs == std::vector<std::int32_t>{5, 6, 7});
    CHECK(ex.targets == std::vector<std::int32_t>{6, 7, 8});
    CHECK(ex.prefix_length == 0);
    CHECK_THROWS_AS(causal_lm(std::vector<std::int32_t>{1}), Error);

    const auto windows = TensorI::from_vector({2, 4}, {1, 2, 3, 4, 10, 20, 30, 40});  // (B, T + 1)
    const auto [inputs, targets] = causal_lm(windows);
    CHECK(inputs.shape() == Shape{2, 3});
    CHECK(inputs.to_vector() == std::vector<std::int32_t>{1, 2, 3, 10, 20, 30});
    CHECK(targets.to_vector() == std::vector<std::int32_t>{2, 3, 4, 20, 30, 40});
    CHECK_THROWS_AS(causal_lm(TensorI::zeros({2, 1})), Error);
}

TEST_CASE("prefix_lm: no loss while the target is still in the prefix; the prefix length is returned") {
    // tokens 10..15 (T = 5), prefix = the first 3 tokens {10, 11, 12}.
    // position t:   0    1    2    3    4
    // input:        10   11   12   13   14
    // predicts:     11   12   13   14   15
    // in prefix?    yes  yes  no   no   no     -> targets -100 -100 13 14 15
    const auto x = iota_tokens(6, 10);
    const LmExample ex = prefix_lm(x, 3);
    CHECK(ex.inputs == std::vector<std::int32_t>{10, 11, 12, 13, 14});
    CHECK(ex.targets == std::vector<std::int32_t>{-100, -100, 13, 14, 15});
    CHECK(ex.prefix_length == 3);
    CHECK(prefix_lm(x, 1).targets == causal_lm(x).targets);  // a one-token prefix is the causal LM
    CHECK_THROWS_AS(prefix_lm(x, 0), Error);
    CHECK_THROWS_AS(prefix_lm(x, 6), Error);

    Rng rng(3), same(3);
    for (int i = 0; i < 50; ++i) {
        const LmExample r = prefix_lm(x, rng);
        CHECK(r.prefix_length >= 1);
        CHECK(r.prefix_length <= 5);
        CHECK(r.targets == prefix_lm(x, r.prefix_length).targets);
        CHECK(prefix_lm(x, same).prefix_length == r.prefix_length);
    }
}

TEST_CASE("span corruption, hand-worked: 20 tokens, spans fixed") {
    // Tokens 100..119. Layout (kept, dropped, kept, dropped, kept, dropped):
    //   kept    100 101 102 103 104      (5)
    //   dropped 105 106                  (2)  -> sentinel 32099 (<extra_id_0>)
    //   kept    107 108 109 110 111 112  (6)
    //   dropped 113                      (1)  -> sentinel 32098 (<extra_id_1>)
    //   kept    114 115 116 117          (4)
    //   dropped 118 119                  (2)  -> sentinel 32097 (<extra_id_2>)
    // inputs  = 100..104 32099 107..112 32098 114..117 32097       (15 kept + 3 sentinels = 18)
    // targets = 32099 105 106 32098 113 32097 118 119              (5 dropped + 3 sentinels = 8)
    const auto x = iota_tokens(20, 100);
    const SpanLayout layout{{5, 6, 4}, {2, 1, 2}};
    const auto ex = span_corruption(x, layout, 32099);
    CHECK(ex.inputs == std::vector<std::int32_t>{100, 101, 102, 103, 104, 32099, 107, 108, 109, 110, 111, 112, 32098,
                                                 114, 115, 116, 117, 32097});
    CHECK(ex.targets == std::vector<std::int32_t>{32099, 105, 106, 32098, 113, 32097, 118, 119});
    // With T5's EOS (id 1) appended to both.
    const auto with_eos = span_corruption(x, layout, 32099, 1);
    CHECK(with_eos.inputs.size() == 19);
    CHECK(with_eos.inputs.back() == 1);
    CHECK(with_eos.targets == std::vector<std::int32_t>{32099, 105, 106, 32098, 113, 32097, 118, 119, 1});

    CHECK_THROWS_WITH_AS(span_corruption(x, SpanLayout{{5, 6, 4}, {2, 1, 3}}, 32099),
                         doctest::Contains("covers 21 tokens but the sequence has 20"), Error);
    CHECK_THROWS_AS(span_corruption(x, SpanLayout{{5, 6}, {2, 1, 6}}, 32099), Error);
    CHECK_THROWS_AS(span_corruption(x, SpanLayout{{5, 0, 10}, {2, 1, 2}}, 32099), Error);
    CHECK_THROWS_AS(span_corruption(x, layout, 1), Error);  // sentinels 1, 0, -1
}

TEST_CASE("span corruption counts follow T5 (round half to even)") {
    const SpanCorruptionOptions o;
    CHECK(span_corruption_counts(20, o) == std::pair<index_t, index_t>{3, 1});
    CHECK(span_corruption_counts(10, o) == std::pair<index_t, index_t>{2, 1});     // 1.5 -> 2
    CHECK(span_corruption_counts(30, o) == std::pair<index_t, index_t>{4, 1});     // 4.5 -> 4
    CHECK(span_corruption_counts(50, o) == std::pair<index_t, index_t>{8, 3});     // 7.5 -> 8; 8/3 -> 3
    CHECK(span_corruption_counts(512, o) == std::pair<index_t, index_t>{77, 26});  // 76.8 -> 77; 25.67 -> 26
    CHECK(span_corruption_counts(2, o) == std::pair<index_t, index_t>{1, 1});      // at least one noise token
    CHECK(round_half_even(2.5) == 2);
    CHECK(round_half_even(3.5) == 4);
    CHECK(round_half_even(0.4) == 0);
    CHECK_THROWS_AS(span_corruption_counts(1, o), Error);
}

TEST_CASE("random_segmentation: positive parts summing to n, all compositions equally likely") {
    Rng rng(9);
    std::map<std::vector<index_t>, int> seen;
    for (int i = 0; i < 3000; ++i) {
        const auto parts = random_segmentation(4, 2, rng);
        REQUIRE(parts.size() == 2);
        CHECK(parts[0] + parts[1] == 4);
        ++seen[parts];
    }
    REQUIRE(seen.size() == 3);  // (1, 3), (2, 2), (3, 1)
    for (const auto& [parts, count] : seen) CHECK(std::abs(count - 1000) < 120);
    CHECK(random_segmentation(5, 5, rng) == std::vector<index_t>{1, 1, 1, 1, 1});
    CHECK(random_segmentation(5, 1, rng) == std::vector<index_t>{5});
    CHECK_THROWS_AS(random_segmentation(2, 3, rng), Error);
}

TEST_CASE("span corruption, seeded: counts, mean span length ~3, reconstruction, determinism") {
    const SpanCorruptionOptions o;  // 0.15, 3.0, sentinels from 32099
    Rng rng(2024);
    double noise_total = 0.0, spans_total = 0.0;
    for (int draw = 0; draw < 200; ++draw) {
        const index_t L = 64 + draw * 5;
        const auto x = iota_tokens(L, 0);
        const auto [noise, spans] = span_corruption_counts(L, o);
        const auto ex = span_corruption(x, o, rng);
        CHECK(noise == round_half_even(0.15 * static_cast<double>(L)));
        CHECK(static_cast<index_t>(ex.inputs.size()) == L - noise + spans);
        CHECK(static_cast<index_t>(ex.targets.size()) == noise + spans);
        noise_total += static_cast<double>(noise);
        spans_total += static_cast<double>(spans);
        // Put the dropped spans back where their sentinels are: the original sequence.
        std::map<std::int32_t, std::vector<std::int32_t>> dropped;
        std::int32_t current = -1;
        for (auto t : ex.targets) {
            if (t >= 32099 - spans + 1) current = t;
            else dropped[current].push_back(t);
        }
        std::vector<std::int32_t> rebuilt;
        for (auto t : ex.inputs) {
            if (t >= 32099 - spans + 1) {
                REQUIRE(dropped.count(t));
                CHECK(!dropped[t].empty());
                rebuilt.insert(rebuilt.end(), dropped[t].begin(), dropped[t].end());
            } else {
                rebuilt.push_back(t);
            }
        }
        CHECK(rebuilt == x);
        CHECK(ex.targets.front() == 32099);              // the layout starts with a kept span ...
        CHECK(ex.inputs.front() != 32099);
        CHECK(ex.inputs.back() == 32099 - spans + 1);    // ... and ends with a dropped one
    }
    CHECK(noise_total / spans_total == doctest::Approx(3.0).epsilon(0.03));

    const auto x = iota_tokens(512, 0);
    Rng a(77), b(77), c(78);
    const auto ea = span_corruption(x, o, a), eb = span_corruption(x, o, b), ec = span_corruption(x, o, c);
    CHECK(ea.inputs == eb.inputs);
    CHECK(ea.targets == eb.targets);
    CHECK(ea.inputs != ec.inputs);
}

TEST_CASE("span_corruption_batch stacks one example per row and shifts the targets behind the start token") {
    Rng data_rng(5);
    const TensorI windows = TensorI::rand({3, 64}, data_rng, 0, 200);
    const SpanCorruptionOptions o{.first_sentinel = 255, .eos_id = 201};
    Rng rng(9), replay(9);
    const Seq2SeqBatch batch = span_corruption_batch(windows, o, /*start_id=*/0, rng);
    // 64 tokens: round(9.6) = 10 dropped in round(10 / 3) = 3 spans; plus the eos on each side.
    REQUIRE(batch.encoder_ids.shape() == Shape{3, 64 - 10 + 3 + 1});
    REQUIRE(batch.targets.shape() == Shape{3, 10 + 3 + 1});
    REQUIRE(batch.decoder_ids.shape() == batch.targets.shape());
    for (index_t b = 0; b < 3; ++b) {
        const std::vector<std::int32_t> row(windows.data() + b * 64, windows.data() + (b + 1) * 64);
        const SpanCorruptionExample ex = span_corruption(row, o, replay);  // the same draws, row by row
        CHECK(std::equal(ex.inputs.begin(), ex.inputs.end(), batch.encoder_ids.data() + b * 58));
        CHECK(std::equal(ex.targets.begin(), ex.targets.end(), batch.targets.data() + b * 14));
        CHECK(batch.decoder_ids.data()[b * 14] == 0);
        CHECK(std::equal(ex.targets.begin(), ex.targets.end() - 1, batch.decoder_ids.data() + b * 14 + 1));
    }
    CHECK_THROWS_WITH_AS(span_corruption_batch(TensorI::zeros({3}), o, 0, rng),
                         doctest::Contains("span_corruption_batch: windows must be (B, L)"), Error);
}
