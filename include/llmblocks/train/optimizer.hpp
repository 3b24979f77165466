// llmblocks/train/optimizer.hpp — the optimizers that train the models:
// SGD with momentum (and Nesterov), AdamW (GPT-2, GPT-3, T5 fine-tuning) and
// Adafactor (T5 pre-training; PaLM, "without factorization", with momentum).
//
// An optimizer holds a list of named parameters (nn/module.hpp's
// ParameterList: name + Variable), and step() updates every parameter that has
// a gradient, in place, under no_grad. A parameter whose gradient is undefined
// (no backward reached it) is skipped, as in PyTorch.
//
// Each update is one fused loop per parameter over its elements, split across
// threads with parallel_for; AdamW and SGD run it on simd::batch registers with
// the tail in one padded batch (kernels/elementwise.hpp's for_each_batch), so
// every element goes through the same code. The loops are element-wise: the
// result does not depend on the thread count (nor, as IEEE +, *, /, sqrt are
// exact roundings, on the SIMD width unless the compiler fuses multiply-adds
// differently). The reductions Adafactor
// needs (root mean squares) are summed in double over fixed blocks of 4096
// elements whose partial sums are added in order, so they do not depend on the
// thread count either. Resuming from a saved state is therefore bit-exact.
//
// State for checkpoints: state() returns the step count and every state
// tensor under a name "<parameter>.<slot>" (exp_avg, exp_avg_sq,
// momentum_buffer, exp_avg_sq_row, exp_avg_sq_col), deep copies ready for a
// safetensors writer; load_state() copies such a state back (names and shapes
// must match exactly). save -> load -> step equals stepping without a break.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/core/error.hpp"
#include "llmblocks/core/tensor.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/elementwise.hpp"
#include "llmblocks/kernels/simd.hpp"
#include "llmblocks/nn/module.hpp"

namespace llmblocks {

// A named tensor of optimizer state ("h.0.attn.c_attn.weight.exp_avg").
template <class T>
struct NamedTensor {
    std::string name;
    Tensor<T> tensor;
};

// Everything an optimizer needs to continue exactly where it stopped.
template <class T>
struct OptimizerState {
    std::int64_t step = 0;                // optimizer steps taken so far
    std::vector<NamedTensor<T>> tensors;  // "<parameter>.<slot>", the parameter's shape or its row/column shape
};

// Which parameters get weight decay. The default (decay_matrices_only) follows
// GPT-2/nanoGPT practice: matrices (linear weights, embeddings) decay; vectors
// (LayerNorm/RMSNorm weights, biases) and scalars do not. Override with any
// predicate on the name and the parameter.
template <class T>
using DecayRule = std::function<bool(const std::string& name, const Variable<T>& parameter)>;

template <class T>
bool decay_matrices_only(const std::string& /*name*/, const Variable<T>& parameter) {
    return parameter.dim() >= 2;
}

namespace detail {

// Elements per thread chunk in the update loops (a few L2-sized pieces).
inline constexpr index_t kOptimizerGrain = index_t{1} << 15;
// Block size of the deterministic double-precision reductions.
inline constexpr index_t kReduceBlock = 4096;

// sum over k in [0, n) of term(k), in double; the same bits for any thread count.
template <class Term>
double blocked_sum(index_t n, const Term& term) {
    if (n <= 0) return 0.0;
    const index_t blocks = (n + kReduceBlock - 1) / kReduceBlock;
    if (blocks == 1) {
        double s = 0.0;
        for (index_t k = 0; k < n; ++k) s += term(k);
        return s;
    }
    std::vector<double> partial(static_cast<std::size_t>(blocks), 0.0);
    parallel_for(0, blocks, 8, [&](index_t lo, index_t hi) {
        for (index_t b = lo; b < hi; ++b) {
            const index_t end = std::min(n, (b + 1) * kReduceBlock);
            double s = 0.0;
            for (index_t k = b * kReduceBlock; k < end; ++k) s += term(k);
            partial[static_cast<std::size_t>(b)] = s;
        }
    });
    double s = 0.0;
    for (double p : partial) s += p;
    return s;
}

// Sum of squares of x[0..n), in double.
template <class T>
double sum_squares(const T* x, index_t n) {
    return blocked_sum(n, [x](index_t k) {
        const double v = static_cast<double>(x[k]);
        return v * v;
    });
}

// The gradient of `p` (checked: the value's shape, contiguous), or null when undefined.
template <class T>
T* gradient_or_null(const char* op, const NamedParameter<T>& p) {
    const Tensor<T>& g = p.variable.grad();
    if (!g.defined()) return nullptr;
    LLMBLOCKS_CHECK(g.shape() == p.variable.shape() && g.is_contiguous(), op, ": gradient of '", p.name,
                    "' has shape ", g.shape(), " but the parameter has shape ", p.variable.shape());
    return g.data();
}

}  // namespace detail

// What every optimizer shares: the parameters, the step count, the learning
// rate and the named state tensors (allocated, zero-filled, at construction).
template <class T>
class Optimizer {
public:
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "Optimizer<T>: T must be float or double");

    virtual ~Optimizer() = default;

    // Applies one update from the current gradients; counts the step.
    virtual void step() = 0;

    // The learning rate of the next step (set it from a schedule before each step).
    double lr() const { return lr_; }
    void set_lr(double lr) {
        LLMBLOCKS_CHECK(std::isfinite(lr) && lr >= 0.0, name_, ": learning rate must be finite and >= 0, got ", lr);
        lr_ = lr;
    }
    std::int64_t step_count() const { return step_; }
    const ParameterList<T>& parameters() const { return params_; }

    // Zeroes every parameter's gradient (keeps the buffers).
    void zero_grad() {
        for (auto& p : params_) p.variable.zero_grad();
    }

    // Deep copy of the step count and every state tensor.
    OptimizerState<T> state() const {
        OptimizerState<T> s;
        s.step = step_;
        for (const auto& slots : state_)
            for (const auto& t : slots) s.tensors.push_back({t.name, t.tensor.clone()});
        return s;
    }

    // Restores a state() of an optimizer of the same kind over the same
    // parameters (every name present once, shapes equal). Copies into the
    // existing buffers; on a mismatch nothing is changed.
    void load_state(const OptimizerState<T>& s) {
        LLMBLOCKS_CHECK(s.step >= 0, name_, "::load_state: negative step count ", s.step);
        std::unordered_map<std::string, const Tensor<T>*> by_name;
        for (const auto& t : s.tensors) {
            LLMBLOCKS_CHECK(by_name.emplace(t.name, &t.tensor).second, name_, "::load_state: state tensor '", t.name,
                            "' appears twice");
        }
        std::size_t expected = 0;
        for (const auto& slots : state_) {
            for (const auto& t : slots) {
                ++expected;
                const auto it = by_name.find(t.name);
                LLMBLOCKS_CHECK(it != by_name.end(), name_, "::load_state: state tensor '", t.name, "' is missing");
                LLMBLOCKS_CHECK(it->second->defined() && it->second->shape() == t.tensor.shape(), name_,
                                "::load_state: state tensor '", t.name, "' has shape ",
                                it->second->defined() ? it->second->shape() : Shape{}, ", expected ", t.tensor.shape());
            }
        }
        if (by_name.size() != expected) {
            for (const auto& t : s.tensors) {
                bool known = false;
                for (const auto& slots : state_)
                    for (const auto& mine : slots) known = known || mine.name == t.name;
                LLMBLOCKS_CHECK(known, name_, "::load_state: unexpected state tensor '", t.name, "'");
            }
        }
        for (auto& slots : state_)
            for (auto& t : slots) t.tensor.copy_(*by_name.at(t.name));
        step_ = s.step;
    }

protected:
    Optimizer(const char* name, ParameterList<T> params, double lr) : name_(name), params_(std::move(params)) {
        std::unordered_set<std::string> names;
        for (const auto& p : params_) {
            LLMBLOCKS_CHECK(p.variable.defined(), name_, ": parameter '", p.name, "' is undefined");
            LLMBLOCKS_CHECK(p.variable.is_leaf() && p.variable.requires_grad(), name_, ": '", p.name,
                            "' is not a parameter (a leaf with requires_grad)");
            LLMBLOCKS_CHECK(p.variable.value().is_contiguous(), name_, ": parameter '", p.name, "' of shape ",
                            p.variable.shape(), " is not contiguous");
            LLMBLOCKS_CHECK(names.insert(p.name).second, name_, ": parameter name '", p.name, "' appears twice");
        }
        set_lr(lr);
        state_.resize(params_.size());
    }

    // Adds a zero-filled state tensor "<parameter i>.<slot>" and returns it.
    Tensor<T>& add_state(std::size_t i, const std::string& slot, Shape shape) {
        state_[i].push_back({params_[i].name + "." + slot, Tensor<T>::zeros(std::move(shape))});
        return state_[i].back().tensor;
    }
    Tensor<T>& state_tensor(std::size_t i, std::size_t k) { return state_[i][k].tensor; }

    const char* name_;
    ParameterList<T> params_;
    std::vector<std::vector<NamedTensor<T>>> state_;  // per parameter, its slots in a fixed order
    double lr_ = 0.0;
    std::int64_t step_ = 0;
};

// ---------------------------------------------------------------------------------------------
// SGD, exactly as torch.optim.SGD (dampening 0):
//   d = g + weight_decay * p
//   b = momentum * b + d           (b starts at 0, so b = d at the first step, as torch)
//   d = d + momentum * b  (Nesterov)   or   d = b
//   p = p - lr * d
struct SgdOptions {
    double lr = 1e-2;
    double momentum = 0.0;      // 0: plain SGD, no state
    bool nesterov = false;      // needs momentum > 0
    double weight_decay = 0.0;  // L2 term added to the gradient (coupled, as torch); all parameters
};

template <class T>
class Sgd final : public Optimizer<T> {
public:
    Sgd(ParameterList<T> params, SgdOptions options = {}) : Optimizer<T>("Sgd", std::move(params), options.lr), o_(options) {
        LLMBLOCKS_CHECK(o_.momentum >= 0.0 && o_.momentum < 1.0 + 1e-12, "Sgd: momentum must be in [0, 1], got ",
                        o_.momentum);
        LLMBLOCKS_CHECK(!o_.nesterov || o_.momentum > 0.0, "Sgd: Nesterov needs momentum > 0");
        LLMBLOCKS_CHECK(o_.weight_decay >= 0.0, "Sgd: weight_decay must be >= 0, got ", o_.weight_decay);
        if (o_.momentum > 0.0)
            for (std::size_t i = 0; i < this->params_.size(); ++i)
                this->add_state(i, "momentum_buffer", this->params_[i].variable.shape());
    }

    const SgdOptions& options() const { return o_; }

    void step() override {
        auto guard = no_grad();
        using B = simd::batch<T>;
        const T lr = static_cast<T>(this->lr_), wd = static_cast<T>(o_.weight_decay), mu = static_cast<T>(o_.momentum);
        const bool momentum = o_.momentum > 0.0, nesterov = o_.nesterov;
        for (std::size_t i = 0; i < this->params_.size(); ++i) {
            const T* g = detail::gradient_or_null("Sgd::step", this->params_[i]);
            if (!g) continue;
            T* p = this->params_[i].variable.value().data();
            T* b = momentum ? this->state_tensor(i, 0).data() : nullptr;
            kernels::detail::parallel_for_each_batch<T>(
                this->params_[i].variable.numel(), detail::kOptimizerGrain, [&](index_t k, auto lanes) {
                    const B pk = lanes.load(p + k);
                    B d = lanes.load(g + k) + B(wd) * pk;
                    if (b) {
                        const B bk = B(mu) * lanes.load(b + k) + d;  // the buffer starts at 0: b_1 = d
                        lanes.store(b + k, bk);
                        d = nesterov ? d + B(mu) * bk : bk;
                    }
                    lanes.store(p + k, pk - B(lr) * d);
                });
        }
        ++this->step_;
    }

private:
    SgdOptions o_;
};

// ---------------------------------------------------------------------------------------------
// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization"),
// exactly as torch.optim.AdamW (amsgrad off). At step t (from 1):
//   p = p * (1 - lr * weight_decay)          (decoupled decay, only where the rule says so)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// The bias corrections are computed in double once per step.
struct AdamWOptions {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;  // GPT-3 used 0.95
    double eps = 1e-8;
    double weight_decay = 1e-2;  // torch's default; GPT-3 used 0.1
};

template <class T>
class AdamW final : public Optimizer<T> {
public:
    AdamW(ParameterList<T> params, AdamWOptions options = {}, DecayRule<T> decay = decay_matrices_only<T>)
        : Optimizer<T>("AdamW", std::move(params), options.lr), o_(options) {
        LLMBLOCKS_CHECK(o_.beta1 >= 0.0 && o_.beta1 < 1.0 && o_.beta2 >= 0.0 && o_.beta2 < 1.0,
                        "AdamW: betas must be in [0, 1), got (", o_.beta1, ", ", o_.beta2, ")");
        LLMBLOCKS_CHECK(o_.eps >= 0.0 && o_.weight_decay >= 0.0, "AdamW: eps and weight_decay must be >= 0");
        LLMBLOCKS_CHECK(static_cast<bool>(decay), "AdamW: the decay rule is empty");
        for (std::size_t i = 0; i < this->params_.size(); ++i) {
            decays_.push_back(decay(this->params_[i].name, this->params_[i].variable));
            this->add_state(i, "exp_avg", this->params_[i].variable.shape());
            this->add_state(i, "exp_avg_sq", this->params_[i].variable.shape());
        }
    }

    const AdamWOptions& options() const { return o_; }
    // Whether parameter i gets weight decay (the rule's verdict at construction).
    bool decays(std::size_t i) const { return decays_.at(i); }

    void step() override {
        auto guard = no_grad();
        const std::int64_t t = this->step_ + 1;
        const double bias1 = 1.0 - std::pow(o_.beta1, static_cast<double>(t));
        const double bias2 = 1.0 - std::pow(o_.beta2, static_cast<double>(t));
        const T step_size = static_cast<T>(this->lr_ / bias1);
        const T bias2_sqrt = static_cast<T>(std::sqrt(bias2));
        const T b1 = static_cast<T>(o_.beta1), b2 = static_cast<T>(o_.beta2);
        const T one_minus_b1 = static_cast<T>(1.0 - o_.beta1), one_minus_b2 = static_cast<T>(1.0 - o_.beta2);
        const T eps = static_cast<T>(o_.eps);
        using B = simd::batch<T>;
        for (std::size_t i = 0; i < this->params_.size(); ++i) {
            const T* g = detail::gradient_or_null("AdamW::step", this->params_[i]);
            if (!g) continue;
            const T shrink = static_cast<T>(decays_[i] ? 1.0 - this->lr_ * o_.weight_decay : 1.0);
            T* p = this->params_[i].variable.value().data();
            T* m = this->state_tensor(i, 0).data();
            T* v = this->state_tensor(i, 1).data();
            // One fused pass over simd batches (the tail batch runs the same vector code).
            kernels::detail::parallel_for_each_batch<T>(
                this->params_[i].variable.numel(), detail::kOptimizerGrain, [&](index_t k, auto lanes) {
                    const B gk = lanes.load(g + k);
                    const B pk = lanes.load(p + k) * B(shrink);
                    const B mk = B(b1) * lanes.load(m + k) + B(one_minus_b1) * gk;
                    const B vk = B(b2) * lanes.load(v + k) + B(one_minus_b2) * (gk * gk);
                    lanes.store(m + k, mk);
                    lanes.store(v + k, vk);
                    lanes.store(p + k, pk - B(step_size) * (mk / (xsimd::sqrt(vk) / B(bias2_sqrt) + B(eps))));
                });
        }
        ++this->step_;
    }

private:
    AdamWOptions o_;
    std::vector<bool> decays_;
};

// ---------------------------------------------------------------------------------------------
// Adafactor (Shazeer & Stern 2018, "Adafactor: Adaptive Learning Rates with
// Sublinear Memory Cost", Algorithms 4 and 5 with update clipping, relative
// step size and optional momentum). At step t (from 1), for a parameter X with
// gradient G:
//   beta2_t = 1 - t^(-decay_rate)                         (decay_rate 0.8; beta2_1 = 0: no bias correction)
//   rho_t   = relative_step ? min(1e-2, 1/sqrt(t)) : lr
//   alpha_t = scale_parameter ? max(eps2, RMS(X_{t-1})) * rho_t : rho_t
//   factored (dim >= 2, over the last two dims (n, m), leading dims batched):
//     R = beta2_t R + (1 - beta2_t) * row_mean(G^2 + eps1)     // (..., n)
//     C = beta2_t C + (1 - beta2_t) * col_mean(G^2 + eps1)     // (..., m)
//     V_ij = R_i C_j / mean(R)     (the paper's R C / (1^T R) with sums; means give the same V)
//   unfactored (vectors, or factored = false):
//     V = beta2_t V + (1 - beta2_t) (G^2 + eps1)
//   U = G / sqrt(V);   U = U / max(1, RMS(U) / clip_threshold)
//   M = beta1 M + (1 - beta1) U    (only when beta1 > 0; otherwise M = U)
//   X = X - alpha_t M - weight_decay_rate * X_{t-1}
// weight_decay_rate is an absolute per-step rate (not multiplied by lr), as in
// the T5X/Flax Adafactor; PaLM set it each step to lr^2 ("dynamic weight decay
// of lr^2.0"): call set_weight_decay_rate(lr * lr) before each step.
// Hugging Face's port differs in one place: it applies momentum to alpha_t * U
// instead of U (the same while alpha_t is constant).
//
// PaLM (Chowdhery et al. 2022, section 5): "Adafactor without factorization",
// which "is effectively equivalent to Adam with parameter scaling"; beta1 = 0.9,
// beta2 = 1 - k^-0.8, update clipping 1.0, lr 1e-2 for 10k steps then 1/sqrt(k)
// (= relative_step), dynamic weight decay lr^2: AdafactorOptions::palm().
struct AdafactorOptions {
    double lr = 1e-2;                 // used when relative_step is false
    bool relative_step = true;        // rho_t = min(1e-2, 1/sqrt(t)) (the paper's default)
    bool scale_parameter = true;      // multiply the step by max(eps2, RMS(X))
    bool factored = true;             // factored second moments for dim >= 2 (PaLM: false)
    double beta1 = 0.0;               // 0: no first moment (the paper's memory-saving default)
    double decay_rate = 0.8;          // beta2_t = 1 - t^-decay_rate
    double clip_threshold = 1.0;      // d: update clipping
    double eps1 = 1e-30;              // added to G^2
    double eps2 = 1e-3;               // floor of the parameter scale
    double weight_decay_rate = 0.0;   // X -= rate * X each step (absolute, not times lr)

    // PaLM's settings (section 5 of the PaLM paper).
    static AdafactorOptions palm() {
        AdafactorOptions o;
        o.relative_step = true;
        o.scale_parameter = true;
        o.factored = false;
        o.beta1 = 0.9;
        return o;
    }
};

template <class T>
class Adafactor final : public Optimizer<T> {
public:
    Adafactor(ParameterList<T> params, AdafactorOptions options = {})
        : Optimizer<T>("Adafactor", std::move(params), options.lr), o_(options) {
        LLMBLOCKS_CHECK(o_.beta1 >= 0.0 && o_.beta1 < 1.0, "Adafactor: beta1 must be in [0, 1), got ", o_.beta1);
        LLMBLOCKS_CHECK(o_.decay_rate > 0.0 && o_.clip_threshold > 0.0 && o_.eps1 >= 0.0 && o_.eps2 >= 0.0,
                        "Adafactor: decay_rate and clip_threshold must be > 0, eps1 and eps2 >= 0");
        set_weight_decay_rate(o_.weight_decay_rate);
        for (std::size_t i = 0; i < this->params_.size(); ++i) {
            const Shape& s = this->params_[i].variable.shape();
            const bool factor = o_.factored && s.size() >= 2;
            factored_.push_back(factor);
            if (factor) {
                Shape row(s.begin(), s.end() - 1);  // (..., n)
                Shape col(s.begin(), s.end() - 2);
                col.push_back(s.back());            // (..., m)
                this->add_state(i, "exp_avg_sq_row", row);
                this->add_state(i, "exp_avg_sq_col", col);
            } else {
                this->add_state(i, "exp_avg_sq", s);
            }
            if (o_.beta1 > 0.0) this->add_state(i, "exp_avg", s);
        }
    }

    const AdafactorOptions& options() const { return o_; }
    bool is_factored(std::size_t i) const { return factored_.at(i); }
    void set_weight_decay_rate(double rate) {
        LLMBLOCKS_CHECK(std::isfinite(rate) && rate >= 0.0, "Adafactor: weight_decay_rate must be >= 0, got ", rate);
        o_.weight_decay_rate = rate;
    }
    // rho_t of the next step (the relative step or the set lr).
    double relative_step_size() const {
        const double t = static_cast<double>(this->step_ + 1);
        return o_.relative_step ? std::min(1e-2, 1.0 / std::sqrt(t)) : this->lr_;
    }

    void step() override {
        auto guard = no_grad();
        const double t = static_cast<double>(this->step_ + 1);
        const double beta2 = 1.0 - std::pow(t, -o_.decay_rate);
        const double rho = relative_step_size();
        for (std::size_t i = 0; i < this->params_.size(); ++i) {
            const T* g = detail::gradient_or_null("Adafactor::step", this->params_[i]);
            if (!g) continue;
            update_parameter(i, g, beta2, rho);
        }
        ++this->step_;
    }

private:
    void update_parameter(std::size_t i, const T* g, double beta2, double rho) {
        const Variable<T>& var = this->params_[i].variable;
        const index_t n = var.numel();
        T* x = var.value().data();
        if (n == 0) return;
        const double scale = o_.scale_parameter ? std::max(o_.eps2, std::sqrt(detail::sum_squares(x, n) / n)) : 1.0;
        const double alpha = scale * rho;
        const T b2 = static_cast<T>(beta2), one_minus_b2 = static_cast<T>(1.0 - beta2), eps1 = static_cast<T>(o_.eps1);
        scratch_.resize(static_cast<std::size_t>(n));
        T* u = scratch_.data();  // U = G / sqrt(V)

        std::size_t slot = 0;
        if (factored_[i]) {
            const Shape& s = var.shape();
            const index_t cols = s.back(), rows = s[s.size() - 2], mats = n / (rows * cols);
            T* r = this->state_tensor(i, slot++).data();  // (mats, rows)
            T* c = this->state_tensor(i, slot++).data();  // (mats, cols)
            for (index_t b = 0; b < mats; ++b) {
                const T* gb = g + b * rows * cols;
                T* ub = u + b * rows * cols;
                T* rb = r + b * rows;
                T* cb = c + b * cols;
                // R = beta2 R + (1 - beta2) mean_j(G^2 + eps1)
                parallel_for(0, rows, std::max<index_t>(1, detail::kOptimizerGrain / cols), [&](index_t lo, index_t hi) {
                    for (index_t row = lo; row < hi; ++row) {
                        double s2 = 0.0;
                        for (index_t j = 0; j < cols; ++j) {
                            const T gj = gb[row * cols + j];
                            s2 += static_cast<double>(gj * gj + eps1);
                        }
                        rb[row] = b2 * rb[row] + one_minus_b2 * static_cast<T>(s2 / static_cast<double>(cols));
                    }
                });
                // C = beta2 C + (1 - beta2) mean_i(G^2 + eps1); rows in order, so deterministic.
                parallel_for(0, cols, std::max<index_t>(1, detail::kOptimizerGrain / rows), [&](index_t lo, index_t hi) {
                    std::vector<double> acc(static_cast<std::size_t>(hi - lo), 0.0);
                    for (index_t row = 0; row < rows; ++row)
                        for (index_t j = lo; j < hi; ++j) {
                            const T gj = gb[row * cols + j];
                            acc[static_cast<std::size_t>(j - lo)] += static_cast<double>(gj * gj + eps1);
                        }
                    for (index_t j = lo; j < hi; ++j)
                        cb[j] = b2 * cb[j] + one_minus_b2 * static_cast<T>(acc[static_cast<std::size_t>(j - lo)] /
                                                                           static_cast<double>(rows));
                });
                // V_ij = R_i C_j / mean(R);  U = G / sqrt(V) = G * rsqrt(R_i / mean(R)) * rsqrt(C_j)
                double rsum = 0.0;
                for (index_t row = 0; row < rows; ++row) rsum += static_cast<double>(rb[row]);
                const double rmean = rsum / static_cast<double>(rows);
                parallel_for(0, rows, std::max<index_t>(1, detail::kOptimizerGrain / cols), [&](index_t lo, index_t hi) {
                    for (index_t row = lo; row < hi; ++row) {
                        const T rfac = static_cast<T>(1.0 / std::sqrt(static_cast<double>(rb[row]) / rmean));
                        for (index_t j = 0; j < cols; ++j)
                            ub[row * cols + j] = gb[row * cols + j] * rfac / std::sqrt(cb[j]);
                    }
                });
            }
        } else {
            T* v = this->state_tensor(i, slot++).data();
            parallel_for(0, n, detail::kOptimizerGrain, [&](index_t lo, index_t hi) {
                for (index_t k = lo; k < hi; ++k) {
                    v[k] = b2 * v[k] + one_minus_b2 * (g[k] * g[k] + eps1);
                    u[k] = g[k] / std::sqrt(v[k]);
                }
            });
        }

        // Update clipping: U / max(1, RMS(U) / d).
        const double rms_u = std::sqrt(detail::sum_squares(u, n) / static_cast<double>(n));
        const T clip = static_cast<T>(1.0 / std::max(1.0, rms_u / o_.clip_threshold));
        const T step_size = static_cast<T>(alpha);
        const T keep = static_cast<T>(1.0 - o_.weight_decay_rate);
        T* m = o_.beta1 > 0.0 ? this->state_tensor(i, slot).data() : nullptr;
        const T b1 = static_cast<T>(o_.beta1), one_minus_b1 = static_cast<T>(1.0 - o_.beta1);
        parallel_for(0, n, detail::kOptimizerGrain, [&](index_t lo, index_t hi) {
            for (index_t k = lo; k < hi; ++k) {
                T upd = u[k] * clip;
                if (m) {
                    m[k] = b1 * m[k] + one_minus_b1 * upd;
                    upd = m[k];
                }
                // X - alpha M - rate X  ==  X (1 - rate) - alpha M
                x[k] = x[k] * keep - step_size * upd;
            }
        });
    }

    AdafactorOptions o_;
    std::vector<bool> factored_;
    std::vector<T> scratch_;
};

// ---------------------------------------------------------------------------------------------
// Gradient accumulation over micro-batches: loss_fn(i) runs the forward pass of
// micro-batch i and returns its (mean) loss; each loss is back-propagated with
// the output gradient 1 / micro_steps, so the gradients accumulated in the
// parameters are those of the mean over the micro-batches (for equal-sized
// micro-batches: the mean loss of the full batch). Zero the gradients before,
// step after. Returns the mean of the micro-batch losses.
template <class T, class LossFn>
double accumulate_gradients(index_t micro_steps, LossFn&& loss_fn) {
    LLMBLOCKS_CHECK(micro_steps >= 1, "accumulate_gradients: micro_steps must be >= 1, got ", micro_steps);
    const T scale = static_cast<T>(1.0 / static_cast<double>(micro_steps));
    double total = 0.0;
    for (index_t i = 0; i < micro_steps; ++i) {
        Variable<T> loss = loss_fn(i);
        LLMBLOCKS_CHECK(loss.defined() && loss.numel() == 1, "accumulate_gradients: micro-batch ", i,
                        " returned a loss of shape ", loss.defined() ? loss.shape() : Shape{}, ", expected a scalar");
        total += static_cast<double>(loss.item());
        loss.backward(Tensor<T>::full(loss.shape(), scale));
    }
    return total / static_cast<double>(micro_steps);
}

}  // namespace llmblocks
