// Tests for include/llmblocks/io/npy.hpp: the exact header bytes, save_npy
// output byte-identical to numpy.save's (fixture from
// tests/reference/make_io_fixtures.py), bit-exact round trips, numpy files
// read correctly, and every unsupported or malformed file refused with an
// error naming the file and the problem.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "llmblocks/io/npy.hpp"
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

template <class T>
bool same_bits(const Tensor<T>& a, const Tensor<T>& b) {
    if (a.shape() != b.shape()) return false;
    const Tensor<T> x = a.contiguous(), y = b.contiguous();
    return x.numel() == 0 || std::memcmp(x.data(), y.data(), static_cast<std::size_t>(x.numel()) * sizeof(T)) == 0;
}

// A version 1.0 file: magic, version, 2-byte length, this dict text as is, then data.
std::string npy_v1(const std::string& dict, const std::string& data) {
    std::string s = "\x93NUMPY\x01";
    s += '\0';
    s += static_cast<char>(dict.size() & 0xff);
    s += static_cast<char>(dict.size() >> 8);
    return s + dict + data;
}

std::string f32_bytes(const std::vector<float>& values) {
    std::string s(values.size() * 4, '\0');
    if (!values.empty()) std::memcpy(s.data(), values.data(), s.size());
    return s;
}

// a[i, j] = (i * 5 + j) / 8 - 1: the fixtures' array, exact in binary.
TensorF fixture_array() {
    TensorF a = TensorF::empty({3, 5});
    for (index_t i = 0; i < 15; ++i) a.data()[i] = static_cast<float>(i) / 8.0f - 1.0f;
    return a;
}

fs::path fixture(const std::string& name) { return fs::path(LLMBLOCKS_TEST_DATA_DIR) / "io" / name; }

}  // namespace

TEST_CASE("npy: header bytes are version 1.0, a Python dict, padded to 64 bytes") {
    const std::string h = npy_header_bytes("<f4", {2, 3});
    const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    REQUIRE(h.size() == 128);
    CHECK(h.substr(0, 10) == std::string("\x93NUMPY\x01\x00\x76\x00", 10));  // length 118 = 128 - 10
    CHECK(h.substr(10) == dict + std::string(128 - 10 - dict.size() - 1, ' ') + "\n");

    CHECK(npy_header_bytes("<f8", {}).find("{'descr': '<f8', 'fortran_order': False, 'shape': (), }") == 10);
    CHECK(npy_header_bytes("<f4", {5}).find("'shape': (5,), }") != std::string::npos);
    CHECK(npy_header_bytes("<i4", {1000, 50257}).find("'shape': (1000, 50257), }") != std::string::npos);
    for (const Shape& s : {Shape{}, Shape{1}, Shape{7, 123456789}, Shape(20, 1000000)}) {
        const std::string bytes = npy_header_bytes("<f4", s);
        CHECK(bytes.size() % 64 == 0);
        CHECK(bytes.back() == '\n');
        const NpyHeader parsed = parse_npy_header(std::as_bytes(std::span(bytes.data(), bytes.size())), "mem");
        CHECK(parsed.shape == s);
        CHECK(parsed.data_offset == bytes.size());
    }
    // A header too long for the 2-byte length switches to version 2.0 (4-byte length).
    const Shape many(30000, 1);
    const std::string big = npy_header_bytes("<f4", many);
    CHECK(big[6] == 2);
    CHECK(big.size() % 64 == 0);
    const NpyHeader parsed = parse_npy_header(std::as_bytes(std::span(big.data(), big.size())), "mem");
    CHECK(parsed.major == 2);
    CHECK(parsed.shape == many);
}

TEST_CASE("npy: save_npy writes the same bytes as numpy.save") {
    TempDir dir;
    save_npy(dir / "a.npy", fixture_array());
    CHECK(read_bytes(dir / "a.npy") == read_bytes(fixture("npy_f32.npy")));
    // Non-contiguous input is written in row-major order.
    const TensorF t = fixture_array().t().contiguous().t();
    REQUIRE_FALSE(t.is_contiguous());
    save_npy(dir / "b.npy", t);
    CHECK(read_bytes(dir / "b.npy") == read_bytes(fixture("npy_f32.npy")));
}

TEST_CASE("npy: save then load is bit-exact") {
    TempDir dir;
    Rng rng(5);
    TensorF special = TensorF::randn({2, 3}, rng);
    special.data()[0] = std::nanf("");
    special.data()[1] = -0.0f;
    special.data()[2] = INFINITY;
    special.data()[3] = 1e-42f;
    const std::vector<TensorF> floats = {special,
                                         TensorF::full({}, -0.75f),
                                         TensorF::zeros({0, 4}),
                                         TensorF::randn({4, 3}, rng).t(),
                                         TensorF::arange(7),
                                         TensorF::randn({2, 1, 3, 2}, rng)};
    for (const TensorF& x : floats) {
        CAPTURE(shape_str(x.shape()));
        save_npy(dir / "x.npy", x);
        CHECK(same_bits(load_npy<float>(dir / "x.npy"), x));
        CHECK(same_bits(load_npy<double>(dir / "x.npy"), x.to<double>()));  // '<f4' read as double
    }
    const TensorD d = TensorD::randn({3, 2}, rng);
    save_npy(dir / "d.npy", d);
    CHECK(same_bits(load_npy<double>(dir / "d.npy"), d));
    CHECK(read_bytes(dir / "d.npy").substr(10, 16) == "{'descr': '<f8',");

    const TensorI ids = TensorI::from_vector({2, 2}, {1, -2, 3, 2147483647});
    save_npy(dir / "i.npy", ids);
    const std::string bytes = read_bytes(dir / "i.npy");
    CHECK(bytes.substr(0, 128) == npy_header_bytes("<i4", {2, 2}));
    REQUIRE(bytes.size() == 128 + 16);
    CHECK(std::memcmp(bytes.data() + 128, ids.data(), 16) == 0);
}

TEST_CASE("npy: reads files written by numpy") {
    const TensorF a = fixture_array();
    CHECK(same_bits(load_npy<float>(fixture("npy_f32.npy")), a));
    CHECK(same_bits(load_npy<float>(fixture("npy_f32_v2.npy")), a));  // version 2.0
    CHECK(load_npy<float>(fixture("npy_f32_scalar.npy")).dim() == 0);
    CHECK(load_npy<float>(fixture("npy_f32_scalar.npy")).item() == -0.75f);

    const TensorD f64 = load_npy<double>(fixture("npy_f64.npy"));
    REQUIRE(f64.shape() == Shape{2, 3});
    for (index_t i = 0; i < 2; ++i)
        for (index_t j = 0; j < 3; ++j) CHECK(f64(i, j) == static_cast<double>(a(i, j)) + 1e-12);
    CHECK(load_npy<float>(fixture("npy_f64.npy"))(1, 2) == static_cast<float>(static_cast<double>(a(1, 2)) + 1e-12));
}

TEST_CASE("npy: refuses what it cannot read, naming the file and the problem") {
    const std::string fortran = fixture("npy_f32_fortran.npy").string();
    check_error([&] { (void)load_npy<float>(fortran); }, {fortran, "Fortran"});
    const std::string big = fixture("npy_f32_bigendian.npy").string();
    check_error([&] { (void)load_npy<float>(big); }, {big, "big-endian", "'>f4'"});
    const std::string f16 = fixture("npy_f16.npy").string();
    check_error([&] { (void)load_npy<float>(f16); }, {f16, "unsupported dtype '<f2'"});

    TempDir dir;
    const fs::path path = dir / "bad.npy";
    const std::string p = path.string();
    const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";
    auto load = [&](const std::string& bytes) {
        write_bytes(path, bytes);
        return [&] { (void)load_npy<float>(path); };
    };
    write_bytes(path, npy_v1(dict, f32_bytes({1.f, 2.f})));
    CHECK(load_npy<float>(path).to_vector() == std::vector<float>{1.f, 2.f});  // the well-formed baseline

    check_error([&] { (void)load_npy<float>(dir / "missing.npy"); }, {(dir / "missing.npy").string(), "No such file"});
    check_error(load("PK\x03\x04 not npy at all"), {p, "not a .npy file"});
    check_error(load(std::string("\x93NUMPY\x04\x00\x10\x00", 10) + dict), {p, "version 4.0"});
    check_error(load(npy_v1(dict, f32_bytes({1.f, 2.f})).substr(0, 30)), {p, "header length", "past the end"});
    check_error(load(npy_v1(dict, f32_bytes({1.f}))), {p, "needs 8 bytes", "has 4", "truncated"});
    check_error(load(npy_v1(dict, f32_bytes({1.f, 2.f, 3.f}))), {p, "4 bytes after"});
    check_error(load(npy_v1("{'descr': '<f4', 'fortran_order': False, }\n", "")), {p, "lacks 'shape'"});
    check_error(load(npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }\n", "")), {p, "negative"});
    check_error(load(npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,), }\n", "")),
                {p, "'shape': expected ',' or ')'"});
    check_error(load(npy_v1("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }\n", "")),
                {p, "'fortran_order' is not True or False"});
    check_error(load(npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}\n", "")),
                {p, "unexpected key 'x'"});
    check_error(load(npy_v1("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }\n", "")),
                {p, "structured"});
    check_error(load(npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (2,) } trailing\n", "")),
                {p, "after '}'"});
    check_error(load(npy_v1("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }\n", "")),
                {p, "unsupported dtype '<i8'"});
    check_error(load(npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }\n", "")),
                {p, "too large"});
    check_error(load(npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4611686018427387904, 4), }\n", "")),
                {p, "too many elements"});
    check_error(load(""), {p, "empty"});
}

TEST_CASE("npy: every truncation of a valid file throws Error") {
    TempDir dir;
    save_npy(dir / "good.npy", TensorF::arange(6).view({2, 3}));
    const std::string full = read_bytes(dir / "good.npy");
    for (std::size_t n = 0; n < full.size(); ++n) {
        CAPTURE(n);
        write_bytes(dir / "cut.npy", full.substr(0, n));
        CHECK_THROWS_AS((void)load_npy<float>(dir / "cut.npy"), Error);
    }
}

TEST_CASE("npy: saving is atomic") {
    TempDir dir;
    save_npy(dir / "x.npy", TensorF::ones({2}));
    const std::string before = read_bytes(dir / "x.npy");
    fs::create_directory(dir / "sub");
    check_error([&] { save_npy(dir / "sub", TensorF::ones({2})); }, {(dir / "sub").string(), "Is a directory"});
    check_error([&] { save_npy(dir / "x.npy", TensorF()); }, {(dir / "x.npy").string(), "undefined"});
    CHECK(read_bytes(dir / "x.npy") == before);
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir.path)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"sub", "x.npy"});
}
