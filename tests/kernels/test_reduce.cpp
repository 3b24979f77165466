// Tests for include/llmblocks/kernels/reduce.hpp: sum, max and dot against
// their scalar references at awkward sizes and unaligned offsets, in float and
// double; the blocked threaded path (same bits for any thread count); NaN and
// -inf; invalid arguments.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "llmblocks/core/memory.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/reduce.hpp"

using namespace llmblocks;
namespace kn = llmblocks::kernels;

namespace {

const index_t kSizes[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 127, 257, 1000};

// n normal values at `offset` elements past a 64-byte boundary.
template <class T>
struct Array {
    AlignedBuffer<T> mem;
    T* p;
    Array(index_t n, index_t offset, Rng& rng, double mean = 0.0) : mem(n + offset), p(mem.data() + offset) {
        for (index_t i = 0; i < n; ++i) p[i] = static_cast<T>(rng.normal(mean, 1.0));
    }
};

// A sum of n terms reordered differs from the sequential one by at most about
// n * eps * sum|terms| (a loose bound; the typical error is far smaller).
template <class T>
double sum_tolerance(const T* a, const T* b, index_t n) {
    double abs_sum = 0.0;
    for (index_t i = 0; i < n; ++i) abs_sum += std::abs(static_cast<double>(a[i]) * (b ? static_cast<double>(b[i]) : 1.0));
    return 2.0 * static_cast<double>(std::numeric_limits<T>::epsilon()) * (static_cast<double>(n) + 1.0) * abs_sum + 1e-300;
}

}  // namespace

TEST_CASE_TEMPLATE("reduce: sum, dot and max match the reference", T, float, double) {
    Rng rng(11);
    for (index_t n : kSizes) {
        for (index_t off : {0, 1}) {
            CAPTURE(n);
            CAPTURE(off);
            const Array<T> a(n, off, rng, 0.5), b(n, 1 - off, rng);
            const T s = kn::sum(a.p, n), s_ref = kn::sum_reference(a.p, n);
            CHECK(std::abs(static_cast<double>(s) - static_cast<double>(s_ref)) <= sum_tolerance<T>(a.p, nullptr, n));
            const T d = kn::dot(a.p, b.p, n), d_ref = kn::dot_reference(a.p, b.p, n);
            CHECK(std::abs(static_cast<double>(d) - static_cast<double>(d_ref)) <= sum_tolerance<T>(a.p, b.p, n));
            if (n > 0) {
                CHECK(kn::max(a.p, n) == kn::max_reference(a.p, n));  // a max is exact
                // The max in each possible position (first, last, in the tail).
                for (index_t at : {index_t{0}, n / 2, n - 1}) {
                    const T saved = a.p[at];
                    a.p[at] = T(100);
                    CHECK(kn::max(a.p, n) == T(100));
                    a.p[at] = saved;
                }
            }
        }
    }
}

TEST_CASE_TEMPLATE("reduce: known values", T, float, double) {
    std::vector<T> v(1000);
    for (index_t i = 0; i < 1000; ++i) v[i] = static_cast<T>(i + 1);
    CHECK(kn::sum(v.data(), 1000) == T(500500));  // exact in float too (all partial sums are integers < 2^24)
    CHECK(kn::dot(v.data(), v.data(), 100) == T(338350));
    CHECK(kn::max(v.data(), 1000) == T(1000));
    CHECK(kn::sum<T>(nullptr, 0) == T(0));
    CHECK(kn::dot<T>(nullptr, nullptr, 0) == T(0));
    const T inf = std::numeric_limits<T>::infinity();
    std::vector<T> masked(37, -inf);
    CHECK(kn::max(masked.data(), 37) == -inf);
    masked[36] = T(-5);
    CHECK(kn::max(masked.data(), 37) == T(-5));
    // NaN anywhere gives NaN (as torch.max), in the SIMD body and in the tail.
    for (index_t at : {0, 20, 36}) {
        std::vector<T> x(37, T(1));
        x[at] = std::numeric_limits<T>::quiet_NaN();
        CAPTURE(at);
        CHECK(std::isnan(kn::max(x.data(), 37)));
        CHECK(std::isnan(kn::max_reference(x.data(), 37)));
        CHECK(std::isnan(kn::sum(x.data(), 37)));
    }
}

TEST_CASE_TEMPLATE("reduce: the blocked threaded path is accurate and thread-count independent", T, float, double) {
    Rng rng(12);
    const index_t n = 5 * kn::kReduceBlock + 77;  // > kReduceParallelMin: blocked
    REQUIRE(n >= kn::kReduceParallelMin);
    const Array<T> a(n, 1, rng, 0.25), b(n, 0, rng);
    const int threads = get_num_threads();
    const T s = kn::sum(a.p, n), d = kn::dot(a.p, b.p, n), m = kn::max(a.p, n);
    set_num_threads(1);
    const T s1 = kn::sum(a.p, n), d1 = kn::dot(a.p, b.p, n), m1 = kn::max(a.p, n);
    set_num_threads(threads);
    CHECK(s == s1);  // bit for bit
    CHECK(d == d1);
    CHECK(m == m1);
    CHECK(m == kn::max_reference(a.p, n));
    // Against a double-precision sum: the blocked SIMD sum is no worse than the sequential one.
    double exact = 0.0;
    for (index_t i = 0; i < n; ++i) exact += static_cast<double>(a.p[i]);
    const double err_simd = std::abs(static_cast<double>(s) - exact);
    const double err_ref = std::abs(static_cast<double>(kn::sum_reference(a.p, n)) - exact);
    CHECK(err_simd <= sum_tolerance<T>(a.p, nullptr, n));
    if constexpr (std::is_same_v<T, float>) {
        CAPTURE(err_simd);
        CAPTURE(err_ref);
        CHECK(err_simd <= err_ref + 1e-2);
    }
}

TEST_CASE_TEMPLATE("reduce: invalid arguments throw", T, float, double) {
    T buf[3] = {1, 2, 3};
    CHECK_THROWS_AS(kn::sum(buf, index_t{-1}), Error);
    CHECK_THROWS_AS(kn::sum_reference(buf, index_t{-1}), Error);
    CHECK_THROWS_AS(kn::dot(buf, buf, index_t{-2}), Error);
    CHECK_THROWS_AS(kn::dot_reference(buf, buf, index_t{-2}), Error);
    CHECK_THROWS_AS(kn::max(buf, index_t{-1}), Error);
    CHECK_THROWS_AS(kn::max(buf, index_t{0}), Error);
    CHECK_THROWS_AS(kn::max_reference(buf, index_t{0}), Error);
    CHECK_THROWS_AS(kn::sum<T>(nullptr, index_t{3}), Error);
    try {
        kn::max(buf, index_t{0});
        FAIL("max of an empty array must throw");
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find("max") != std::string::npos);
    }
}
