// Tests of include/llmblocks/train/optimizer.hpp, schedule.hpp and clip.hpp:
// AdamW and SGD against PyTorch trajectories (tests/reference/make_optimizer_fixtures.py),
// Adafactor against a double-precision scalar reference written here from the
// paper's equations, bit-exact resume from a saved state, thread-count
// independence, clipping, schedules and gradient accumulation.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "llmblocks/ops/linear.hpp"
#include "llmblocks/ops/loss.hpp"
#include "llmblocks/train.hpp"
#include "support/compare.hpp"

#ifndef LLMBLOCKS_TEST_DATA_DIR
#error "LLMBLOCKS_TEST_DATA_DIR must name tests/reference (tests/CMakeLists.txt defines it)"
#endif

using namespace llmblocks;

namespace {

// key -> values, from tests/reference/train/optimizer_trajectories.txt
const std::map<std::string, std::vector<float>>& trajectories() {
    static const std::map<std::string, std::vector<float>> data = [] {
        std::map<std::string, std::vector<float>> m;
        const std::string path = std::string(LLMBLOCKS_TEST_DATA_DIR) + "/train/optimizer_trajectories.txt";
        std::ifstream in(path);
        REQUIRE_MESSAGE(in.good(), "cannot open ", path);
        std::string line;
        while (std::getline(in, line)) {
            if (line.empty() || line[0] == '#') continue;
            std::istringstream ls(line);
            std::string key;
            std::size_t n = 0;
            ls >> key >> n;
            std::vector<float> v(n);
            for (auto& x : v) {
                double d;
                ls >> d;
                x = static_cast<float>(d);
            }
            m[key] = v;
        }
        return m;
    }();
    return data;
}

TensorF fixture(const std::string& key, Shape shape) {
    const auto it = trajectories().find(key);
    REQUIRE_MESSAGE(it != trajectories().end(), "fixture key missing: ", key);
    return TensorF::from_vector(std::move(shape), it->second);
}

// W (3, 5) and b (5,) as parameters named like a linear layer.
ParameterList<float> fixture_parameters() {
    return {{"linear.weight", make_parameter(fixture("W.init", {3, 5}))},
            {"linear.bias", make_parameter(fixture("b.init", {5}))}};
}

void set_gradients(ParameterList<float>& params, int k) {
    for (auto& p : params) {
        p.variable.clear_grad();
        p.variable.node()->grad = fixture(std::string("grad.") + (p.name == "linear.weight" ? "W." : "b.") +
                                              std::to_string(k),
                                          p.variable.shape());
    }
}

template <class T>
void set_gradient(Variable<T>& v, const Tensor<T>& g) {
    v.node()->grad = g.clone();
}

void check_trajectory(Optimizer<float>& opt, ParameterList<float>& params, const std::string& run) {
    for (int k = 0; k < 6; ++k) {
        set_gradients(params, k);
        opt.step();
        CAPTURE(run);
        CAPTURE(k);
        CHECK_TENSOR_CLOSE(params[0].variable.value(), fixture(run + ".W." + std::to_string(k), {3, 5}), 1e-5, 1e-6);
        CHECK_TENSOR_CLOSE(params[1].variable.value(), fixture(run + ".b." + std::to_string(k), {5}), 1e-5, 1e-6);
    }
    CHECK(opt.step_count() == 6);
}

template <class T>
bool bit_equal(const Tensor<T>& a, const Tensor<T>& b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(T) * a.numel()) == 0;
}

}  // namespace

TEST_CASE("AdamW matches torch.optim.AdamW; no decay on vectors by default") {
    auto params = fixture_parameters();
    AdamW<float> opt(params, {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1});
    CHECK(opt.decays(0));
    CHECK_FALSE(opt.decays(1));
    check_trajectory(opt, params, "adamw");
}

TEST_CASE("AdamW with an overridden decay rule matches torch with decay on every parameter") {
    auto params = fixture_parameters();
    AdamW<float> opt(params, {.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1},
                     [](const std::string&, const VariableF&) { return true; });
    CHECK(opt.decays(1));
    check_trajectory(opt, params, "adamw_all");
}

TEST_CASE("AdamW decay rule by name") {
    auto params = fixture_parameters();
    AdamW<float> opt(params, {}, [](const std::string& name, const VariableF&) { return name.ends_with("bias"); });
    CHECK_FALSE(opt.decays(0));
    CHECK(opt.decays(1));
}

TEST_CASE("SGD with momentum and Nesterov matches torch.optim.SGD") {
    {
        auto params = fixture_parameters();
        Sgd<float> opt(params, {.lr = 0.1, .momentum = 0.9, .nesterov = false, .weight_decay = 0.01});
        check_trajectory(opt, params, "sgd");
    }
    {
        auto params = fixture_parameters();
        Sgd<float> opt(params, {.lr = 0.1, .momentum = 0.9, .nesterov = true, .weight_decay = 0.01});
        check_trajectory(opt, params, "sgd_nesterov");
    }
}

TEST_CASE("plain SGD: p -= lr * g, no state; parameters without a gradient are skipped") {
    ParameterList<double> params{{"a", make_parameter(TensorD::from_vector({3}, {1.0, 2.0, 3.0}))},
                                 {"b", make_parameter(TensorD::from_vector({2}, {5.0, 6.0}))}};
    Sgd<double> opt(params, {.lr = 0.5});
    CHECK(opt.state().tensors.empty());
    set_gradient(params[0].variable, TensorD::from_vector({3}, {2.0, -2.0, 4.0}));
    opt.step();
    CHECK_TENSOR_CLOSE(params[0].variable.value(), TensorD::from_vector({3}, {0.0, 3.0, 1.0}), 0, 0);
    CHECK_TENSOR_CLOSE(params[1].variable.value(), TensorD::from_vector({2}, {5.0, 6.0}), 0, 0);
}

// ---- Adafactor against a scalar double reference --------------------------------------------

namespace {

// Shazeer & Stern (2018), written out element by element in double, one
// parameter (a vector, or a matrix of rows x cols).
struct AdafactorReference {
    AdafactorOptions o;
    bool factored;
    index_t rows, cols;
    std::vector<double> x, v, r, c, m;
    double lr;

    AdafactorReference(AdafactorOptions opt, std::vector<double> x0, index_t rows_, index_t cols_, bool matrix)
        : o(opt), factored(opt.factored && matrix), rows(rows_), cols(cols_), x(std::move(x0)), lr(opt.lr) {
        v.assign(x.size(), 0.0);
        r.assign(rows, 0.0);
        c.assign(cols, 0.0);
        m.assign(x.size(), 0.0);
    }

    void step(int t, const std::vector<double>& g) {
        const double n = static_cast<double>(x.size());
        const double beta2 = 1.0 - std::pow(t, -o.decay_rate);
        const double rho = o.relative_step ? std::min(1e-2, 1.0 / std::sqrt(static_cast<double>(t))) : lr;
        double ms = 0.0;
        for (double xi : x) ms += xi * xi;
        const double alpha = o.scale_parameter ? std::max(o.eps2, std::sqrt(ms / n)) * rho : rho;
        std::vector<double> u(x.size());
        if (factored) {
            for (index_t i = 0; i < rows; ++i) {
                double s = 0.0;
                for (index_t j = 0; j < cols; ++j) s += g[i * cols + j] * g[i * cols + j] + o.eps1;
                r[i] = beta2 * r[i] + (1.0 - beta2) * s / cols;
            }
            for (index_t j = 0; j < cols; ++j) {
                double s = 0.0;
                for (index_t i = 0; i < rows; ++i) s += g[i * cols + j] * g[i * cols + j] + o.eps1;
                c[j] = beta2 * c[j] + (1.0 - beta2) * s / rows;
            }
            double rsum = 0.0;
            for (double ri : r) rsum += ri;
            for (index_t i = 0; i < rows; ++i)
                for (index_t j = 0; j < cols; ++j) {
                    const double vhat = r[i] * c[j] / (rsum / rows);  // V = R C / mean(R)
                    u[i * cols + j] = g[i * cols + j] / std::sqrt(vhat);
                }
        } else {
            for (std::size_t k = 0; k < x.size(); ++k) {
                v[k] = beta2 * v[k] + (1.0 - beta2) * (g[k] * g[k] + o.eps1);
                u[k] = g[k] / std::sqrt(v[k]);
            }
        }
        double us = 0.0;
        for (double uk : u) us += uk * uk;
        const double denom = std::max(1.0, std::sqrt(us / n) / o.clip_threshold);
        for (std::size_t k = 0; k < x.size(); ++k) {
            double upd = u[k] / denom;
            if (o.beta1 > 0.0) {
                m[k] = o.beta1 * m[k] + (1.0 - o.beta1) * upd;
                upd = m[k];
            }
            x[k] = x[k] - alpha * upd - o.weight_decay_rate * x[k];
        }
    }
};

template <class T>
void check_adafactor_against_reference(const AdafactorOptions& options, double rtol, double atol) {
    Rng rng(42);
    const index_t rows = 6, cols = 7;
    auto W = make_parameter(Tensor<T>::randn({rows, cols}, rng));
    auto b = make_parameter(Tensor<T>::randn({cols}, rng, 0.0, 0.01));  // tiny: the eps2 floor matters
    ParameterList<T> params{{"w", W}, {"b", b}};
    Adafactor<T> opt(params, options);
    CHECK(opt.is_factored(0) == options.factored);
    CHECK_FALSE(opt.is_factored(1));
    AdafactorReference ref_w(options, W.value().template to<double>().to_vector(), rows, cols, true);
    AdafactorReference ref_b(options, b.value().template to<double>().to_vector(), 1, cols, false);
    for (int t = 1; t <= 8; ++t) {
        // Large gradients in some steps make update clipping act.
        const double gscale = t % 3 == 0 ? 50.0 : 1.0;
        const auto gw = Tensor<T>::randn({rows, cols}, rng, 0.0, gscale);
        const auto gb = Tensor<T>::randn({cols}, rng);
        set_gradient(W, gw);
        set_gradient(b, gb);
        opt.step();
        ref_w.step(t, gw.template to<double>().to_vector());
        ref_b.step(t, gb.template to<double>().to_vector());
        CAPTURE(t);
        CHECK_TENSOR_CLOSE(W.value().template to<double>(), TensorD::from_vector({rows, cols}, ref_w.x),
                           rtol, atol);
        CHECK_TENSOR_CLOSE(b.value().template to<double>(), TensorD::from_vector({cols}, ref_b.x), rtol,
                           atol);
    }
}

}  // namespace

TEST_CASE("Adafactor matches the scalar reference: paper defaults (factored, no momentum, relative step)") {
    check_adafactor_against_reference<double>(AdafactorOptions{}, 1e-12, 1e-13);
    check_adafactor_against_reference<float>(AdafactorOptions{}, 1e-5, 1e-6);
}

TEST_CASE("Adafactor matches the scalar reference: PaLM settings (unfactored, beta1 0.9) with weight decay") {
    AdafactorOptions o = AdafactorOptions::palm();
    CHECK_FALSE(o.factored);
    CHECK(o.beta1 == 0.9);
    o.weight_decay_rate = 1e-4;  // PaLM: lr^2 = 1e-4 at lr 1e-2
    check_adafactor_against_reference<double>(o, 1e-12, 1e-13);
    check_adafactor_against_reference<float>(o, 1e-5, 1e-6);
}

TEST_CASE("Adafactor matches the scalar reference: fixed lr, no parameter scaling, factored with momentum") {
    AdafactorOptions o;
    o.relative_step = false;
    o.scale_parameter = false;
    o.lr = 0.05;
    o.beta1 = 0.5;
    o.clip_threshold = 0.7;
    check_adafactor_against_reference<double>(o, 1e-12, 1e-13);
}

TEST_CASE("Adafactor factored second moment: row and column mean squares; V = R C / mean(R)") {
    // At step 1, beta2_1 = 0: R = row means of G^2, C = column means of G^2.
    Rng rng(7);
    const index_t rows = 4, cols = 9;
    auto W = make_parameter(TensorD::randn({rows, cols}, rng));
    ParameterList<double> params{{"w", W}};
    AdafactorOptions o;
    o.eps1 = 0.0;
    Adafactor<double> opt(params, o);
    const auto g = TensorD::randn({rows, cols}, rng);
    set_gradient(W, g);
    opt.step();
    const auto state = opt.state();
    REQUIRE(state.tensors.size() == 2);
    CHECK(state.tensors[0].name == "w.exp_avg_sq_row");
    CHECK(state.tensors[1].name == "w.exp_avg_sq_col");
    CHECK(state.tensors[0].tensor.shape() == Shape{rows});
    CHECK(state.tensors[1].tensor.shape() == Shape{cols});
    double total = 0.0;
    for (index_t i = 0; i < rows; ++i) {
        double s = 0.0;
        for (index_t j = 0; j < cols; ++j) s += g(i, j) * g(i, j);
        total += s;
        CHECK(state.tensors[0].tensor(i) == doctest::Approx(s / cols).epsilon(1e-14));
    }
    for (index_t j = 0; j < cols; ++j) {
        double s = 0.0;
        for (index_t i = 0; i < rows; ++i) s += g(i, j) * g(i, j);
        CHECK(state.tensors[1].tensor(j) == doctest::Approx(s / rows).epsilon(1e-14));
    }
    // The factored estimate keeps the row and column sums of G^2 exactly (the
    // paper's I-divergence projection): sum_j V_ij = sum_j G_ij^2, and the same for columns.
    const auto& R = state.tensors[0].tensor;
    const auto& C = state.tensors[1].tensor;
    double rmean = 0.0;
    for (index_t i = 0; i < rows; ++i) rmean += R(i) / rows;
    CHECK(rmean == doctest::Approx(total / (rows * cols)).epsilon(1e-14));
    for (index_t i = 0; i < rows; ++i) {
        double vrow = 0.0, grow = 0.0;
        for (index_t j = 0; j < cols; ++j) {
            vrow += R(i) * C(j) / rmean;
            grow += g(i, j) * g(i, j);
        }
        CHECK(vrow == doctest::Approx(grow).epsilon(1e-12));
    }
}

TEST_CASE("Adafactor on a rank-one G^2 is exact: the step is alpha * sign(G)") {
    // G_ij = a_i b_j gives G^2 = (a^2)(b^2)^T, which the factorisation represents
    // exactly, so U = G / |G| = sign(G), RMS(U) = 1 (no clipping).
    const Shape shape{3, 4};
    auto W = make_parameter(TensorD::zeros(shape));
    ParameterList<double> params{{"w", W}};
    AdafactorOptions o;
    o.relative_step = false;
    o.scale_parameter = false;
    o.lr = 0.1;
    o.eps1 = 0.0;
    Adafactor<double> opt(params, o);
    const std::vector<double> a{1.0, -2.0, 0.5}, bcol{3.0, -1.0, 0.25, 2.0};
    auto g = TensorD::zeros(shape);
    for (index_t i = 0; i < 3; ++i)
        for (index_t j = 0; j < 4; ++j) g(i, j) = a[i] * bcol[j];
    set_gradient(W, g);
    opt.step();
    for (index_t i = 0; i < 3; ++i)
        for (index_t j = 0; j < 4; ++j) CHECK(W.value()(i, j) == doctest::Approx(g(i, j) > 0 ? -0.1 : 0.1).epsilon(1e-12));
}

// ---- state, resume, threads -------------------------------------------------------------------

namespace {

// Parameters large enough that the update loops and reductions run threaded.
ParameterList<float> resume_parameters() {
    Rng rng(3);
    return {{"emb.weight", make_parameter(TensorF::randn({300, 200}, rng))},
            {"norm.weight", make_parameter(TensorF::randn({200}, rng))},
            {"mlp.weight", make_parameter(TensorF::randn({2, 8, 16}, rng))}};
}

ParameterList<float> clone_parameters(const ParameterList<float>& ps) {
    ParameterList<float> out;
    for (const auto& p : ps) out.push_back({p.name, make_parameter(p.variable.value().clone())});
    return out;
}

void set_step_gradients(ParameterList<float>& params, int step) {
    Rng rng(1000 + step);
    for (auto& p : params) set_gradient(p.variable, TensorF::randn(p.variable.shape(), rng));
}

template <class Make>
void check_bit_exact_resume(Make make) {
    auto full = resume_parameters();
    auto opt_full = make(full);
    for (int s = 0; s < 6; ++s) {
        set_step_gradients(full, s);
        opt_full->step();
    }

    auto first = resume_parameters();
    auto opt_first = make(first);
    for (int s = 0; s < 3; ++s) {
        set_step_gradients(first, s);
        opt_first->step();
    }
    const OptimizerState<float> saved = opt_first->state();
    CHECK(saved.step == 3);
    auto resumed = clone_parameters(first);  // "loaded from the checkpoint"
    auto opt_resumed = make(resumed);
    opt_resumed->load_state(saved);
    CHECK(opt_resumed->step_count() == 3);
    for (int s = 3; s < 6; ++s) {
        set_step_gradients(resumed, s);
        opt_resumed->step();
    }
    for (std::size_t i = 0; i < full.size(); ++i) {
        CAPTURE(full[i].name);
        CHECK(bit_equal(full[i].variable.value(), resumed[i].variable.value()));
    }
    const auto a = opt_full->state(), b = opt_resumed->state();
    REQUIRE(a.tensors.size() == b.tensors.size());
    for (std::size_t i = 0; i < a.tensors.size(); ++i) {
        CHECK(a.tensors[i].name == b.tensors[i].name);
        CHECK(bit_equal(a.tensors[i].tensor, b.tensors[i].tensor));
    }
}

}  // namespace

TEST_CASE("save -> restore -> continue equals uninterrupted stepping bit-exactly") {
    SUBCASE("AdamW") {
        check_bit_exact_resume([](ParameterList<float>& p) {
            return std::make_unique<AdamW<float>>(p, AdamWOptions{.lr = 1e-3, .weight_decay = 0.1});
        });
    }
    SUBCASE("SGD Nesterov") {
        check_bit_exact_resume([](ParameterList<float>& p) {
            return std::make_unique<Sgd<float>>(p, SgdOptions{.lr = 0.1, .momentum = 0.9, .nesterov = true});
        });
    }
    SUBCASE("Adafactor factored") {
        check_bit_exact_resume([](ParameterList<float>& p) { return std::make_unique<Adafactor<float>>(p); });
    }
    SUBCASE("Adafactor PaLM") {
        check_bit_exact_resume(
            [](ParameterList<float>& p) { return std::make_unique<Adafactor<float>>(p, AdafactorOptions::palm()); });
    }
}

TEST_CASE("optimizer state names and shapes") {
    auto params = fixture_parameters();
    AdamW<float> adamw(params);
    const auto s = adamw.state();
    REQUIRE(s.tensors.size() == 4);
    CHECK(s.tensors[0].name == "linear.weight.exp_avg");
    CHECK(s.tensors[1].name == "linear.weight.exp_avg_sq");
    CHECK(s.tensors[3].name == "linear.bias.exp_avg_sq");
    CHECK(s.tensors[3].tensor.shape() == Shape{5});
    Adafactor<float> ada(params, AdafactorOptions{.beta1 = 0.9});
    const auto sa = ada.state();
    REQUIRE(sa.tensors.size() == 5);
    CHECK(sa.tensors[0].name == "linear.weight.exp_avg_sq_row");
    CHECK(sa.tensors[0].tensor.shape() == Shape{3});
    CHECK(sa.tensors[1].tensor.shape() == Shape{5});
    CHECK(sa.tensors[2].name == "linear.weight.exp_avg");
    CHECK(sa.tensors[3].name == "linear.bias.exp_avg_sq");
    Sgd<float> sgd(params, {.momentum = 0.9});
    CHECK(sgd.state().tensors[1].name == "linear.bias.momentum_buffer");
}

TEST_CASE("load_state rejects a missing, misshapen, duplicated or unknown state tensor") {
    auto params = fixture_parameters();
    AdamW<float> opt(params);
    const auto good = opt.state();
    {
        auto s = good;
        s.tensors.pop_back();
        CHECK_THROWS_WITH_AS(opt.load_state(s), doctest::Contains("'linear.bias.exp_avg_sq' is missing"), Error);
    }
    {
        auto s = good;
        s.tensors[1].tensor = TensorF::zeros({5, 3});
        CHECK_THROWS_WITH_AS(opt.load_state(s), doctest::Contains("has shape (5, 3), expected (3, 5)"), Error);
    }
    {
        auto s = good;
        s.tensors.push_back(s.tensors[0]);
        CHECK_THROWS_WITH_AS(opt.load_state(s), doctest::Contains("appears twice"), Error);
    }
    {
        auto s = good;
        s.tensors.push_back({"other.exp_avg", TensorF::zeros({1})});
        CHECK_THROWS_WITH_AS(opt.load_state(s), doctest::Contains("unexpected state tensor 'other.exp_avg'"), Error);
    }
    CHECK_THROWS_AS(opt.set_lr(-1.0), Error);
    ParameterList<float> dup{{"a", make_parameter(TensorF::zeros({2}))}, {"a", make_parameter(TensorF::zeros({2}))}};
    CHECK_THROWS_WITH_AS([&] { AdamW<float> o(dup); }(), doctest::Contains("'a' appears twice"), Error);
    ParameterList<float> frozen{{"a", VariableF(TensorF::zeros({2}))}};
    CHECK_THROWS_WITH_AS([&] { Sgd<float> o(frozen); }(), doctest::Contains("not a parameter"), Error);
    CHECK_THROWS_AS([&] { Sgd<float> o(params, {.nesterov = true}); }(), Error);
}

TEST_CASE("optimizer steps do not depend on the thread count") {
    if (!has_openmp()) return;
    auto run = [](int threads, auto make) {
        set_num_threads(threads);
        auto params = resume_parameters();
        auto opt = make(params);
        for (int s = 0; s < 3; ++s) {
            set_step_gradients(params, s);
            opt->step();
        }
        set_num_threads(0);
        return params;
    };
    auto adamw = [](ParameterList<float>& p) { return std::make_unique<AdamW<float>>(p); };
    auto ada = [](ParameterList<float>& p) { return std::make_unique<Adafactor<float>>(p); };
    for (int variant = 0; variant < 2; ++variant) {
        const auto one = variant == 0 ? run(1, adamw) : run(1, ada);
        const auto two = variant == 0 ? run(2, adamw) : run(2, ada);
        for (std::size_t i = 0; i < one.size(); ++i) CHECK(bit_equal(one[i].variable.value(), two[i].variable.value()));
    }
}

// ---- clipping ----------------------------------------------------------------------------------

TEST_CASE("clip_grad_norm: global L2 norm, scales above max_norm, returns the pre-clip norm") {
    auto a = make_parameter(TensorD::zeros({2}));
    auto b = make_parameter(TensorD::zeros({1, 1}));
    auto c = make_parameter(TensorD::zeros({3}));  // no gradient: counts as zero
    set_gradient(a, TensorD::from_vector({2}, {3.0, 4.0}));
    set_gradient(b, TensorD::from_vector({1, 1}, {12.0}));
    ParameterList<double> params{{"a", a}, {"b", b}, {"c", c}};
    CHECK(global_grad_norm(params) == 13.0);
    // Below the threshold: unchanged.
    CHECK(clip_grad_norm(params, 20.0) == 13.0);
    CHECK(a.grad()(0) == 3.0);
    // Above: scaled by max_norm / (norm + 1e-6), as torch.
    CHECK(clip_grad_norm(params, 1.0) == 13.0);
    const double coeff = 1.0 / (13.0 + 1e-6);
    CHECK(a.grad()(0) == doctest::Approx(3.0 * coeff).epsilon(1e-15));
    CHECK(a.grad()(1) == doctest::Approx(4.0 * coeff).epsilon(1e-15));
    CHECK(b.grad()(0, 0) == doctest::Approx(12.0 * coeff).epsilon(1e-15));
    CHECK(global_grad_norm(params) == doctest::Approx(1.0).epsilon(1e-6));
    CHECK_THROWS_AS(clip_grad_norm(params, 0.0), Error);
}

TEST_CASE("global_grad_norm of a large float gradient is summed in double, independent of threads") {
    Rng rng(5);
    auto w = make_parameter(TensorF::zeros({100003}));
    auto g = TensorF::randn({100003}, rng);
    set_gradient(w, g);
    ParameterList<float> params{{"w", w}};
    double ref = 0.0;
    for (index_t i = 0; i < g.numel(); ++i) ref += static_cast<double>(g.data()[i]) * g.data()[i];
    const double norm = global_grad_norm(params);
    CHECK(norm == doctest::Approx(std::sqrt(ref)).epsilon(1e-13));
    set_num_threads(1);
    const double norm1 = global_grad_norm(params);
    set_num_threads(0);
    CHECK(norm1 == norm);
}

// ---- schedules ---------------------------------------------------------------------------------

TEST_CASE("learning-rate schedules at known steps") {
    CHECK(constant_lr(3e-4, 0) == 3e-4);
    CHECK(constant_lr(3e-4, 123456) == 3e-4);
    const WarmupCosine s{.max_lr = 6e-4, .min_lr = 6e-5, .warmup_steps = 10, .total_steps = 110};
    CHECK(s(0) == doctest::Approx(6e-5).epsilon(1e-15));  // max * 1/10
    CHECK(s(4) == doctest::Approx(3e-4).epsilon(1e-15));  // max * 5/10
    CHECK(s(9) == doctest::Approx(6e-4).epsilon(1e-15));
    CHECK(s(10) == doctest::Approx(6e-4).epsilon(1e-15));                       // cosine starts at the peak
    CHECK(s(60) == doctest::Approx(6e-5 + 0.5 * (6e-4 - 6e-5)).epsilon(1e-14));  // half way: cos(pi/2) = 0
    CHECK(s(35) == doctest::Approx(6e-5 + 0.5 * (1 + std::cos(M_PI * 0.25)) * 5.4e-4).epsilon(1e-14));
    CHECK(s(110) == doctest::Approx(6e-5).epsilon(1e-15));
    CHECK(s(100000) == 6e-5);
    for (std::int64_t k = 11; k <= 110; ++k) CHECK(s(k) <= s(k - 1));
    const WarmupCosine no_warmup{.max_lr = 1.0, .min_lr = 0.0, .warmup_steps = 0, .total_steps = 4};
    CHECK(no_warmup(0) == 1.0);
    CHECK(no_warmup(2) == doctest::Approx(0.5).epsilon(1e-15));
    CHECK(no_warmup(4) == 0.0);
    CHECK_THROWS_AS((WarmupCosine{.max_lr = 1.0, .min_lr = 2.0}(0)), Error);
    CHECK_THROWS_AS((WarmupCosine{.warmup_steps = 5, .total_steps = 4}(0)), Error);
    // PaLM: 1e-2 for the first 10k steps, then 1/sqrt(k).
    CHECK(inverse_sqrt_lr(1e-2, 10000, 0) == 1e-2);
    CHECK(inverse_sqrt_lr(1e-2, 10000, 9999) == 1e-2);
    CHECK(inverse_sqrt_lr(1e-2, 10000, 39999) == doctest::Approx(1.0 / std::sqrt(40000.0)).epsilon(1e-15));
}

// ---- gradient accumulation ---------------------------------------------------------------------

TEST_CASE("gradient accumulation: 2 micro-batches of half size equal one full-batch step") {
    // A tiny model from ops: logits = x W^T + b, mean cross-entropy over rows.
    Rng rng(11);
    const index_t N = 6, C = 4, V = 5;
    const auto x = TensorD::randn({N, C}, rng);
    const auto y = TensorI::from_vector({N}, {0, 4, 2, 2, 1, 3});
    const auto W0 = TensorD::randn({V, C}, rng, 0.0, 0.5);
    const auto b0 = TensorD::randn({V}, rng, 0.0, 0.5);
    auto make = [&] {
        return ParameterList<double>{{"w", make_parameter(W0.clone())}, {"b", make_parameter(b0.clone())}};
    };
    auto loss_of = [](const ParameterList<double>& p, const TensorD& xs, const TensorI& ys) {
        return cross_entropy(linear(VariableD(xs), p[0].variable, p[1].variable), ys);
    };

    auto full = make();
    AdamW<double> opt_full(full, {.lr = 1e-2});
    const double full_loss = loss_of(full, x, y).item();
    {
        auto loss = loss_of(full, x, y);
        loss.backward();
    }
    opt_full.step();

    auto accum = make();
    AdamW<double> opt_accum(accum, {.lr = 1e-2});
    opt_accum.zero_grad();
    const double mean_loss = accumulate_gradients<double>(2, [&](index_t i) {
        return loss_of(accum, x.narrow(0, i * N / 2, N / 2).contiguous(), y.narrow(0, i * N / 2, N / 2).contiguous());
    });
    CHECK(mean_loss == doctest::Approx(full_loss).epsilon(1e-14));
    // Before the step the gradients already agree.
    CHECK_TENSOR_CLOSE(accum[0].variable.grad(), full[0].variable.grad(), 1e-13, 1e-15);
    CHECK_TENSOR_CLOSE(accum[1].variable.grad(), full[1].variable.grad(), 1e-13, 1e-15);
    opt_accum.step();
    CHECK_TENSOR_CLOSE(accum[0].variable.value(), full[0].variable.value(), 1e-12, 1e-14);
    CHECK_TENSOR_CLOSE(accum[1].variable.value(), full[1].variable.value(), 1e-12, 1e-14);
    CHECK_THROWS_AS(accumulate_gradients<double>(0, [&](index_t) { return loss_of(accum, x, y); }), Error);
}
