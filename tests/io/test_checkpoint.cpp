// Tests for include/llmblocks/io/checkpoint.hpp: matching a model's
// parameters against a safetensors file by name.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "llmblocks/io/checkpoint.hpp"
#include "support/compare.hpp"
#include "support/temp_dir.hpp"

using namespace llmblocks;
namespace fs = std::filesystem;

namespace {

using llmblocks::testing::TempDir;

// A two-tensor "model" with GPT-2-like names.
struct TinyModel {
    VariableF wte, bias;
    explicit TinyModel(std::uint64_t seed) {
        Rng rng(seed);
        wte = VariableF(TensorF::randn({5, 3}, rng), true);
        bias = VariableF(TensorF::randn({3}, rng), true);
    }
    CheckpointSchema<float> schema() const {
        CheckpointSchema<float> s;
        s.model = "tiny";
        s.entries = {{"wte.weight", wte}, {"h.0.ln_1.bias", bias}};
        s.optional_prefixes = {"transformer."};
        s.ignorable = [](const std::string& name) { return name.ends_with(".attn.masked_bias"); };
        return s;
    }
};

}  // namespace

TEST_CASE("checkpoint: save then load is bit-identical, with or without a prefix") {
    TempDir dir;
    TinyModel a(1), b(2);
    for (const std::string prefix : {"", "transformer."}) {
        const fs::path file = dir.path / ("m" + std::to_string(prefix.size()) + ".safetensors");
        save_checkpoint(file, a.schema(), prefix);
        const CheckpointMatch match = load_checkpoint(file, b.schema());
        CHECK(match.prefix == prefix);
        CHECK(match.file_names == std::vector<std::string>{prefix + "wte.weight", prefix + "h.0.ln_1.bias"});
        CHECK(b.wte.value().to_vector() == a.wte.value().to_vector());
        CHECK(b.bias.value().to_vector() == a.bias.value().to_vector());
    }
}

TEST_CASE("checkpoint: ignorable tensors (buffers, copies) are skipped") {
    TempDir dir;
    TinyModel a(1), b(2);
    const fs::path file = dir.path / "extra.safetensors";
    save_safetensors(file, {{"wte.weight", a.wte.value()},
                            {"h.0.ln_1.bias", a.bias.value()},
                            {"h.0.attn.masked_bias", TensorF::full({}, -1e4f)}});
    load_checkpoint(file, b.schema());
    CHECK(b.wte.value().to_vector() == a.wte.value().to_vector());
}

TEST_CASE("checkpoint: a mismatch names every problem and leaves the model untouched") {
    TempDir dir;
    TinyModel a(1), b(2);
    const auto before = b.wte.value().to_vector();
    const fs::path file = dir.path / "bad.safetensors";
    save_safetensors(file, {{"wte.weight", TensorF::zeros({4, 3})},   // wrong shape
                            {"h.0.ln_2.bias", a.bias.value()}});       // unexpected; h.0.ln_1.bias missing
    try {
        load_checkpoint(file, b.schema());
        FAIL("load_checkpoint accepted a mismatched file");
    } catch (const Error& e) {
        const std::string msg = e.what();
        INFO(msg);
        CHECK(msg.find(file.string()) != std::string::npos);
        CHECK(msg.find("the tiny model") != std::string::npos);
        CHECK(msg.find("missing 'h.0.ln_1.bias'") != std::string::npos);
        CHECK(msg.find("unexpected 'h.0.ln_2.bias'") != std::string::npos);
        CHECK(msg.find("'wte.weight' is (4, 3) in the file but (5, 3) in the model") != std::string::npos);
    }
    CHECK(b.wte.value().to_vector() == before);
    CHECK_THROWS_WITH_AS(load_checkpoint(dir.path / "absent.safetensors", b.schema()),
                         doctest::Contains("absent.safetensors"), Error);
}

TEST_CASE("checkpoint: the same tensor under and without the prefix is refused") {
    TempDir dir;
    TinyModel a(1), b(2);
    const fs::path file = dir.path / "dup.safetensors";
    save_safetensors(file, {{"transformer.wte.weight", a.wte.value()},
                            {"wte.weight", a.wte.value()},
                            {"transformer.h.0.ln_1.bias", a.bias.value()}});
    CHECK_THROWS_WITH_AS(load_checkpoint(file, b.schema()), doctest::Contains("unexpected 'wte.weight'"), Error);
}
