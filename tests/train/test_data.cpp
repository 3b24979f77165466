// Tests of include/llmblocks/train/data.hpp: the llm.c token file (round trip,
// byte layout, every error path), text tokenization, the validation split, the
// seeded window sampler and its resume, sequential validation batches.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "llmblocks/train/data.hpp"
#include "support/temp_dir.hpp"

using namespace llmblocks;

namespace {

using llmblocks::testing::TempDir;

void write_raw(const std::filesystem::path& p, const std::vector<std::int32_t>& header, const std::vector<std::uint16_t>& body,
               std::size_t extra_bytes = 0) {
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(header.data()), static_cast<std::streamsize>(header.size() * 4));
    out.write(reinterpret_cast<const char*>(body.data()), static_cast<std::streamsize>(body.size() * 2));
    for (std::size_t i = 0; i < extra_bytes; ++i) out.put('\0');
}

std::vector<std::int32_t> header_of(std::int32_t magic, std::int32_t version, std::int32_t count) {
    std::vector<std::int32_t> h(256, 0);
    h[0] = magic;
    h[1] = version;
    h[2] = count;
    return h;
}

}  // namespace

TEST_CASE("llm.c token file: round trip and exact byte layout") {
    TempDir dir;
    const auto path = dir.path / "tokens.bin";
    const std::vector<std::int32_t> tokens{0, 1, 50256, 65535, 42, 7};
    write_token_file(path, tokens);
    CHECK(std::filesystem::file_size(path) == 1024 + 2 * tokens.size());
    CHECK(read_token_file(path) == tokens);

    // The bytes: header ints 20240520, 1, 6, then zeros; tokens as little-endian uint16.
    std::ifstream in(path, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::int32_t h[256];
    std::memcpy(h, bytes.data(), sizeof(h));
    CHECK(h[0] == 20240520);
    CHECK(h[1] == 1);
    CHECK(h[2] == 6);
    for (int i = 3; i < 256; ++i) CHECK(h[i] == 0);
    CHECK(static_cast<unsigned char>(bytes[1024 + 4]) == 0x50);  // 50256 = 0xC450
    CHECK(static_cast<unsigned char>(bytes[1024 + 5]) == 0xC4);

    // An empty token list is a valid file (header only).
    write_token_file(dir.path / "empty.bin", std::vector<std::int32_t>{});
    CHECK(read_token_file(dir.path / "empty.bin").empty());

    // A file written by hand (as llm.c's Python writer does) reads the same.
    write_raw(dir.path / "hand.bin", header_of(20240520, 1, 3), {9, 8, 7});
    CHECK(read_token_file(dir.path / "hand.bin") == std::vector<std::int32_t>{9, 8, 7});
}

TEST_CASE("llm.c token file: every error names the file and the problem") {
    TempDir dir;
    const auto p = [&](const char* name) { return dir.path / name; };
    const auto message = [](const std::filesystem::path& path) {
        try {
            read_token_file(path);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };

    write_raw(p("magic.bin"), header_of(20240521, 1, 2), {1, 2});
    CHECK(message(p("magic.bin")).find("magic.bin': bad magic number 20240521") != std::string::npos);

    write_raw(p("version.bin"), header_of(20240520, 2, 2), {1, 2, 3, 4});
    CHECK(message(p("version.bin")).find("version.bin': unsupported version 2") != std::string::npos);

    write_raw(p("truncated.bin"), header_of(20240520, 1, 5), {1, 2, 3});
    CHECK(message(p("truncated.bin")).find("truncated.bin': truncated: the header says 5 tokens") !=
          std::string::npos);

    write_raw(p("long.bin"), header_of(20240520, 1, 2), {1, 2, 3});
    CHECK(message(p("long.bin")).find("long.bin': token count mismatch: the header says 2 tokens (1028 bytes) but "
                                      "the file has 1030 bytes") != std::string::npos);

    write_raw(p("odd.bin"), header_of(20240520, 1, 2), {1, 2}, 1);
    CHECK(message(p("odd.bin")).find("token count mismatch") != std::string::npos);

    write_raw(p("negative.bin"), header_of(20240520, 1, -1), {});
    CHECK(message(p("negative.bin")).find("negative.bin': negative token count -1") != std::string::npos);

    {
        std::ofstream(p("short.bin"), std::ios::binary).write("abc", 3);
    }
    CHECK(message(p("short.bin")).find("short.bin': truncated header (3 bytes") != std::string::npos);

    { std::ofstream(p("zero.bin"), std::ios::binary); }
    CHECK(message(p("zero.bin")).find("zero.bin': truncated header (0 bytes") != std::string::npos);

    CHECK(message(p("missing.bin")).find("missing.bin") != std::string::npos);
    CHECK(message(p("missing.bin")) != "no error");

    CHECK_THROWS_WITH_AS(write_token_file(p("big.bin"), std::vector<std::int32_t>{1, 65536}),
                         doctest::Contains("token 1 = 65536 does not fit uint16"), Error);
    CHECK_THROWS_AS(write_token_file(p("neg.bin"), std::vector<std::int32_t>{-1}), Error);
    CHECK_FALSE(std::filesystem::exists(p("big.bin")));
}

TEST_CASE("text: byte-level ids and any tokenizer function") {
    CHECK(byte_tokens("hi\n") == std::vector<std::int32_t>{104, 105, 10});
    CHECK(byte_tokens("\xc3\xa9") == std::vector<std::int32_t>{0xc3, 0xa9});  // UTF-8 bytes, not code points
    const auto ds = TokenDataset::from_text("a b c", [](std::string_view text) {
        std::vector<std::int32_t> ids;
        for (char ch : text)
            if (ch != ' ') ids.push_back(ch - 'a');
        return ids;
    });
    CHECK(ds.size() == 3);
    CHECK(ds[2] == 2);

    TempDir dir;
    {
        std::ofstream(dir.path / "t.txt", std::ios::binary) << "hello";
    }
    const auto bytes = TokenDataset::from_text_file(dir.path / "t.txt");
    CHECK(std::vector<std::int32_t>(bytes.tokens().begin(), bytes.tokens().end()) ==
          std::vector<std::int32_t>{104, 101, 108, 108, 111});
    CHECK_THROWS_WITH_AS(TokenDataset::from_text_file(dir.path / "nope.txt"), doctest::Contains("nope.txt"), Error);

    write_token_file(dir.path / "tok.bin", std::vector<std::int32_t>{3, 1, 4});
    CHECK(TokenDataset::from_token_file(dir.path / "tok.bin").size() == 3);
}

TEST_CASE("TokenDataset::split holds out the tail for validation") {
    std::vector<std::int32_t> v(100);
    for (int i = 0; i < 100; ++i) v[i] = i;
    const TokenDataset ds(v);
    const auto [train, val] = ds.split(0.1);
    CHECK(train.size() == 90);
    CHECK(val.size() == 10);
    CHECK(train[89] == 89);
    CHECK(val[0] == 90);
    CHECK(val[9] == 99);
    const auto [all, none] = ds.split(0.0);
    CHECK(all.size() == 100);
    CHECK(none.size() == 0);
    CHECK_THROWS_AS(ds.split(1.0), Error);
    CHECK_THROWS_AS(ds.view(95, 10), Error);
}

TEST_CASE("WindowSampler: (B, T) windows shifted by one, seeded, resumable") {
    std::vector<std::int32_t> v(1000);
    for (int i = 0; i < 1000; ++i) v[i] = i;  // token = position: a window is a run of consecutive ids
    const TokenDataset ds(v);
    WindowSampler sampler(ds, 4, 16, 123);
    std::set<std::int32_t> starts;
    for (int step = 0; step < 50; ++step) {
        const TokenBatch batch = sampler.next();
        REQUIRE(batch.inputs.shape() == Shape{4, 16});
        REQUIRE(batch.targets.shape() == Shape{4, 16});
        for (index_t b = 0; b < 4; ++b) {
            const std::int32_t start = batch.inputs(b, 0);
            starts.insert(start);
            CHECK(start >= 0);
            CHECK(start + 16 <= 999);  // the target of the last position exists
            for (index_t t = 0; t < 16; ++t) {
                CHECK(batch.inputs(b, t) == start + t);
                CHECK(batch.targets(b, t) == start + t + 1);
            }
        }
    }
    CHECK(starts.size() > 150);  // 200 draws from 984 offsets: mostly distinct

    // Same seed, same batches; restoring a snapshot replays the following batches.
    WindowSampler a(ds, 2, 8, 7), b(ds, 2, 8, 7);
    a.next();
    b.next();
    const auto snap = a.snapshot();
    const auto a1 = a.next(), a2 = a.next();
    WindowSampler c(ds, 2, 8, 999);
    c.restore(snap);
    CHECK(c.next().inputs.to_vector() == a1.inputs.to_vector());
    CHECK(c.next().targets.to_vector() == a2.targets.to_vector());
    CHECK(b.next().inputs.to_vector() == a1.inputs.to_vector());

    // Exactly T + 1 tokens: the only window.
    WindowSampler tight(TokenDataset(std::vector<std::int32_t>{1, 2, 3}), 2, 2, 0);
    CHECK(tight.next().inputs.to_vector() == std::vector<std::int32_t>{1, 2, 1, 2});
    CHECK_THROWS_WITH_AS(WindowSampler(TokenDataset(std::vector<std::int32_t>{1, 2}), 1, 2, 0),
                         doctest::Contains("too few"), Error);
    CHECK_THROWS_AS(WindowSampler(ds, 0, 2, 0), Error);
}

TEST_CASE("sequential validation batches cover the split in order") {
    std::vector<std::int32_t> v(50);
    for (int i = 0; i < 50; ++i) v[i] = i;
    const TokenDataset ds(v);
    // B = 2, T = 4: (50 - 1) / 8 = 6 batches; batch 1 rows start at 8 and 12.
    CHECK(num_sequential_batches(ds, 2, 4) == 6);
    const auto batch = sequential_batch(ds, 1, 2, 4);
    CHECK(batch.inputs.to_vector() == std::vector<std::int32_t>{8, 9, 10, 11, 12, 13, 14, 15});
    CHECK(batch.targets.to_vector() == std::vector<std::int32_t>{9, 10, 11, 12, 13, 14, 15, 16});
    const auto last = sequential_batch(ds, 5, 2, 4);
    CHECK(last.targets(1, 3) == 48);
    CHECK_THROWS_AS(sequential_batch(ds, 6, 2, 4), Error);
    CHECK(num_sequential_batches(TokenDataset(std::vector<std::int32_t>{1}), 1, 1) == 0);
}
