// tests/cli/test_cli_generate.cpp — `llmblocks generate` (examples/cli/generate.hpp), run in
// process through run_cli on tiny models that `init` writes:
// - byte tokenizer (tokenizer_config.json) on a GPT-2 with 257 ids: stdout is the prompt then
//   the new text, written and flushed token by token (a stream buffer records each flush);
//   stderr is one line "N tokens in S s, X tokens/s"; the same --seed gives the same text,
//   another seed other text, --temperature 0 ignores the seed; --tokens with the prompt's ids
//   prints the new ids, and their decoded bytes are the text the --prompt run printed.
// - the GPT-2 BPE files (tests/reference/gpt2_tokenizer/) on a GPT-2 with 50257 ids: the same
//   text / ids agreement with multi-byte tokens.
// - no tokenizer: --tokens prints N ids; --prompt is a usage error naming the missing files.
// - T5: the prompt is the encoder input and is not echoed.
// - usage errors (exit 2) name the option; model-dependent errors (exit 1) print nothing on stdout.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <streambuf>
#include <string>
#include <vector>

#include "cli/cli.hpp"
#include "llmblocks/io/bpe_tokenizer.hpp"
#include "llmblocks/io/byte_tokenizer.hpp"
#include "llmblocks/io/model_tokenizer.hpp"
#include "support/temp_dir.hpp"

#ifndef LLMBLOCKS_TEST_DATA_DIR
#define LLMBLOCKS_TEST_DATA_DIR "tests/reference"
#endif

// Everything of this file in its own namespace: the test build compiles the files that
// instantiate the whole model stack as one unity group (tests/CMakeLists.txt).
namespace test_cli_generate {

using namespace llmblocks;
namespace fs = std::filesystem;

namespace {

using llmblocks::testing::TempDir;

// A string stream that keeps what it held at each flush.
class FlushLog : public std::stringbuf {
public:
    std::vector<std::string> snapshots;

protected:
    int sync() override {
        snapshots.push_back(str());
        return 0;
    }
};

struct Run {
    int code = -1;
    std::string out, err;
    std::vector<std::string> flushes;  // stdout at each flush
};

Run run(const std::vector<std::string>& args) {
    std::istringstream in;
    FlushLog out_buf;
    std::ostream out(&out_buf);
    std::ostringstream err;
    Run r;
    r.code = cli::run_cli(args, in, out, err);
    r.out = out_buf.str();
    r.err = err.str();
    r.flushes = out_buf.snapshots;
    return r;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::size_t line_count(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

// A tiny GPT-2 written by `init` from a config with `vocab` ids.
fs::path make_gpt2(const TempDir& tmp, const std::string& name, index_t vocab) {
    const fs::path cfg = tmp / (name + "_config.json");
    std::ofstream(cfg) << R"({"model_type": "gpt2", "vocab_size": )" << vocab
                       << R"(, "n_positions": 64, "n_embd": 32, "n_layer": 1, "n_head": 2})";
    const fs::path dir = tmp / name;
    const Run r = run({"init", "--arch", "gpt2", "--config", cfg.string(), "--out", dir.string(), "--seed", "3"});
    REQUIRE_MESSAGE(r.code == 0, r.err);
    return dir;
}

// "1 2 3\n" -> {1, 2, 3}
std::vector<std::int32_t> parse_ids(const std::string& line) {
    std::istringstream in(line);
    std::vector<std::int32_t> ids;
    std::int32_t x = 0;
    while (in >> x) ids.push_back(x);
    return ids;
}

// The statistics line: "N tokens in S s, X tokens/s"; returns N.
long stats_tokens(const std::string& err) {
    static const std::regex line(R"(^(\d+) tokens in \d+\.\d{3} s, \d+\.\d tokens/s\n$)");
    std::smatch m;
    REQUIRE_MESSAGE(std::regex_match(err, m, line), err);
    return std::stol(m[1].str());
}

// The new ids without the eos, decoded.
template <class Tokenizer>
std::string text_of(const Tokenizer& tok, std::vector<std::int32_t> ids, std::int32_t eos) {
    if (!ids.empty() && ids.back() == eos) ids.pop_back();
    return tok.decode(ids);
}

std::string join(const std::vector<std::int32_t>& ids) {
    std::string s;
    for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
    return s;
}

}  // namespace

TEST_CASE("cli generate: byte tokenizer, text as produced, seeds, and the --tokens path agrees") {
    TempDir tmp;
    const fs::path dir = make_gpt2(tmp, "bytes", 257);
    ModelTokenizer::save_byte_config(dir, {"<|endoftext|>"});  // <|endoftext|> = 256
    const std::string model = dir.string();
    const std::vector<std::string> base{"generate", "--model", model, "--prompt", "Hello", "--max-new-tokens", "24"};
    auto with = [&](std::vector<std::string> extra) {
        std::vector<std::string> a = base;
        a.insert(a.end(), extra.begin(), extra.end());
        return run(a);
    };

    const Run r = with({"--seed", "1"});
    REQUIRE_MESSAGE(r.code == 0, r.err);
    CHECK(r.out.rfind("Hello", 0) == 0);
    CHECK(r.out.back() == '\n');
    const long n = stats_tokens(r.err);
    CHECK(n >= 1);
    CHECK(n <= 24);

    // written as produced: one flush per token, the prompt before the first new token
    CHECK(r.flushes.size() >= static_cast<std::size_t>(n));
    REQUIRE(!r.flushes.empty());
    CHECK(r.flushes.front().rfind("Hello", 0) == 0);
    for (std::size_t i = 1; i < r.flushes.size(); ++i) CHECK(r.flushes[i].rfind(r.flushes[i - 1], 0) == 0);

    // the same seed gives the same text; another seed other text; greedy ignores the seed
    CHECK(with({"--seed", "1"}).out == r.out);
    CHECK(with({"--seed", "2"}).out != r.out);
    const Run g1 = with({"--temperature", "0", "--seed", "1"}), g2 = with({"--temperature", "0", "--seed", "2"});
    REQUIRE(g1.code == 0);
    CHECK(g1.out == g2.out);

    // --tokens with the prompt's bytes: the new ids, whose bytes are the text above
    const std::vector<std::string> sampling{"--seed", "1", "--top-k", "50", "--top-p", "0.9", "--temperature", "1.2"};
    std::vector<std::string> text_args = base, id_args{"generate", "--model", model, "--tokens", "72,101,108,108,111",
                                                       "--max-new-tokens", "24"};
    text_args.insert(text_args.end(), sampling.begin(), sampling.end());
    id_args.insert(id_args.end(), sampling.begin(), sampling.end());
    const Run t = run(text_args), ids = run(id_args);
    REQUIRE_MESSAGE(t.code == 0, t.err);
    REQUIRE_MESSAGE(ids.code == 0, ids.err);
    CHECK(std::regex_match(ids.out, std::regex(R"(^\d+( \d+)*\n$)")));
    const std::vector<std::int32_t> new_ids = parse_ids(ids.out);
    CHECK(static_cast<long>(new_ids.size()) == stats_tokens(ids.err));
    for (std::size_t i = 0; i + 1 < new_ids.size(); ++i) CHECK(new_ids[i] != 256);  // eos (256) only last
    CHECK(t.out == "Hello" + text_of(ByteTokenizer({"<|endoftext|>"}), new_ids, 256) + "\n");

    // --eos -1: never stops early
    const Run all = run({"generate", "--model", model, "--tokens", "1,2", "--max-new-tokens", "40", "--eos", "-1"});
    REQUIRE_MESSAGE(all.code == 0, all.err);
    CHECK(parse_ids(all.out).size() == 40);

    // an empty prompt starts from <|endoftext|>
    const Run empty = run({"generate", "--model", model, "--prompt", "", "--max-new-tokens", "4"});
    CHECK_MESSAGE(empty.code == 0, empty.err);
}

TEST_CASE("cli generate: GPT-2 BPE tokens print their bytes") {
    TempDir tmp;
    const fs::path dir = make_gpt2(tmp, "bpe", 50257);
    const fs::path vocab = fs::path(LLMBLOCKS_TEST_DATA_DIR) / "gpt2_tokenizer";
    fs::copy_file(vocab / "vocab.json", dir / "vocab.json");
    fs::copy_file(vocab / "merges.txt", dir / "merges.txt");
    const BpeTokenizer bpe = BpeTokenizer::from_directory(dir.string());
    const std::string prompt = "Hello world, caf\xc3\xa9";
    const std::vector<std::int32_t> prompt_ids = bpe.encode(prompt);

    for (const std::string seed : {"1", "2", "3"}) {
        const std::vector<std::string> opts{"--max-new-tokens", "12", "--temperature", "1.0", "--seed", seed};
        std::vector<std::string> a{"generate", "--model", dir.string(), "--prompt", prompt};
        std::vector<std::string> b{"generate", "--model", dir.string(), "--tokens", join(prompt_ids)};
        a.insert(a.end(), opts.begin(), opts.end());
        b.insert(b.end(), opts.begin(), opts.end());
        const Run text = run(a), ids = run(b);
        REQUIRE_MESSAGE(text.code == 0, text.err);
        REQUIRE_MESSAGE(ids.code == 0, ids.err);
        const std::vector<std::int32_t> new_ids = parse_ids(ids.out);
        CHECK(!new_ids.empty());
        CHECK(text.out == prompt + text_of(bpe, new_ids, 50256) + "\n");
    }
}

TEST_CASE("cli generate: without a tokenizer, and T5") {
    TempDir tmp;
    const fs::path dir = make_gpt2(tmp, "plain", 257);
    const Run r = run({"generate", "--model", dir.string(), "--tokens", "5,6,7", "--max-new-tokens", "10"});
    REQUIRE_MESSAGE(r.code == 0, r.err);
    const std::vector<std::int32_t> ids = parse_ids(r.out);
    CHECK(ids.size() == 10);  // no eos without a tokenizer
    for (const std::int32_t id : ids) CHECK((id >= 0 && id < 257));
    CHECK(stats_tokens(r.err) == 10);

    const Run p = run({"generate", "--model", dir.string(), "--prompt", "hi"});
    CHECK(p.code == 2);
    CHECK(p.out.empty());
    CHECK(contains(p.err, "no vocab.json/merges.txt or tokenizer_config.json"));
    CHECK(contains(p.err, "--tokens"));

    // T5: the prompt is the encoder input, not echoed; the default eos is the config's (1)
    const fs::path t5 = tmp / "t5";
    REQUIRE(run({"init", "--arch", "t5", "--preset", "tiny", "--out", t5.string()}).code == 0);
    const Run t = run({"generate", "--model", t5.string(), "--tokens", "10,20,30", "--max-new-tokens", "6"});
    REQUIRE_MESSAGE(t.code == 0, t.err);
    const std::vector<std::int32_t> t_ids = parse_ids(t.out);
    CHECK(!t_ids.empty());
    CHECK(t_ids.size() <= 6);
    for (std::size_t i = 0; i + 1 < t_ids.size(); ++i) CHECK(t_ids[i] != 1);
    ModelTokenizer::save_byte_config(t5, {});
    const Run tt = run({"generate", "--model", t5.string(), "--prompt", "translate: abc", "--max-new-tokens", "3",
                        "--eos", "-1", "--temperature", "0"});
    REQUIRE_MESSAGE(tt.code == 0, tt.err);
    CHECK(!contains(tt.out, "translate"));
    CHECK(stats_tokens(tt.err) == 3);
}

TEST_CASE("cli generate: errors exit 2 naming the option, or 1 naming the problem") {
    TempDir tmp;
    const fs::path dir = make_gpt2(tmp, "err", 257);
    ModelTokenizer::save_byte_config(dir, {"<|endoftext|>"});
    const std::string m = dir.string();
    const auto expect = [](const Run& r, int code, const std::vector<std::string>& needles) {
        CAPTURE(r.err);
        CHECK(r.code == code);
        CHECK(r.out.empty());
        CHECK(line_count(r.err) == 1);
        for (const auto& needle : needles) CHECK(contains(r.err, needle));
    };
    const std::vector<std::string> ok{"generate", "--model", m, "--prompt", "ab"};
    auto with = [&](std::vector<std::string> extra) {
        std::vector<std::string> a = ok;
        a.insert(a.end(), extra.begin(), extra.end());
        return run(a);
    };
    expect(with({"--temperature", "-1"}), 2, {"--temperature", ">= 0"});
    expect(with({"--temperature", "warm"}), 2, {"--temperature", "'warm'"});
    expect(with({"--temperature", "nan"}), 2, {"--temperature"});
    expect(with({"--top-p", "0"}), 2, {"--top-p", "(0, 1]"});
    expect(with({"--top-p", "1.5"}), 2, {"--top-p"});
    expect(with({"--top-k", "-3"}), 2, {"--top-k"});
    expect(with({"--max-new-tokens", "x"}), 2, {"--max-new-tokens"});
    expect(with({"--max-new-tokens", "-1"}), 2, {"--max-new-tokens"});
    expect(with({"--seed", "-1"}), 2, {"--seed"});
    expect(with({"--eos", "-5"}), 2, {"--eos"});
    expect(with({"--tokens", "1,2"}), 2, {"--prompt", "--tokens"});
    expect(with({"--foo", "1"}), 2, {"unknown option '--foo'"});
    expect(run({"generate", "--model", m}), 2, {"--prompt", "--tokens"});
    expect(run({"generate", "--prompt", "x"}), 2, {"--model"});
    expect(run({"generate", "--model", m, "--tokens", "1,,2"}), 2, {"--tokens"});

    expect(run({"generate", "--model", m, "--tokens", "1,300"}), 1, {"token id 300"});
    expect(with({"--max-new-tokens", "63"}), 1, {"2 tokens", "65 positions", "64 (n_positions)"});
    expect(with({"--eos", "999"}), 1, {"--eos", "999"});
    expect(run({"generate", "--model", (tmp / "missing").string(), "--tokens", "1"}), 1, {"does not exist"});
    CHECK(with({"--max-new-tokens", "62"}).code == 0);  // 2 + 62 = the context

    const Run help = run({"generate", "--help"});
    CHECK(help.code == 0);
    for (const char* option : {"--prompt", "--tokens", "--max-new-tokens", "--temperature", "--top-k", "--top-p", "--seed", "--eos"})
        CHECK(contains(help.out, option));
}

}  // namespace test_cli_generate
