// Tests for include/llmblocks/core/tensor.hpp: factories, views without copies,
// contiguous(), element access, errors, printing and compare().
#include <doctest/doctest.h>

#include <cstdint>

#include "llmblocks/core/tensor.hpp"
#include "support/compare.hpp"

using namespace llmblocks;

TEST_CASE("tensor: factories give contiguous row-major tensors on aligned storage") {
    auto t = TensorF::zeros({2, 3, 4});
    CHECK(t.dim() == 3);
    CHECK(t.numel() == 24);
    CHECK(t.strides() == Shape{12, 4, 1});
    CHECK(t.is_contiguous());
    CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % kAlignment == 0);
    for (float v : t.to_vector()) CHECK(v == 0.0f);

    auto f = TensorD::full({3}, 2.5);
    CHECK(f.to_vector() == std::vector<double>{2.5, 2.5, 2.5});
    auto ids = TensorI::from_vector({2, 2}, {1, 2, 3, 4});
    CHECK(ids(1, 0) == 3);
    auto scalar = TensorF::full({}, 7.0f);
    CHECK(scalar.dim() == 0);
    CHECK(scalar.numel() == 1);
    CHECK(scalar.item() == 7.0f);
    auto empty = TensorF::zeros({0, 5});
    CHECK(empty.numel() == 0);
    CHECK(empty.contiguous().numel() == 0);
}

TEST_CASE("tensor: seeded random init is reproducible and has the right moments") {
    Rng a(42), b(42), c(43);
    auto x = TensorF::randn({1000}, a);
    auto y = TensorF::randn({1000}, b);
    auto z = TensorF::randn({1000}, c);
    CHECK(x.to_vector() == y.to_vector());
    CHECK(x.to_vector() != z.to_vector());

    Rng r(7);
    auto n = TensorD::randn({20000}, r, 1.0, 2.0);
    double mean = 0, var = 0;
    for (double v : n.to_vector()) mean += v;
    mean /= n.numel();
    for (double v : n.to_vector()) var += (v - mean) * (v - mean);
    var /= n.numel();
    CHECK(mean == doctest::Approx(1.0).epsilon(0.05));
    CHECK(var == doctest::Approx(4.0).epsilon(0.05));

    auto u = TensorD::rand({20000}, r, -1.0, 3.0);
    for (double v : u.to_vector()) CHECK((v >= -1.0 && v < 3.0));
    auto k = TensorI::rand({1000}, r, 0, 10);
    for (int v : k.to_vector()) CHECK((v >= 0 && v < 10));
}

TEST_CASE("tensor: views share storage and index the same elements") {
    auto t = TensorF::arange(24).view({2, 3, 4});
    SUBCASE("transpose") {
        auto tt = t.transpose(0, 2);
        CHECK(tt.shape() == Shape{4, 3, 2});
        CHECK(tt.same_storage(t));
        CHECK(!tt.is_contiguous());
        CHECK(tt(3, 1, 1) == t(1, 1, 3));
        auto c = tt.contiguous();
        CHECK(c.is_contiguous());
        CHECK(!c.same_storage(t));
        CHECK(c(3, 1, 1) == 19.0f);
    }
    SUBCASE("permute") {
        auto p = t.permute({2, 0, 1});
        CHECK(p.shape() == Shape{4, 2, 3});
        CHECK(p(2, 1, 0) == t(1, 0, 2));
        CHECK_THROWS_AS(t.permute({0, 0, 1}), Error);
    }
    SUBCASE("narrow, slice and select") {
        auto n = t.narrow(2, 1, 2);
        CHECK(n.shape() == Shape{2, 3, 2});
        CHECK(n(1, 2, 0) == t(1, 2, 1));
        auto s = t.slice(2, 0, 4, 2);
        CHECK(s.shape() == Shape{2, 3, 2});
        CHECK(s(0, 1, 1) == t(0, 1, 2));
        auto row = t.select(1, -1);
        CHECK(row.shape() == Shape{2, 4});
        CHECK(row(1, 3) == 23.0f);
        row(0, 0) = 100.0f;  // writes through to the parent
        CHECK(t(0, 2, 0) == 100.0f);
    }
    SUBCASE("reshape copies only when it must") {
        auto r = t.reshape({6, -1});
        CHECK(r.shape() == Shape{6, 4});
        CHECK(r.same_storage(t));
        auto rt = t.transpose(1, 2).reshape({-1});
        CHECK(!rt.same_storage(t));
        CHECK(rt(1) == t(0, 1, 0));
        CHECK_THROWS_AS(t.transpose(1, 2).view({24}), Error);
    }
    SUBCASE("unsqueeze, squeeze, expand") {
        auto u = t.unsqueeze(1);
        CHECK(u.shape() == Shape{2, 1, 3, 4});
        CHECK(u.squeeze(1).shape() == t.shape());
        auto bias = TensorF::arange(4);
        auto e = bias.expand({3, 4});
        CHECK(e.stride(0) == 0);
        CHECK(e(2, 3) == 3.0f);
        CHECK(e.contiguous().to_vector()[5] == 1.0f);
        CHECK_THROWS_AS(bias.expand({3, 5}), Error);
    }
}

TEST_CASE("tensor: copy_ and fill_ handle strided destinations and sources") {
    auto a = TensorD::zeros({3, 4});
    auto src = TensorD::arange(12).view({4, 3}).t();  // strided source (3, 4)
    a.copy_(src);
    CHECK(a(2, 1) == src(2, 1));
    a.narrow(1, 1, 2).fill_(-1.0);
    CHECK(a(0, 1) == -1.0);
    CHECK(a(0, 3) == src(0, 3));
    CHECK_THROWS_AS(a.copy_(TensorD::zeros({4, 3})), Error);
}

TEST_CASE("tensor: checked access and misuse throw Error naming the op and shape") {
    auto t = TensorF::zeros({2, 3});
    CHECK_THROWS_WITH_AS(t.at({2, 0}), doctest::Contains("(2, 3)"), Error);
    CHECK_THROWS_AS(t.at({0}), Error);
    CHECK(t.at({-1, -1}) == 0.0f);
    CHECK_THROWS_WITH_AS(t.view({4, 2}), doctest::Contains("view: cannot view shape (2, 3)"), Error);
    CHECK_THROWS_WITH_AS(t.select(2, 0), doctest::Contains("select"), Error);
    CHECK_THROWS_AS(t.narrow(1, 2, 2), Error);
    CHECK_THROWS_AS(t.item(), Error);
    CHECK_THROWS_AS(TensorF::from_vector({2, 2}, {1, 2, 3}), Error);
    CHECK_THROWS_AS(TensorF().clone(), Error);
    CHECK_THROWS_AS(TensorF::zeros({-1}), Error);
}

TEST_CASE("tensor: printing and conversion") {
    auto t = TensorI::from_vector({2, 2}, {1, 2, 3, 4});
    const std::string s = t.to_string();
    CHECK(s.find("Tensor(2, 2)") == 0);
    CHECK(s.find("[[1, 2],") != std::string::npos);
    auto f = t.to<float>();
    CHECK(f(1, 1) == 4.0f);
    auto big = TensorF::arange(100);
    CHECK(big.to_string().find("...") != std::string::npos);
}

TEST_CASE("tensor: compare reports the largest difference and where") {
    auto a = TensorF::arange(6).view({2, 3});
    auto b = a.clone();
    CHECK(compare(a, b).ok);
    b(1, 2) += 0.5f;
    b(0, 0) += 0.1f;
    auto c = compare(a, b, 1e-5, 1e-6);
    CHECK(!c.ok);
    CHECK(c.max_abs_diff == doctest::Approx(0.5));
    CHECK(c.worst_index == std::vector<index_t>{1, 2});
    CHECK(c.message.find("(1, 2)") != std::string::npos);
    CHECK(allclose(a, b, 0.0, 0.6));
    CHECK(!compare(a, TensorF::zeros({3, 2})).ok);
    auto nan = a.clone();
    nan(0, 1) = std::numeric_limits<float>::quiet_NaN();
    CHECK(!compare(nan, a, 1.0, 1.0).ok);
}

TEST_CASE("memory: tensors count their bytes and free them") {
    const auto before = memory_stats();
    {
        auto t = TensorF::zeros({1000});
        auto v = t.view({10, 100});  // a view allocates nothing
        CHECK(memory_stats().live_bytes - before.live_bytes == 4000);
        CHECK(memory_stats().live_buffers - before.live_buffers == 1);
    }
    CHECK(memory_stats().live_bytes == before.live_bytes);
}
