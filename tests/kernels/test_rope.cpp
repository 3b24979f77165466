// tests/kernels/test_rope.cpp — tests of include/llmblocks/kernels/rope.hpp: the RoPE cos/sin
// tables, the SIMD kernels against the scalar references (both conventions, awkward sizes,
// partial rotation, pos0 > 0, in place, strided rows, unaligned pointers, threads), the backward
// as adjoint and by finite differences in double, the permutation between the two conventions,
// RoPE's relative-position property, PyTorch fixtures, and argument errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmblocks/core/random.hpp"
#include "llmblocks/core/tensor.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/rope.hpp"
#include "support/compare.hpp"

#ifndef LLMBLOCKS_TEST_DATA_DIR
#define LLMBLOCKS_TEST_DATA_DIR "tests/reference"
#endif

using namespace llmblocks;
using kernels::RopeCache;
using kernels::RopeStrides;
using kernels::RopeStyle;

namespace {

const RopeStyle kStyles[] = {RopeStyle::rotate_half, RopeStyle::interleaved};

template <class T>
std::vector<T> random_vector(index_t n, Rng& rng) {
    std::vector<T> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = static_cast<T>(rng.normal());
    return v;
}

template <class T>
Tensor<T> as_tensor(const std::vector<T>& v) {
    return Tensor<T>::from_vector({static_cast<index_t>(v.size())}, v);
}

template <class T>
Tensor<T> as_tensor(const T* p, index_t n) {
    return Tensor<T>::from_vector({n}, std::vector<T>(p, p + n));
}

// Tolerances of the SIMD kernels against the references: they differ only by fused multiply-adds.
template <class T>
constexpr double kernel_rtol = sizeof(T) == 4 ? 2e-6 : 1e-14;
template <class T>
constexpr double kernel_atol = sizeof(T) == 4 ? 2e-6 : 1e-14;

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

// One comparison of the SIMD kernels against the references at a geometry.
template <class T>
void check_against_reference(RopeStyle style, index_t B, index_t H, index_t S, index_t D, index_t rot, index_t pos0,
                             Rng& rng) {
    CAPTURE(kernels::rope_style_name(style));
    CAPTURE(B);
    CAPTURE(H);
    CAPTURE(S);
    CAPTURE(D);
    CAPTURE(rot);
    CAPTURE(pos0);
    const RopeCache<T> cache(rot, 10000.0, pos0 + S);
    const index_t n = B * H * S * D;
    // pointer + 1: no alignment assumptions.
    const std::vector<T> x = random_vector<T>(n + 1, rng), dout = random_vector<T>(n + 1, rng);
    const std::vector<T> dinp0 = random_vector<T>(n + 1, rng);

    std::vector<T> out(n + 1, T(0)), out_ref(n + 1, T(0));
    kernels::rope_forward(out.data() + 1, x.data() + 1, cache, style, B, H, S, D, pos0);
    kernels::rope_forward_reference(out_ref.data() + 1, x.data() + 1, cache, style, B, H, S, D, pos0);
    CHECK_TENSOR_CLOSE(as_tensor(out), as_tensor(out_ref), kernel_rtol<T>, kernel_atol<T>);

    // In place gives the same values as out of place.
    std::vector<T> inplace = x;
    kernels::rope_forward(inplace.data() + 1, inplace.data() + 1, cache, style, B, H, S, D, pos0);
    CHECK_TENSOR_CLOSE(as_tensor(inplace.data() + 1, n), as_tensor(out.data() + 1, n), 0.0, 0.0);

    // Backward accumulates into a non-zero dinp.
    std::vector<T> dinp = dinp0, dinp_ref = dinp0;
    kernels::rope_backward(dinp.data() + 1, dout.data() + 1, cache, style, B, H, S, D, pos0);
    kernels::rope_backward_reference(dinp_ref.data() + 1, dout.data() + 1, cache, style, B, H, S, D, pos0);
    CHECK_TENSOR_CLOSE(as_tensor(dinp), as_tensor(dinp_ref), kernel_rtol<T>, kernel_atol<T>);
}

}  // namespace

TEST_CASE("rope: RopeCache tables are cos/sin of p * theta^(-2i/rot_dim), computed in double") {
    for (const double theta : {10000.0, 500000.0}) {
        RopeCache<float> cache(8, theta, 3);
        CHECK(cache.rot_dim() == 8);
        CHECK(cache.half_dim() == 4);
        CHECK(cache.positions() >= 3);
        cache.reserve(1500);  // extended on demand
        CHECK(cache.positions() >= 1500);
        for (const index_t p : {0, 1, 2, 7, 1000, 1499}) {
            for (index_t i = 0; i < 4; ++i) {
                const double angle = static_cast<double>(p) * std::pow(theta, -2.0 * static_cast<double>(i) / 8.0);
                CHECK(cache.cos_row(p)[i] == static_cast<float>(std::cos(angle)));
                CHECK(cache.sin_row(p)[i] == static_cast<float>(std::sin(angle)));
            }
        }
    }
    // Growing keeps the rows already computed and copies are deep.
    RopeCache<double> a(6, 10000.0, 5);
    const double c4 = a.cos_row(4)[2];
    RopeCache<double> b = a;
    a.reserve(100);
    CHECK(a.cos_row(4)[2] == c4);
    CHECK(b.cos_row(4)[2] == c4);
    CHECK(b.positions() == 5);
    CHECK(a.cos_row(99)[1] == std::cos(99.0 * std::pow(10000.0, -2.0 / 6.0)));
}

TEST_CASE("rope: SIMD kernels match the references at the listed head sizes") {
    Rng rng(1);
    for (const RopeStyle style : kStyles) {
        for (const index_t D : {2, 4, 8, 16, 64, 128, 6}) {
            check_against_reference<float>(style, 1, 3, 5, D, D, 0, rng);  // 15 rows
            check_against_reference<float>(style, 3, 1, 7, D, D, 9, rng);  // pos0 > 0
            check_against_reference<double>(style, 1, 3, 5, D, D, 0, rng);
            check_against_reference<double>(style, 3, 1, 7, D, D, 9, rng);
        }
    }
}

TEST_CASE("rope: SIMD kernels match the references at awkward pair counts, with pass-through features") {
    Rng rng(2);
    for (const RopeStyle style : kStyles) {
        for (const index_t half : {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 127, 257, 1000}) {
            for (const index_t extra : {0, 1, 3}) {  // head_dim - rot_dim: GPT-NeoX/GPT-J partial rotation
                check_against_reference<float>(style, 1, 1, 3, 2 * half + extra, 2 * half, 4, rng);
                check_against_reference<double>(style, 1, 1, 3, 2 * half + extra, 2 * half, 4, rng);
            }
        }
        // Sizes 0: nothing to do, no error.
        check_against_reference<float>(style, 0, 2, 3, 8, 8, 0, rng);
        check_against_reference<float>(style, 2, 2, 0, 8, 8, 0, rng);
    }
}

TEST_CASE("rope: strided rows ((B, T, H, D) buffer) and threads") {
    Rng rng(3);
    for (const RopeStyle style : kStyles) {
        const index_t B = 2, S = 33, H = 5, D = 24, rot = 16, pos0 = 7;
        const RopeCache<float> cache(rot, 10000.0, pos0 + S);
        // x laid out as (B, T, H, D); read as (B, H, T, D) through strides.
        const Tensor<float> x_bthd = Tensor<float>::randn({B, S, H, D}, rng);
        const Tensor<float> x_bhtd = x_bthd.permute({0, 2, 1, 3}).contiguous();
        const RopeStrides bthd{S * H * D, D, H * D};
        const RopeStrides bhtd = kernels::rope_contiguous_strides(H, S, D);

        Tensor<float> out = Tensor<float>::zeros({B, H, S, D}), expected = Tensor<float>::zeros({B, H, S, D});
        kernels::rope_forward(out.data(), x_bthd.data(), cache, style, B, H, S, D, pos0, bhtd, bthd);
        kernels::rope_forward_reference(expected.data(), x_bhtd.data(), cache, style, B, H, S, D, pos0);
        CHECK_TENSOR_CLOSE(out, expected, 2e-6, 2e-6);

        // In place inside the (B, T, H, D) buffer.
        Tensor<float> inplace = x_bthd.clone();
        kernels::rope_forward(inplace.data(), inplace.data(), cache, style, B, H, S, D, pos0, bthd, bthd);
        CHECK_TENSOR_CLOSE(inplace.permute({0, 2, 1, 3}).contiguous(), out, 0.0, 0.0);

        // Backward writes into a (B, T, H, D) gradient buffer from a contiguous dout.
        const Tensor<float> dout = Tensor<float>::randn({B, H, S, D}, rng);
        Tensor<float> dinp = Tensor<float>::zeros({B, S, H, D}), dinp_ref = Tensor<float>::zeros({B, H, S, D});
        kernels::rope_backward(dinp.data(), dout.data(), cache, style, B, H, S, D, pos0, bthd, bhtd);
        kernels::rope_backward_reference(dinp_ref.data(), dout.data(), cache, style, B, H, S, D, pos0);
        CHECK_TENSOR_CLOSE(dinp.permute({0, 2, 1, 3}).contiguous(), dinp_ref, 2e-6, 2e-6);
    }

    // Large enough to split over threads: one thread and all threads give identical results.
    const index_t B = 2, H = 8, S = 256, D = 128;
    const RopeCache<float> cache(D, 10000.0, S);
    const Tensor<float> x = Tensor<float>::randn({B, H, S, D}, rng);
    for (const RopeStyle style : kStyles) {
        Tensor<float> serial = Tensor<float>::zeros({B, H, S, D}), threaded = Tensor<float>::zeros({B, H, S, D});
        set_num_threads(1);
        kernels::rope_forward(serial.data(), x.data(), cache, style, B, H, S, D, 0);
        set_num_threads(0);
        kernels::rope_forward(threaded.data(), x.data(), cache, style, B, H, S, D, 0);
        CHECK_TENSOR_CLOSE(threaded, serial, 0.0, 0.0);
    }
}

TEST_CASE("rope: backward is the adjoint (and inverse) of forward; finite differences in double") {
    Rng rng(4);
    for (const RopeStyle style : kStyles) {
        const index_t B = 2, H = 3, S = 5, D = 22, rot = 18, pos0 = 3;  // 9 pairs, 4 pass-through features
        const index_t n = B * H * S * D;
        const RopeCache<double> cache(rot, 10000.0, pos0 + S);
        const std::vector<double> x = random_vector<double>(n, rng), w = random_vector<double>(n, rng);
        std::vector<double> y(n), g(n, 0.0);
        kernels::rope_forward(y.data(), x.data(), cache, style, B, H, S, D, pos0);
        kernels::rope_backward(g.data(), w.data(), cache, style, B, H, S, D, pos0);

        // <R x, w> == <x, R^T w>
        double lhs = 0.0, rhs = 0.0;
        for (index_t i = 0; i < n; ++i) {
            lhs += y[i] * w[i];
            rhs += x[i] * g[i];
        }
        CHECK(std::abs(lhs - rhs) <= 1e-12 * (std::abs(lhs) + 1.0));

        // R^T R x == x: the rotation is orthogonal.
        std::vector<double> back(n, 0.0);
        kernels::rope_backward(back.data(), y.data(), cache, style, B, H, S, D, pos0);
        CHECK_TENSOR_CLOSE(as_tensor(back), as_tensor(x), 1e-13, 1e-13);

        // d/dx_j of L(x) = <RoPE(x), w> by central differences, for every j.
        const double eps = 1e-6;
        std::vector<double> xp = x, yp(n);
        std::vector<double> fd(n);
        for (index_t j = 0; j < n; ++j) {
            auto loss = [&](double delta) {
                xp[j] = x[j] + delta;
                kernels::rope_forward(yp.data(), xp.data(), cache, style, B, H, S, D, pos0);
                double l = 0.0;
                for (index_t i = 0; i < n; ++i) l += yp[i] * w[i];
                return l;
            };
            fd[j] = (loss(eps) - loss(-eps)) / (2.0 * eps);
            xp[j] = x[j];
        }
        CHECK_TENSOR_CLOSE(as_tensor(g), as_tensor(fd), 1e-7, 1e-8);
    }
}

TEST_CASE("rope: null dinp is a no-op") {
    const RopeCache<float> cache(4, 10000.0, 2);
    const std::vector<float> dout(8, 1.0f);
    kernels::rope_backward<float>(nullptr, dout.data(), cache, RopeStyle::rotate_half, 1, 1, 2, 4, 0);
    kernels::rope_backward_reference<float>(nullptr, dout.data(), cache, RopeStyle::interleaved, 1, 1, 2, 4, 0);
}

TEST_CASE("rope: interleaved and rotate-half agree after the feature permutation (2i, 2i+1) <-> (i, i + D/2)") {
    Rng rng(5);
    const index_t B = 1, H = 2, S = 9, D = 40, pos0 = 2;
    const RopeCache<double> cache(D, 10000.0, pos0 + S);
    const index_t rows = B * H * S, half = D / 2;
    const std::vector<double> x_il = random_vector<double>(rows * D, rng);
    std::vector<double> x_rh(rows * D);
    for (index_t r = 0; r < rows; ++r)
        for (index_t i = 0; i < half; ++i) {
            x_rh[r * D + i] = x_il[r * D + 2 * i];
            x_rh[r * D + i + half] = x_il[r * D + 2 * i + 1];
        }
    std::vector<double> y_il(rows * D), y_rh(rows * D), y_rh_as_il(rows * D);
    kernels::rope_forward(y_il.data(), x_il.data(), cache, RopeStyle::interleaved, B, H, S, D, pos0);
    kernels::rope_forward(y_rh.data(), x_rh.data(), cache, RopeStyle::rotate_half, B, H, S, D, pos0);
    for (index_t r = 0; r < rows; ++r)
        for (index_t i = 0; i < half; ++i) {
            y_rh_as_il[r * D + 2 * i] = y_rh[r * D + i];
            y_rh_as_il[r * D + 2 * i + 1] = y_rh[r * D + i + half];
        }
    CHECK_TENSOR_CLOSE(as_tensor(y_rh_as_il), as_tensor(y_il), 1e-15, 1e-15);
}

TEST_CASE("rope: rotated q.k depends only on the offset between positions (RoFormer eq. 16)") {
    Rng rng(6);
    const index_t D = 32;
    const RopeCache<double> cache(D, 10000.0, 64);
    const std::vector<double> q = random_vector<double>(D, rng), k = random_vector<double>(D, rng);
    for (const RopeStyle style : kStyles) {
        auto score = [&](index_t m, index_t n) {
            std::vector<double> qm(D), kn(D);
            kernels::rope_forward(qm.data(), q.data(), cache, style, 1, 1, 1, D, m);
            kernels::rope_forward(kn.data(), k.data(), cache, style, 1, 1, 1, D, n);
            double s = 0.0;
            for (index_t i = 0; i < D; ++i) s += qm[i] * kn[i];
            return s;
        };
        CHECK(score(5, 2) == doctest::Approx(score(13, 10)).epsilon(1e-12));
        CHECK(score(40, 0) == doctest::Approx(score(63, 23)).epsilon(1e-12));
        CHECK(score(7, 7) == doctest::Approx(score(0, 0)).epsilon(1e-12));
    }
}

TEST_CASE("rope: forward and backward match the PyTorch fixtures (HF Llama/NeoX, Meta Llama, GPT-J)") {
    const Fixtures fx;
    const auto& cases = fx.manifest.at("rope");
    REQUIRE(cases.size() == 6);
    for (const auto& c : cases) {
        const std::string name = c.at("name").get<std::string>();
        CAPTURE(name);
        const RopeStyle style =
            c.at("style").get<std::string>() == "rotate_half" ? RopeStyle::rotate_half : RopeStyle::interleaved;
        const auto shape = c.at("shape").get<std::vector<index_t>>();
        const index_t B = shape[0], H = shape[1], S = shape[2], D = shape[3];
        const index_t rot = c.at("rot_dim").get<index_t>(), pos0 = c.at("pos0").get<index_t>();
        const Shape s{B, H, S, D};
        RopeCache<float> cache(rot, c.at("theta").get<double>());
        cache.reserve(pos0 + S);

        const std::vector<float> x = fx.array(c, "x"), dout = fx.array(c, "dout");
        const Tensor<float> out_torch = Tensor<float>::from_vector(s, fx.array(c, "out"));
        const Tensor<float> dinp_torch = Tensor<float>::from_vector(s, fx.array(c, "dinp"));

        Tensor<float> out = Tensor<float>::zeros(s), dinp = Tensor<float>::zeros(s);
        kernels::rope_forward(out.data(), x.data(), cache, style, B, H, S, D, pos0);
        kernels::rope_backward(dinp.data(), dout.data(), cache, style, B, H, S, D, pos0);
        CHECK_TENSOR_CLOSE(out, out_torch, 1e-5, 1e-6);
        CHECK_TENSOR_CLOSE(dinp, dinp_torch, 1e-5, 1e-6);

        if (c.at("arrays").contains("out_hf32")) {
            // Hugging Face's float32 tables at positions 1000..1003 (theta 500000) differ from the
            // double-precision ones by float32 rounding of the angle, about 1e-4 here.
            const Tensor<float> out_hf32 = Tensor<float>::from_vector(s, fx.array(c, "out_hf32"));
            const auto cmp = compare(out, out_hf32, 0.0, 5e-4);
            MESSAGE(name, ": max |llmblocks - HF float32 tables| = ", cmp.max_abs_diff);
            CHECK(cmp.ok);
        }
    }
}

TEST_CASE("rope: errors name the op and the shapes") {
    CHECK_THROWS_WITH_AS(RopeCache<float>(7), doctest::Contains("rot_dim must be even"), Error);
    CHECK_THROWS_AS(RopeCache<float>(0), Error);
    CHECK_THROWS_AS(RopeCache<float>(-2), Error);
    CHECK_THROWS_AS(RopeCache<float>(8, 0.0), Error);
    CHECK_THROWS_AS(RopeCache<float>(8, -1.0), Error);
    CHECK_THROWS_AS(RopeCache<float>(8, 10000.0, -1), Error);

    RopeCache<float> cache(8, 10000.0, 4);
    CHECK_THROWS_AS(cache.reserve(-1), Error);
    std::vector<float> x(2 * 3 * 4 * 8, 1.0f), y(x.size());
    const auto style = RopeStyle::rotate_half;
    // rot_dim > head_dim
    CHECK_THROWS_WITH_AS(kernels::rope_forward(y.data(), x.data(), cache, style, 2, 3, 4, 6, 0),
                         doctest::Contains("rope_forward: rot_dim 8 exceeds head_dim 6 of x (2, 3, 4, 6)"), Error);
    // positions beyond the cache
    CHECK_THROWS_WITH_AS(kernels::rope_forward(y.data(), x.data(), cache, style, 2, 3, 4, 8, 1),
                         doctest::Contains("reserve(5)"), Error);
    CHECK_THROWS_AS(kernels::rope_backward(y.data(), x.data(), cache, style, 2, 3, 4, 8, 1), Error);
    // negative sizes and start position
    CHECK_THROWS_WITH_AS(kernels::rope_forward(y.data(), x.data(), cache, style, -1, 3, 4, 8, 0),
                         doctest::Contains("negative size"), Error);
    CHECK_THROWS_AS(kernels::rope_forward(y.data(), x.data(), cache, style, 2, 3, -4, 8, 0), Error);
    CHECK_THROWS_AS(kernels::rope_forward(y.data(), x.data(), cache, style, 2, 3, 4, 8, -1), Error);
    CHECK_THROWS_AS(kernels::rope_forward_reference(y.data(), x.data(), cache, style, 2, -3, 4, 8, 0), Error);
    CHECK_THROWS_AS(kernels::rope_backward_reference(y.data(), x.data(), cache, style, 2, 3, 4, -8, 0), Error);
    // null pointers, in place with different strides, dinp == dout
    CHECK_THROWS_AS(kernels::rope_forward<float>(nullptr, x.data(), cache, style, 2, 3, 4, 8, 0), Error);
    CHECK_THROWS_AS(kernels::rope_forward(x.data(), x.data(), cache, style, 2, 3, 4, 8, 0,
                                          kernels::rope_contiguous_strides(3, 4, 8), RopeStrides{96, 8, 24}),
                    Error);
    CHECK_THROWS_AS(kernels::rope_backward(x.data(), x.data(), cache, style, 2, 3, 4, 8, 0), Error);
}
