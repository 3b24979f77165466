// Misuse of the differentiable ops in include/llmblocks/ops/ throws
// llmblocks::Error whose message names the op and the shapes involved.
#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "llmblocks/ops.hpp"

using namespace llmblocks;

namespace {

// The message of the Error thrown by fn ("" if none).
template <class Fn>
std::string error_of(Fn&& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

void check_names(const std::string& message, std::initializer_list<const char*> parts) {
    INFO(message);
    CHECK_FALSE(message.empty());
    for (const char* p : parts) CHECK(message.find(p) != std::string::npos);
}

VariableF var(Shape s) { return VariableF(TensorF::zeros(std::move(s)), true); }

}  // namespace

TEST_CASE("ops: bad shapes throw errors naming the op and both shapes") {
    check_names(error_of([] { matmul(var({2, 3}), var({4, 5})); }), {"matmul", "(2, 3)", "(4, 5)"});
    check_names(error_of([] { matmul(var({2, 2, 3}), var({3, 3, 5})); }), {"matmul", "(2, 2, 3)", "(3, 3, 5)"});
    check_names(error_of([] { linear(var({2, 3}), var({4, 5})); }), {"linear", "(2, 3)", "(4, 5)"});
    check_names(error_of([] { linear(var({2, 5}), var({4, 5}), var({3})); }), {"linear", "bias", "(3)", "(4, 5)"});
    check_names(error_of([] { add(var({2, 3}), var({2, 4})); }), {"add", "(2, 3)", "(2, 4)"});
    check_names(error_of([] { mul(var({3}), var({2})); }), {"mul", "(3)", "(2)"});
    check_names(error_of([] { reshape(var({2, 3}), {4, 2}); }), {"(2, 3)", "(4, 2)"});
    check_names(error_of([] { split_heads(var({2, 3, 5}), 2); }), {"split_heads", "(2, 3, 5)"});
    check_names(error_of([] { merge_heads(var({2, 3})); }), {"merge_heads", "(2, 3)"});
    check_names(error_of([] { slice(var({2, 3}), 1, 2, 5); }), {"slice", "(2, 3)"});
    check_names(error_of([] { concat<float>({var({2, 3}), var({3, 3})}, 1); }), {"concat", "(2, 3)", "(3, 3)"});
    check_names(error_of([] { swiglu(var({2, 3}), var({3, 2})); }), {"swiglu", "(2, 3)", "(3, 2)"});
    check_names(error_of([] { layer_norm(var({2, 3}), var({4})); }), {"layer_norm", "(4)", "(2, 3)"});
    check_names(error_of([] { rms_norm(var({2, 3}), var({2})); }), {"rms_norm", "(2)", "(2, 3)"});
    check_names(error_of([] { cross_entropy(var({2, 3, 5}), TensorI::zeros({3, 2})); }),
                {"cross_entropy", "(2, 3, 5)", "(3, 2)"});
    check_names(error_of([] { embedding(TensorI::zeros({2}), var({5})); }), {"embedding", "(5)", "(2)"});
    check_names(error_of([] { dropout(var({2}), 1.5, *std::make_unique<Rng>(0)); }), {"dropout", "(2)"});
}

TEST_CASE("ops: out-of-range ids and targets throw") {
    check_names(error_of([] { embedding(TensorI::from_vector({3}, {0, 7, 1}), var({5, 2})); }),
                {"embedding", "7", "[0, 5)"});
    check_names(error_of([] { embedding(TensorI::from_vector({1}, {-1}), var({5, 2})); }), {"embedding", "-1"});
    check_names(error_of([] { cross_entropy(var({2, 4}), TensorI::from_vector({2}, {1, 4})); }),
                {"cross_entropy", "4", "[0, 4)"});
    check_names(error_of([] { cross_entropy(var({2, 4}), TensorI::from_vector({2}, {-1, 0})); }), {"cross_entropy", "-1"});
    // -100 is not an error: it is ignored
    CHECK(error_of([] { cross_entropy(var({2, 4}), TensorI::from_vector({2}, {-100, 0})); }).empty());
    CHECK(error_of([] { matmul(VariableF(), var({2, 2})); }).find("undefined") != std::string::npos);
}
