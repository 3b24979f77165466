// llmblocks/nn/module.hpp — what every module of nn/ shares: named parameters.
//
// A module is a plain struct: its parameters are Variables (leaves with
// requires_grad), its constructor takes sizes, options and an Rng for the
// initial values, operator() is the forward, and
//     void collect_parameters(ParameterList<T>& list, const std::string& prefix) const
// appends (name, Variable) for every parameter it owns, names joined with dots
// ("block.attn.q_proj.weight"), submodules adding their own under their field
// name. These are llmblocks' own names; checkpoint names (GPT-2's
// "h.0.attn.c_attn.weight", ...) are mapped in the io layer.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/core/tensor.hpp"

namespace llmblocks {

template <class T>
struct NamedParameter {
    std::string name;
    Variable<T> variable;
};

template <class T>
using ParameterList = std::vector<NamedParameter<T>>;

// "prefix.name", or "name" without a prefix.
inline std::string join_name(const std::string& prefix, const std::string& name) {
    return prefix.empty() ? name : prefix + "." + name;
}

// Appends `variable` as prefix.name; an undefined Variable (a bias turned off) is skipped.
template <class T>
void add_parameter(ParameterList<T>& list, const std::string& prefix, const std::string& name,
                   const Variable<T>& variable) {
    if (variable.defined()) list.push_back({join_name(prefix, name), variable});
}

// A parameter: a leaf that requires grad.
template <class T>
Variable<T> make_parameter(Tensor<T> value) {
    return Variable<T>(std::move(value), true);
}

// N(0, std^2) entries (GPT-2 initialises its weights with std 0.02).
template <class T>
Variable<T> normal_parameter(Shape shape, double std, Rng& rng) {
    return make_parameter(Tensor<T>::randn(std::move(shape), rng, 0.0, std));
}

// Every parameter of `module` with its name.
template <class T, class Module>
ParameterList<T> named_parameters(const Module& module, const std::string& prefix = "") {
    ParameterList<T> list;
    module.collect_parameters(list, prefix);
    return list;
}

// The number of scalars in a parameter list.
template <class T>
index_t parameter_count(const ParameterList<T>& list) {
    index_t n = 0;
    for (const auto& p : list) n += p.variable.numel();
    return n;
}

}  // namespace llmblocks
