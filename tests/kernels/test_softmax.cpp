// Tests for include/llmblocks/kernels/softmax.hpp: softmax and log-softmax,
// forward and backward, SIMD against the scalar reference over several rows of
// awkward widths at unaligned offsets (float and double); backward against
// central finite differences of the forward reference (double) and its
// accumulation (+=); large logits, -inf masks, fully masked rows, NaN; threaded
// rows; invalid arguments.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "llmblocks/core/memory.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/core/tensor.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/softmax.hpp"
#include "support/compare.hpp"

using namespace llmblocks;
namespace kn = llmblocks::kernels;

namespace {

const index_t kCols[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 127, 257, 1000};

// rows x cols values at `offset` elements past a 64-byte boundary.
template <class T>
struct Rows {
    AlignedBuffer<T> mem;
    T* p;
    index_t rows, cols;
    Rows(index_t r, index_t c, index_t offset) : mem(r * c + offset), p(mem.data() + offset), rows(r), cols(c) {}
    Rows(index_t r, index_t c, index_t offset, Rng& rng, double scale) : Rows(r, c, offset) {
        for (index_t i = 0; i < r * c; ++i) p[i] = static_cast<T>(scale * rng.normal());
    }
    Rows copy(index_t offset) const {
        Rows out(rows, cols, offset);
        std::copy(p, p + rows * cols, out.p);
        return out;
    }
    Tensor<T> tensor() const { return Tensor<T>::from_vector({rows, cols}, std::vector<T>(p, p + rows * cols)); }
};

template <class T>
constexpr bool is_float = std::is_same_v<T, float>;

// Tolerance (relative and absolute) of SIMD vs reference for rows of `cols`:
// both sum the row in T, in different orders, and a sum of n terms carries
// rounding errors of order sqrt(n) eps (n eps at worst); exp adds ~2 ulp.
template <class T>
double row_tol(index_t cols) {
    return (is_float<T> ? 1.5e-6 : 3e-15) * (1.0 + std::sqrt(static_cast<double>(cols)));
}

using Kernel = void (*)(double*, const double*, index_t, index_t);

// d/dx of L(x) = sum(dout * forward(x)) by central differences, row by row.
std::vector<double> numeric_grad(Kernel forward, const std::vector<double>& x, const std::vector<double>& dout,
                                 index_t rows, index_t cols, double h) {
    std::vector<double> grad(x.size()), xp(x), y(x.size());
    const auto loss = [&](const std::vector<double>& v) {
        forward(y.data(), v.data(), rows, cols);
        double l = 0.0;
        for (std::size_t i = 0; i < y.size(); ++i) l += dout[i] * y[i];
        return l;
    };
    for (std::size_t i = 0; i < x.size(); ++i) {
        xp[i] = x[i] + h;
        const double lp = loss(xp);
        xp[i] = x[i] - h;
        const double lm = loss(xp);
        xp[i] = x[i];
        grad[i] = (lp - lm) / (2 * h);
    }
    return grad;
}

}  // namespace

TEST_CASE_TEMPLATE("softmax: forward kernels match the reference", T, float, double) {
    Rng rng(21);
    for (index_t rows : {1, 3}) {
        for (index_t cols : kCols) {
            for (index_t off : {0, 1}) {
                CAPTURE(rows);
                CAPTURE(cols);
                CAPTURE(off);
                const Rows<T> x(rows, cols, off, rng, 4.0);
                Rows<T> y(rows, cols, 1 - off), y_ref(rows, cols, 0);
                kn::softmax_forward(y.p, x.p, rows, cols);
                kn::softmax_forward_reference(y_ref.p, x.p, rows, cols);
                CHECK_TENSOR_CLOSE(y.tensor(), y_ref.tensor(), row_tol<T>(cols), 1e-4 * row_tol<T>(cols));
                for (index_t r = 0; r < rows; ++r) {
                    double s = 0.0;
                    for (index_t j = 0; j < cols; ++j) s += y.p[r * cols + j];
                    CHECK(std::abs(s - 1.0) <= (is_float<T> ? 1e-5 : 1e-13));
                }
                kn::log_softmax_forward(y.p, x.p, rows, cols);
                kn::log_softmax_forward_reference(y_ref.p, x.p, rows, cols);
                CHECK_TENSOR_CLOSE(y.tensor(), y_ref.tensor(), row_tol<T>(cols), row_tol<T>(cols));
                for (index_t r = 0; r < rows; ++r) {
                    double s = 0.0;  // log-probabilities: sum of exp is 1
                    for (index_t j = 0; j < cols; ++j) s += std::exp(static_cast<double>(y.p[r * cols + j]));
                    CHECK(std::abs(s - 1.0) <= (is_float<T> ? 1e-5 : 1e-13));
                }
            }
        }
    }
}

TEST_CASE_TEMPLATE("softmax: backward kernels match the reference and accumulate", T, float, double) {
    Rng rng(22);
    for (index_t rows : {1, 3}) {
        for (index_t cols : kCols) {
            for (index_t off : {0, 1}) {
                CAPTURE(rows);
                CAPTURE(cols);
                CAPTURE(off);
                const Rows<T> x(rows, cols, off, rng, 2.0), dout(rows, cols, 1 - off, rng, 1.0), d0(rows, cols, 0, rng, 1.0);
                Rows<T> y(rows, cols, off), logy(rows, cols, 1 - off);
                kn::softmax_forward_reference(y.p, x.p, rows, cols);
                kn::log_softmax_forward_reference(logy.p, x.p, rows, cols);

                Rows<T> dinp = d0.copy(off), dinp_ref = d0.copy(0), from_zero(rows, cols, 1 - off);
                kn::softmax_backward(dinp.p, y.p, dout.p, rows, cols);
                kn::softmax_backward_reference(dinp_ref.p, y.p, dout.p, rows, cols);
                CHECK_TENSOR_CLOSE(dinp.tensor(), dinp_ref.tensor(), row_tol<T>(cols), row_tol<T>(cols));
                std::fill(from_zero.p, from_zero.p + rows * cols, T(0));
                kn::softmax_backward(from_zero.p, y.p, dout.p, rows, cols);
                Tensor<T> expected = d0.tensor();
                for (index_t i = 0; i < rows * cols; ++i) expected.data()[i] += from_zero.p[i];
                CHECK_TENSOR_CLOSE(dinp.tensor(), expected, is_float<T> ? 1e-6 : 1e-15, is_float<T> ? 1e-7 : 1e-16);

                dinp = d0.copy(off);
                dinp_ref = d0.copy(0);
                kn::log_softmax_backward(dinp.p, logy.p, dout.p, rows, cols);
                kn::log_softmax_backward_reference(dinp_ref.p, logy.p, dout.p, rows, cols);
                CHECK_TENSOR_CLOSE(dinp.tensor(), dinp_ref.tensor(), row_tol<T>(cols), row_tol<T>(cols));
                std::fill(from_zero.p, from_zero.p + rows * cols, T(0));
                kn::log_softmax_backward(from_zero.p, logy.p, dout.p, rows, cols);
                expected = d0.tensor();
                for (index_t i = 0; i < rows * cols; ++i) expected.data()[i] += from_zero.p[i];
                CHECK_TENSOR_CLOSE(dinp.tensor(), expected, is_float<T> ? 1e-6 : 1e-15, is_float<T> ? 1e-7 : 1e-16);
            }
        }
    }
}

TEST_CASE("softmax: backward kernels agree with finite differences of the forward (double)") {
    Rng rng(23);
    for (index_t cols : {1, 2, 3, 7, 17, 33}) {
        CAPTURE(cols);
        const index_t rows = 3;
        const Rows<double> x(rows, cols, 1, rng, 2.0), dout(rows, cols, 0, rng, 1.0);
        const std::vector<double> xv(x.p, x.p + rows * cols), dv(dout.p, dout.p + rows * cols);
        Rows<double> y(rows, cols, 0), dinp(rows, cols, 1);

        kn::softmax_forward(y.p, x.p, rows, cols);
        std::fill(dinp.p, dinp.p + rows * cols, 0.0);
        kn::softmax_backward(dinp.p, y.p, dout.p, rows, cols);
        const auto g = numeric_grad(&kn::softmax_forward_reference<double>, xv, dv, rows, cols, 1e-5);
        CHECK_TENSOR_CLOSE(dinp.tensor(), TensorD::from_vector({rows, cols}, g), 1e-7, 1e-9);

        kn::log_softmax_forward(y.p, x.p, rows, cols);
        std::fill(dinp.p, dinp.p + rows * cols, 0.0);
        kn::log_softmax_backward(dinp.p, y.p, dout.p, rows, cols);
        const auto gl = numeric_grad(&kn::log_softmax_forward_reference<double>, xv, dv, rows, cols, 1e-5);
        CHECK_TENSOR_CLOSE(dinp.tensor(), TensorD::from_vector({rows, cols}, gl), 1e-7, 1e-9);
    }
}

TEST_CASE_TEMPLATE("softmax: large logits, masks and special rows", T, float, double) {
    const T inf = std::numeric_limits<T>::infinity();
    const double tol = is_float<T> ? 1e-6 : 1e-14;
    for (auto forward : {&kn::softmax_forward<T>, &kn::softmax_forward_reference<T>}) {
        // PyTorch 1.13 float64 softmax([1e4, 1e4 - 1, 1e4 - 3, -1e4]).
        const T x[4] = {T(1e4), T(1e4 - 1), T(1e4 - 3), T(-1e4)};
        T y[4];
        forward(y, x, 1, 4);
        CHECK(std::abs(y[0] - 0.7053845126982412) <= tol);
        CHECK(std::abs(y[1] - 0.25949646034241913) <= tol);
        CHECK(std::abs(y[2] - 0.03511902695933973) <= tol);
        CHECK(y[3] == T(0));
        // Masked entries get exactly 0; a fully masked row gives 0s (documented; PyTorch: NaN).
        std::vector<T> m(2 * 19, -inf);
        m[3] = T(2);
        m[5] = T(2);
        std::vector<T> p(2 * 19, T(7));
        forward(p.data(), m.data(), 2, 19);
        for (index_t j = 0; j < 19; ++j) CHECK(p[j] == (j == 3 || j == 5 ? T(0.5) : T(0)));
        for (index_t j = 19; j < 38; ++j) CHECK(p[j] == T(0));
        // NaN or +inf in a row: a NaN row (as PyTorch); the other rows are untouched by it.
        std::vector<T> bad = {T(1), std::numeric_limits<T>::quiet_NaN(), T(2), T(1), inf, T(2), T(1), T(2), T(3)};
        std::vector<T> q(9);
        forward(q.data(), bad.data(), 3, 3);
        for (index_t j = 0; j < 6; ++j) CHECK(std::isnan(q[j]));
        for (index_t j = 6; j < 9; ++j) CHECK(std::isfinite(q[j]));
    }
    for (auto forward : {&kn::log_softmax_forward<T>, &kn::log_softmax_forward_reference<T>}) {
        const T x[4] = {T(1e4), T(1e4 - 1), T(1e4 - 3), T(-1e4)};
        T y[4];
        forward(y, x, 1, 4);
        CHECK(std::abs(y[0] - -0.34901221676818633) <= tol);
        CHECK(std::abs(y[1] - -1.3490122167681864) <= tol);
        CHECK(std::abs(y[2] - -3.349012216768186) <= tol);
        CHECK(std::abs(y[3] - -20000.349012216768) <= (is_float<T> ? 2e-3 : 1e-10));
        const T two[2] = {T(0), T(0)};
        forward(y, two, 1, 2);
        CHECK(std::abs(y[0] + std::log(2.0)) <= tol);
        std::vector<T> m(17, -inf), out(17, T(7));
        m[16] = T(-3);
        forward(out.data(), m.data(), 1, 17);
        for (index_t j = 0; j < 16; ++j) CHECK(out[j] == -inf);
        CHECK(out[16] == T(0));
        m[16] = -inf;  // fully masked: log 0 = -inf everywhere (documented; PyTorch: NaN)
        forward(out.data(), m.data(), 1, 17);
        for (index_t j = 0; j < 17; ++j) CHECK(out[j] == -inf);
    }
    // Gradients through a masked row stay finite and are 0 at the masked entries.
    std::vector<T> x(33, -inf), y(33), dout(33, T(1)), dx(33, T(0));
    for (index_t j = 0; j < 33; j += 4) x[j] = T(j) / T(10);
    for (index_t j = 0; j < 33; ++j) dout[j] = T(j % 5) - T(2);
    kn::softmax_forward(y.data(), x.data(), 1, 33);
    kn::softmax_backward(dx.data(), y.data(), dout.data(), 1, 33);
    for (index_t j = 0; j < 33; ++j) {
        CHECK(std::isfinite(dx[j]));
        if (j % 4 != 0) CHECK(dx[j] == T(0));
    }
}

TEST_CASE_TEMPLATE("softmax: in place (out == inp)", T, float, double) {
    Rng rng(24);
    const Rows<T> x(4, 37, 1, rng, 3.0);
    Rows<T> y = x.copy(1), ref(4, 37, 0);
    kn::softmax_forward_reference(ref.p, x.p, 4, 37);
    kn::softmax_forward(y.p, y.p, 4, 37);
    CHECK_TENSOR_CLOSE(y.tensor(), ref.tensor(), row_tol<T>(37), row_tol<T>(37));
    y = x.copy(1);
    kn::log_softmax_forward_reference(ref.p, x.p, 4, 37);
    kn::log_softmax_forward(y.p, y.p, 4, 37);
    CHECK_TENSOR_CLOSE(y.tensor(), ref.tensor(), row_tol<T>(37), row_tol<T>(37));
}

TEST_CASE_TEMPLATE("softmax: threaded rows match the reference and the one-thread result", T, float, double) {
    Rng rng(25);
    const index_t rows = 97, cols = 1000;  // several row chunks
    const Rows<T> x(rows, cols, 1, rng, 3.0), dout(rows, cols, 0, rng, 1.0);
    Rows<T> y(rows, cols, 0), y_ref(rows, cols, 0), y1(rows, cols, 0);
    kn::softmax_forward(y.p, x.p, rows, cols);
    kn::softmax_forward_reference(y_ref.p, x.p, rows, cols);
    CHECK_TENSOR_CLOSE(y.tensor(), y_ref.tensor(), row_tol<T>(cols), 1e-4 * row_tol<T>(cols));
    const int threads = get_num_threads();
    set_num_threads(1);
    kn::softmax_forward(y1.p, x.p, rows, cols);
    set_num_threads(threads);
    CHECK_TENSOR_CLOSE(y.tensor(), y1.tensor(), 0.0, 0.0);
    Rows<T> dx(rows, cols, 0), dx_ref(rows, cols, 0);
    std::fill(dx.p, dx.p + rows * cols, T(0));
    std::fill(dx_ref.p, dx_ref.p + rows * cols, T(0));
    kn::log_softmax_forward(y.p, x.p, rows, cols);
    kn::log_softmax_backward(dx.p, y.p, dout.p, rows, cols);
    kn::log_softmax_backward_reference(dx_ref.p, y.p, dout.p, rows, cols);
    CHECK_TENSOR_CLOSE(dx.tensor(), dx_ref.tensor(), row_tol<T>(cols), row_tol<T>(cols));
}

TEST_CASE_TEMPLATE("softmax: invalid arguments throw", T, float, double) {
    T buf[6] = {1, 2, 3, 4, 5, 6};
    CHECK_THROWS_AS(kn::softmax_forward(buf, buf, index_t{-1}, index_t{3}), Error);
    CHECK_THROWS_AS(kn::softmax_forward(buf, buf, index_t{2}, index_t{-3}), Error);
    CHECK_THROWS_AS(kn::softmax_forward_reference(buf, buf, index_t{-1}, index_t{3}), Error);
    CHECK_THROWS_AS(kn::softmax_backward(buf, buf, buf, index_t{-2}, index_t{3}), Error);
    CHECK_THROWS_AS(kn::log_softmax_forward(buf, buf, index_t{1}, index_t{-1}), Error);
    CHECK_THROWS_AS(kn::log_softmax_backward_reference(buf, buf, buf, index_t{-1}, index_t{1}), Error);
    CHECK_THROWS_AS(kn::softmax_forward<T>(buf, nullptr, index_t{2}, index_t{3}), Error);
    CHECK_THROWS_AS(kn::log_softmax_backward<T>(buf, buf, nullptr, index_t{2}, index_t{3}), Error);
    CHECK_NOTHROW(kn::softmax_forward<T>(nullptr, nullptr, index_t{0}, index_t{5}));
    CHECK_NOTHROW(kn::softmax_forward<T>(nullptr, nullptr, index_t{4}, index_t{0}));
    try {
        kn::softmax_forward(buf, buf, index_t{2}, index_t{-3});
        FAIL("expected an Error");
    } catch (const Error& e) {
        const std::string msg = e.what();
        CHECK(msg.find("softmax_forward") != std::string::npos);
        CHECK(msg.find("(2, -3)") != std::string::npos);
    }
}
