// Tests for include/llmblocks/core/threading.hpp and core/random.hpp.
#include <doctest/doctest.h>

#include <atomic>
#include <vector>

#include "llmblocks/core/random.hpp"
#include "llmblocks/core/threading.hpp"

using namespace llmblocks;

TEST_CASE("threading: parallel_for covers the range exactly once") {
    for (std::int64_t n : {0, 1, 7, 1000}) {
        std::vector<int> hits(static_cast<std::size_t>(n), 0);
        parallel_for(0, n, 1, [&](std::int64_t lo, std::int64_t hi) {
            for (std::int64_t i = lo; i < hi; ++i) hits[i] += 1;
        });
        for (int h : hits) CHECK(h == 1);
    }
}

TEST_CASE("threading: thread count is settable and small ranges stay on one thread") {
    const int original = get_num_threads();
    set_num_threads(1);
    CHECK(get_num_threads() == 1);
    std::atomic<int> chunks{0};
    parallel_for(0, 100, 1, [&](std::int64_t, std::int64_t) { ++chunks; });
    CHECK(chunks == 1);
    set_num_threads(0);
    CHECK(get_num_threads() == original);
    chunks = 0;
    parallel_for(0, 10, 100, [&](std::int64_t, std::int64_t) { ++chunks; });
    CHECK(chunks == 1);
    if (!has_openmp()) CHECK(get_num_threads() == 1);
}

TEST_CASE("threading: exceptions inside parallel_for reach the caller") {
    CHECK_THROWS_AS(parallel_for(0, 100, 1,
                                 [&](std::int64_t lo, std::int64_t) {
                                     if (lo == 0) throw Error("boom");
                                 }),
                    Error);
}

TEST_CASE("random: Rng is deterministic, restorable and in range") {
    Rng a(123);
    const auto snap = a.snapshot();
    const double n1 = a.normal();  // leaves a spare value in the state
    const auto mid = a.snapshot();
    std::vector<double> rest;
    for (int i = 0; i < 5; ++i) rest.push_back(a.normal());
    Rng b(0);
    b.restore(mid);
    for (int i = 0; i < 5; ++i) CHECK(b.normal() == rest[i]);
    b.restore(snap);
    CHECK(b.normal() == n1);
    for (int i = 0; i < 1000; ++i) {
        const auto k = a.randint(-3, 4);
        CHECK((k >= -3 && k < 4));
        const double u = a.uniform();
        CHECK((u >= 0.0 && u < 1.0));
    }
    CHECK_THROWS_AS(a.randint(5, 5), Error);
}
