// Tests include/llmblocks/ops/ (norm.hpp, activation.hpp, softmax.hpp,
// loss.hpp) in float32 against fixtures written by PyTorch
// (tests/reference/make_ops_fixtures.py; the expected values are PyTorch's,
// computed in float64 from the float32 inputs and rounded to float32).
// Forward values and gradients must agree to 1e-5 relative; the absolute
// floor is 1e-6 of the tensor's largest magnitude, for elements that cancel
// to nearly zero.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "llmblocks/ops.hpp"
#include "support/compare.hpp"

#ifndef LLMBLOCKS_TEST_DATA_DIR
#error "LLMBLOCKS_TEST_DATA_DIR must name tests/reference (tests/CMakeLists.txt defines it)"
#endif

using namespace llmblocks;

namespace {

// The fixture file: raw little-endian float32 tensors, indexed by a text manifest.
class Fixtures {
public:
    Fixtures() {
        const std::string dir = std::string(LLMBLOCKS_TEST_DATA_DIR) + "/ops/";
        std::ifstream manifest(dir + "ops_fixtures.txt");
        REQUIRE_MESSAGE(manifest.good(), "missing " << dir << "ops_fixtures.txt");
        std::ifstream bin(dir + "ops_fixtures.bin", std::ios::binary);
        REQUIRE_MESSAGE(bin.good(), "missing " << dir << "ops_fixtures.bin");
        const std::vector<char> bytes((std::istreambuf_iterator<char>(bin)), std::istreambuf_iterator<char>());
        std::string line;
        while (std::getline(manifest, line)) {
            if (line.empty() || line[0] == '#') continue;
            std::istringstream fields(line);
            std::string name;
            index_t offset = 0, ndim = 0;
            fields >> name >> offset >> ndim;
            Shape shape(static_cast<std::size_t>(ndim));
            for (auto& s : shape) fields >> s;
            TensorF t = TensorF::empty(shape);
            const std::size_t begin = static_cast<std::size_t>(offset) * 4, size = static_cast<std::size_t>(t.numel()) * 4;
            REQUIRE_MESSAGE(begin + size <= bytes.size(), "fixture " << name << " runs past the end of the file");
            for (index_t i = 0; i < t.numel(); ++i) {
                std::uint32_t word;
                std::memcpy(&word, bytes.data() + begin + static_cast<std::size_t>(i) * 4, 4);
                if constexpr (std::endian::native == std::endian::big)
                    word = (word >> 24) | ((word >> 8) & 0xff00u) | ((word << 8) & 0xff0000u) | (word << 24);
                t.data()[i] = std::bit_cast<float>(word);
            }
            tensors_[name] = t;
        }
    }
    TensorF operator[](const std::string& name) const {
        const auto it = tensors_.find(name);
        REQUIRE_MESSAGE(it != tensors_.end(), "no fixture named " << name);
        return it->second;
    }
    TensorI targets(const std::string& name) const {
        const TensorF f = (*this)[name];
        TensorI t = TensorI::empty(f.shape());
        for (index_t i = 0; i < f.numel(); ++i) t.data()[i] = static_cast<std::int32_t>(f.data()[i]);
        return t;
    }

private:
    std::map<std::string, TensorF> tensors_;
};

const Fixtures& fixtures() {
    static const Fixtures f;
    return f;
}

// |actual - expected| <= 1e-5 |expected| + 1e-6 max|expected|
void check_close(const TensorF& actual, const TensorF& expected) {
    double peak = 0.0;
    for (float v : expected.to_vector()) peak = std::max(peak, static_cast<double>(std::abs(v)));
    CHECK_TENSOR_CLOSE(actual, expected, 1e-5, 1e-6 * peak);
}

// y = f(inputs); backward with dy; returns the gradients of the inputs.
void check_vjp(const std::string& name, const VariableF& y, const std::vector<std::pair<std::string, VariableF>>& inputs) {
    const auto& fx = fixtures();
    INFO("fixture " << name);
    check_close(y.value(), fx[name + ".y"]);
    VariableF(y).backward(fx[name + ".dy"]);
    for (const auto& [input, v] : inputs) {
        INFO("gradient of " << input);
        check_close(v.grad(), fx[name + ".d" + input]);
    }
}

}  // namespace

TEST_CASE("fixtures: LayerNorm with bias and scale-only against PyTorch (float32)") {
    const auto& fx = fixtures();
    VariableF x(fx["ln.x"].clone(), true), w(fx["ln.w"].clone(), true), b(fx["ln.b"].clone(), true);
    check_vjp("ln", layer_norm(x, w, b, 1e-5f), {{"x", x}, {"w", w}, {"b", b}});

    VariableF xs(fx["ln.x"].clone(), true), ws(fx["ln.w"].clone(), true);
    auto y = layer_norm(xs, ws, 1e-5f);
    const auto& lns = fx["lns.y"];
    check_close(y.value(), lns);
    y.backward(fx["ln.dy"]);
    check_close(xs.grad(), fx["lns.dx"]);
    check_close(ws.grad(), fx["lns.dw"]);
}

TEST_CASE("fixtures: RMSNorm against PyTorch (float32)") {
    const auto& fx = fixtures();
    VariableF x(fx["ln.x"].clone(), true), w(fx["ln.w"].clone(), true);
    auto y = rms_norm(x, w, 1e-6f);
    check_close(y.value(), fx["rms.y"]);
    y.backward(fx["ln.dy"]);
    check_close(x.grad(), fx["rms.dx"]);
    check_close(w.grad(), fx["rms.dw"]);
}

TEST_CASE("fixtures: GELU tanh and softmax against PyTorch (float32)") {
    const auto& fx = fixtures();
    VariableF g(fx["gelu.x"].clone(), true);
    check_vjp("gelu", gelu_tanh(g), {{"x", g}});
    VariableF s(fx["softmax.x"].clone(), true);
    check_vjp("softmax", softmax(s), {{"x", s}});
}

TEST_CASE("fixtures: cross-entropy with ignored positions, and z-loss, against PyTorch (float32)") {
    const auto& fx = fixtures();
    const TensorI targets = fx.targets("ce.targets");
    int ignored = 0;
    for (std::int32_t t : targets.to_vector()) ignored += t == -100;
    CHECK(ignored == 3);

    VariableF logits(fx["ce.logits"].clone(), true);
    auto loss = cross_entropy(logits, targets);
    check_close(loss.value(), fx["ce.loss"]);
    loss.backward();
    check_close(logits.grad(), fx["ce.dlogits"]);

    VariableF zlogits(fx["ce.logits"].clone(), true);
    auto zloss = cross_entropy(zlogits, targets, {.z_loss = 1e-4});
    check_close(zloss.value(), fx["cez.loss"]);
    zloss.backward();
    check_close(zlogits.grad(), fx["cez.dlogits"]);
    // the z-loss term is large enough here that dropping it would fail the comparison
    CHECK(std::abs(fx["cez.loss"].item() - fx["ce.loss"].item()) > 20 * 1e-5 * std::abs(fx["ce.loss"].item()));
}
