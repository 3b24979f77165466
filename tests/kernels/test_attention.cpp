// Tests for include/llmblocks/kernels/attention.hpp: the fused forward and
// backward against the plain reference (every head layout, mask, bias, scale,
// decode offset, strided KV cache, tile-crossing sizes), the reference
// backward against central finite differences in double, += semantics,
// linear working memory, and the error messages.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "llmblocks/core/memory.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/core/tensor.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/attention.hpp"
#include "support/compare.hpp"

using namespace llmblocks;
using kernels::AttentionConfig;
using kernels::AttentionMask;
using kernels::BiasView;
using kernels::HeadsView;

namespace {

template <class T>
HeadsView<T> heads(const Tensor<T>& t) {  // a 4-d tensor with unit stride last
    REQUIRE(t.dim() == 4);
    REQUIRE(t.strides()[3] == 1);
    return HeadsView<T>(t.data(), t.strides()[0], t.strides()[1], t.strides()[2]);
}

template <class T>
BiasView<T> bias_of(const Tensor<T>& t) {
    if (!t.defined()) return {};
    return BiasView<T>(t.data(), t.strides()[0], t.strides()[1]);
}

// One attention problem: inputs, config, optional padding.
template <class T>
struct Problem {
    AttentionConfig c;
    Tensor<T> q, k, v, bias;  // (B, Hq, Tq, D), (B, Hkv, Tk, D) x2 (maybe views into a cache), (Hq, Tq, Tk)
    std::vector<index_t> lengths;       // (B)
    std::vector<std::uint8_t> kmask;    // (B, Tk)

    void finalize() {
        c.key_lengths = lengths.empty() ? nullptr : lengths.data();
        c.key_padding_mask = kmask.empty() ? nullptr : kmask.data();
    }
};

struct Spec {
    index_t B = 1, Hq = 2, Hkv = 2, Tq = 5, Tk = 5, D = 8;
    AttentionMask mask = AttentionMask::causal;
    index_t prefix = 0, window = 0, q_pos0 = 0;
    bool bias = false, lengths = false, kmask = false, kv_cache = false;
    double scale = 0;  // 0: default 1/sqrt(D)
    std::uint64_t seed = 1;
};

template <class T>
Problem<T> make_problem(const Spec& s) {
    Rng rng(s.seed);
    Problem<T> p;
    p.c.batch = s.B;
    p.c.n_heads = s.Hq;
    p.c.n_kv_heads = s.Hkv;
    p.c.q_len = s.Tq;
    p.c.kv_len = s.Tk;
    p.c.head_dim = s.D;
    p.c.mask = s.mask;
    p.c.prefix_length = s.prefix;
    p.c.window = s.window;
    p.c.q_pos0 = s.q_pos0;
    if (s.scale != 0) p.c.scale = s.scale;
    p.q = Tensor<T>::randn({s.B, s.Hq, s.Tq, s.D}, rng);
    if (s.kv_cache) {  // the filled part of a (B, Hkv, Tk + 11, D) cache
        p.k = Tensor<T>::randn({s.B, s.Hkv, s.Tk + 11, s.D}, rng).narrow(2, 0, s.Tk);
        p.v = Tensor<T>::randn({s.B, s.Hkv, s.Tk + 11, s.D}, rng).narrow(2, 0, s.Tk);
    } else {
        p.k = Tensor<T>::randn({s.B, s.Hkv, s.Tk, s.D}, rng);
        p.v = Tensor<T>::randn({s.B, s.Hkv, s.Tk, s.D}, rng);
    }
    if (s.bias) p.bias = Tensor<T>::randn({s.Hq, s.Tq, s.Tk}, rng);
    if (s.lengths) {
        for (index_t b = 0; b < s.B; ++b) p.lengths.push_back(b == 0 ? s.Tk : rng.randint(0, s.Tk + 1));
        if (s.B > 1) p.lengths[1] = 0;  // a fully padded batch element
    }
    if (s.kmask) {
        for (index_t i = 0; i < s.B * s.Tk; ++i) p.kmask.push_back(rng.uniform() < 0.7 ? 1 : 0);
        if (s.B > 1)
            for (index_t j = 0; j < s.Tk; ++j) p.kmask[s.Tk + j] = 0;  // batch element 1: no visible key
    }
    p.finalize();
    return p;
}

template <class T>
struct Forward {
    Tensor<T> out, lse;  // (B, Hq, Tq, D), (B, Hq, Tq)
};

template <class T>
Forward<T> forward(const Problem<T>& p, bool fused) {
    Forward<T> f;
    f.out = Tensor<T>::full({p.c.batch, p.c.n_heads, p.c.q_len, p.c.head_dim}, T(77));
    f.lse = Tensor<T>::full({p.c.batch, p.c.n_heads, p.c.q_len}, T(77));
    if (fused)
        kernels::attention_forward(heads(f.out), f.lse.data(), heads(p.q), heads(p.k), heads(p.v), bias_of(p.bias),
                                   p.c);
    else
        kernels::attention_reference(heads(f.out), f.lse.data(), heads(p.q), heads(p.k), heads(p.v),
                                     bias_of(p.bias), p.c);
    return f;
}

template <class T>
double max_abs(const Tensor<T>& t) {
    double m = 0;
    for (index_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(static_cast<double>(t.data()[i])));
    return m;
}

template <class T>
double tolerance() {
    return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

// lse with -inf replaced by a sentinel after checking both sides agree on where.
template <class T>
void check_lse(const Tensor<T>& a, const Tensor<T>& e) {
    Tensor<T> x = a.clone(), y = e.clone();
    double scale = 1.0;  // largest finite |lse|
    for (index_t i = 0; i < y.numel(); ++i)
        if (std::isfinite(y.data()[i])) scale = std::max(scale, std::abs(static_cast<double>(y.data()[i])));
    for (index_t i = 0; i < x.numel(); ++i) {
        const bool xi = std::isinf(x.data()[i]) && x.data()[i] < 0, yi = std::isinf(y.data()[i]) && y.data()[i] < 0;
        CHECK(xi == yi);
        if (xi) x.data()[i] = T(-1000);
        if (yi) y.data()[i] = T(-1000);
    }
    CHECK_TENSOR_CLOSE(x, y, 0.0, tolerance<T>() * scale);
}

template <class T>
void check_forward(const Spec& s) {
    const Problem<T> p = make_problem<T>(s);
    const Forward<T> fused = forward(p, true), ref = forward(p, false);
    INFO("B ", s.B, " Hq ", s.Hq, " Hkv ", s.Hkv, " Tq ", s.Tq, " Tk ", s.Tk, " D ", s.D, " mask ",
         std::string(kernels::attention_mask_name(s.mask)), " P ", s.prefix, " W ", s.window, " q_pos0 ", s.q_pos0, " bias ",
         s.bias, " lengths ", s.lengths, " kmask ", s.kmask, " cache ", s.kv_cache);
    CHECK_TENSOR_CLOSE(fused.out, ref.out, 0.0, tolerance<T>() * std::max(1.0, max_abs(ref.out)));
    check_lse(fused.lse, ref.lse);
}

template <class T>
struct Backward {
    Tensor<T> dq, dk, dv, dbias;
};

// Gradients from `start` values (to check +=), fused or reference.
template <class T>
Backward<T> backward(const Problem<T>& p, const Forward<T>& f, const Tensor<T>& dout, bool fused, bool want_bias) {
    Rng rng(99);
    Backward<T> g;
    g.dq = Tensor<T>::randn(p.q.shape(), rng);
    g.dk = Tensor<T>::randn({p.c.batch, p.c.n_kv_heads, p.c.kv_len, p.c.head_dim}, rng);
    g.dv = Tensor<T>::randn({p.c.batch, p.c.n_kv_heads, p.c.kv_len, p.c.head_dim}, rng);
    if (want_bias) g.dbias = Tensor<T>::randn({p.c.n_heads, p.c.q_len, p.c.kv_len}, rng);
    if (fused)
        kernels::attention_backward(heads(g.dq), heads(g.dk), heads(g.dv), bias_of(g.dbias), heads(dout),
                                    heads(f.out), f.lse.data(), heads(p.q), heads(p.k), heads(p.v), bias_of(p.bias),
                                    p.c);
    else
        kernels::attention_backward_reference(heads(g.dq), heads(g.dk), heads(g.dv), bias_of(g.dbias), heads(dout),
                                              heads(f.out), f.lse.data(), heads(p.q), heads(p.k), heads(p.v),
                                              bias_of(p.bias), p.c);
    return g;
}

template <class T>
void check_backward(const Spec& s) {
    const Problem<T> p = make_problem<T>(s);
    Rng rng(s.seed + 1000);
    const Tensor<T> dout = Tensor<T>::randn(p.q.shape(), rng);
    const Forward<T> f = forward(p, true);
    const Backward<T> fused = backward(p, f, dout, true, s.bias), ref = backward(p, f, dout, false, s.bias);
    INFO("B ", s.B, " Hq ", s.Hq, " Hkv ", s.Hkv, " Tq ", s.Tq, " Tk ", s.Tk, " D ", s.D, " mask ",
         std::string(kernels::attention_mask_name(s.mask)), " W ", s.window, " q_pos0 ", s.q_pos0, " bias ", s.bias, " lengths ",
         s.lengths, " kmask ", s.kmask);
    const double tol = std::is_same_v<T, float> ? 1e-4 : 1e-11;
    CHECK_TENSOR_CLOSE(fused.dq, ref.dq, 0.0, tol * std::max(1.0, max_abs(ref.dq)));
    CHECK_TENSOR_CLOSE(fused.dk, ref.dk, 0.0, tol * std::max(1.0, max_abs(ref.dk)));
    CHECK_TENSOR_CLOSE(fused.dv, ref.dv, 0.0, tol * std::max(1.0, max_abs(ref.dv)));
    if (s.bias) CHECK_TENSOR_CLOSE(fused.dbias, ref.dbias, 0.0, tol * std::max(1.0, max_abs(ref.dbias)));
}

}  // namespace

TEST_CASE("attention: fused forward equals the reference for MHA, MQA, GQA and every mask") {
    struct Layout {
        index_t Hq, Hkv;
    };
    for (const Layout lay : {Layout{3, 3}, Layout{4, 1}, Layout{6, 2}})
        for (const AttentionMask mask :
             {AttentionMask::causal, AttentionMask::bidirectional, AttentionMask::prefix_lm, AttentionMask::local})
            for (const index_t T_ : {1, 7, 33, 65, 130}) {
                Spec s;
                s.B = 2;
                s.Hq = lay.Hq;
                s.Hkv = lay.Hkv;
                s.Tq = s.Tk = T_;
                s.D = 8;
                s.mask = mask;
                s.prefix = T_ / 3;
                s.window = 5;
                s.seed = static_cast<std::uint64_t>(T_ * 31 + lay.Hq);
                check_forward<float>(s);
                check_forward<double>(s);
            }
}

TEST_CASE("attention: head dims 1, 7, 8, 64, 65 and long tiles") {
    for (const index_t D : {1, 7, 8, 64, 65}) {
        Spec s;
        s.Hq = 4;
        s.Hkv = 2;
        s.Tq = s.Tk = 130;
        s.D = D;
        check_forward<float>(s);
        check_forward<double>(s);
    }
    Spec big;  // several query and key tiles, all layouts of the benchmark
    big.Hq = 12;
    big.Tq = big.Tk = 200;
    big.D = 64;
    for (const index_t Hkv : {12, 4, 1}) {
        big.Hkv = Hkv;
        check_forward<float>(big);
    }
}

TEST_CASE("attention: local band narrower than the sequence, prefix-LM, bidirectional cross-attention") {
    for (const index_t W : {1, 3, 64, 100}) {
        Spec s;
        s.Hq = 2;
        s.Hkv = 1;
        s.Tq = s.Tk = 150;
        s.mask = AttentionMask::local;
        s.window = W;
        check_forward<float>(s);
        check_forward<double>(s);
    }
    for (const index_t P : {0, 1, 70, 150, 200}) {
        Spec s;
        s.Tq = s.Tk = 150;
        s.mask = AttentionMask::prefix_lm;
        s.prefix = P;
        check_forward<double>(s);
    }
    for (const index_t Tk : {1, 9, 77, 131}) {  // cross-attention: Tq != Tk
        Spec s;
        s.B = 2;
        s.Hq = 4;
        s.Hkv = 2;
        s.Tq = 19;
        s.Tk = Tk;
        s.mask = AttentionMask::bidirectional;
        check_forward<float>(s);
        check_forward<double>(s);
    }
}

TEST_CASE("attention: key padding (lengths and boolean mask) with fully padded rows gives 0, not NaN") {
    for (const AttentionMask mask : {AttentionMask::causal, AttentionMask::bidirectional, AttentionMask::local})
        for (const bool use_lengths : {true, false}) {
            Spec s;
            s.B = 3;
            s.Hq = 4;
            s.Hkv = 2;
            s.Tq = s.Tk = 70;
            s.mask = mask;
            s.window = 9;
            s.lengths = use_lengths;
            s.kmask = !use_lengths;
            check_forward<float>(s);
            check_forward<double>(s);
            // batch element 1 sees no key at all: out = 0 and lse = -inf
            const Problem<float> p = make_problem<float>(s);
            const Forward<float> f = forward(p, true);
            for (index_t h = 0; h < s.Hq; ++h)
                for (index_t i = 0; i < s.Tq; ++i) {
                    CHECK(f.lse(1, h, i) == -std::numeric_limits<float>::infinity());
                    for (index_t d = 0; d < s.D; ++d) CHECK(f.out(1, h, i, d) == 0.0f);
                }
        }
}

TEST_CASE("attention: additive bias (T5) and scale 1 vs 1/sqrt(D)") {
    for (const double scale : {0.0, 1.0})
        for (const AttentionMask mask : {AttentionMask::bidirectional, AttentionMask::causal}) {
            Spec s;
            s.B = 2;
            s.Hq = 4;
            s.Hkv = 4;
            s.Tq = 40;
            s.Tk = 70;
            s.D = 16;
            s.mask = mask;
            s.bias = true;
            s.scale = scale;
            check_forward<float>(s);
            check_forward<double>(s);
        }
    // scale 1 really differs from the default
    Spec s;
    s.bias = false;
    const Forward<double> a = forward(make_problem<double>(s), true);
    s.scale = 1.0;
    const Forward<double> b = forward(make_problem<double>(s), true);
    CHECK_FALSE(compare(a.out, b.out, 0.0, 1e-6).ok);
}

TEST_CASE("attention: decode into a strided KV cache (q_pos0 > 0, split keys)") {
    struct Layout {
        index_t Hq, Hkv;
    };
    for (const Layout lay : {Layout{12, 12}, Layout{12, 4}, Layout{12, 1}})
        for (const index_t Tq : {1, 3})
            for (const AttentionMask mask : {AttentionMask::causal, AttentionMask::local}) {
                Spec s;
                s.Hq = lay.Hq;
                s.Hkv = lay.Hkv;
                s.Tq = Tq;
                s.Tk = 300;
                s.q_pos0 = s.Tk - Tq;
                s.D = 64;
                s.mask = mask;
                s.window = 150;
                s.kv_cache = true;
                check_forward<float>(s);
                check_forward<double>(s);
            }
    // positions past the cache (all keys visible) and before it
    Spec s;
    s.Tq = 4;
    s.Tk = 50;
    s.q_pos0 = 100;
    s.kv_cache = true;
    check_forward<double>(s);
    s.q_pos0 = 10;
    check_forward<double>(s);
}

TEST_CASE("attention: one thread and many threads agree") {
    Spec s;
    s.Hq = 6;
    s.Hkv = 2;
    s.Tq = s.Tk = 100;
    const Problem<float> p = make_problem<float>(s);
    const Forward<float> many = forward(p, true);
    const int before = get_num_threads();
    set_num_threads(1);
    const Forward<float> one = forward(p, true);
    set_num_threads(0);
    CHECK(get_num_threads() == before);
    CHECK_TENSOR_CLOSE(one.out, many.out, 0.0, 0.0);
}

TEST_CASE("attention: fused backward equals the reference backward") {
    struct Layout {
        index_t Hq, Hkv;
    };
    for (const Layout lay : {Layout{3, 3}, Layout{4, 1}, Layout{6, 2}})
        for (const AttentionMask mask :
             {AttentionMask::causal, AttentionMask::bidirectional, AttentionMask::prefix_lm, AttentionMask::local})
            for (const index_t T_ : {1, 33, 70}) {
                Spec s;
                s.B = 2;
                s.Hq = lay.Hq;
                s.Hkv = lay.Hkv;
                s.Tq = s.Tk = T_;
                s.D = T_ == 33 ? 7 : 16;
                s.mask = mask;
                s.prefix = T_ / 2;
                s.window = 20;
                s.bias = T_ != 70;
                s.seed = static_cast<std::uint64_t>(T_ + lay.Hkv);
                check_backward<float>(s);
                check_backward<double>(s);
            }
    Spec s;  // padding, decode offset, cross-attention, strided cache, scale 1
    s.B = 3;
    s.Hq = 4;
    s.Hkv = 2;
    s.Tq = 9;
    s.Tk = 150;
    s.q_pos0 = 141;
    s.lengths = true;
    s.kmask = false;
    s.kv_cache = true;
    s.bias = true;
    s.scale = 1.0;
    check_backward<float>(s);
    check_backward<double>(s);
    s.lengths = false;
    s.kmask = true;
    s.mask = AttentionMask::bidirectional;
    check_backward<double>(s);
    s.Tq = 1;  // decode: one query, MQA
    s.Hkv = 1;
    s.Tk = 300;
    s.q_pos0 = 299;
    s.mask = AttentionMask::causal;
    check_backward<float>(s);
    check_backward<double>(s);
}

TEST_CASE("attention: backward accumulates (+=) and skips null gradients") {
    Spec s;
    s.Hq = 4;
    s.Hkv = 2;
    s.Tq = s.Tk = 40;
    s.bias = true;
    const Problem<double> p = make_problem<double>(s);
    const Forward<double> f = forward(p, true);
    Rng rng(3);
    const Tensor<double> dout = Tensor<double>::randn(p.q.shape(), rng);
    auto zeros_like = [](const Tensor<double>& t) { return Tensor<double>::zeros(t.shape()); };
    Tensor<double> dq = zeros_like(p.q), dk = zeros_like(p.k.contiguous()), dv = zeros_like(p.v.contiguous()),
                   db = zeros_like(p.bias);
    auto run = [&](bool with_q) {
        kernels::attention_backward(with_q ? heads(dq) : HeadsView<double>(), heads(dk), heads(dv), bias_of(db),
                                    heads(dout), heads(f.out), f.lse.data(), heads(p.q), heads(p.k), heads(p.v),
                                    bias_of(p.bias), p.c);
    };
    run(true);
    const Tensor<double> dq1 = dq.clone(), dk1 = dk.clone(), dv1 = dv.clone(), db1 = db.clone();
    run(false);  // dq not wanted: left alone; the others double
    CHECK_TENSOR_CLOSE(dq, dq1, 0.0, 0.0);
    for (index_t i = 0; i < dk1.numel(); ++i) {
        dk1.data()[i] *= 2;
        dv1.data()[i] *= 2;
    }
    for (index_t i = 0; i < db1.numel(); ++i) db1.data()[i] *= 2;
    CHECK_TENSOR_CLOSE(dk, dk1, 1e-12, 1e-12);
    CHECK_TENSOR_CLOSE(dv, dv1, 1e-12, 1e-12);
    CHECK_TENSOR_CLOSE(db, db1, 1e-12, 1e-12);
    CHECK(max_abs(dq1) > 0);
}

TEST_CASE("attention: reference backward equals central finite differences (double)") {
    for (const AttentionMask mask : {AttentionMask::causal, AttentionMask::local, AttentionMask::bidirectional}) {
        Spec s;
        s.B = 2;
        s.Hq = 4;
        s.Hkv = 2;
        s.Tq = 3;
        s.Tk = 5;
        s.D = 3;
        s.mask = mask;
        s.window = 2;
        s.q_pos0 = 2;
        s.bias = true;
        s.lengths = mask == AttentionMask::bidirectional;
        Problem<double> p = make_problem<double>(s);
        Rng rng(17);
        const Tensor<double> dout = Tensor<double>::randn(p.q.shape(), rng);
        const Forward<double> f = forward(p, false);
        Backward<double> g;
        g.dq = Tensor<double>::zeros(p.q.shape());
        g.dk = Tensor<double>::zeros(p.k.shape());
        g.dv = Tensor<double>::zeros(p.v.shape());
        g.dbias = Tensor<double>::zeros(p.bias.shape());
        kernels::attention_backward_reference(heads(g.dq), heads(g.dk), heads(g.dv), bias_of(g.dbias), heads(dout),
                                              heads(f.out), f.lse.data(), heads(p.q), heads(p.k), heads(p.v),
                                              bias_of(p.bias), p.c);
        auto loss = [&] {  // sum(out * dout)
            const Forward<double> ff = forward(p, false);
            double l = 0;
            for (index_t i = 0; i < ff.out.numel(); ++i) l += ff.out.data()[i] * dout.data()[i];
            return l;
        };
        auto check_grad = [&](Tensor<double>& x, const Tensor<double>& grad, const char* name) {
            INFO(name, " mask ", std::string(kernels::attention_mask_name(mask)));
            const double eps = 1e-6;
            for (index_t i = 0; i < x.numel(); ++i) {
                const double saved = x.data()[i];
                x.data()[i] = saved + eps;
                const double lp = loss();
                x.data()[i] = saved - eps;
                const double lm = loss();
                x.data()[i] = saved;
                const double fd = (lp - lm) / (2 * eps);
                CHECK(std::abs(fd - grad.data()[i]) <= 1e-7 + 1e-6 * std::abs(fd));
            }
        };
        check_grad(p.q, g.dq, "dq");
        check_grad(p.k, g.dk, "dk");
        check_grad(p.v, g.dv, "dv");
        check_grad(p.bias, g.dbias, "dbias");
    }
}

TEST_CASE("attention: forward working memory is linear in T (no T x T buffer)") {
    auto scratch_bytes = [](index_t T_, index_t Tq, index_t Hkv) {
        Spec s;
        s.Hq = 4;
        s.Hkv = Hkv;
        s.Tq = Tq;
        s.Tk = T_;
        s.q_pos0 = T_ - Tq;
        s.D = 16;
        const Problem<float> p = make_problem<float>(s);
        Tensor<float> out({s.B, s.Hq, Tq, s.D});
        Tensor<float> lse({s.B, s.Hq, Tq});
        const std::int64_t before = memory_stats().live_bytes;
        reset_peak_memory();
        kernels::attention_forward(heads(out), lse.data(), heads(p.q), heads(p.k), heads(p.v), BiasView<const float>(),
                                   p.c);
        const std::int64_t used = memory_stats().peak_bytes - before;
        CHECK(memory_stats().live_bytes == before);  // everything released
        return used;
    };
    for (const index_t Hkv : {4, 1}) {
        const std::int64_t small = scratch_bytes(256, 256, Hkv), large = scratch_bytes(2048, 2048, Hkv);
        INFO("Hkv ", Hkv, ": prefill scratch at T=256 ", small, " bytes, at T=2048 ", large, " bytes");
        CHECK(large <= 8 * small);  // T grew 8x
        CHECK(large < 2048 * 2048 * static_cast<std::int64_t>(sizeof(float)));  // one T x T float matrix
        const std::int64_t dsmall = scratch_bytes(256, 1, Hkv), dlarge = scratch_bytes(2048, 1, Hkv);
        INFO("decode scratch at T=256 ", dsmall, " bytes, at T=2048 ", dlarge, " bytes");
        CHECK(dlarge <= 8 * dsmall);
        CHECK(dlarge < 2048 * 64 * static_cast<std::int64_t>(sizeof(float)));
    }
}

TEST_CASE("attention: bad arguments throw errors naming the op and the shapes") {
    Spec s;
    s.Hq = 12;
    s.Hkv = 4;
    s.Tq = s.Tk = 4;
    Problem<float> p = make_problem<float>(s);
    Tensor<float> out({1, 12, 4, 8}), lse({1, 12, 4});
    auto fwd = [&] {
        kernels::attention_forward(heads(out), lse.data(), heads(p.q), heads(p.k), heads(p.v), BiasView<const float>(),
                                   p.c);
    };
    auto expect_error = [&](const std::string& needle1, const std::string& needle2) {
        try {
            fwd();
            FAIL("no error thrown; expected one mentioning ", needle1);
        } catch (const Error& e) {
            const std::string msg = e.what();
            INFO(msg);
            CHECK(msg.find("attention_forward") != std::string::npos);
            CHECK(msg.find(needle1) != std::string::npos);
            CHECK(msg.find(needle2) != std::string::npos);
        }
    };
    p.c.n_kv_heads = 5;
    expect_error("n_heads 12 is not a multiple of n_kv_heads 5", "q (1, 12, 4, 8), k/v (1, 5, 4, 8)");
    p.c.n_kv_heads = 4;
    p.c.mask = AttentionMask::local;
    p.c.window = 0;
    expect_error("window", "(1, 4, 4, 8)");
    p.c.mask = AttentionMask::causal;
    std::vector<index_t> lengths{5};
    p.c.key_lengths = lengths.data();
    expect_error("key_lengths[0] = 5", "(1, 4, 4, 8)");
    p.c.key_lengths = nullptr;
    p.c.head_dim = 0;
    expect_error("D >= 1", "(1, 12, 4, 0)");
    p.c.head_dim = 8;
    p.c.scale = std::numeric_limits<double>::infinity();
    expect_error("scale", "inf");
    p.c.scale.reset();
    CHECK_THROWS_AS(kernels::attention_forward(heads(out), lse.data(), HeadsView<const float>(), heads(p.k),
                                               heads(p.v), BiasView<const float>(), p.c),
                    Error);
    fwd();  // valid again
    Tensor<float> dq({1, 12, 4, 8});
    CHECK_THROWS_WITH_AS(kernels::attention_backward(heads(dq), HeadsView<float>(), HeadsView<float>(),
                                                     BiasView<float>(), heads(out), heads(out), nullptr, heads(p.q),
                                                     heads(p.k), heads(p.v), BiasView<const float>(), p.c),
                         doctest::Contains("attention_backward: lse (B, Hq, Tq) = (1, 12, 4) is null"), Error);
}
