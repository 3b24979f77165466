// Tests for include/llmblocks/kernels/norm.hpp: LayerNorm and RMSNorm, forward
// and backward, SIMD against the scalar reference over several rows of awkward
// widths at unaligned offsets (float and double), with and without weight,
// bias and saved statistics; backward against central finite differences of
// the forward reference (double) and its accumulation (+=); a large mean;
// threaded dweight/dbias (same bits for any thread count); invalid arguments.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "llmblocks/core/memory.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/core/tensor.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/norm.hpp"
#include "support/compare.hpp"

using namespace llmblocks;
namespace kn = llmblocks::kernels;

namespace {

const index_t kCols[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 127, 257, 1000};

// n values at `offset` elements past a 64-byte boundary.
template <class T>
struct Array {
    AlignedBuffer<T> mem;
    T* p;
    index_t n;
    Array(index_t size, index_t offset) : mem(size + offset), p(mem.data() + offset), n(size) {}
    Array(index_t size, index_t offset, Rng& rng, double mean, double std) : Array(size, offset) {
        for (index_t i = 0; i < n; ++i) p[i] = static_cast<T>(rng.normal(mean, std));
    }
    Array copy(index_t offset) const {
        Array c(n, offset);
        std::copy(p, p + n, c.p);
        return c;
    }
    Tensor<T> tensor() const { return Tensor<T>::from_vector({n}, std::vector<T>(p, p + n)); }
};

template <class T>
constexpr bool is_float = std::is_same_v<T, float>;

// SIMD vs reference for sums over `n` terms in different orders (see test_softmax.cpp).
template <class T>
double sum_tol(index_t n) {
    return (is_float<T> ? 1.5e-6 : 3e-15) * (1.0 + std::sqrt(static_cast<double>(n)));
}

// Central differences of L(v) = sum(dout * f(v)) with respect to v (in place, restored).
std::vector<double> numeric_grad(const std::function<void(std::vector<double>&)>& forward, std::vector<double>& v,
                                 const std::vector<double>& dout, std::vector<double>& out, double h) {
    std::vector<double> g(v.size());
    const auto loss = [&] {
        forward(out);
        double l = 0.0;
        for (std::size_t i = 0; i < out.size(); ++i) l += dout[i] * out[i];
        return l;
    };
    for (std::size_t i = 0; i < v.size(); ++i) {
        const double saved = v[i];
        v[i] = saved + h;
        const double lp = loss();
        v[i] = saved - h;
        const double lm = loss();
        v[i] = saved;
        g[i] = (lp - lm) / (2 * h);
    }
    return g;
}

TensorD as_tensor(const std::vector<double>& v) { return TensorD::from_vector({static_cast<index_t>(v.size())}, v); }

}  // namespace

TEST_CASE_TEMPLATE("norm: forward kernels match the reference", T, float, double) {
    Rng rng(31);
    const T eps = T(1e-5);
    for (index_t rows : {1, 3}) {
        for (index_t cols : kCols) {
            for (index_t off : {0, 1}) {
                for (int variant = 0; variant < 3; ++variant) {  // weight+bias, weight only, neither
                    CAPTURE(rows);
                    CAPTURE(cols);
                    CAPTURE(off);
                    CAPTURE(variant);
                    const index_t n = rows * cols;
                    const Array<T> x(n, off, rng, 0.5, 2.0), w(cols, 1 - off, rng, 1.0, 0.5), b(cols, off, rng, 0.0, 1.0);
                    const T* weight = variant < 2 ? w.p : nullptr;
                    const T* bias = variant < 1 ? b.p : nullptr;
                    Array<T> y(n, 1 - off), y_ref(n, 0), mean(rows, off), rstd(rows, 1 - off), mean_ref(rows, 0),
                        rstd_ref(rows, 0);
                    const double tol = sum_tol<T>(cols);
                    kn::layernorm_forward(y.p, mean.p, rstd.p, x.p, weight, bias, rows, cols, eps);
                    kn::layernorm_forward_reference(y_ref.p, mean_ref.p, rstd_ref.p, x.p, weight, bias, rows, cols, eps);
                    CHECK_TENSOR_CLOSE(y.tensor(), y_ref.tensor(), tol, tol);
                    CHECK_TENSOR_CLOSE(mean.tensor(), mean_ref.tensor(), tol, tol);
                    CHECK_TENSOR_CLOSE(rstd.tensor(), rstd_ref.tensor(), tol, tol);
                    // Inference: no saved statistics, same output.
                    Array<T> y2(n, off);
                    kn::layernorm_forward<T>(y2.p, nullptr, nullptr, x.p, weight, bias, rows, cols, eps);
                    CHECK_TENSOR_CLOSE(y2.tensor(), y.tensor(), 0.0, 0.0);

                    kn::rmsnorm_forward(y.p, rstd.p, x.p, weight, rows, cols, eps);
                    kn::rmsnorm_forward_reference(y_ref.p, rstd_ref.p, x.p, weight, rows, cols, eps);
                    CHECK_TENSOR_CLOSE(y.tensor(), y_ref.tensor(), tol, tol);
                    CHECK_TENSOR_CLOSE(rstd.tensor(), rstd_ref.tensor(), tol, tol);
                    kn::rmsnorm_forward<T>(y2.p, nullptr, x.p, weight, rows, cols, eps);
                    CHECK_TENSOR_CLOSE(y2.tensor(), y.tensor(), 0.0, 0.0);
                }
            }
        }
    }
}

TEST_CASE_TEMPLATE("norm: backward kernels match the reference and accumulate", T, float, double) {
    Rng rng(32);
    const T eps = T(1e-5);
    for (index_t rows : {1, 3}) {
        for (index_t cols : kCols) {
            for (index_t off : {0, 1}) {
                for (int variant = 0; variant < 4; ++variant) {  // all gradients; dinp only; params only; no weight
                    CAPTURE(rows);
                    CAPTURE(cols);
                    CAPTURE(off);
                    CAPTURE(variant);
                    const index_t n = rows * cols;
                    const Array<T> x(n, off, rng, 0.5, 2.0), w(cols, 1 - off, rng, 1.0, 0.5), b(cols, off, rng, 0.0, 1.0),
                        dout(n, 1 - off, rng, 0.0, 1.0);
                    const Array<T> dinp0(n, 0, rng, 0.0, 1.0), dw0(cols, 0, rng, 0.0, 1.0), db0(cols, 0, rng, 0.0, 1.0);
                    const T* weight = variant == 3 ? nullptr : w.p;
                    const bool want_dinp = variant != 2, want_params = variant != 1;
                    Array<T> mean(rows, 0), rstd(rows, 0), y(n, 0);
                    kn::layernorm_forward_reference(y.p, mean.p, rstd.p, x.p, weight, b.p, rows, cols, eps);

                    // Start from nonzero gradients: the kernels add to them.
                    Array<T> dinp = dinp0.copy(off), dw = dw0.copy(1 - off), db = db0.copy(off);
                    Array<T> dinp_ref = dinp0.copy(0), dw_ref = dw0.copy(0), db_ref = db0.copy(0);
                    kn::layernorm_backward(want_dinp ? dinp.p : nullptr, want_params ? dw.p : nullptr,
                                           want_params ? db.p : nullptr, dout.p, x.p, weight, mean.p, rstd.p, rows, cols);
                    kn::layernorm_backward_reference(want_dinp ? dinp_ref.p : nullptr, want_params ? dw_ref.p : nullptr,
                                                     want_params ? db_ref.p : nullptr, dout.p, x.p, weight, mean.p, rstd.p,
                                                     rows, cols);
                    // dinp scales with rstd (316 for a one-feature row: var = 0, rstd = 1/sqrt(eps)),
                    // and so do its rounding errors (an FMA-contracted dnorm - mean(dnorm) is not exactly 0).
                    double max_rstd = 1.0;
                    for (index_t r = 0; r < rows; ++r) max_rstd = std::max(max_rstd, static_cast<double>(rstd.p[r]));
                    const double tol = 4 * sum_tol<T>(cols), ptol = 4 * sum_tol<T>(rows);
                    CHECK_TENSOR_CLOSE(dinp.tensor(), dinp_ref.tensor(), tol, tol * max_rstd);
                    CHECK_TENSOR_CLOSE(dw.tensor(), dw_ref.tensor(), ptol, ptol);
                    CHECK_TENSOR_CLOSE(db.tensor(), db_ref.tensor(), ptol, ptol);
                    if (!want_dinp) CHECK_TENSOR_CLOSE(dinp.tensor(), dinp0.tensor(), 0.0, 0.0);
                    if (!want_params) CHECK_TENSOR_CLOSE(dw.tensor(), dw0.tensor(), 0.0, 0.0);

                    kn::rmsnorm_forward_reference(y.p, rstd.p, x.p, weight, rows, cols, eps);
                    dinp = dinp0.copy(off);
                    dw = dw0.copy(1 - off);
                    dinp_ref = dinp0.copy(0);
                    dw_ref = dw0.copy(0);
                    kn::rmsnorm_backward(want_dinp ? dinp.p : nullptr, want_params ? dw.p : nullptr, dout.p, x.p, weight,
                                         rstd.p, rows, cols);
                    kn::rmsnorm_backward_reference(want_dinp ? dinp_ref.p : nullptr, want_params ? dw_ref.p : nullptr,
                                                   dout.p, x.p, weight, rstd.p, rows, cols);
                    CHECK_TENSOR_CLOSE(dinp.tensor(), dinp_ref.tensor(), tol, tol * max_rstd);
                    CHECK_TENSOR_CLOSE(dw.tensor(), dw_ref.tensor(), ptol, ptol);
                }
            }
        }
    }
}

TEST_CASE("norm: backward kernels agree with finite differences of the forward (double)") {
    Rng rng(33);
    const double eps = 1e-5, h = 1e-6;
    for (index_t cols : {1, 2, 3, 7, 17, 33}) {
        for (bool with_bias : {true, false}) {
            CAPTURE(cols);
            CAPTURE(with_bias);
            const index_t rows = 3, n = rows * cols;
            std::vector<double> x(n), w(cols), b(cols), dout(n), out(n);
            for (auto& v : x) v = rng.normal(0.3, 1.5);
            for (auto& v : w) v = rng.normal(1.0, 0.5);
            for (auto& v : b) v = rng.normal();
            for (auto& v : dout) v = rng.normal();
            const double* bias = with_bias ? b.data() : nullptr;

            // LayerNorm.
            std::vector<double> mean(rows), rstd(rows), y(n), dx(n, 0.0), dw(cols, 0.0), db(cols, 0.0);
            kn::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), bias, rows, cols, eps);
            kn::layernorm_backward(dx.data(), dw.data(), with_bias ? db.data() : nullptr, dout.data(), x.data(), w.data(),
                                   mean.data(), rstd.data(), rows, cols);
            const auto ln = [&](std::vector<double>& o) {
                kn::layernorm_forward_reference<double>(o.data(), nullptr, nullptr, x.data(), w.data(), bias, rows, cols, eps);
            };
            // cols = 1: the output is the bias whatever x is; the gradient is 0 (and so is the FD).
            CHECK_TENSOR_CLOSE(as_tensor(dx), as_tensor(numeric_grad(ln, x, dout, out, h)), 1e-6, 1e-8);
            CHECK_TENSOR_CLOSE(as_tensor(dw), as_tensor(numeric_grad(ln, w, dout, out, h)), 1e-6, 1e-8);
            if (with_bias) CHECK_TENSOR_CLOSE(as_tensor(db), as_tensor(numeric_grad(ln, b, dout, out, h)), 1e-6, 1e-8);

            // RMSNorm (bias unused).
            std::fill(dx.begin(), dx.end(), 0.0);
            std::fill(dw.begin(), dw.end(), 0.0);
            kn::rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), rows, cols, eps);
            kn::rmsnorm_backward(dx.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), rows, cols);
            const auto rms = [&](std::vector<double>& o) {
                kn::rmsnorm_forward_reference<double>(o.data(), nullptr, x.data(), w.data(), rows, cols, eps);
            };
            CHECK_TENSOR_CLOSE(as_tensor(dx), as_tensor(numeric_grad(rms, x, dout, out, h)), 1e-6, 1e-8);
            CHECK_TENSOR_CLOSE(as_tensor(dw), as_tensor(numeric_grad(rms, w, dout, out, h)), 1e-6, 1e-8);
        }
    }
}

TEST_CASE_TEMPLATE("norm: known values", T, float, double) {
    const double tol = is_float<T> ? 1e-6 : 1e-14;
    const T x[4] = {T(1), T(2), T(3), T(4)};
    T y[4] = {}, mean = 0, rstd = 0;
    // mean 2.5, biased variance 1.25.
    kn::layernorm_forward<T>(y, &mean, &rstd, x, nullptr, nullptr, 1, 4, T(0));
    CHECK(mean == T(2.5));
    CHECK(std::abs(rstd - 1.0 / std::sqrt(1.25)) <= tol);
    for (int i = 0; i < 4; ++i) CHECK(std::abs(y[i] - (i + 1 - 2.5) / std::sqrt(1.25)) <= tol);
    const T w[4] = {T(2), T(2), T(2), T(2)}, b[4] = {T(1), T(1), T(1), T(1)};
    kn::layernorm_forward<T>(y, nullptr, nullptr, x, w, b, 1, 4, T(1e-5));
    for (int i = 0; i < 4; ++i) CHECK(std::abs(y[i] - (2 * (i + 1 - 2.5) / std::sqrt(1.25 + 1e-5) + 1)) <= tol);
    // Null weight/bias/statistics and a double eps need no explicit template argument.
    T y2[4];
    kn::layernorm_forward(y2, nullptr, nullptr, x, nullptr, nullptr, 1, 4, 1e-5);
    kn::rmsnorm_forward(y2, nullptr, x, nullptr, 1, 4, 1e-6);
    // RMSNorm: mean(x^2) = 7.5.
    kn::rmsnorm_forward<T>(y, &rstd, x, nullptr, 1, 4, T(0));
    CHECK(std::abs(rstd - 1.0 / std::sqrt(7.5)) <= tol);
    for (int i = 0; i < 4; ++i) CHECK(std::abs(y[i] - (i + 1) / std::sqrt(7.5)) <= tol);
    // A constant row: var 0, the output is the bias (rstd = 1/sqrt(eps)), no NaN.
    const T c[3] = {T(5), T(5), T(5)}, cb[3] = {T(0.5), T(-1), T(2)};
    kn::layernorm_forward<T>(y, nullptr, &rstd, c, nullptr, cb, 1, 3, T(1e-5));
    for (int i = 0; i < 3; ++i) CHECK(y[i] == cb[i]);
    CHECK(std::abs(rstd - 1.0 / std::sqrt(1e-5)) <= 1e-6 / std::sqrt(1e-5));
}

TEST_CASE("norm: float LayerNorm stays accurate for a large mean (two-pass variance)") {
    // x = 1e4 + N(0, 1): E[x^2] - mean^2 would lose all the digits of var in float.
    Rng rng(34);
    const index_t rows = 4, cols = 257;
    std::vector<float> x(rows * cols), y(rows * cols), rstd(rows);
    std::vector<double> xd(rows * cols), yd(rows * cols), rstd_d(rows);
    for (index_t i = 0; i < rows * cols; ++i) xd[i] = x[i] = static_cast<float>(rng.normal(1e4, 1.0));
    kn::layernorm_forward<float>(y.data(), nullptr, rstd.data(), x.data(), nullptr, nullptr, rows, cols, 1e-5f);
    kn::layernorm_forward_reference<double>(yd.data(), nullptr, rstd_d.data(), xd.data(), nullptr, nullptr, rows, cols, 1e-5);
    for (index_t r = 0; r < rows; ++r) CHECK(std::abs(rstd[r] - rstd_d[r]) <= 1e-3 * rstd_d[r]);
    for (index_t i = 0; i < rows * cols; ++i) CHECK(std::abs(y[i] - yd[i]) <= 2e-3);
}

TEST_CASE_TEMPLATE("norm: threaded dweight/dbias are accurate and thread-count independent", T, float, double) {
    Rng rng(35);
    for (index_t cols : {64, 300}) {
        CAPTURE(cols);
        const index_t rows = 2000, n = rows * cols;  // several row blocks
        const Array<T> x(n, 1, rng, 0.0, 1.0), w(cols, 0, rng, 1.0, 0.2), dout(n, 0, rng, 0.0, 1.0);
        Array<T> mean(rows, 0), rstd(rows, 0), y(n, 0);
        kn::layernorm_forward(y.p, mean.p, rstd.p, x.p, w.p, static_cast<const T*>(nullptr), rows, cols, T(1e-5));
        const auto run = [&](int threads) {
            Array<T> dx(n, 0), dw(cols, 0), db(cols, 0);
            std::fill(dx.p, dx.p + n, T(0));
            std::fill(dw.p, dw.p + cols, T(0.5));
            std::fill(db.p, db.p + cols, T(-0.5));
            const int saved = get_num_threads();
            set_num_threads(threads);
            kn::layernorm_backward(dx.p, dw.p, db.p, dout.p, x.p, w.p, mean.p, rstd.p, rows, cols);
            set_num_threads(saved);
            return std::vector<Tensor<T>>{dx.tensor(), dw.tensor(), db.tensor()};
        };
        const auto one = run(1), many = run(get_num_threads()), three = run(3);
        for (int k = 0; k < 3; ++k) {
            CHECK_TENSOR_CLOSE(many[k], one[k], 0.0, 0.0);  // bit for bit
            CHECK_TENSOR_CLOSE(three[k], one[k], 0.0, 0.0);
        }
        Array<T> dx_ref(n, 0), dw_ref(cols, 0), db_ref(cols, 0);
        std::fill(dx_ref.p, dx_ref.p + n, T(0));
        std::fill(dw_ref.p, dw_ref.p + cols, T(0.5));
        std::fill(db_ref.p, db_ref.p + cols, T(-0.5));
        kn::layernorm_backward_reference(dx_ref.p, dw_ref.p, db_ref.p, dout.p, x.p, w.p, mean.p, rstd.p, rows, cols);
        CHECK_TENSOR_CLOSE(one[0], dx_ref.tensor(), 4 * sum_tol<T>(cols), 4 * sum_tol<T>(cols));
        CHECK_TENSOR_CLOSE(one[1], dw_ref.tensor(), 4 * sum_tol<T>(rows), 4 * sum_tol<T>(rows));
        CHECK_TENSOR_CLOSE(one[2], db_ref.tensor(), 4 * sum_tol<T>(rows), 4 * sum_tol<T>(rows));

        // RMSNorm's dweight likewise.
        kn::rmsnorm_forward(y.p, rstd.p, x.p, w.p, rows, cols, T(1e-6));
        Array<T> dw1(cols, 0), dw2(cols, 0), dw_r(cols, 0);
        std::fill(dw1.p, dw1.p + cols, T(0));
        std::fill(dw2.p, dw2.p + cols, T(0));
        std::fill(dw_r.p, dw_r.p + cols, T(0));
        const int saved = get_num_threads();
        set_num_threads(1);
        kn::rmsnorm_backward<T>(nullptr, dw1.p, dout.p, x.p, w.p, rstd.p, rows, cols);
        set_num_threads(saved);
        kn::rmsnorm_backward<T>(nullptr, dw2.p, dout.p, x.p, w.p, rstd.p, rows, cols);
        kn::rmsnorm_backward_reference<T>(nullptr, dw_r.p, dout.p, x.p, w.p, rstd.p, rows, cols);
        CHECK_TENSOR_CLOSE(dw2.tensor(), dw1.tensor(), 0.0, 0.0);
        CHECK_TENSOR_CLOSE(dw2.tensor(), dw_r.tensor(), 4 * sum_tol<T>(rows), 4 * sum_tol<T>(rows));
    }
}

TEST_CASE_TEMPLATE("norm: invalid arguments throw", T, float, double) {
    T buf[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    T stats[2] = {0, 1};
    CHECK_THROWS_AS(kn::layernorm_forward<T>(buf, nullptr, nullptr, buf, nullptr, nullptr, -1, 4, T(1e-5)), Error);
    CHECK_THROWS_AS(kn::layernorm_forward<T>(buf, nullptr, nullptr, buf, nullptr, nullptr, 2, -4, T(1e-5)), Error);
    CHECK_THROWS_AS(kn::layernorm_forward<T>(buf, nullptr, nullptr, buf, nullptr, nullptr, 2, 0, T(1e-5)), Error);
    CHECK_THROWS_AS(kn::layernorm_forward<T>(buf, nullptr, nullptr, buf, nullptr, nullptr, 2, 4, T(-1)), Error);
    CHECK_THROWS_AS(kn::layernorm_forward<T>(nullptr, nullptr, nullptr, buf, nullptr, nullptr, 2, 4, T(1e-5)), Error);
    CHECK_THROWS_AS(kn::layernorm_forward_reference<T>(buf, nullptr, nullptr, buf, nullptr, nullptr, 2, 0, T(1e-5)), Error);
    CHECK_THROWS_AS(kn::rmsnorm_forward<T>(buf, nullptr, buf, nullptr, -2, 4, T(1e-5)), Error);
    CHECK_THROWS_AS(kn::rmsnorm_forward<T>(buf, nullptr, nullptr, nullptr, 2, 4, T(1e-5)), Error);
    // The backward needs the saved statistics.
    CHECK_THROWS_AS(kn::layernorm_backward<T>(buf, nullptr, nullptr, buf, buf, nullptr, nullptr, stats, 2, 4), Error);
    CHECK_THROWS_AS(kn::layernorm_backward<T>(buf, nullptr, nullptr, buf, buf, nullptr, stats, stats, 2, -4), Error);
    CHECK_THROWS_AS(kn::rmsnorm_backward<T>(nullptr, buf, buf, buf, nullptr, nullptr, 2, 4), Error);
    CHECK_THROWS_AS(kn::rmsnorm_backward_reference<T>(buf, nullptr, buf, buf, nullptr, nullptr, 2, 4), Error);
    // Empty inputs and no wanted gradient are fine.
    CHECK_NOTHROW(kn::layernorm_forward<T>(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 4, T(1e-5)));
    CHECK_NOTHROW(kn::rmsnorm_backward<T>(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 2, 4));
    try {
        kn::rmsnorm_forward<T>(buf, nullptr, buf, nullptr, 3, -1, T(1e-5));
        FAIL("expected an Error");
    } catch (const Error& e) {
        const std::string msg = e.what();
        CHECK(msg.find("rmsnorm_forward") != std::string::npos);
        CHECK(msg.find("(3, -1)") != std::string::npos);
    }
}
