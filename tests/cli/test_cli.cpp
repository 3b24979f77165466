// Tests for the `llmblocks` program (examples/cli/), run in process through
// run_cli with string streams: `info` on presets, config files and checkpoint
// directories; `encode` / `decode` against the committed GPT-2 vocabulary and
// its expected ids (tests/reference/gpt2_tokenizer/); the argument rules of
// DESIGN.md contract detail 2; exit codes and one-line error messages.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "llmblocks/io/config.hpp"
#include "llmblocks/io/safetensors.hpp"
#include "support/temp_dir.hpp"

#ifndef LLMBLOCKS_TEST_DATA_DIR
#define LLMBLOCKS_TEST_DATA_DIR "tests/reference"
#endif

// Everything of this file in its own namespace: the test build compiles the files that
// instantiate the whole model stack as one unity group (tests/CMakeLists.txt).
namespace test_cli {

using namespace llmblocks;
namespace fs = std::filesystem;

namespace {

const std::string kGpt2Dir = std::string(LLMBLOCKS_TEST_DATA_DIR) + "/gpt2_tokenizer";

struct CliResult {
    int code = -1;
    std::string out, err;
};

CliResult run(const std::vector<std::string>& args, const std::string& input = "") {
    std::istringstream in(input);
    std::ostringstream out, err;
    CliResult r;
    r.code = cli::run_cli(args, in, out, err);
    r.out = out.str();
    r.err = err.str();
    return r;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::size_t line_count(const std::string& s) {
    std::size_t n = 0;
    for (char c : s) n += c == '\n' ? 1 : 0;
    return n;
}

// A failed run: the exit code and exactly one line on stderr, nothing on stdout.
void check_failure(const CliResult& r, int code, const std::string& message) {
    CAPTURE(r.err);
    CHECK(r.code == code);
    CHECK(r.out.empty());
    CHECK(line_count(r.err) == 1);
    CHECK(r.err.back() == '\n');
    CHECK(contains(r.err, message));
}

using llmblocks::testing::TempDir;

std::string ids_line(const std::vector<int>& ids) {
    std::string s;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (i) s += ' ';
        s += std::to_string(ids[i]);
    }
    return ids.empty() ? "" : s + "\n";
}

// The tensors of a GPT-2 checkpoint with Hugging Face's names (zeros), the
// attention-mask buffers included.
std::vector<std::pair<std::string, TensorF>> gpt2_tensors(const GPT2Config& c) {
    const index_t V = c.vocab_size, P = c.n_positions, C = c.n_embd;
    std::vector<std::pair<std::string, TensorF>> t;
    t.emplace_back("wte.weight", TensorF::zeros({V, C}));
    t.emplace_back("wpe.weight", TensorF::zeros({P, C}));
    for (index_t i = 0; i < c.n_layer; ++i) {
        const std::string h = "h." + std::to_string(i) + ".";
        t.emplace_back(h + "ln_1.weight", TensorF::zeros({C}));
        t.emplace_back(h + "ln_1.bias", TensorF::zeros({C}));
        t.emplace_back(h + "attn.bias", TensorF::zeros({1, 1, P, P}));
        t.emplace_back(h + "attn.masked_bias", TensorF::zeros({}));
        t.emplace_back(h + "attn.c_attn.weight", TensorF::zeros({C, 3 * C}));
        t.emplace_back(h + "attn.c_attn.bias", TensorF::zeros({3 * C}));
        t.emplace_back(h + "attn.c_proj.weight", TensorF::zeros({C, C}));
        t.emplace_back(h + "attn.c_proj.bias", TensorF::zeros({C}));
        t.emplace_back(h + "ln_2.weight", TensorF::zeros({C}));
        t.emplace_back(h + "ln_2.bias", TensorF::zeros({C}));
        t.emplace_back(h + "mlp.c_fc.weight", TensorF::zeros({C, 4 * C}));
        t.emplace_back(h + "mlp.c_fc.bias", TensorF::zeros({4 * C}));
        t.emplace_back(h + "mlp.c_proj.weight", TensorF::zeros({4 * C, C}));
        t.emplace_back(h + "mlp.c_proj.bias", TensorF::zeros({C}));
    }
    t.emplace_back("ln_f.weight", TensorF::zeros({C}));
    t.emplace_back("ln_f.bias", TensorF::zeros({C}));
    return t;
}

}  // namespace

TEST_CASE("cli info: presets") {
    SUBCASE("gpt2 124M") {
        const CliResult r = run({"info", "--arch", "gpt2", "--preset", "124M"});
        CAPTURE(r.out);
        CHECK(r.code == 0);
        CHECK(r.err.empty());
        CHECK(contains(r.out, "parameters       124,439,808 (124.4M)"));
        CHECK(contains(r.out, "non-embedding  85,056,000 (85.1M)"));  // 124,439,808 - (50257 + 1024) * 768
        CHECK(contains(r.out, "layers           12\n"));
        CHECK(contains(r.out, "width (d_model)  768\n"));
        CHECK(contains(r.out, "12 query, 12 key/value (multi-head), head dim 64"));
        CHECK(contains(r.out, "3,072 wide, GELU (tanh)"));
        CHECK(contains(r.out, "vocabulary       50,257\n"));
        CHECK(contains(r.out, "context          1,024 tokens\n"));
        CHECK(contains(r.out, "73,728 bytes per token (72.0 KiB, fp32); 72.0 MiB at context 1,024"));
        CHECK(contains(r.out, "FLOPs per token  forward 284.8 MFLOP, training 854.4 MFLOP"));
        CHECK(line_count(r.out) <= 24);  // one screen
    }
    SUBCASE("gpt3 175B") {
        const CliResult r = run({"info", "--arch", "gpt3", "--preset", "175B"});
        CAPTURE(r.out);
        CHECK(r.code == 0);
        CHECK(contains(r.out, "174,604,259,328 (174.6B)"));
        CHECK(contains(r.out, "48 dense causal + 48 local causal layers (window 256)"));
        CHECK(contains(r.out, "context          2,048 tokens"));
    }
    SUBCASE("palm 540B") {
        const CliResult r = run({"info", "--arch", "palm", "--preset", "540B"});
        CAPTURE(r.out);
        CHECK(r.code == 0);
        CHECK(contains(r.out, "540,356,474,880 (540.4B)"));
        CHECK(contains(r.out, "48 query, 1 key/value (multi-query), head dim 256"));
        CHECK(contains(r.out, "parallel: y = x + attn(norm(x)) + mlp(norm(x))"));
        CHECK(contains(r.out, "SwiGLU"));
        // 2 * 118 layers * 1 KV head * 256 * 4 bytes
        CHECK(contains(r.out, "241,664 bytes per token"));
    }
    SUBCASE("t5 11B") {
        const CliResult r = run({"info", "--arch", "t5", "--preset", "11B"});
        CAPTURE(r.out);
        CHECK(r.code == 0);
        CHECK(contains(r.out, "11,307,321,344 (11.3B)"));
        CHECK(contains(r.out, "24 encoder + 24 decoder"));
        CHECK(contains(r.out, "head dim 128 (inner 16,384)"));
        CHECK(contains(r.out, "FLOPs per token pair"));
    }
    SUBCASE("--context changes the totals") {
        const CliResult r = run({"info", "--arch", "gpt2", "--preset", "124M", "--context", "2"});
        CHECK(r.code == 0);
        CHECK(contains(r.out, "144.0 KiB at context 2"));
    }
}

TEST_CASE("cli info: --config and --model") {
    TempDir dir;
    GPT2Config cfg = GPT2Config::gpt2_preset("tiny");
    save_config(dir.path / "config.json", cfg);

    CliResult r = run({"info", "--config", (dir.path / "config.json").string()});
    CAPTURE(r.out);
    CHECK(r.code == 0);
    CHECK(contains(r.out, (dir.path / "config.json").string()));
    CHECK(contains(r.out, "parameters       " + cli::with_commas(count(cfg).parameters)));
    CHECK(!contains(r.out, "weights"));

    // A model directory without weights says so.
    r = run({"info", "--model", dir.path.string()});
    CHECK(r.code == 0);
    CHECK(contains(r.out, "weights          none (no model.safetensors)"));

    // With weights: tensors and parameters of the file; GPT-2's mask buffers are not parameters.
    save_safetensors(dir.path / "model.safetensors", gpt2_tensors(cfg));
    r = run({"info", "--model", dir.path.string()});
    CAPTURE(r.out);
    CHECK(r.code == 0);
    const std::int64_t n = count(cfg).parameters;
    CHECK(contains(r.out, "model.safetensors: 32 tensors (28 F32; 4 buffers or tied copies not counted), " +
                              cli::with_commas(n) + " parameters (matches the config)"));

    // The same with the "transformer." prefix and a copy of the tied head.
    auto prefixed = gpt2_tensors(cfg);
    for (auto& entry : prefixed) entry.first = "transformer." + entry.first;
    prefixed.emplace_back("lm_head.weight", TensorF::zeros({cfg.vocab_size, cfg.n_embd}));
    save_safetensors(dir.path / "model.safetensors", prefixed);
    r = run({"info", "--model", dir.path.string()});
    CHECK(contains(r.out, "33 tensors (28 F32; 5 buffers or tied copies not counted), " + cli::with_commas(n) +
                              " parameters (matches the config)"));

    // Weights that do not match the config are reported, not hidden.
    auto tensors = gpt2_tensors(cfg);
    tensors.pop_back();
    save_safetensors(dir.path / "model.safetensors", tensors);
    r = run({"info", "--model", dir.path.string()});
    CHECK(contains(r.out, cli::with_commas(n - 64) + " parameters (the config implies " + cli::with_commas(n) + ")"));

    // --arch must agree with the file's model_type.
    check_failure(run({"info", "--config", (dir.path / "config.json").string(), "--arch", "t5"}), 1,
                  "has model_type gpt2, not t5");

    // A corrupt safetensors file is an error naming it.
    std::ofstream(dir.path / "model.safetensors", std::ios::binary) << "garbage";
    check_failure(run({"info", "--model", dir.path.string()}), 1, "llmblocks info: safetensors");

    // Missing and malformed config files.
    check_failure(run({"info", "--model", (dir.path / "none").string()}), 1,
                  "llmblocks info: config: cannot open '" + (dir.path / "none" / "config.json").string() + "'");
    std::ofstream(dir.path / "bad.json") << "{\"model_type\": \"gpt2\",\n\"n_embd\": ";
    check_failure(run({"info", "--config", (dir.path / "bad.json").string()}), 1, "malformed JSON");
    std::ofstream(dir.path / "llama.json") << R"({"model_type": "llama"})";
    check_failure(run({"info", "--config", (dir.path / "llama.json").string()}), 1,
                  "unsupported model_type 'llama' (supported: gpt2, gpt3, palm, t5)");
}

TEST_CASE("cli info: bad arguments") {
    check_failure(run({"info"}), 2,
                  "llmblocks info: give exactly one of --model DIR, --config FILE or --arch ARCH --preset NAME "
                  "(run 'llmblocks info --help')");
    check_failure(run({"info", "--arch", "gpt2"}), 2, "give exactly one of");
    check_failure(run({"info", "--preset", "124M"}), 2, "option '--preset' needs '--arch gpt2|gpt3|palm|t5'");
    check_failure(run({"info", "--preset", "124M", "--arch", "gpt2", "--config", "x.json"}), 2, "give exactly one of");
    check_failure(run({"info", "--arch", "llama", "--preset", "7B"}), 1, "llmblocks info: unknown architecture 'llama'");
    check_failure(run({"info", "--arch", "gpt2", "--preset", "7B"}), 1, "gpt2: unknown preset '7B'");
    check_failure(run({"info", "--arch", "gpt2", "--preset", "124M", "--context", "abc"}), 2,
                  "option '--context' needs an integer, got 'abc'");
    // A value starting with '-' is the value (contract detail 2), not an option.
    check_failure(run({"info", "--arch", "gpt2", "--preset", "124M", "--context", "-5"}), 2,
                  "option '--context' needs a positive integer, got '-5'");
    check_failure(run({"info", "--arch", "gpt2", "--preset", "-124M"}), 1, "unknown preset '-124M'");
    check_failure(run({"info", "--model", "--help"}), 1, "cannot open '--help/config.json'");
}

TEST_CASE("cli: argument rules and exit codes") {
    check_failure(run({"info", "--bogus", "1"}), 2,
                  "llmblocks info: unknown option '--bogus' (run 'llmblocks info --help')");
    check_failure(run({"info", "--model"}), 2, "llmblocks info: option '--model' needs a value (--model DIR)");
    check_failure(run({"info", "--model", "a", "--model", "b"}), 2, "option '--model' is given more than once");
    check_failure(run({"info", "model"}), 2, "llmblocks info: unexpected argument 'model'");
    check_failure(run({"info", "-m", "x"}), 2, "unexpected argument '-m'");
    check_failure(run({"encode", "--plain=yes", "--model", kGpt2Dir}), 2, "option '--plain' takes no value");
    check_failure(run({"encode"}), 2, "llmblocks encode: missing required option '--model DIR'");
    check_failure(run({"frobnicate", "--model", "x"}), 2,
                  "llmblocks: unknown subcommand 'frobnicate' (run 'llmblocks --help')");
    check_failure(run({"--model", "x"}), 2, "unknown subcommand '--model'");

    // No arguments: the usage on stderr, exit 2.
    CliResult r = run({});
    CHECK(r.code == 2);
    CHECK(r.out.empty());
    CHECK(contains(r.err, "usage: llmblocks <subcommand>"));
    // Help: on stdout, exit 0.
    for (const auto& args : std::vector<std::vector<std::string>>{{"--help"}, {"-h"}, {"help"}}) {
        r = run(args);
        CHECK(r.code == 0);
        CHECK(r.err.empty());
        for (const char* sub : {"info", "encode", "decode"}) CHECK(contains(r.out, std::string("llmblocks ") + sub + " "));
    }
    r = run({"info", "--help"});
    CHECK(r.code == 0);
    CHECK(contains(r.out, "usage: llmblocks info"));
    CHECK(contains(r.out, "--preset NAME"));
    r = run({"help", "decode"});
    CHECK(r.code == 0);
    CHECK(contains(r.out, "usage: llmblocks decode --model DIR"));
    check_failure(run({"help", "nope"}), 2, "unknown subcommand 'nope'");

    // A stream that cannot be written is an error, not a silent success.
    std::istringstream in;
    std::ostringstream out, err;
    out.setstate(std::ios::badbit);
    CHECK(cli::run_cli({"info", "--arch", "t5", "--preset", "tiny"}, in, out, err) == 1);
    CHECK(err.str() == "llmblocks info: cannot write the output\n");
}

TEST_CASE("cli args: values are the next entry verbatim") {
    const std::vector<cli::OptionSpec> specs{{"--targets", "IDS", ""}, {"--prompt", "TEXT", ""}, {"--flag", "", ""}};
    auto a = cli::Args::parse({"--targets", "-100,7", "--prompt", "--flag", "--flag"}, specs);
    CHECK(a.get("--targets") == "-100,7");
    CHECK(a.get("--prompt") == "--flag");
    CHECK(a.has("--flag"));
    CHECK(!a.help_requested());
    a = cli::Args::parse({"--prompt", "", "--targets=-1=2"}, specs);
    CHECK(a.get("--prompt").empty());
    CHECK(a.get("--targets") == "-1=2");
    CHECK(!a.has("--flag"));
    CHECK(a.get_or("--flag", "no") == "no");
    a = cli::Args::parse({"--prompt", "-h", "-h"}, specs);
    CHECK(a.get("--prompt") == "-h");
    CHECK(a.help_requested());
    a = cli::Args::parse({"--targets", "-7"}, specs);
    CHECK(a.get_int("--targets", 0) == -7);
    CHECK_THROWS_WITH_AS(cli::Args::parse({"--targets"}, specs), "option '--targets' needs a value (--targets IDS)",
                         cli::UsageError);
    CHECK_THROWS_WITH_AS(cli::Args::parse({"--other", "1"}, specs), "unknown option '--other'", cli::UsageError);
    CHECK_THROWS_WITH_AS(cli::Args::parse({"-"}, specs), "unexpected argument '-'", cli::UsageError);
    CHECK_THROWS_WITH_AS(cli::Args::parse({"--"}, specs), "unexpected argument '--'", cli::UsageError);
    CHECK_THROWS_WITH_AS(cli::Args::parse({}, specs).get("--prompt"), "missing required option '--prompt TEXT'",
                         cli::UsageError);
    CHECK_THROWS_WITH_AS(cli::Args::parse({"--prompt", "1x"}, specs).get_int("--prompt", 0),
                         "option '--prompt' needs an integer, got '1x'", cli::UsageError);
}

TEST_CASE("cli encode/decode: the committed GPT-2 vocabulary's expected ids, both ways") {
    std::ifstream f(std::string(LLMBLOCKS_TEST_DATA_DIR) + "/gpt2_tokenizer/expected_ids.json");
    REQUIRE(f);
    const nlohmann::json expected = nlohmann::json::parse(f);
    const nlohmann::json& cases = expected["cases"];
    REQUIRE(cases.size() > 40);
    // Each run loads the 50k-token vocabulary: the first 30 cases (the edge cases:
    // empty, single characters, whitespace runs) and every 10th after them keep this
    // test quick; tests/io/test_tokenizer.cpp checks every case through the API.
    for (std::size_t i = 0; i < cases.size(); i += i < 30 ? 1 : 10) {
        const nlohmann::json& c = cases[i];
        const std::string text = c["text"].get<std::string>();
        const std::vector<int> ids = c["ids"].get<std::vector<int>>();
        CAPTURE(text);
        const CliResult enc = run({"encode", "--model", kGpt2Dir}, text);
        CHECK(enc.code == 0);
        CHECK(enc.err.empty());
        CHECK(enc.out == ids_line(ids));
        const CliResult dec = run({"decode", "--model", kGpt2Dir}, enc.out);
        CHECK(dec.code == 0);
        CHECK(dec.err.empty());
        CHECK(dec.out == text);  // exact bytes, no trailing newline
    }
}

TEST_CASE("cli encode/decode: stdin and stdout exactly per contract detail 11") {
    // encode strips nothing: leading and trailing whitespace are tokens.
    CliResult r = run({"encode", "--model", kGpt2Dir}, "Hello world");
    CHECK(r.out == "15496 995\n");
    r = run({"encode", "--model", kGpt2Dir}, " Hello world\n");
    CHECK(r.out == "18435 995 198\n");
    // Empty text <-> no ids: nothing written either way.
    r = run({"encode", "--model", kGpt2Dir}, "");
    CHECK(r.code == 0);
    CHECK(r.out.empty());
    r = run({"decode", "--model", kGpt2Dir}, "");
    CHECK(r.code == 0);
    CHECK(r.out.empty());
    r = run({"decode", "--model", kGpt2Dir}, " \n\t ");
    CHECK(r.code == 0);
    CHECK(r.out.empty());
    // Any whitespace (and commas) between ids; no trailing newline added, no space clean-up.
    r = run({"decode", "--model", kGpt2Dir}, "\n15496\t\t995  \r\n198,198 ");
    CHECK(r.code == 0);
    CHECK(r.out == "Hello world\n\n");
    r = run({"decode", "--model", kGpt2Dir}, "220 220 64");
    CHECK(r.out == "  a");
    // Bytes that are not valid UTF-8 round-trip.
    const std::string bytes("\xff\xfe\x00 z\x80", 6);
    r = run({"encode", "--model", kGpt2Dir}, bytes);
    CHECK(r.code == 0);
    CHECK(run({"decode", "--model", kGpt2Dir}, r.out).out == bytes);
    // <|endoftext|> is its id 50256, as Hugging Face's GPT-2 tokenizer, unless --plain.
    r = run({"encode", "--model", kGpt2Dir}, "a<|endoftext|>");
    CHECK(r.out == "64 50256\n");
    r = run({"encode", "--model", kGpt2Dir, "--plain"}, "a<|endoftext|>");
    CHECK(r.out != "64 50256\n");
    CHECK(run({"decode", "--model", kGpt2Dir}, r.out).out == "a<|endoftext|>");
    CHECK(run({"decode", "--model", kGpt2Dir}, "50256").out == "<|endoftext|>");
}

TEST_CASE("cli encode/decode: errors") {
    check_failure(run({"decode", "--model", kGpt2Dir}, "15496 50257"), 1,
                  "llmblocks decode: token id 50257 is out of range (vocab size 50257)");
    check_failure(run({"decode", "--model", kGpt2Dir}, "-1"), 1, "token id -1 is out of range");
    check_failure(run({"decode", "--model", kGpt2Dir}, "99999999999999999999999"), 1,
                  "token id 99999999999999999999999 is out of range");
    check_failure(run({"decode", "--model", kGpt2Dir}, "15496 abc"), 1, "llmblocks decode: 'abc' is not a token id");
    check_failure(run({"decode", "--model", kGpt2Dir}, "12x"), 1, "'12x' is not a token id");
    check_failure(run({"decode", "--model", kGpt2Dir}, "+5"), 1, "'+5' is not a token id");
    check_failure(run({"decode", "--model", kGpt2Dir}, "1.5"), 1, "'1.5' is not a token id");
    TempDir dir;
    check_failure(run({"encode", "--model", dir.path.string()}, "hi"), 1,
                  "llmblocks encode: ");
    const CliResult r = run({"encode", "--model", dir.path.string()}, "hi");
    CHECK(contains(r.err, "vocab.json"));
    std::ofstream(dir.path / "vocab.json") << "{\"a\": 0";
    std::ofstream(dir.path / "merges.txt") << "#version: 0.2\n";
    check_failure(run({"decode", "--model", dir.path.string()}, "0"), 1, "vocab.json");
}

}  // namespace test_cli
