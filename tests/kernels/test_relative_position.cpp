// tests/kernels/test_relative_position.cpp — tests of include/llmblocks/kernels/relative_position.hpp:
// the T5 bucket function against tables computed by hand from Hugging Face's formula and against
// PyTorch (tests/reference/make_position_fixtures.py), the bucket table helper, the bias
// forward/backward kernels against their references, by finite differences in double and
// against PyTorch's embedding gradient, and argument errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmblocks/core/random.hpp"
#include "llmblocks/core/tensor.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/relative_position.hpp"
#include "support/compare.hpp"

#ifndef LLMBLOCKS_TEST_DATA_DIR
#define LLMBLOCKS_TEST_DATA_DIR "tests/reference"
#endif

using namespace llmblocks;
using kernels::T5BucketConfig;
using kernels::t5_relative_position_bucket;

namespace {

// (relative_position = key_pos - query_pos, expected bucket)
using BucketTable = std::vector<std::pair<index_t, index_t>>;

void check_table(const BucketTable& table, bool bidirectional, index_t num_buckets, index_t max_distance) {
    for (const auto& entry : table) {
        const index_t rel = entry.first;
        CAPTURE(rel);
        CHECK(t5_relative_position_bucket(rel, bidirectional, num_buckets, max_distance) == entry.second);
    }
}

// The fixtures: manifest.json and raw little-endian float32 files written by
// tests/reference/make_position_fixtures.py.
struct Fixtures {
    nlohmann::json manifest;
    std::string dir;

    Fixtures() : dir(std::string(LLMBLOCKS_TEST_DATA_DIR) + "/positions/") {
        std::ifstream f(dir + "manifest.json");
        REQUIRE_MESSAGE(f.good(), "missing fixture ", dir, "manifest.json");
        manifest = nlohmann::json::parse(f);
    }

    // Array `key` of a case, as float32 values in C order.
    std::vector<float> array(const nlohmann::json& c, const std::string& key) const {
        const auto& a = c.at("arrays").at(key);
        index_t n = 1;
        for (const auto& s : a.at("shape")) n *= s.get<index_t>();
        std::ifstream f(dir + c.at("file").get<std::string>(), std::ios::binary);
        REQUIRE(f.good());
        f.seekg(a.at("offset").get<std::int64_t>() * 4);
        std::vector<unsigned char> bytes(static_cast<std::size_t>(n) * 4);
        f.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        REQUIRE(f.good());
        std::vector<float> out(static_cast<std::size_t>(n));
        for (index_t i = 0; i < n; ++i) {  // little-endian on every host
            const std::uint32_t u = std::uint32_t(bytes[4 * i]) | std::uint32_t(bytes[4 * i + 1]) << 8 |
                                    std::uint32_t(bytes[4 * i + 2]) << 16 | std::uint32_t(bytes[4 * i + 3]) << 24;
            std::memcpy(&out[static_cast<std::size_t>(i)], &u, 4);
        }
        return out;
    }
};

template <class T>
Tensor<T> random_tensor(Shape shape, Rng& rng) {
    return Tensor<T>::randn(std::move(shape), rng);
}

template <class T>
constexpr double sum_rtol = sizeof(T) == 4 ? 1e-5 : 1e-12;

// The fast kernels against the references at one geometry (forward exact: it only copies).
template <class T>
void check_bias_against_reference(const T5BucketConfig& config, index_t H, index_t Tq, index_t Tk, index_t q0,
                                  Rng& rng) {
    CAPTURE(config.bidirectional);
    CAPTURE(config.num_buckets);
    CAPTURE(config.max_distance);
    CAPTURE(H);
    CAPTURE(Tq);
    CAPTURE(Tk);
    CAPTURE(q0);
    const Tensor<T> weight = random_tensor<T>({config.num_buckets, H}, rng);
    // One spare element in front: pointer + 1 for unaligned data.
    Tensor<T> bias = Tensor<T>::zeros({H * Tq * Tk + 1}), bias_ref = Tensor<T>::zeros({H * Tq * Tk + 1});
    kernels::relative_position_bias_forward(bias.data() + 1, weight.data(), config, H, Tq, Tk, q0);
    kernels::relative_position_bias_forward_reference(bias_ref.data() + 1, weight.data(), config, H, Tq, Tk, q0);
    CHECK_TENSOR_CLOSE(bias, bias_ref, 0.0, 0.0);

    const Tensor<T> dbias = random_tensor<T>({H * Tq * Tk + 1}, rng);
    const Tensor<T> dweight0 = random_tensor<T>({config.num_buckets, H}, rng);  // backward accumulates
    Tensor<T> dweight = dweight0.clone(), dweight_ref = dweight0.clone();
    kernels::relative_position_bias_backward(dweight.data(), dbias.data() + 1, config, H, Tq, Tk, q0);
    kernels::relative_position_bias_backward_reference(dweight_ref.data(), dbias.data() + 1, config, H, Tq, Tk, q0);
    // Different summation orders: relative to the size of the sums.
    CHECK_TENSOR_CLOSE(dweight, dweight_ref, sum_rtol<T>, sum_rtol<T> * std::sqrt(double(Tq * Tk) + 1.0));
}

}  // namespace

// Hand-computed tables. Hugging Face's formula, for n = the distance that has its own buckets:
//   n < max_exact:  bucket = n
//   n >= max_exact: bucket = min(max_exact + floor(log(n / max_exact) / log(max_distance / max_exact)
//                                                  * (num_buckets - max_exact)), num_buckets - 1)
// plus, when bidirectional, num_buckets/2 for keys after the query (rel > 0).
TEST_CASE("t5 buckets: bidirectional, num_buckets 32, max_distance 128 (T5 encoder), by hand") {
    // Bidirectional halves the buckets: 16 per direction, max_exact = 8, and for n >= 8
    //   bucket = 8 + floor(log(n/8) / log(16) * 8) = 8 + floor(2 log2(n/8)), at most 15.
    // 2 log2(n/8): n=11: 0.92 -> 8; n=12: 1.17 -> 9; n=16: 2 -> 10; n=22: 2.92 -> 10; n=23: 3.05 -> 11;
    // n=32: 4 -> 12; n=45: 4.98 -> 12; n=46: 5.05 -> 13; n=64: 6 -> 14; n=90: 6.98 -> 14;
    // n=91: 7.01 -> 15; n=127: 7.98 -> 15; n >= 128: 8 or more -> clamped to 15.
    // Keys after the query (rel > 0) add 16.
    check_table({{0, 0},      {1, 17},    {-1, 1},    {7, 23},    {-7, 7},     {8, 24},    {-8, 8},
                 {11, 24},    {-11, 8},   {12, 25},   {-12, 9},   {16, 26},    {-16, 10},  {22, 26},
                 {23, 27},    {-23, 11},  {32, 28},   {-32, 12},  {45, 28},    {46, 29},   {-46, 13},
                 {64, 30},    {-64, 14},  {90, 30},   {91, 31},   {-91, 15},   {127, 31},  {128, 31},
                 {-128, 15},  {200, 31},  {-200, 15}, {1000, 31}, {-1000, 15}, {1 << 30, 31}},
                true, 32, 128);
}

TEST_CASE("t5 buckets: causal, num_buckets 32, max_distance 128 (T5 decoder), by hand") {
    // Causal: n = max(-rel, 0), so keys at or after the query are bucket 0. max_exact = 16, and
    // for n >= 16: bucket = 16 + floor(log(n/16) / log(8) * 16) = 16 + floor(16/3 log2(n/16)), <= 31.
    // 16/3 log2(n/16): n=17: 0.47 -> 16; n=18: 0.91 -> 16; n=19: 1.32 -> 17; n=20: 1.72 -> 17;
    // n=21: 2.09 -> 18; n=32: 5.33 -> 21; n=64: 10.67 -> 26; n=90: 13.29 -> 29; n=98: 13.95 -> 29;
    // n=99: 14.02 -> 30; n=100: 14.10 -> 30; n=127: 15.94 -> 31; n >= 128: clamped to 31.
    check_table({{0, 0},     {1, 0},     {200, 0},   {1000, 0},  {-1, 1},     {-15, 15},  {-16, 16},
                 {-17, 16},  {-18, 16},  {-19, 17},  {-20, 17},  {-21, 18},   {-32, 21},  {-64, 26},
                 {-90, 29},  {-98, 29},  {-99, 30},  {-100, 30}, {-127, 31},  {-128, 31}, {-200, 31},
                 {-1000, 31}},
                false, 32, 128);
}

TEST_CASE("t5 buckets: num_buckets 8, max_distance 20, by hand") {
    // Bidirectional: 4 per direction, max_exact = 2; n >= 2: 2 + floor(log(n/2) / log(10) * 2)
    // = 2 + floor(2 log10(n/2)), at most 3. 2 log10(n/2): n=6: 0.95 -> 2; n=7: 1.09 -> 3;
    // n=19: 1.96 -> 3; n=20: 2 -> clamped to 3. Keys after the query add 4.
    check_table({{0, 0},   {1, 5},   {2, 6},   {6, 6},    {7, 7},     {19, 7},   {20, 7},  {200, 7}, {1000, 7},
                 {-1, 1},  {-2, 2},  {-6, 2},  {-7, 3},   {-19, 3},   {-20, 3},  {-200, 3}, {-1000, 3}},
                true, 8, 20);
    // Causal: max_exact = 4; n >= 4: 4 + floor(log(n/4) / log(5) * 4), at most 7.
    // 4 log(n/4)/log(5): n=5: 0.55 -> 4; n=6: 1.008 -> 5; n=8: 1.72 -> 5; n=9: 2.02 -> 6;
    // n=13: 2.93 -> 6; n=14: 3.11 -> 7; n=19: 3.87 -> 7; n=20: 4 -> clamped to 7.
    check_table({{0, 0},   {1, 0},   {200, 0},  {-1, 1},   {-3, 3},    {-4, 4},   {-5, 4},  {-6, 5},
                 {-8, 5},  {-9, 6},  {-13, 6},  {-14, 7},  {-19, 7},   {-20, 7},  {-200, 7}, {-1000, 7}},
                false, 8, 20);
}

TEST_CASE("t5 buckets: extreme relative positions saturate") {
    const index_t lo = std::numeric_limits<index_t>::min(), hi = std::numeric_limits<index_t>::max();
    CHECK(t5_relative_position_bucket(lo, true, 32, 128) == 15);
    CHECK(t5_relative_position_bucket(hi, true, 32, 128) == 31);
    CHECK(t5_relative_position_bucket(lo, false, 32, 128) == 31);
    CHECK(t5_relative_position_bucket(hi, false, 32, 128) == 0);
}

TEST_CASE("t5 buckets: match Hugging Face's formula evaluated in PyTorch") {
    const Fixtures fx;
    const auto& configs = fx.manifest.at("t5_buckets");
    REQUIRE(configs.size() >= 4);
    for (const auto& c : configs) {
        const bool bidirectional = c.at("bidirectional").get<bool>();
        const index_t num_buckets = c.at("num_buckets").get<index_t>();
        const index_t max_distance = c.at("max_distance").get<index_t>();
        CAPTURE(bidirectional);
        CAPTURE(num_buckets);
        CAPTURE(max_distance);
        const auto rel = c.at("relative_positions").get<std::vector<index_t>>();
        const auto expected = c.at("buckets").get<std::vector<index_t>>();
        REQUIRE(rel.size() == expected.size());
        index_t mismatches = 0;
        for (std::size_t i = 0; i < rel.size(); ++i) {
            const index_t got = t5_relative_position_bucket(rel[i], bidirectional, num_buckets, max_distance);
            if (got != expected[i]) {
                ++mismatches;
                INFO("relative position ", rel[i], ": got ", got, ", PyTorch ", expected[i]);
                CHECK(got == expected[i]);
            }
        }
        CHECK(mismatches == 0);
    }
}

TEST_CASE("t5 buckets: the (Tq, Tk) table helper") {
    // Decoder extending a cache: query positions 5, 6 against keys 0..7.
    const T5BucketConfig causal{false, 32, 128};
    std::vector<index_t> table(2 * 8, -1);
    kernels::t5_relative_position_buckets(table.data(), causal, 2, 8, 5);
    // rel = k - q: row q=5: -5 .. 2; row q=6: -6 .. 1. Causal: n = -rel below 16 is its own bucket.
    CHECK(table == std::vector<index_t>{5, 4, 3, 2, 1, 0, 0, 0, 6, 5, 4, 3, 2, 1, 0, 0});

    // Encoder: every entry is the pure function of k - i.
    const T5BucketConfig enc{};  // HF defaults: bidirectional, 32, 128
    const index_t Tq = 9, Tk = 300;
    std::vector<index_t> big(Tq * Tk);
    kernels::t5_relative_position_buckets(big.data(), enc, Tq, Tk, 0);
    for (index_t i = 0; i < Tq; ++i)
        for (index_t k = 0; k < Tk; ++k)
            CHECK(big[i * Tk + k] == t5_relative_position_bucket(k - i, true, 32, 128));
    kernels::t5_relative_position_buckets(nullptr, enc, 0, 5, 0);  // empty: no output needed
}

TEST_CASE("relative position bias: kernels match the references at awkward sizes") {
    Rng rng(11);
    const T5BucketConfig configs[] = {{true, 32, 128}, {false, 32, 128}, {true, 8, 20}, {false, 7, 30}};
    for (const auto& config : configs) {
        for (const index_t Tk : {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 127, 257, 1000}) {
            check_bias_against_reference<float>(config, 3, 5, Tk, 0, rng);
            check_bias_against_reference<double>(config, 2, 3, Tk, 4, rng);
        }
        for (const index_t Tq : {1, 2, 7, 17, 65}) {
            check_bias_against_reference<float>(config, 2, Tq, Tq, 0, rng);       // self-attention
            check_bias_against_reference<float>(config, 1, Tq, Tq + 40, 40, rng);  // extending a KV cache
        }
        check_bias_against_reference<float>(config, 0, 4, 4, 0, rng);
    }
    // Large enough to split over threads: one thread and all threads agree.
    const T5BucketConfig config{};
    const index_t H = 8, Tq = 256, Tk = 256;
    const Tensor<float> weight = random_tensor<float>({32, H}, rng);
    const Tensor<float> dbias = random_tensor<float>({H, Tq, Tk}, rng);
    Tensor<float> b1 = Tensor<float>::zeros({H, Tq, Tk}), b2 = Tensor<float>::zeros({H, Tq, Tk});
    Tensor<float> g1 = Tensor<float>::zeros({32, H}), g2 = Tensor<float>::zeros({32, H});
    set_num_threads(1);
    kernels::relative_position_bias_forward(b1.data(), weight.data(), config, H, Tq, Tk, 0);
    kernels::relative_position_bias_backward(g1.data(), dbias.data(), config, H, Tq, Tk, 0);
    set_num_threads(0);
    kernels::relative_position_bias_forward(b2.data(), weight.data(), config, H, Tq, Tk, 0);
    kernels::relative_position_bias_backward(g2.data(), dbias.data(), config, H, Tq, Tk, 0);
    CHECK_TENSOR_CLOSE(b2, b1, 0.0, 0.0);
    CHECK_TENSOR_CLOSE(g2, g1, 0.0, 0.0);
}

TEST_CASE("relative position bias: backward by finite differences in double; null dweight") {
    Rng rng(12);
    const T5BucketConfig config{true, 8, 20};
    const index_t H = 2, Tq = 6, Tk = 30, q0 = 1, NB = config.num_buckets;
    const Tensor<double> weight = random_tensor<double>({NB, H}, rng);
    const Tensor<double> w = random_tensor<double>({H, Tq, Tk}, rng);  // L = <bias, w>
    Tensor<double> grad = Tensor<double>::zeros({NB, H});
    kernels::relative_position_bias_backward(grad.data(), w.data(), config, H, Tq, Tk, q0);

    Tensor<double> fd = Tensor<double>::zeros({NB, H});
    Tensor<double> wp = weight.clone(), bias = Tensor<double>::zeros({H, Tq, Tk});
    const double eps = 1e-6;
    for (index_t j = 0; j < NB * H; ++j) {
        auto loss = [&](double delta) {
            wp.data()[j] = weight.data()[j] + delta;
            kernels::relative_position_bias_forward(bias.data(), wp.data(), config, H, Tq, Tk, q0);
            double l = 0.0;
            for (index_t i = 0; i < H * Tq * Tk; ++i) l += bias.data()[i] * w.data()[i];
            return l;
        };
        fd.data()[j] = (loss(eps) - loss(-eps)) / (2.0 * eps);
        wp.data()[j] = weight.data()[j];
    }
    CHECK_TENSOR_CLOSE(grad, fd, 1e-7, 1e-8);

    kernels::relative_position_bias_backward<double>(nullptr, w.data(), config, H, Tq, Tk, q0);
    kernels::relative_position_bias_backward_reference<double>(nullptr, w.data(), config, H, Tq, Tk, q0);
}

TEST_CASE("relative position bias: forward and backward match PyTorch (HF compute_bias, embedding grad)") {
    const Fixtures fx;
    const auto& cases = fx.manifest.at("t5_bias");
    REQUIRE(cases.size() == 3);
    for (const auto& c : cases) {
        const std::string name = c.at("name").get<std::string>();
        CAPTURE(name);
        const T5BucketConfig config{c.at("bidirectional").get<bool>(), c.at("num_buckets").get<index_t>(),
                                    c.at("max_distance").get<index_t>()};
        const index_t H = c.at("H").get<index_t>(), Tq = c.at("Tq").get<index_t>(), Tk = c.at("Tk").get<index_t>();
        const index_t q0 = c.at("q0").get<index_t>();
        const std::vector<float> weight = fx.array(c, "weight"), dbias = fx.array(c, "dbias");
        const Tensor<float> bias_torch = Tensor<float>::from_vector({H, Tq, Tk}, fx.array(c, "bias"));
        const Tensor<float> dweight_torch =
            Tensor<float>::from_vector({config.num_buckets, H}, fx.array(c, "dweight"));

        Tensor<float> bias = Tensor<float>::zeros({H, Tq, Tk});
        Tensor<float> dweight = Tensor<float>::zeros({config.num_buckets, H});
        kernels::relative_position_bias_forward(bias.data(), weight.data(), config, H, Tq, Tk, q0);
        kernels::relative_position_bias_backward(dweight.data(), dbias.data(), config, H, Tq, Tk, q0);
        CHECK_TENSOR_CLOSE(bias, bias_torch, 0.0, 0.0);  // a gather: exact
        CHECK_TENSOR_CLOSE(dweight, dweight_torch, 1e-5, 1e-4);
    }
}

TEST_CASE("relative position bias: errors name the op and the shapes") {
    // num_buckets too small for the formula (HF divides by max_exact = 0 there).
    CHECK_THROWS_WITH_AS(t5_relative_position_bucket(3, true, 3, 128), doctest::Contains("num_buckets must be >= 4"),
                         Error);
    CHECK_THROWS_AS(t5_relative_position_bucket(3, false, 1, 128), Error);
    CHECK_THROWS_AS(t5_relative_position_bucket(3, false, 0, 128), Error);
    CHECK_THROWS_AS(t5_relative_position_bucket(3, true, -32, 128), Error);
    CHECK(t5_relative_position_bucket(-3, false, 2, 5) == 1);  // the smallest valid causal config
    CHECK(t5_relative_position_bucket(3, true, 4, 3) == 3);    // and bidirectional one
    // max_distance must exceed max_exact.
    CHECK_THROWS_WITH_AS(t5_relative_position_bucket(3, true, 32, 8), doctest::Contains("max_distance 8"), Error);
    CHECK_THROWS_AS(t5_relative_position_bucket(3, false, 32, 16), Error);

    const T5BucketConfig config{};
    std::vector<float> weight(32 * 2, 0.0f), bias(2 * 3 * 4, 0.0f);
    std::vector<index_t> table(12);
    CHECK_THROWS_WITH_AS(kernels::relative_position_bias_forward(bias.data(), weight.data(), config, 2, -3, 4, 0),
                         doctest::Contains("relative_position_bias_forward: negative size in bias (2, -3, 4)"), Error);
    CHECK_THROWS_AS(kernels::relative_position_bias_forward(bias.data(), weight.data(), config, -2, 3, 4, 0), Error);
    CHECK_THROWS_AS(kernels::relative_position_bias_forward(bias.data(), weight.data(), config, 2, 3, 4, -1), Error);
    CHECK_THROWS_AS(kernels::relative_position_bias_backward(weight.data(), bias.data(), config, 2, 3, -4, 0), Error);
    CHECK_THROWS_AS(kernels::relative_position_bias_forward<float>(nullptr, weight.data(), config, 2, 3, 4, 0), Error);
    CHECK_THROWS_AS(kernels::relative_position_bias_forward_reference(bias.data(), weight.data(),
                                                                      T5BucketConfig{true, 2, 128}, 2, 3, 4, 0),
                    Error);
    CHECK_THROWS_AS(kernels::relative_position_bias_backward_reference(weight.data(), bias.data(), config, 2, 3, 4, -2),
                    Error);
    CHECK_THROWS_AS(kernels::t5_relative_position_buckets(table.data(), config, 3, -4, 0), Error);
    CHECK_THROWS_AS(kernels::t5_relative_position_buckets(table.data(), T5BucketConfig{false, 1, 128}, 3, 4, 0),
                    Error);
}
