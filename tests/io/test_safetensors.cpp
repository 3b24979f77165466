// Tests for include/llmblocks/io/safetensors.hpp and the two headers it is
// built on, io/mapped_file.hpp and io/half.hpp: bit-exact round trips, the
// exact bytes the writer produces, the PyTorch fixture
// (tests/reference/make_io_fixtures.py), atomic writes, every malformed-file
// error, truncation and corruption never crashing, and the F16/BF16
// conversions over all 65536 bit patterns against references computed here
// from the bit fields.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "llmblocks/io/half.hpp"
#include "llmblocks/io/mapped_file.hpp"
#include "llmblocks/io/safetensors.hpp"
#include "support/compare.hpp"
#include "support/temp_dir.hpp"

#ifndef LLMBLOCKS_TEST_DATA_DIR
#define LLMBLOCKS_TEST_DATA_DIR "tests/reference"
#endif

using namespace llmblocks;
namespace fs = std::filesystem;

namespace {

using llmblocks::testing::TempDir;

using llmblocks::testing::read_bytes;
using llmblocks::testing::write_bytes;

std::string le64(std::uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    return s;
}

std::string f32_bytes(const std::vector<float>& values) {
    std::string s(values.size() * 4, '\0');
    if (!values.empty()) std::memcpy(s.data(), values.data(), s.size());
    return s;
}

// A safetensors file with this header text and buffer (header length as given, or the true one).
std::string safetensors_bytes(const std::string& header, const std::string& buffer, std::int64_t header_len = -1) {
    return le64(header_len < 0 ? header.size() : static_cast<std::uint64_t>(header_len)) + header + buffer;
}

// fn() must throw llmblocks::Error whose message contains every one of `parts`.
template <class Fn>
void check_error(Fn&& fn, const std::vector<std::string>& parts) {
    std::string message;
    bool thrown = false;
    try {
        fn();
    } catch (const Error& e) {
        thrown = true;
        message = e.what();
    }
    INFO("message: " << message);
    CHECK(thrown);
    for (const auto& part : parts) {
        INFO("expected to contain: " << part);
        CHECK(message.find(part) != std::string::npos);
    }
}

bool same_bits(const TensorF& a, const TensorF& b) {
    if (a.shape() != b.shape()) return false;
    const TensorF x = a.contiguous(), y = b.contiguous();
    return x.numel() == 0 || std::memcmp(x.data(), y.data(), static_cast<std::size_t>(x.numel()) * 4) == 0;
}

std::uint32_t bits_of(float f) { return std::bit_cast<std::uint32_t>(f); }

fs::path fixture(const std::string& name) { return fs::path(LLMBLOCKS_TEST_DATA_DIR) / "io" / name; }

}  // namespace

// ---- writing and reading back ----------------------------------------------------

TEST_CASE("safetensors: save then load gives bit-identical tensors in the given order") {
    TempDir dir;
    Rng rng(11);
    TensorF weight = TensorF::randn({3, 4}, rng);
    weight.data()[0] = std::nanf("");
    weight.data()[1] = -0.0f;
    weight.data()[2] = -INFINITY;
    weight.data()[3] = 1e-42f;  // a float denormal
    const std::vector<std::pair<std::string, TensorF>> tensors = {
        {"b.weight", weight},
        {"a.bias", TensorF::randn({5}, rng)},
        {"loss", TensorF::full({}, 2.5f)},
        {"empty", TensorF::zeros({0, 5})},
        {"transposed", TensorF::randn({4, 3}, rng).t()},
        {"strided", TensorF::arange(20).view({4, 5}).slice(1, 0, 5, 2)},
        {"expanded", TensorF::from_vector({1, 3}, {1.f, 2.f, 3.f}).expand({4, 3})},
        {"h.0.ln_1.weight", TensorF::ones({7})},
    };
    REQUIRE_FALSE(tensors[4].second.is_contiguous());
    REQUIRE_FALSE(tensors[5].second.is_contiguous());
    const fs::path path = dir / "model.safetensors";
    save_safetensors(path, tensors, {{"format", "pt"}, {"note", "llmblocks test"}});

    const SafetensorsFile file(path);
    CHECK(file.path() == path);
    CHECK(file.data_offset() % 8 == 0);
    CHECK(file.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"note", "llmblocks test"}});
    REQUIRE(file.size() == tensors.size());
    std::uint64_t offset = 0;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
        const std::string& name = tensors[i].first;  // (not a structured binding: CAPTURE needs a lambda capture)
        const TensorF& tensor = tensors[i].second;
        const SafetensorsTensor& t = file.tensors()[i];
        CAPTURE(name);
        CHECK(t.name == name);  // file order = the order given
        CHECK(t.dtype == SafetensorsDtype::F32);
        CHECK(t.shape == tensor.shape());
        CHECK(t.begin == offset);
        CHECK(t.nbytes() == static_cast<std::uint64_t>(tensor.numel()) * 4);
        offset = t.end;
        const TensorF loaded = file.load_float(name);
        CHECK(loaded.is_contiguous());
        CHECK(same_bits(loaded, tensor));
        const auto view = file.view_f32(name);
        REQUIRE(static_cast<index_t>(view.size()) == tensor.numel());
        CHECK((view.empty() || std::memcmp(view.data(), loaded.data(), view.size() * 4) == 0));
        CHECK(file.bytes(name).size() == view.size() * 4);
    }
    CHECK(file.load_float("loss").dim() == 0);
    CHECK(file.load_float("loss").item() == 2.5f);
    CHECK(std::isnan(file.load_float("b.weight").data()[0]));
    CHECK(std::signbit(file.load_float("b.weight").data()[1]));
    CHECK(file.load<double>("a.bias").to_vector() == tensors[1].second.to<double>().to_vector());

    const auto all = file.load_all_float();
    REQUIRE(all.size() == tensors.size());
    for (std::size_t i = 0; i < all.size(); ++i) CHECK((all[i].first == tensors[i].first && same_bits(all[i].second, tensors[i].second)));

    // The writer is deterministic, and reading back what was read writes the same bytes.
    save_safetensors(dir / "again.safetensors", all, file.metadata());
    CHECK(read_bytes(dir / "again.safetensors") == read_bytes(path));
    CHECK(dir.entries() == std::vector<std::string>{"again.safetensors", "model.safetensors"});
}

TEST_CASE("safetensors: the writer's bytes follow the spec exactly") {
    TempDir dir;
    SUBCASE("a 0-dim tensor, no metadata") {
        save_safetensors(dir / "loss.safetensors", {{"loss", TensorF::full({}, 2.5f)}});
        const std::string json = R"({"loss":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})";
        REQUIRE(json.size() == 56);  // 8 + 56 = 64 is already a multiple of 8: no padding
        CHECK(read_bytes(dir / "loss.safetensors") == le64(56) + json + f32_bytes({2.5f}));
    }
    SUBCASE("metadata first, header padded with spaces to a multiple of 8") {
        save_safetensors(dir / "m.safetensors",
                         {{"w", TensorF::from_vector({2, 1}, {1.f, -2.f})}, {"e", TensorF::zeros({0})}},
                         {{"format", "pt"}});
        const std::string json =
            R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,1],"data_offsets":[0,8]},)"
            R"("e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}})";
        const std::string padded = json + std::string((8 - (8 + json.size()) % 8) % 8, ' ');
        REQUIRE((8 + padded.size()) % 8 == 0);
        CHECK(padded.size() > json.size());
        CHECK(read_bytes(dir / "m.safetensors") == le64(padded.size()) + padded + f32_bytes({1.f, -2.f}));
    }
}

TEST_CASE("safetensors: saving is atomic and refuses bad input") {
    TempDir dir;
    const fs::path path = dir / "model.safetensors";
    save_safetensors(path, {{"x", TensorF::ones({3})}});
    const std::string before = read_bytes(path);

    check_error([&] { save_safetensors(path, {{"x", TensorF::ones({2})}, {"x", TensorF::ones({2})}}); },
                {path.string(), "duplicate tensor name 'x'"});
    check_error([&] { save_safetensors(path, {{"u", TensorF()}}); }, {path.string(), "tensor 'u' is undefined"});
    check_error([&] { save_safetensors(path, {{"__metadata__", TensorF::ones({1})}}); }, {path.string(), "reserved"});
    check_error([&] { save_safetensors(path, {{std::string("bad\xff", 4), TensorF::ones({1})}}); },
                {path.string(), "UTF-8"});
    CHECK(read_bytes(path) == before);

    // A failure at the last step (the target is a directory) leaves no temporary file behind.
    fs::create_directory(dir / "adir");
    check_error([&] { save_safetensors(dir / "adir", {{"x", TensorF::ones({3})}}); },
                {(dir / "adir").string(), "Is a directory"});
    check_error([&] { save_safetensors(dir / "missing" / "m.safetensors", {{"x", TensorF::ones({3})}}); },
                {(dir / "missing" / "m.safetensors").string(), "No such file or directory"});
    CHECK(dir.entries() == std::vector<std::string>{"adir", "model.safetensors"});

    // Overwriting replaces the whole file.
    save_safetensors(path, {{"y", TensorF::full({2, 2}, 4.f)}});
    const SafetensorsFile file(path);
    CHECK(file.names() == std::vector<std::string>{"y"});
    CHECK(dir.entries() == std::vector<std::string>{"adir", "model.safetensors"});
}

// ---- the PyTorch fixture --------------------------------------------------------------

TEST_CASE("safetensors: reads the fixture written by make_io_fixtures.py") {
    const SafetensorsFile file(fixture("fixture.safetensors"));
    CHECK(file.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"producer", "make_io_fixtures.py"}});
    CHECK(file.data_offset() % 8 == 0);
    // File order: the script orders by dtype alignment, then name (as Hugging Face's writer).
    CHECK(file.names() == std::vector<std::string>{"position_ids", "weight_f64", "empty", "h.0.attn.c_attn.weight",
                                                   "h.0.attn.masked_bias", "ids_i32", "loss", "values",
                                                   "values_bf16_as_f32", "values_f16_as_f32",
                                                   "h.0.attn.c_attn.weight_bf16", "values_bf16", "values_f16"});
    CHECK(file.info("values_f16").dtype == SafetensorsDtype::F16);
    CHECK(file.info("values_bf16").dtype == SafetensorsDtype::BF16);
    CHECK(file.info("values").shape == Shape{5, 19});
    CHECK(file.info("loss").shape.empty());
    CHECK(file.info("empty").shape == Shape{0, 3});

    CHECK(file.load_float("loss").item() == 2.5f);
    CHECK(file.load_float("h.0.attn.masked_bias").item() == -1e4f);
    CHECK(file.load_float("empty").numel() == 0);
    const TensorD f64 = file.load<double>("weight_f64");
    CHECK(f64.to_vector() == std::vector<double>{1.0 / 3.0, -2.5, 1e-300, 7.0});
    CHECK(file.load_float("weight_f64").to_vector() == std::vector<float>{1.0f / 3.0f, -2.5f, 0.0f, 7.0f});
    CHECK(file.load_float("position_ids").to_vector() == std::vector<float>{-2, -1, 0, 1, 2});
    CHECK(file.load<double>("ids_i32").to_vector() == std::vector<double>{7, -3, 2147483647});

    // F16 and BF16 converted on load must equal torch's .float() of them, bit for bit.
    const TensorF values = file.load_float("values");
    for (const char* kind : {"f16", "bf16"}) {
        CAPTURE(kind);
        const TensorF loaded = file.load_float(std::string("values_") + kind);
        const TensorF expected = file.load_float(std::string("values_") + kind + "_as_f32");
        const auto raw = file.bytes(std::string("values_") + kind);
        REQUIRE(loaded.shape() == values.shape());
        int nans = 0;
        for (index_t i = 0; i < loaded.numel(); ++i) {
            CAPTURE(i);
            const float x = values.data()[i], got = loaded.data()[i], want = expected.data()[i];
            std::uint16_t stored;
            std::memcpy(&stored, raw.data() + 2 * i, 2);
            if (std::isnan(want)) {
                ++nans;
                CHECK(std::isnan(got));
                continue;
            }
            CHECK(bits_of(got) == bits_of(want));
            // Our float -> 16-bit rounding agrees with torch's .half() / .bfloat16().
            CHECK(stored == (kind == std::string("f16") ? float_to_half(x) : float_to_bf16(x)));
        }
        CHECK(nans == 1);
    }
    // The fixture covers the interesting cases: F16 overflow and subnormals, a float denormal.
    const TensorF f16 = file.load_float("values_f16");
    CHECK(std::isinf(f16.data()[10]));         // 65520 rounds to inf
    CHECK(f16.data()[9] == 65504.0f);          // 65519.99 rounds down
    CHECK(f16.data()[15] == std::ldexp(1.0f, -24));  // the smallest subnormal
    CHECK(f16.data()[16] == 0.0f);             // 2^-25 ties to even: zero
    CHECK(f16.data()[17] == std::ldexp(1.0f, -24));
    CHECK(f16.data()[21] == 0.0f);  // the float denormal 1e-40 underflows in F16 ...
    CHECK(file.load_float("values_bf16").data()[21] == std::ldexp(1.0f, -133));  // ... but is a BF16 subnormal

    const TensorF weight = file.load_float("h.0.attn.c_attn.weight");
    const TensorF weight_bf16 = file.load_float("h.0.attn.c_attn.weight_bf16");
    CHECK_TENSOR_CLOSE(weight_bf16, weight, 1.0 / 256, 0.0);  // BF16 keeps 8 significant bits
    const auto view = file.view_f32("h.0.attn.c_attn.weight");
    CHECK(std::equal(view.begin(), view.end(), weight.data()));
    check_error([&] { (void)file.view_f32("values_bf16"); }, {"values_bf16", "BF16", "load_float"});
}

// ---- malformed files ------------------------------------------------------------------

TEST_CASE("safetensors: malformed files throw errors naming the file, the tensor and the problem") {
    TempDir dir;
    const fs::path path = dir / "bad.safetensors";
    const std::string p = path.string();
    auto open = [&](const std::string& bytes) {
        write_bytes(path, bytes);
        return [&] { SafetensorsFile f(path); };
    };
    const std::string ok_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
    const std::string two_floats = f32_bytes({1.f, 2.f});
    // The well-formed baseline opens.
    write_bytes(path, safetensors_bytes("{" + ok_entry + "}", two_floats));
    CHECK(SafetensorsFile(path).load_float("w").to_vector() == std::vector<float>{1.f, 2.f});

    SUBCASE("file too short for the header length") { check_error(open("abc"), {p, "too short"}); }
    SUBCASE("header length absurd") {
        check_error(open(safetensors_bytes("{}", "", std::int64_t(1) << 40)), {p, "header length 1099511627776", "limit"});
    }
    SUBCASE("header length beyond the file") {
        check_error(open(safetensors_bytes("{" + ok_entry + "}", two_floats, 1000)),
                    {p, "header length 1000 runs past the end of the file"});
    }
    SUBCASE("header not JSON") { check_error(open(safetensors_bytes("{\"w\": [1, 2", "")), {p, "not valid JSON"}); }
    SUBCASE("header not UTF-8") { check_error(open(safetensors_bytes("{\"w\xff\": 1}", "")), {p, "not valid JSON"}); }
    SUBCASE("header not an object") { check_error(open(safetensors_bytes("[1, 2]", "")), {p, "not a JSON object", "array"}); }
    SUBCASE("deeply nested header") {
        check_error(open(safetensors_bytes(std::string(100000, '[') + std::string(100000, ']'), "")),
                    {p, "not a JSON object"});
    }
    SUBCASE("entry not an object") {
        check_error(open(safetensors_bytes(R"({"w": [1, 2]})", "")), {p, "tensor 'w'", "not a JSON object"});
    }
    SUBCASE("missing fields") {
        check_error(open(safetensors_bytes(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", two_floats)),
                    {p, "tensor 'w'", "no \"dtype\""});
        check_error(open(safetensors_bytes(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", two_floats)),
                    {p, "tensor 'w'", "no \"shape\""});
        check_error(open(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2]}})", two_floats)),
                    {p, "tensor 'w'", "no \"data_offsets\""});
    }
    SUBCASE("wrong dtype") {
        check_error(open(safetensors_bytes(R"({"w":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", two_floats)),
                    {p, "tensor 'w'", "unknown dtype 'F33'", "BF16"});
        check_error(open(safetensors_bytes(R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", two_floats)),
                    {p, "tensor 'w'", "\"dtype\" is not a string"});
    }
    SUBCASE("wrong shape") {
        check_error(open(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", two_floats)),
                    {p, "tensor 'w'", "negative size -2"});
        check_error(open(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", two_floats)),
                    {p, "tensor 'w'", "2.5", "not a non-negative integer"});
        check_error(open(safetensors_bytes(R"({"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", two_floats)),
                    {p, "tensor 'w'", "not a non-negative integer"});
        check_error(open(safetensors_bytes(R"({"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", two_floats)),
                    {p, "tensor 'w'", "\"shape\" is not an array"});
        check_error(
            open(safetensors_bytes(
                R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", two_floats)),
            {p, "tensor 'w'", "too many elements"});
        check_error(open(safetensors_bytes(
                        R"({"w":{"dtype":"F32","shape":[0,4611686018427387904,4],"data_offsets":[0,0]}})", "")),
                    {p, "tensor 'w'", "too many elements"});
    }
    SUBCASE("wrong data_offsets") {
        check_error(open(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", two_floats)),
                    {p, "tensor 'w'", "[8, 0]", "end before"});
        check_error(open(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", two_floats)),
                    {p, "tensor 'w'", "not a [begin, end] pair"});
        check_error(open(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-1,7]}})", two_floats)),
                    {p, "tensor 'w'", "not non-negative integers"});
        check_error(open(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", two_floats)),
                    {p, "tensor 'w'", "[0, 16] run past the end of the data buffer (8 bytes"});
        check_error(
            open(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}})",
                                   two_floats)),
            {p, "tensor 'w'", "run past the end"});
    }
    SUBCASE("truncated file") {
        save_safetensors(path, {{"a", TensorF::ones({4})}, {"b", TensorF::ones({4})}});
        const std::string full = read_bytes(path);
        check_error(open(full.substr(0, full.size() - 3)), {p, "tensor 'b'", "run past the end", "truncated"});
    }
    SUBCASE("size does not match shape and dtype") {
        check_error(open(safetensors_bytes(R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}})", two_floats)),
                    {p, "tensor 'w'", "shape (2) F16 needs 4 bytes but data_offsets give 8"});
    }
    SUBCASE("overlapping ranges") {
        check_error(open(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                           R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                           two_floats)),
                    {p, "'a' [0, 8)", "'b' [4, 8)", "overlap"});
    }
    SUBCASE("holes and stray bytes") {
        check_error(open(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", two_floats)),
                    {p, "bytes [0, 4)", "belong to no tensor", "'w'"});
        check_error(open(safetensors_bytes("{" + ok_entry + "}", two_floats + "junk")),
                    {p, "12 bytes", "cover only 8"});
    }
    SUBCASE("duplicate names and keys") {
        check_error(open(safetensors_bytes("{" + ok_entry + "," + ok_entry + "}", two_floats)),
                    {p, "duplicate tensor name 'w'"});
        check_error(open(safetensors_bytes(R"({"w":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})",
                                           two_floats)),
                    {p, "duplicate key 'dtype'", "'w'"});
    }
    SUBCASE("bad metadata") {
        check_error(open(safetensors_bytes(R"({"__metadata__":{"format":1},)" + ok_entry + "}", two_floats)),
                    {p, "__metadata__", "'format'", "not a string"});
        check_error(open(safetensors_bytes(R"({"__metadata__":"pt",)" + ok_entry + "}", two_floats)),
                    {p, "__metadata__", "not a JSON object"});
    }
    SUBCASE("dtypes that cannot be loaded as float") {
        write_bytes(path, safetensors_bytes(R"({"q":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}})", two_floats));
        const SafetensorsFile file(path);
        CHECK(file.info("q").dtype == SafetensorsDtype::F8_E4M3);
        CHECK(file.bytes("q").size() == 8);
        check_error([&] { (void)file.load_float("q"); }, {p, "tensor 'q'", "F8_E4M3"});
    }
}

TEST_CASE("safetensors: the size-mismatch message names the tensor, shape and both byte counts") {
    TempDir dir;
    const fs::path path = dir / "model.safetensors";
    const std::string header =
        R"({"h.0.attn.c_attn.weight":{"dtype":"F32","shape":[768,2304],"data_offsets":[0,7077884]}})";
    write_bytes(path, safetensors_bytes(header, std::string(7077884, '\0')));
    check_error([&] { SafetensorsFile f(path); },
                {"tensor 'h.0.attn.c_attn.weight' in '" + path.string() +
                 "': shape (768, 2304) F32 needs 7077888 bytes but data_offsets give 7077884"});
}

TEST_CASE("safetensors: unknown names list the closest names") {
    TempDir dir;
    const fs::path path = dir / "gpt2.safetensors";
    save_safetensors(path, {{"transformer.wte.weight", TensorF::ones({4, 2})},
                            {"transformer.h.0.attn.c_attn.weight", TensorF::ones({2, 6})},
                            {"transformer.h.0.attn.c_proj.weight", TensorF::ones({2, 2})},
                            {"transformer.h.1.attn.c_attn.weight", TensorF::ones({2, 6})},
                            {"transformer.ln_f.weight", TensorF::ones({2})}});
    const SafetensorsFile file(path);
    CHECK_FALSE(file.contains("h.0.attn.c_attn.weight"));
    CHECK(file.contains("transformer.h.0.attn.c_attn.weight"));
    check_error([&] { (void)file.load_float("h.0.attn.c_attn.weight"); },
                {path.string(), "no tensor 'h.0.attn.c_attn.weight'", "5 tensors",
                 "closest: 'transformer.h.0.attn.c_attn.weight'"});
    check_error([&] { (void)file.info("ln_f.bias"); }, {path.string(), "'ln_f.bias'", "'transformer.ln_f.weight'"});

    save_safetensors(dir / "none.safetensors", {});
    const SafetensorsFile none(dir / "none.safetensors");
    CHECK(none.size() == 0);
    check_error([&] { (void)none.bytes("x"); }, {"no tensor 'x'", "holds no tensors"});
}

TEST_CASE("safetensors: truncated or corrupted files throw Error and never read out of bounds") {
    TempDir dir;
    const fs::path good = dir / "good.safetensors";
    save_safetensors(good, {{"a", TensorF::arange(6).view({2, 3})}, {"loss", TensorF::full({}, 1.f)},
                            {"e", TensorF::zeros({0})}},
                     {{"k", "v"}});
    const std::string full = read_bytes(good);
    const fs::path path = dir / "cut.safetensors";
    // Every proper prefix is invalid: it cuts the header length, the header or the buffer.
    for (std::size_t n = 0; n < full.size(); ++n) {
        CAPTURE(n);
        write_bytes(path, full.substr(0, n));
        CHECK_THROWS_AS(SafetensorsFile{path}, Error);
    }
    // A corrupted header byte either still makes a valid file or throws Error; nothing else.
    int opened = 0, refused = 0;
    const std::uint64_t header_end = SafetensorsFile(good).data_offset();
    for (std::size_t i = 0; i < header_end; ++i) {
        for (const char c : {'\0', '9', '"', '{', ']', ',', '-', '\xff'}) {
            std::string bad = full;
            bad[i] = c;
            write_bytes(path, bad);
            try {
                const SafetensorsFile file(path);
                for (const auto& t : file.tensors()) (void)file.load_float(t.name);
                ++opened;
            } catch (const Error&) {
                ++refused;
            }
        }
    }
    CHECK(refused > 0);
    MESSAGE("corrupted headers: " << opened << " still valid, " << refused << " refused");
}

// ---- MappedFile -------------------------------------------------------------------------

TEST_CASE("mapped_file: maps whole files and names the path and reason on errors") {
    TempDir dir;
    write_bytes(dir / "data.bin", "hello");
    MappedFile a(dir / "data.bin");
    REQUIRE(a.is_open());
    CHECK(a.size() == 5);
    CHECK(std::string(reinterpret_cast<const char*>(a.data()), a.size()) == "hello");
    MappedFile b(std::move(a));
    CHECK_FALSE(a.is_open());
    CHECK(b.size() == 5);
    MappedFile c;
    c = std::move(b);
    CHECK(c.bytes().size() == 5);
    CHECK(c.path() == dir / "data.bin");

    check_error([&] { MappedFile m(dir / "missing.bin"); }, {(dir / "missing.bin").string(), "No such file or directory"});
    check_error([&] { MappedFile m(dir.path); }, {dir.path.string(), "Is a directory"});
    write_bytes(dir / "empty.bin", "");
    check_error([&] { MappedFile m(dir / "empty.bin"); }, {(dir / "empty.bin").string(), "empty"});
    check_error([&] { SafetensorsFile f(dir / "empty.bin"); }, {(dir / "empty.bin").string(), "empty"});

    write_bytes(dir / "secret.bin", "x");
    fs::permissions(dir / "secret.bin", fs::perms::none);
    bool readable = false;
    try {
        MappedFile m(dir / "secret.bin");
        readable = true;
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find((dir / "secret.bin").string()) != std::string::npos);
        CHECK(std::string(e.what()).find("Permission denied") != std::string::npos);
    }
    if (readable) MESSAGE("running with privileges that ignore file permissions: permission error not tested");
}

// ---- F16 / BF16 -------------------------------------------------------------------------

namespace {

// The value of an F16 bit pattern from its fields: (-1)^s * 2^(e-15) * 1.m, subnormal 2^-14 * 0.m.
double f16_reference(std::uint16_t h) {
    const int s = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    const double sign = s ? -1.0 : 1.0;
    if (e == 31) return m ? std::nan("") : sign * INFINITY;
    if (e == 0) return sign * std::ldexp(static_cast<double>(m), -24);
    return sign * std::ldexp(static_cast<double>(1024 + m), e - 25);
}

// The value of a BF16 bit pattern from its fields: (-1)^s * 2^(e-127) * 1.m, subnormal 2^-126 * 0.m.
double bf16_reference(std::uint16_t b) {
    const int s = b >> 15, e = (b >> 7) & 0xff, m = b & 0x7f;
    const double sign = s ? -1.0 : 1.0;
    if (e == 255) return m ? std::nan("") : sign * INFINITY;
    if (e == 0) return sign * std::ldexp(static_cast<double>(m), -133);
    return sign * std::ldexp(static_cast<double>(128 + m), e - 134);
}

// Nearest-even rounding of a finite float x to a 16-bit format, by search over
// the table of the format's non-negative finite values (ascending, index = bits).
// `overflow` is where the format would put its next value if the exponent were
// unbounded: values rounding there become infinity (`inf_bits`).
std::uint16_t round_reference(float x, const std::vector<double>& table, double overflow, std::uint16_t inf_bits) {
    const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
    const double a = std::fabs(static_cast<double>(x));
    const auto it = std::upper_bound(table.begin(), table.end(), a);  // first value > a
    const std::size_t hi = static_cast<std::size_t>(it - table.begin());
    const std::size_t lo = hi - 1;  // table[0] = 0 <= a
    const double lo_value = table[lo], hi_value = hi < table.size() ? table[hi] : overflow;
    const double down = a - lo_value, up = hi_value - a;
    const bool round_up = up < down || (up == down && (lo & 1));
    if (!round_up) return static_cast<std::uint16_t>(sign | lo);
    if (hi == table.size()) return static_cast<std::uint16_t>(sign | inf_bits);
    return static_cast<std::uint16_t>(sign | hi);
}

// Floats to test a float -> 16-bit rounding on: a sample of all bit patterns,
// and every midpoint between neighbouring table values with its float neighbours.
std::vector<float> rounding_inputs(const std::vector<double>& table) {
    std::vector<float> xs;
    for (std::uint64_t u = 0; u < (std::uint64_t(1) << 32); u += 997) xs.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(u)));
    for (std::size_t i = 0; i + 1 < table.size(); ++i) {
        const float mid = static_cast<float>((table[i] + table[i + 1]) / 2);
        REQUIRE(static_cast<double>(mid) == (table[i] + table[i + 1]) / 2);  // exact in float
        for (const float m : {mid, -mid}) {
            xs.push_back(m);
            xs.push_back(std::nextafter(m, 0.0f));
            xs.push_back(std::nextafter(m, INFINITY));
            xs.push_back(std::nextafter(m, -INFINITY));
        }
    }
    return xs;
}

}  // namespace

TEST_CASE("half: all 65536 F16 patterns convert exactly and round-trip") {
    for (std::uint32_t i = 0; i < 65536; ++i) {
        const auto h = static_cast<std::uint16_t>(i);
        const float f = half_to_float(h);
        const double want = f16_reference(h);
        CAPTURE(i);
        if (std::isnan(want)) {
            // NaN: payload kept in the top fraction bits, sign kept.
            CHECK(bits_of(f) == ((static_cast<std::uint32_t>(h & 0x8000) << 16) | 0x7f800000u | ((h & 0x3ffu) << 13)));
            CHECK(float_to_half(f) == (h | 0x200));  // back to F16: quieted
        } else {
            CHECK(static_cast<double>(f) == want);
            CHECK(std::signbit(f) == ((h & 0x8000) != 0));
            CHECK(float_to_half(f) == h);
        }
    }
}

TEST_CASE("half: float -> F16 rounds to nearest even, overflows to inf, quiets NaN") {
    std::vector<double> table;  // the 31744 non-negative finite F16 values, table[bits] ascending
    for (std::uint32_t b = 0; b < 0x7c00; ++b) table.push_back(f16_reference(static_cast<std::uint16_t>(b)));
    REQUIRE(std::is_sorted(table.begin(), table.end()));
    std::size_t mismatches = 0, checked = 0;
    for (const float x : rounding_inputs(table)) {
        std::uint16_t want;
        if (std::isnan(x)) want = static_cast<std::uint16_t>((std::signbit(x) ? 0x8000 : 0) | 0x7e00 | ((bits_of(x) >> 13) & 0x3ff));
        else if (std::isinf(x)) want = std::signbit(x) ? 0xfc00 : 0x7c00;
        else want = round_reference(x, table, 65536.0, 0x7c00);
        ++checked;
        if (float_to_half(x) != want) {
            if (++mismatches <= 10) FAIL_CHECK("float bits " << bits_of(x) << " -> " << float_to_half(x) << ", want " << want);
        }
    }
    CHECK(mismatches == 0);
    MESSAGE("float -> F16 checked on " << checked << " inputs");
    CHECK(float_to_half(65520.0f) == 0x7c00);
    CHECK(float_to_half(std::nextafter(65520.0f, 0.0f)) == 0x7bff);
    CHECK(float_to_half(std::ldexp(1.0f, -25)) == 0x0000);
    CHECK(float_to_half(std::nextafter(std::ldexp(1.0f, -25), 1.0f)) == 0x0001);
    CHECK(float_to_half(std::ldexp(3.0f, -25)) == 0x0002);  // 1.5 ulp ties to even 2
    CHECK(float_to_half(-0.0f) == 0x8000);
}

TEST_CASE("half: all 65536 BF16 patterns convert exactly; float -> BF16 rounds to nearest even") {
    for (std::uint32_t i = 0; i < 65536; ++i) {
        const auto b = static_cast<std::uint16_t>(i);
        const float f = bf16_to_float(b);
        const double want = bf16_reference(b);
        CAPTURE(i);
        if (std::isnan(want)) {
            CHECK(bits_of(f) == (static_cast<std::uint32_t>(b) << 16));
            CHECK(float_to_bf16(f) == (b | 0x40));
        } else {
            CHECK(static_cast<double>(f) == want);
            CHECK(std::signbit(f) == ((b & 0x8000) != 0));
            CHECK(float_to_bf16(f) == b);
        }
    }
    std::vector<double> table;  // the non-negative finite BF16 values, table[bits] ascending
    for (std::uint32_t b = 0; b < 0x7f80; ++b) table.push_back(bf16_reference(static_cast<std::uint16_t>(b)));
    REQUIRE(std::is_sorted(table.begin(), table.end()));
    std::size_t mismatches = 0;
    for (const float x : rounding_inputs(table)) {
        std::uint16_t want;
        if (std::isnan(x)) want = static_cast<std::uint16_t>((bits_of(x) >> 16) | 0x40);
        else if (std::isinf(x)) want = std::signbit(x) ? 0xff80 : 0x7f80;
        else want = round_reference(x, table, std::ldexp(1.0, 128), 0x7f80);
        if (float_to_bf16(x) != want) {
            if (++mismatches <= 10) FAIL_CHECK("float bits " << bits_of(x) << " -> " << float_to_bf16(x) << ", want " << want);
        }
    }
    CHECK(mismatches == 0);
    CHECK(float_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);       // tie, 1.0 is even
    CHECK(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3f82);   // tie, rounds up to even
    CHECK(float_to_bf16(std::numeric_limits<float>::max()) == 0x7f80); // rounds to inf
}
