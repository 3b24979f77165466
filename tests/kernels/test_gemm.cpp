// Tests for include/llmblocks/kernels/gemm.hpp (gemm, gemm_batched, gemv and
// their references): every path is compared against a naive product computed
// in double precision, at shapes that cross the register tile (MR, NR) and the
// cache blocks (KC, MC, NC), with all transpose combinations, several
// alpha/beta pairs and padded leading dimensions.
//
// Tolerance: a K-term dot product summed in T has an error of at most about
// K * eps(T) * sum_k |a_ik||b_kj| (Higham, "Accuracy and Stability of Numerical
// Algorithms", 3.1), so C[i, j] must be within
//     2 * (K + 2) * eps(T) * (|alpha| * sum_k |a_ik||b_kj| + |beta| * |c_ij|) + tiny
// of the double-precision result.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/gemm.hpp"

using namespace llmblocks;
using llmblocks::kernels::gemm;
using llmblocks::kernels::gemm_batched;
using llmblocks::kernels::gemm_reference;
using llmblocks::kernels::gemv;
using llmblocks::kernels::gemv_reference;

namespace {

template <class T>
std::vector<T> random_vector(index_t n, Rng& rng) {
    std::vector<T> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = static_cast<T>(2.0 * rng.uniform() - 1.0);
    return v;
}

// A dense row-major operand with its leading dimension and element access.
template <class T>
struct Operand {
    index_t rows = 0, cols = 0, ld = 1;
    std::vector<T> data;
    T at(index_t i, index_t j) const { return data[static_cast<std::size_t>(i * ld + j)]; }
};

template <class T>
Operand<T> random_operand(index_t rows, index_t cols, index_t pad, Rng& rng) {
    Operand<T> m;
    m.rows = rows;
    m.cols = cols;
    m.ld = std::max<index_t>(1, cols + pad);
    m.data = random_vector<T>(std::max<index_t>(rows, 1) * m.ld, rng);
    return m;
}

// Expected C in double and its error bound, from the operands as stored.
template <class T>
void expected_gemm(bool ta, bool tb, index_t M, index_t N, index_t K, double alpha, const Operand<T>& A,
                   const Operand<T>& B, double beta, const Operand<T>& C0, std::vector<double>& want,
                   std::vector<double>& bound) {
    const double eps = std::numeric_limits<T>::epsilon();
    want.assign(static_cast<std::size_t>(M * N), 0.0);
    bound.assign(static_cast<std::size_t>(M * N), 0.0);
    for (index_t i = 0; i < M; ++i) {
        for (index_t j = 0; j < N; ++j) {
            double sum = 0.0, abs_sum = 0.0;
            for (index_t k = 0; k < K; ++k) {
                const double a = ta ? A.at(k, i) : A.at(i, k);
                const double b = tb ? B.at(j, k) : B.at(k, j);
                sum += a * b;
                abs_sum += std::abs(a * b);
            }
            const double c = beta == 0.0 ? 0.0 : static_cast<double>(C0.at(i, j));
            want[static_cast<std::size_t>(i * N + j)] = alpha * sum + beta * c;
            bound[static_cast<std::size_t>(i * N + j)] =
                2.0 * static_cast<double>(K + 2) * eps * (std::abs(alpha) * abs_sum + std::abs(beta * c)) + 1e-30;
        }
    }
}

template <class T>
void check_close(const Operand<T>& C, index_t M, index_t N, const std::vector<double>& want,
                 const std::vector<double>& bound, const std::string& what) {
    int failures = 0;
    for (index_t i = 0; i < M && failures < 3; ++i) {
        for (index_t j = 0; j < N && failures < 3; ++j) {
            const double got = C.at(i, j);
            const double w = want[static_cast<std::size_t>(i * N + j)];
            const double b = bound[static_cast<std::size_t>(i * N + j)];
            if (!(std::abs(got - w) <= b)) {
                ++failures;
                FAIL_CHECK(what << ": C[" << i << ", " << j << "] = " << got << ", expected " << w << " (bound "
                                << b << ")");
            }
        }
    }
    CHECK_MESSAGE(failures == 0, what);
    // The padding between rows of C stays untouched.
    for (index_t i = 0; i < M; ++i) {
        for (index_t j = N; j < C.ld; ++j) {
            if (C.at(i, j) != T(7)) {
                FAIL_CHECK(what << ": padding of C written at [" << i << ", " << j << "]");
                return;
            }
        }
    }
}

// Runs gemm (or gemm_reference) on one configuration and checks it.
template <class T>
void check_gemm_case(bool ta, bool tb, index_t M, index_t N, index_t K, T alpha, T beta, index_t pad, Rng& rng,
                     bool use_reference = false) {
    const auto A = ta ? random_operand<T>(K, M, pad, rng) : random_operand<T>(M, K, pad, rng);
    const auto B = tb ? random_operand<T>(N, K, pad, rng) : random_operand<T>(K, N, pad, rng);
    auto C = random_operand<T>(M, N, pad, rng);
    for (index_t i = 0; i < M; ++i) {
        for (index_t j = N; j < C.ld; ++j) C.data[static_cast<std::size_t>(i * C.ld + j)] = T(7);
    }
    std::vector<double> want, bound;
    expected_gemm(ta, tb, M, N, K, alpha, A, B, beta, C, want, bound);
    if (beta == T(0)) {  // C must not be read
        for (index_t i = 0; i < M; ++i) {
            for (index_t j = 0; j < N; ++j) {
                C.data[static_cast<std::size_t>(i * C.ld + j)] = std::numeric_limits<T>::quiet_NaN();
            }
        }
    }
    if (use_reference) {
        gemm_reference<T>(ta, tb, M, N, K, alpha, A.data.data(), A.ld, B.data.data(), B.ld, beta, C.data.data(), C.ld);
    } else {
        gemm<T>(ta, tb, M, N, K, alpha, A.data.data(), A.ld, B.data.data(), B.ld, beta, C.data.data(), C.ld);
    }
    const std::string what = std::string(use_reference ? "gemm_reference " : "gemm ") + (ta ? "T" : "N") +
                             (tb ? "T" : "N") + " M=" + std::to_string(M) + " N=" + std::to_string(N) +
                             " K=" + std::to_string(K) + " alpha=" + std::to_string(alpha) +
                             " beta=" + std::to_string(beta) + " pad=" + std::to_string(pad);
    check_close(C, M, N, want, bound, what);
}

struct MNK {
    index_t M, N, K;
};

// Shapes around the register tile (MR = 4..6 rows, NR = 8..64 columns for the
// instruction sets in use) and the cache blocks (KC = 768 floats / 384 doubles,
// MC = 256 rows, B packed in groups of ~192 columns), plus empty and
// one-row/one-column products.
const MNK kShapes[] = {{1, 1, 1},     {3, 5, 7},     {17, 33, 65},  {129, 65, 257}, {7, 47, 3},    {8, 48, 8},
                       {9, 49, 9},    {15, 95, 16},  {16, 96, 17},  {17, 97, 1},    {6, 24, 127},  {5, 23, 128},
                       {13, 25, 129}, {33, 17, 255}, {12, 50, 256}, {19, 31, 383},  {4, 26, 384},  {3, 5, 385},
                       {2, 3, 769},   {9, 50, 1537}, {257, 9, 385}, {255, 3, 20},   {0, 5, 3},     {4, 0, 3},
                       {4, 5, 0},     {1, 37, 19},   {23, 1, 41},   {2, 2, 2},      {200, 9, 20},  {7, 64, 9},
                       {13, 129, 20}, {6, 192, 30},  {12, 200, 31}, {5, 385, 3}};

template <class T>
void check_all_gemm_shapes(bool use_reference) {
    Rng rng(1234);
    const T ab[3][2] = {{T(1), T(0)}, {T(0.5), T(2)}, {T(-1.5), T(1)}};
    for (const MNK& s : kShapes) {
        for (int t = 0; t < 4; ++t) {
            for (const auto& p : ab) {
                check_gemm_case<T>(t & 1, t & 2, s.M, s.N, s.K, p[0], p[1], 0, rng, use_reference);
                check_gemm_case<T>(t & 1, t & 2, s.M, s.N, s.K, p[0], p[1], 3, rng, use_reference);
            }
        }
    }
}

// Expects an llmblocks::Error whose message contains every part.
template <class F>
void check_error(F&& f, const std::vector<std::string>& parts) {
    try {
        f();
        FAIL_CHECK("no error thrown; expected one mentioning " << parts.front());
    } catch (const Error& e) {
        const std::string msg = e.what();
        for (const auto& part : parts) {
            INFO("message: ", msg);
            CHECK(msg.find(part) != std::string::npos);
        }
    }
}

}  // namespace

TEST_CASE("gemm: matches a double-precision product (float)") { check_all_gemm_shapes<float>(false); }

TEST_CASE("gemm: matches a double-precision product (double)") { check_all_gemm_shapes<double>(false); }

TEST_CASE("gemm: the reference matches a double-precision product") {
    check_all_gemm_shapes<float>(true);
    check_all_gemm_shapes<double>(true);
}

TEST_CASE("gemm: products large enough to be threaded and cross every cache block") {
    Rng rng(99);
    const MNK shapes[] = {{40, 700, 100},    // split by columns
                          {520, 60, 100},    // tall: split by rows
                          {520, 300, 100},   // crosses MC = 256 (packed A) on each thread
                          {97, 1000, 770},   // crosses KC = 768
                          {600, 20, 5000}};  // the packed-A cap (2^20 elements) shrinks MC to 208
    for (const MNK& s : shapes) {
        for (int t = 0; t < 4; ++t) {
            check_gemm_case<float>(t & 1, t & 2, s.M, s.N, s.K, 1.0f, 0.0f, 1, rng);
        }
        check_gemm_case<double>(false, true, s.M, s.N, s.K, -1.5, 1.0, 2, rng);
    }
}

TEST_CASE("gemm: the same result on one thread, two threads and inside a parallel region") {
    Rng rng(5);
    const index_t M = 150, N = 500, K = 90;
    const auto A = random_vector<float>(M * K, rng);
    const auto B = random_vector<float>(K * N, rng);
    std::vector<float> c1(static_cast<std::size_t>(M * N)), c2(c1.size()), c3(c1.size());
    const int original = get_num_threads();
    set_num_threads(1);
    gemm<float>(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, c1.data(), N);
    set_num_threads(2);
    gemm<float>(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, c2.data(), N);
    parallel_for(0, 2, 1, [&](std::int64_t lo, std::int64_t) {
        if (lo == 0) gemm<float>(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, c3.data(), N);
    });
    set_num_threads(original);
    // Each element is summed in the same order whatever the split.
    CHECK(c1 == c2);
    CHECK(c1 == c3);
}

// Wide products are cut into column slabs (about 192 columns and up) that the
// threads take from a shared counter, per block of MC rows. A non-transposed
// A is read in place (MC up to 2048 rows: 2100 x 2200 has two row blocks); a
// transposed one is packed, by the threads together into one shared buffer
// (520 x 100: 3 row blocks of 256), or by each thread, repacked per slab when
// its block exceeds 4 MiB (13 x 40000 doubles).
template <class T>
void check_slabs_case(index_t M, index_t N, index_t K, Rng& rng) {
    const auto A = random_vector<T>(M * K, rng);
    const auto B = random_vector<T>(K * N, rng);
    const int original = get_num_threads();
    for (bool trans_a : {false, true}) {
        std::vector<T> c1(static_cast<std::size_t>(M * N)), c2(c1.size());
        const index_t lda = trans_a ? M : K;
        set_num_threads(1);
        gemm<T>(trans_a, true, M, N, K, T(1), A.data(), lda, B.data(), K, T(0), c1.data(), N);
        set_num_threads(2);
        gemm<T>(trans_a, true, M, N, K, T(1), A.data(), lda, B.data(), K, T(0), c2.data(), N);
        CHECK_MESSAGE(c1 == c2, "trans_a=", trans_a, " M=", M, " N=", N, " K=", K);
        check_gemm_case<T>(trans_a, false, M, N, K, T(0.5), T(2), 1, rng);
    }
    set_num_threads(original);
}

TEST_CASE("gemm: column slabs shared by the threads, several row blocks, packed A kept or repacked") {
    Rng rng(17);
    check_slabs_case<float>(520, 1000, 100, rng);   // 3 row blocks x 6 slabs when A is packed
    check_slabs_case<float>(2100, 2200, 20, rng);   // A read in place: 2 row blocks
    check_slabs_case<double>(13, 200, 40000, rng);  // 13 x 40000 doubles > 4 MiB: A repacked per slab
}

TEST_CASE("gemm: beta == 0 overwrites NaN and alpha == 0 or K == 0 only scales C") {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> A = {1, 2, 3, 4, 5, 6};  // (2, 3)
    std::vector<float> B = {1, 0, 0, 1, 1, 1};  // (3, 2)
    std::vector<float> C = {nan, nan, nan, nan};
    gemm<float>(false, false, 2, 2, 3, 1.0f, A.data(), 3, B.data(), 2, 0.0f, C.data(), 2);
    CHECK(C == std::vector<float>{4, 5, 10, 11});
    gemm<float>(false, false, 2, 2, 3, 0.0f, A.data(), 3, B.data(), 2, 2.0f, C.data(), 2);
    CHECK(C == std::vector<float>{8, 10, 20, 22});
    gemm<float>(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.5f, C.data(), 2);
    CHECK(C == std::vector<float>{4, 5, 10, 11});
    C.assign(4, nan);
    gemm<float>(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.0f, C.data(), 2);
    CHECK(C == std::vector<float>{0, 0, 0, 0});
    // M == 0 or N == 0: nothing is touched, null pointers are fine.
    gemm<float>(false, false, 0, 0, 5, 1.0f, nullptr, 5, nullptr, 1, 0.0f, nullptr, 1);
}

TEST_CASE("gemm_batched: independent products, shared operands through a zero stride") {
    Rng rng(77);
    const index_t M = 13, N = 37, K = 21, batch = 5;
    for (int t = 0; t < 4; ++t) {
        const bool ta = t & 1, tb = t & 2;
        const index_t lda = ta ? M + 1 : K + 1, ldb = tb ? K + 2 : N + 2, ldc = N + 3;
        const index_t sa = (ta ? K : M) * lda, sb = (tb ? N : K) * ldb, sc = M * ldc + 4;
        for (int shared = 0; shared < 3; ++shared) {  // 0: none, 1: A shared, 2: B shared
            const index_t stride_a = shared == 1 ? 0 : sa, stride_b = shared == 2 ? 0 : sb;
            const auto A = random_vector<double>(sa * batch, rng);
            const auto B = random_vector<double>(sb * batch, rng);
            auto C = random_vector<double>(sc * batch, rng);
            auto C_ref = C;
            gemm_batched<double>(ta, tb, M, N, K, 0.5, A.data(), lda, stride_a, B.data(), ldb, stride_b, 2.0,
                                 C.data(), ldc, sc, batch);
            for (index_t i = 0; i < batch; ++i) {
                gemm_reference<double>(ta, tb, M, N, K, 0.5, A.data() + i * stride_a, lda, B.data() + i * stride_b,
                                       ldb, 2.0, C_ref.data() + i * sc, ldc);
            }
            double max_diff = 0.0;
            for (std::size_t i = 0; i < C.size(); ++i) max_diff = std::max(max_diff, std::abs(C[i] - C_ref[i]));
            INFO("trans ", ta, tb, " shared ", shared);
            CHECK(max_diff < 1e-12);
        }
    }
    // Large products go one after another through the threaded gemm.
    const index_t M2 = 300, N2 = 400, K2 = 200;
    const auto A = random_vector<float>(M2 * K2, rng);
    const auto B = random_vector<float>(2 * K2 * N2, rng);
    std::vector<float> C(static_cast<std::size_t>(2 * M2 * N2)), C_ref(C.size());
    gemm_batched<float>(false, false, M2, N2, K2, 1.0f, A.data(), K2, 0, B.data(), N2, K2 * N2, 0.0f, C.data(), N2,
                        M2 * N2, 2);
    for (index_t i = 0; i < 2; ++i) {
        gemm<float>(false, false, M2, N2, K2, 1.0f, A.data(), K2, B.data() + i * K2 * N2, N2, 0.0f,
                    C_ref.data() + i * M2 * N2, N2);
    }
    CHECK(C == C_ref);
    // batch == 0 does nothing.
    gemm_batched<float>(false, false, 2, 2, 2, 1.0f, nullptr, 2, 0, nullptr, 2, 0, 0.0f, nullptr, 2, 4, 0);
}

TEST_CASE("gemv: both orientations against a double-precision product, unaligned and strided") {
    Rng rng(3);
    const index_t sizes[] = {1, 7, 63, 65, 257, 1000};
    for (index_t N : sizes) {
        for (index_t K : sizes) {
            for (bool trans_w : {false, true}) {
                for (index_t inc : {1, 3}) {
                    const index_t ldw = (trans_w ? K : N) + (inc == 1 ? 0 : 5);
                    // +1: pointers off the 64-byte boundary of the allocation.
                    const auto W = random_vector<float>((trans_w ? N : K) * ldw + 1, rng);
                    const auto x = random_vector<float>(K * inc + 1, rng);
                    auto y = random_vector<float>(N * inc + 1, rng);
                    const auto y0 = y;
                    const float alpha = 1.5f, beta = inc == 1 ? 0.0f : -0.5f;
                    if (beta == 0.0f) {
                        for (index_t n = 0; n < N; ++n) y[static_cast<std::size_t>(1 + n * inc)] = NAN;
                    }
                    gemv<float>(trans_w, N, K, alpha, x.data() + 1, inc, W.data() + 1, ldw, beta, y.data() + 1, inc);
                    const double eps = std::numeric_limits<float>::epsilon();
                    int failures = 0;
                    for (index_t n = 0; n < N && failures < 3; ++n) {
                        double sum = 0.0, abs_sum = 0.0;
                        for (index_t k = 0; k < K; ++k) {
                            const double w = trans_w ? W[static_cast<std::size_t>(1 + n * ldw + k)]
                                                     : W[static_cast<std::size_t>(1 + k * ldw + n)];
                            const double p = x[static_cast<std::size_t>(1 + k * inc)] * w;
                            sum += p;
                            abs_sum += std::abs(p);
                        }
                        const double c = beta == 0.0f ? 0.0 : y0[static_cast<std::size_t>(1 + n * inc)];
                        const double want = alpha * sum + beta * c;
                        const double bound = 2.0 * static_cast<double>(K + 2) * eps * (alpha * abs_sum + std::abs(beta * c));
                        const double got = y[static_cast<std::size_t>(1 + n * inc)];
                        if (!(std::abs(got - want) <= bound)) {
                            ++failures;
                            FAIL_CHECK("gemv trans_w=" << trans_w << " N=" << N << " K=" << K << " inc=" << inc
                                                       << ": y[" << n << "] = " << got << ", expected " << want);
                        }
                    }
                    // Elements between the strided outputs are untouched.
                    for (std::size_t i = 0; i < y.size(); ++i) {
                        if ((i == 0 || (static_cast<index_t>(i) - 1) % inc != 0) && y[i] != y0[i]) {
                            FAIL_CHECK("gemv wrote outside y at " << i);
                            break;
                        }
                    }
                }
            }
        }
    }
}

// The threaded GEMV cuts x·W with a short output (N <= 4096 floats) into
// chunks of rows of W with partial sums, a long one into chunks of columns,
// and x·Wᵀ into chunks of rows; the chunks depend on the sizes only, so one
// and two threads give the same bits.
TEST_CASE("gemv: split over K or N, the same result on one and two threads") {
    Rng rng(21);
    struct NK {
        index_t N, K;
    };
    const NK shapes[] = {{2304, 768}, {300, 3001}, {4097, 70}, {9000, 61}, {77, 5000}};
    for (const NK& s : shapes) {
        for (bool trans_w : {false, true}) {
            const index_t ldw = (trans_w ? s.K : s.N) + 3;
            const auto W = random_vector<float>((trans_w ? s.N : s.K) * ldw, rng);
            const auto x = random_vector<float>(s.K, rng);
            const auto y0 = random_vector<float>(s.N, rng);
            std::vector<float> y1 = y0, y2 = y0, want = y0;
            const int original = get_num_threads();
            set_num_threads(1);
            gemv<float>(trans_w, s.N, s.K, 0.5f, x.data(), 1, W.data(), ldw, -1.0f, y1.data(), 1);
            set_num_threads(2);
            gemv<float>(trans_w, s.N, s.K, 0.5f, x.data(), 1, W.data(), ldw, -1.0f, y2.data(), 1);
            set_num_threads(original);
            CHECK_MESSAGE(y1 == y2, "trans_w=", trans_w, " N=", s.N, " K=", s.K);
            const double eps = std::numeric_limits<float>::epsilon();
            int failures = 0;
            for (index_t n = 0; n < s.N && failures < 3; ++n) {
                double sum = 0.0, abs_sum = 0.0;
                for (index_t k = 0; k < s.K; ++k) {
                    const std::size_t at = static_cast<std::size_t>(trans_w ? n * ldw + k : k * ldw + n);
                    const double w = W[at];
                    sum += x[static_cast<std::size_t>(k)] * w;
                    abs_sum += std::abs(x[static_cast<std::size_t>(k)] * w);
                }
                const double c = y0[static_cast<std::size_t>(n)];
                const double expected = 0.5 * sum - c;
                const double bound = 2.0 * static_cast<double>(s.K + 2) * eps * (0.5 * abs_sum + std::abs(c));
                const double got = y2[static_cast<std::size_t>(n)];
                if (!(std::abs(got - expected) <= bound)) {
                    ++failures;
                    FAIL_CHECK("gemv trans_w=" << trans_w << " N=" << s.N << " K=" << s.K << ": y[" << n
                                               << "] = " << got << ", expected " << expected);
                }
            }
        }
    }
}

TEST_CASE("gemv: gemm with one row or one column takes the GEMV path and agrees with the reference") {
    Rng rng(8);
    for (index_t n : {1, 7, 63, 65, 257, 1000}) {
        for (int t = 0; t < 4; ++t) {
            // One row (decoding: x·W and x·Wᵀ) and one column, padded leading dims.
            check_gemm_case<float>(t & 1, t & 2, 1, n, 300, 1.0f, 0.0f, 2, rng);
            check_gemm_case<float>(t & 1, t & 2, n, 1, 300, 0.5f, 2.0f, 2, rng);
            check_gemm_case<double>(t & 1, t & 2, 1, n, 65, -1.5f, 1.0f, 1, rng);
        }
    }
    // The reference gemv agrees with gemv.
    const auto W = random_vector<double>(33 * 20, rng);
    const auto x = random_vector<double>(20, rng);
    std::vector<double> y1(33, 1.0), y2(33, 1.0);
    gemv<double>(true, 33, 20, 2.0, x.data(), 1, W.data(), 20, 0.5, y1.data(), 1);
    gemv_reference<double>(true, 33, 20, 2.0, x.data(), 1, W.data(), 20, 0.5, y2.data(), 1);
    for (std::size_t i = 0; i < y1.size(); ++i) CHECK(y1[i] == doctest::Approx(y2[i]).epsilon(1e-12));
}

TEST_CASE("gemm: bad arguments throw errors naming gemm and the sizes") {
    std::vector<float> buf(1000, 0.0f);
    float* p = buf.data();
    check_error([&] { gemm<float>(false, false, -1, 2, 3, 1.0f, p, 3, p, 2, 0.0f, p, 2); },
                {"gemm", "negative", "M = -1"});
    check_error([&] { gemm<float>(false, false, 4, 6, 5, 1.0f, p, 3, p, 6, 0.0f, p, 6); },
                {"gemm", "lda = 3", "(4, 5)", "M = 4", "N = 6", "K = 5", "need lda >= 5"});
    check_error([&] { gemm<float>(true, false, 4, 6, 5, 1.0f, p, 3, p, 6, 0.0f, p, 6); },
                {"gemm", "lda = 3", "(5, 4)", "need lda >= 4"});
    check_error([&] { gemm<float>(false, true, 4, 6, 5, 1.0f, p, 5, p, 4, 0.0f, p, 6); },
                {"gemm", "ldb = 4", "(6, 5)", "need ldb >= 5"});
    check_error([&] { gemm<float>(false, false, 4, 6, 5, 1.0f, p, 5, p, 6, 0.0f, p, 5); },
                {"gemm", "ldc = 5", "(4, 6)", "need ldc >= 6"});
    check_error([&] { gemm<double>(false, false, 4, 6, 5, 1.0, nullptr, 5, nullptr, 6, 0.0, nullptr, 6); },
                {"gemm", "null"});
    check_error([&] { gemm_reference<float>(false, false, 4, 6, 5, 1.0f, p, 3, p, 6, 0.0f, p, 6); },
                {"gemm", "lda = 3"});
    check_error([&] { gemm_batched<float>(false, false, 2, 3, 4, 1.0f, p, 4, 8, p, 3, 12, 0.0f, p, 3, 6, -1); },
                {"gemm_batched", "negative batch"});
    check_error([&] { gemm_batched<float>(false, false, 2, 3, 4, 1.0f, p, 4, -8, p, 3, 12, 0.0f, p, 3, 6, 2); },
                {"gemm_batched", "stride_a = -8"});
    check_error([&] { gemm_batched<float>(false, false, 2, 3, 4, 1.0f, p, 4, 8, p, 3, 12, 0.0f, p, 3, 0, 2); },
                {"gemm_batched", "stride_c = 0", "(2, 3)", "overlap"});
    check_error([&] { gemm_batched<float>(false, false, 2, 3, 4, 1.0f, p, 2, 8, p, 3, 12, 0.0f, p, 3, 6, 2); },
                {"gemm_batched", "lda = 2"});
    check_error([&] { gemv<float>(false, 10, 4, 1.0f, p, 1, p, 9, 0.0f, p, 1); },
                {"gemv", "ldw = 9", "(4, 10)", "N = 10", "K = 4"});
    check_error([&] { gemv<float>(true, 10, 4, 1.0f, p, 0, p, 4, 0.0f, p, 1); }, {"gemv", "incx = 0"});
    check_error([&] { gemv<float>(true, -2, 4, 1.0f, p, 1, p, 4, 0.0f, p, 1); }, {"gemv", "N = -2"});
}
