// tests/nn/nn_fixture.hpp — reads one case written by tests/reference/make_nn_fixtures.py
// (tests/reference/nn/<case>.safetensors): input x, output gradient dy, parameters under
// llmblocks' names, expected y and gradients grad.x / grad.<name>, and the case's
// configuration in the file's metadata. check() loads the parameters into a module, runs
// forward and backward in float32 and compares everything to 1e-5 relative (absolute floor
// 1e-6 of the tensor's largest magnitude, for elements that cancel to nearly zero).
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <string>

#include "llmblocks/io/safetensors.hpp"
#include "llmblocks/nn/module.hpp"
#include "support/compare.hpp"

#ifndef LLMBLOCKS_TEST_DATA_DIR
#define LLMBLOCKS_TEST_DATA_DIR "tests/reference"
#endif

namespace llmblocks::test {

class NnFixture {
public:
    explicit NnFixture(const std::string& name)
        : name_(name), file_(std::string(LLMBLOCKS_TEST_DATA_DIR) + "/nn/" + name + ".safetensors") {}

    TensorF get(const std::string& tensor) const { return file_.load<float>(tensor); }
    std::string meta(const std::string& key) const {
        const auto it = file_.metadata().find(key);
        REQUIRE_MESSAGE(it != file_.metadata().end(), name_ << ": no metadata key " << key);
        return it->second;
    }
    bool has_meta(const std::string& key) const { return file_.metadata().count(key) > 0; }
    index_t meta_int(const std::string& key) const { return std::stoll(meta(key)); }
    double meta_double(const std::string& key) const { return std::stod(meta(key)); }

    // Copies the fixture's parameters into `params`; the two name sets must be equal.
    void load_parameters(const ParameterList<float>& params) const {
        std::set<std::string> expected;
        for (const auto& n : file_.names())
            if (n != "x" && n != "dy" && n != "y" && n.rfind("grad.", 0) != 0) expected.insert(n);
        std::set<std::string> actual;
        for (const auto& p : params) {
            actual.insert(p.name);
            REQUIRE_MESSAGE(file_.contains(p.name), name_ << ": the fixture has no parameter " << p.name);
            TensorF(p.variable.value()).copy_(get(p.name));  // shares the parameter's storage
        }
        CHECK_MESSAGE(actual == expected, name_ << ": parameter names differ from the fixture's");
    }

    // forward(x) with the fixture's parameters loaded into `params`: y and every gradient.
    void check(const ParameterList<float>& params, const std::function<VariableF(const VariableF&)>& forward) const {
        load_parameters(params);
        const VariableF x(get("x"), true);
        VariableF y = forward(x);
        expect_close("y", y.value(), get("y"));
        y.backward(get("dy"));
        expect_close("grad.x", x.grad(), get("grad.x"));
        for (const auto& p : params) {
            const std::string g = "grad." + p.name;
            const std::string suffix = "k_proj.bias";
            if (g.size() > suffix.size() && g.compare(g.size() - suffix.size(), suffix.size(), suffix) == 0) {
                // The key bias adds q_i . b_k to every score of row i, which softmax ignores: its
                // exact gradient is 0 and float32 leaves rounding noise. Compare it on the scale
                // of the key weight's gradient instead.
                const std::string w = g.substr(0, g.size() - 4) + "weight";
                expect_close(g, p.variable.grad(), get(g), 1e-5 * largest_abs(get(w)));
            } else {
                expect_close(g, p.variable.grad(), get(g));
            }
        }
    }

private:
    static double largest_abs(const TensorF& t) {
        double largest = 0;
        const TensorF e = t.contiguous();
        for (index_t i = 0; i < e.numel(); ++i) largest = std::max(largest, std::abs(static_cast<double>(e.data()[i])));
        return largest;
    }

    void expect_close(const std::string& what, const TensorF& actual, const TensorF& expected, double atol = -1) const {
        INFO(name_ << " " << what);
        REQUIRE(actual.defined());
        CHECK_TENSOR_CLOSE(actual, expected, 1e-5, atol >= 0 ? atol : 1e-6 * largest_abs(expected));
    }

    std::string name_;
    SafetensorsFile file_;
};

inline kernels::AttentionMask mask_from_name(const std::string& name) {
    if (name == "causal") return kernels::AttentionMask::causal;
    if (name == "prefix_lm") return kernels::AttentionMask::prefix_lm;
    if (name == "local") return kernels::AttentionMask::local;
    REQUIRE_MESSAGE(name == "bidirectional", "unknown mask " << name);
    return kernels::AttentionMask::bidirectional;
}

}  // namespace llmblocks::test
