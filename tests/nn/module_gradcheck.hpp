// tests/nn/module_gradcheck.hpp — gradcheck (autograd/gradcheck.hpp) of a
// whole module: with respect to its inputs AND every parameter it reports
// through collect_parameters.
//
// gradcheck perturbs leaves it creates itself. bind_parameters turns each of
// the module's parameter nodes into an identity op of the matching leaf (same
// storage, so a perturbation is seen by the module; its backward passes the
// gradient on to the leaf), re-armed at every call of the checked function.
#pragma once

#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "llmblocks/autograd/gradcheck.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/nn/module.hpp"

namespace llmblocks::test {

// params[i] becomes leaves[i] seen through an identity op.
inline void bind_parameters(const ParameterList<double>& params, const std::vector<VariableD>& leaves) {
    for (std::size_t i = 0; i < params.size(); ++i) {
        Node<double>* n = params[i].variable.node();
        n->value = leaves[i].value();
        n->grad = TensorD();
        n->requires_grad = true;
        n->is_leaf = false;
        n->graph_freed = false;
        n->op = "parameter";
        n->inputs = {leaves[i].node_ptr()};
        const index_t numel = n->value.numel();
        n->backward_fn = [numel](const TensorD& dout, const std::vector<double*>& d) {
            if (d[0])
                for (index_t k = 0; k < numel; ++k) d[0][k] += dout.data()[k];
        };
    }
}

// Runs its scope on one thread, then restores the previous setting. A gradcheck makes
// thousands of tiny calls; the fused attention kernel opens a parallel region for each
// however small (kernels::detail::run_tasks), which on a loaded 2-core machine made the
// attention gradchecks 30x slower. The threaded paths are tested by the kernel tests and
// by tests/nn/test_attention_module.cpp.
struct SerialScope {
    int saved = detail::thread_count_setting();
    SerialScope() { set_num_threads(1); }
    ~SerialScope() { detail::thread_count_setting() = saved; }
    SerialScope(const SerialScope&) = delete;
    SerialScope& operator=(const SerialScope&) = delete;
};

// Checks fn(inputs) -> output against finite differences in the inputs and in every parameter
// of `params`. fn receives the input leaves (the parameters are bound before each call).
inline void check_module_gradients(const std::string& what, const ParameterList<double>& params,
                                   const std::vector<TensorD>& inputs,
                                   const std::function<VariableD(const std::vector<VariableD>&)>& fn,
                                   GradcheckOptions options = {}) {
    std::vector<TensorD> all = inputs;
    for (const auto& p : params) all.push_back(p.variable.value().contiguous().clone());
    const std::size_t n_in = inputs.size();
    const auto wrapped = [&](const std::vector<VariableD>& leaves) {
        const std::vector<VariableD> param_leaves(leaves.begin() + static_cast<std::ptrdiff_t>(n_in), leaves.end());
        bind_parameters(params, param_leaves);
        return fn(std::vector<VariableD>(leaves.begin(), leaves.begin() + static_cast<std::ptrdiff_t>(n_in)));
    };
    SerialScope serial;
    const GradcheckResult r = gradcheck(wrapped, all, options);
    std::string names;
    for (const auto& p : params) names += " " + p.name;
    INFO(what << " (inputs " << n_in << ", parameters:" << names << "): " << r.message);
    CHECK(r.ok);
    CHECK(r.checked > 0);
}

}  // namespace llmblocks::test
