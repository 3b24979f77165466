// Tests for include/llmblocks/kernels/elementwise.hpp: the SIMD path against
// its scalar reference at awkward sizes and unaligned offsets, in float and
// double; known values (PyTorch 1.13, float64); backward kernels against
// central finite differences of the forward reference in double, and their
// accumulation (+=); the threaded path; invalid arguments.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "llmblocks/core/memory.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/core/tensor.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/elementwise.hpp"
#include "support/compare.hpp"

using namespace llmblocks;
namespace kn = llmblocks::kernels;

namespace {

const index_t kSizes[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 127, 257, 1000};

// n random values at `offset` elements past a 64-byte boundary (offset 1: unaligned).
template <class T>
struct Array {
    AlignedBuffer<T> mem;
    T* p;
    index_t n;
    Array(index_t size, index_t offset) : mem(size + offset), p(mem.data() + offset), n(size) {}
    Array(index_t size, index_t offset, Rng& rng, double scale) : Array(size, offset) {
        for (index_t i = 0; i < n; ++i) p[i] = static_cast<T>(scale * rng.normal());
    }
    Array copy(index_t offset) const {
        Array c(n, offset);
        std::copy(p, p + n, c.p);
        return c;
    }
};

template <class T>
Tensor<T> as_tensor(const T* p, index_t n) {
    return Tensor<T>::from_vector({n}, std::vector<T>(p, p + n));
}

#define CHECK_ARRAYS_CLOSE(actual, expected, n, rtol, atol) \
    CHECK_TENSOR_CLOSE(as_tensor((actual), (n)), as_tensor((expected), (n)), (rtol), (atol))

template <class T>
constexpr bool is_float = std::is_same_v<T, float>;


// A unary kernel, its reference, and the tolerances of SIMD vs reference.
template <class T>
struct UnaryCase {
    std::string name;
    void (*simd)(T*, const T*, index_t);
    void (*reference)(T*, const T*, index_t);
    double rtol, atol;
};

template <class T>
std::vector<UnaryCase<T>> unary_cases() {
    // float: xsimd's exp/erfc are within ~2 ulp of the libm values; the GELU
    // references use the literal erf / tanh formulas, whose 1 + erf(.) and
    // 1 + tanh(.) lose absolute accuracy ~ |x| * eps for x << 0, hence the atol.
    // double: xsimd's double erfc is good to ~1e-14 absolute (5e-12 relative in
    // the far left tail), so exact GELU gets a wider double atol.
    const double r = is_float<T> ? 2e-6 : 1e-13;
    const double a = is_float<T> ? 2e-6 : 1e-14;
    return {
        {"exp", &kn::exp<T>, &kn::exp_reference<T>, is_float<T> ? 5e-7 : 1e-15, 0.0},
        {"gelu_forward", &kn::gelu_forward<T>, &kn::gelu_forward_reference<T>, r, is_float<T> ? a : 5e-14},
        {"gelu_tanh_forward", &kn::gelu_tanh_forward<T>, &kn::gelu_tanh_forward_reference<T>, r, a},
        {"silu_forward", &kn::silu_forward<T>, &kn::silu_forward_reference<T>, r, a},
        {"relu_forward", &kn::relu_forward<T>, &kn::relu_forward_reference<T>, 0.0, 0.0},
    };
}

template <class T>
struct BackwardCase {
    std::string name;
    void (*simd)(T*, const T*, const T*, index_t);
    void (*reference)(T*, const T*, const T*, index_t);
    void (*forward_reference)(double*, const double*, index_t);  // for finite differences
    double rtol, atol;
};

template <class T>
std::vector<BackwardCase<T>> backward_cases() {
    const double r = is_float<T> ? 4e-6 : 1e-13;
    const double a = is_float<T> ? 4e-6 : 1e-14;
    return {
        {"gelu_backward", &kn::gelu_backward<T>, &kn::gelu_backward_reference<T>, &kn::gelu_forward_reference<double>, r,
         is_float<T> ? a : 5e-14},
        {"gelu_tanh_backward", &kn::gelu_tanh_backward<T>, &kn::gelu_tanh_backward_reference<T>,
         &kn::gelu_tanh_forward_reference<double>, r, a},
        {"silu_backward", &kn::silu_backward<T>, &kn::silu_backward_reference<T>, &kn::silu_forward_reference<double>, r, a},
        {"relu_backward", &kn::relu_backward<T>, &kn::relu_backward_reference<T>, &kn::relu_forward_reference<double>, 0.0,
         0.0},
    };
}

template <class T>
T eval1(void (*f)(T*, const T*, index_t), T x) {
    T y;
    f(&y, &x, 1);
    return y;
}

}  // namespace

TEST_CASE_TEMPLATE("elementwise: add, sub, mul, scale, axpy match the reference", T, float, double) {
    Rng rng(1);
    for (index_t n : kSizes) {
        for (index_t off : {0, 1}) {
            CAPTURE(n);
            CAPTURE(off);
            const Array<T> a(n, off, rng, 1.0), b(n, 1 - off, rng, 1.0);
            Array<T> out(n, off), ref(n, 0);
            // The arithmetic is the same IEEE operation per element: bit-exact.
            kn::add(out.p, a.p, b.p, n);
            kn::add_reference(ref.p, a.p, b.p, n);
            CHECK_ARRAYS_CLOSE(out.p, ref.p, n, 0.0, 0.0);
            kn::sub(out.p, a.p, b.p, n);
            kn::sub_reference(ref.p, a.p, b.p, n);
            CHECK_ARRAYS_CLOSE(out.p, ref.p, n, 0.0, 0.0);
            kn::mul(out.p, a.p, b.p, n);
            kn::mul_reference(ref.p, a.p, b.p, n);
            CHECK_ARRAYS_CLOSE(out.p, ref.p, n, 0.0, 0.0);
            kn::scale(out.p, a.p, T(-1.75), n);
            kn::scale_reference(ref.p, a.p, T(-1.75), n);
            CHECK_ARRAYS_CLOSE(out.p, ref.p, n, 0.0, 0.0);
            // axpy may fuse the multiply-add (one rounding instead of two).
            Array<T> y = b.copy(off), y_ref = b.copy(0);
            kn::axpy(y.p, T(0.3), a.p, n);
            kn::axpy_reference(y_ref.p, T(0.3), a.p, n);
            CHECK_ARRAYS_CLOSE(y.p, y_ref.p, n, is_float<T> ? 1e-6 : 1e-15, is_float<T> ? 1e-7 : 1e-16);
        }
    }
}

TEST_CASE_TEMPLATE("elementwise: in-place (out == input)", T, float, double) {
    Rng rng(2);
    const index_t n = 37;
    const Array<T> a(n, 1, rng, 2.0), b(n, 0, rng, 2.0);
    Array<T> ref(n, 0), x = a.copy(1);
    kn::add_reference(ref.p, a.p, b.p, n);
    kn::add(x.p, x.p, b.p, n);
    CHECK_ARRAYS_CLOSE(x.p, ref.p, n, 0.0, 0.0);
    x = a.copy(1);
    kn::gelu_forward_reference(ref.p, a.p, n);
    kn::gelu_forward(x.p, x.p, n);
    CHECK_ARRAYS_CLOSE(x.p, ref.p, n, 1e-5, 1e-6);
}

TEST_CASE_TEMPLATE("elementwise: unary kernels match the reference", T, float, double) {
    Rng rng(3);
    for (const auto& op : unary_cases<T>()) {
        for (index_t n : kSizes) {
            for (index_t off : {0, 1}) {
                CAPTURE(op.name);
                CAPTURE(n);
                CAPTURE(off);
                const Array<T> x(n, off, rng, 3.0);  // reaches into the tails (|x| up to ~10)
                Array<T> out(n, 1 - off), ref(n, 0);
                op.simd(out.p, x.p, n);
                op.reference(ref.p, x.p, n);
                CHECK_ARRAYS_CLOSE(out.p, ref.p, n, op.rtol, op.atol);
            }
        }
    }
}

TEST_CASE_TEMPLATE("elementwise: backward kernels match the reference and accumulate", T, float, double) {
    Rng rng(4);
    for (const auto& op : backward_cases<T>()) {
        for (index_t n : kSizes) {
            for (index_t off : {0, 1}) {
                CAPTURE(op.name);
                CAPTURE(n);
                CAPTURE(off);
                const Array<T> x(n, off, rng, 3.0), dout(n, 1 - off, rng, 1.0), d0(n, 0, rng, 1.0);
                Array<T> dinp = d0.copy(off), ref = d0.copy(0), zero_start(n, 1 - off), grad_ref(n, 0);
                op.simd(dinp.p, x.p, dout.p, n);
                op.reference(ref.p, x.p, dout.p, n);
                CHECK_ARRAYS_CLOSE(dinp.p, ref.p, n, op.rtol, op.atol);
                // Accumulation: starting from d0 gives d0 + the gradient.
                std::fill(zero_start.p, zero_start.p + n, T(0));
                op.simd(zero_start.p, x.p, dout.p, n);
                for (index_t i = 0; i < n; ++i) grad_ref.p[i] = d0.p[i] + zero_start.p[i];
                CHECK_ARRAYS_CLOSE(dinp.p, grad_ref.p, n, is_float<T> ? 1e-6 : 1e-15, is_float<T> ? 1e-7 : 1e-16);
            }
        }
    }
}

TEST_CASE("elementwise: backward kernels agree with finite differences of the forward (double)") {
    Rng rng(5);
    const double h = 1e-6;
    for (const auto& op : backward_cases<double>()) {
        CAPTURE(op.name);
        const index_t n = 257;
        Array<double> x(n, 1, rng, 3.0);
        x.p[0] = -9.0;  // far tail
        x.p[1] = 9.0;
        x.p[2] = 1e-3;  // near 0 (but away from ReLU's kink by more than h)
        x.p[3] = -1e-3;
        const Array<double> dout(n, 0, rng, 1.0);
        Array<double> dinp(n, 1), numeric(n, 0), xp(n, 0), xm(n, 0), fp(n, 0), fm(n, 0);
        std::fill(dinp.p, dinp.p + n, 0.0);
        op.simd(dinp.p, x.p, dout.p, n);
        for (index_t i = 0; i < n; ++i) {
            xp.p[i] = x.p[i] + h;
            xm.p[i] = x.p[i] - h;
        }
        op.forward_reference(fp.p, xp.p, n);
        op.forward_reference(fm.p, xm.p, n);
        for (index_t i = 0; i < n; ++i) numeric.p[i] = dout.p[i] * (fp.p[i] - fm.p[i]) / (2 * h);
        CHECK_ARRAYS_CLOSE(dinp.p, numeric.p, n, 1e-7, 1e-8);
    }
}

TEST_CASE_TEMPLATE("elementwise: known values", T, float, double) {
    const double tol = is_float<T> ? 2e-7 : 1e-15;
    const auto close = [&](T got, double want) {
        CAPTURE(got);
        CAPTURE(want);
        CHECK(std::abs(static_cast<double>(got) - want) <= tol * std::max(1.0, std::abs(want)));
    };
    // PyTorch 1.13 float64: F.gelu, F.gelu(approximate='tanh'), F.silu.
    const T xs[] = {T(-3), T(-0.5), T(0), T(0.5), T(1), T(2)};
    const double gelu[] = {-0.00404969409489031, -0.15426876936299344, 0.0, 0.34573123063700656, 0.841344746068543,
                           1.9544997361036416};
    const double gelu_tanh[] = {-0.0036373920817729943, -0.15428599017485606, 0.0, 0.34571400982514394,
                                0.8411919906082768, 1.954597694087775};
    const double silu[] = {-0.14227761953270035, -0.1887703343990727, 0.0, 0.3112296656009273, 0.7310585786300049,
                           1.7615941559557646};
    for (int i = 0; i < 6; ++i) {
        CAPTURE(xs[i]);
        close(eval1(&kn::gelu_forward<T>, xs[i]), gelu[i]);
        close(eval1(&kn::gelu_forward_reference<T>, xs[i]), gelu[i]);
        close(eval1(&kn::gelu_tanh_forward<T>, xs[i]), gelu_tanh[i]);
        close(eval1(&kn::gelu_tanh_forward_reference<T>, xs[i]), gelu_tanh[i]);
        close(eval1(&kn::silu_forward<T>, xs[i]), silu[i]);
        close(eval1(&kn::silu_forward_reference<T>, xs[i]), silu[i]);
        close(eval1(&kn::exp<T>, xs[i]), std::exp(static_cast<double>(xs[i])));
    }
    // Special values.
    const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
    CHECK(eval1(&kn::exp<T>, -inf) == T(0));
    CHECK(eval1(&kn::exp<T>, T(1000)) == inf);
    CHECK(eval1(&kn::relu_forward<T>, T(-2)) == T(0));
    CHECK(eval1(&kn::relu_forward<T>, T(0)) == T(0));
    CHECK(std::isnan(eval1(&kn::relu_forward<T>, nan)));
    CHECK(eval1(&kn::silu_forward<T>, T(-1000)) == T(0));  // exp(1000) overflows: 0, not NaN
    CHECK(eval1(&kn::gelu_tanh_forward<T>, T(-1000)) == T(0));
    CHECK(eval1(&kn::gelu_forward<T>, T(-1000)) == T(0));
    CHECK(eval1(&kn::gelu_forward<T>, T(200)) == T(200));
    // A double scalar with T arrays needs no explicit template argument.
    T arr[3] = {T(1), T(2), T(3)};
    kn::scale(arr, arr, 2.0, 3);
    kn::axpy(arr, 0.5, arr, 3);
    CHECK(arr[2] == T(9));
    // relu'(0) = 0, as PyTorch.
    T x0 = 0, dy = 1, dx = 0.5;
    kn::relu_backward(&dx, &x0, &dy, 1);
    CHECK(dx == T(0.5));
    // Large |x|: derivatives are finite and tend to 0 or 1.
    for (auto backward : {&kn::gelu_backward<T>, &kn::gelu_tanh_backward<T>, &kn::silu_backward<T>}) {
        for (T x : {T(-200), T(-30), T(30), T(200)}) {
            T g = 0;
            backward(&g, &x, &dy, 1);
            CAPTURE(x);
            CHECK(std::isfinite(g));
            CHECK(std::abs(g - (x > 0 ? T(1) : T(0))) < T(1e-6));
        }
    }
}

TEST_CASE("elementwise: float GELU keeps its relative accuracy in the left tail") {
    // The SIMD path's erfc / sigmoid forms against the double reference: the
    // literal erf / tanh forms in float lose all digits here (1 + erf(x/sqrt2) cancels).
    const index_t n = 64;
    std::vector<float> x(n), y(n);
    std::vector<double> xd(n), yd(n);
    for (index_t i = 0; i < n; ++i) xd[i] = x[i] = -2.0f - 0.0625f * static_cast<float>(i);  // -2 .. -5.9
    kn::gelu_forward(y.data(), x.data(), n);
    kn::gelu_forward_reference(yd.data(), xd.data(), n);
    for (index_t i = 0; i < n; ++i) CHECK(std::abs(y[i] - yd[i]) <= 1e-5 * std::abs(yd[i]));
    kn::gelu_tanh_forward(y.data(), x.data(), n);
    kn::gelu_tanh_forward_reference(yd.data(), xd.data(), n);
    for (index_t i = 0; i < n; ++i) CHECK(std::abs(y[i] - yd[i]) <= 1e-5 * std::abs(yd[i]));
}

TEST_CASE_TEMPLATE("elementwise: the threaded path matches the reference", T, float, double) {
    Rng rng(6);
    const index_t n = 3 * kn::kArithmeticGrain + 13;  // several chunks and a partial last batch
    const Array<T> a(n, 1, rng, 3.0), b(n, 0, rng, 1.0);
    Array<T> out(n, 0), ref(n, 0);
    kn::add(out.p, a.p, b.p, n);
    kn::add_reference(ref.p, a.p, b.p, n);
    CHECK_ARRAYS_CLOSE(out.p, ref.p, n, 0.0, 0.0);
    kn::gelu_tanh_forward(out.p, a.p, n);
    kn::gelu_tanh_forward_reference(ref.p, a.p, n);
    CHECK_ARRAYS_CLOSE(out.p, ref.p, n, is_float<T> ? 2e-6 : 1e-13, is_float<T> ? 2e-6 : 1e-14);
    // Same bits whatever the thread count (every element takes the same vector code).
    Array<T> one_thread(n, 0);
    const int threads = get_num_threads();
    set_num_threads(1);
    kn::gelu_tanh_forward(one_thread.p, a.p, n);
    set_num_threads(threads);
    CHECK_ARRAYS_CLOSE(out.p, one_thread.p, n, 0.0, 0.0);
}

TEST_CASE_TEMPLATE("elementwise: invalid arguments throw", T, float, double) {
    T buf[4] = {1, 2, 3, 4};
    CHECK_THROWS_AS(kn::add(buf, buf, buf, index_t{-1}), Error);
    CHECK_THROWS_AS(kn::add_reference(buf, buf, buf, index_t{-1}), Error);
    CHECK_THROWS_AS(kn::scale(buf, buf, T(2), index_t{-3}), Error);
    CHECK_THROWS_AS(kn::axpy(buf, T(2), buf, index_t{-3}), Error);
    CHECK_THROWS_AS(kn::exp(buf, buf, index_t{-1}), Error);
    CHECK_THROWS_AS(kn::gelu_forward(buf, buf, index_t{-1}), Error);
    CHECK_THROWS_AS(kn::gelu_backward(buf, buf, buf, index_t{-1}), Error);
    CHECK_THROWS_AS(kn::silu_backward_reference(buf, buf, buf, index_t{-1}), Error);
    CHECK_THROWS_AS(kn::relu_forward(static_cast<T*>(nullptr), buf, index_t{4}), Error);
    CHECK_THROWS_AS(kn::mul(buf, buf, static_cast<const T*>(nullptr), index_t{4}), Error);
    // n = 0 touches nothing: null arrays are fine.
    CHECK_NOTHROW(kn::add<T>(nullptr, nullptr, nullptr, index_t{0}));
    try {
        kn::sub(buf, buf, buf, index_t{-5});
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find("sub") != std::string::npos);
        CHECK(std::string(e.what()).find("-5") != std::string::npos);
    }
}
