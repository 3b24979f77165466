// Tests of `llmblocks train` (examples/cli/train.hpp), run in process through
// run_cli with string streams, on tiny models made by `llmblocks init`:
//   - byte-level text data (tokenizer_config.json) on GPT-2: loss.csv has the
//     header and one row per step (val_loss exactly at the evaluation steps),
//     the loss falls, OUT holds the checkpoint files and the tokenizer and
//     works as a model directory for `logits`;
//   - an llm.c token file with --val, gradient accumulation and Adafactor;
//     T5 with span corruption on text;
//   - resume through the CLI: 2N steps straight and N steps + --resume to 2N
//     give identical model.safetensors and optimizer.safetensors tensors (memcmp)
//     and the same training losses in loss.csv;
//   - errors: a missing data file, a token id >= vocab, --resume with another
//     --batch, text without a tokenizer, ... exit 1 naming the file or flag;
//     command-line mistakes exit 2.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/io/model_tokenizer.hpp"
#include "llmblocks/io/safetensors.hpp"
#include "llmblocks/train/data.hpp"
#include "support/temp_dir.hpp"

// Everything of this file in its own namespace: the test build compiles the files that
// instantiate the whole model stack as one unity group (tests/CMakeLists.txt).
namespace test_cli_train {

using namespace llmblocks;
namespace fs = std::filesystem;
using llmblocks::testing::TempDir;

namespace {

struct Run {
    int code = 0;
    std::string out, err;
};

Run run(const std::vector<std::string>& args) {
    std::istringstream in;
    std::ostringstream out, err;
    Run r;
    r.code = cli::run_cli(args, in, out, err);
    r.out = out.str();
    r.err = err.str();
    return r;
}

std::string text_of_words(std::size_t words, std::uint64_t seed) {
    static const char* kWords[] = {"the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "red", "big", "house"};
    Rng rng(seed);
    std::string s;
    for (std::size_t i = 0; i < words; ++i) s += std::string(kWords[rng.randint(0, 12)]) + " ";
    return s;
}

// A tiny GPT-2 with a 257-token vocabulary (bytes + <|endoftext|>) in `dir`, with a byte tokenizer.
fs::path make_gpt2(const TempDir& tmp, const std::string& name, bool tokenizer = true) {
    const fs::path cfg = tmp / (name + "_config.json");
    std::ofstream(cfg) << R"({"model_type": "gpt2", "vocab_size": 257, "n_positions": 32, "n_embd": 32, "n_layer": 1, "n_head": 2})";
    const fs::path dir = tmp / name;
    const Run r = run({"init", "--arch", "gpt2", "--config", cfg.string(), "--out", dir.string(), "--seed", "3"});
    REQUIRE_MESSAGE(r.code == 0, r.err);
    if (tokenizer) ModelTokenizer::save_byte_config(dir, {"<|endoftext|>"});
    return dir;
}

struct CsvRow {
    long long step = 0;
    double loss = 0;
    std::string val;
};

std::vector<CsvRow> read_log(const fs::path& path, std::string* header) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    if (header) *header = line;
    std::vector<CsvRow> rows;
    while (std::getline(in, line)) {
        std::vector<std::string> f;
        std::stringstream ss(line);
        std::string cell;
        while (std::getline(ss, cell, ',')) f.push_back(cell);
        if (line.back() == ',') f.push_back("");
        REQUIRE_MESSAGE(f.size() == 6, line);
        rows.push_back({std::stoll(f[0]), std::stod(f[1]), f[2]});
    }
    return rows;
}

// Every tensor of two safetensors files equal bit for bit (same names, shapes).
void check_same_tensors(const fs::path& a, const fs::path& b) {
    const SafetensorsFile fa(a), fb(b);
    REQUIRE(fa.names() == fb.names());
    std::size_t equal = 0;
    for (const auto& name : fa.names()) {
        const TensorF x = fa.load<float>(name), y = fb.load<float>(name);
        equal += x.shape() == y.shape() &&
                 std::memcmp(x.data(), y.data(), static_cast<std::size_t>(x.numel()) * sizeof(float)) == 0;
    }
    CHECK_MESSAGE(equal == fa.names().size(), a.string(), " vs ", b.string());
}

}  // namespace

TEST_CASE("cli train: text data with a byte tokenizer -> loss.csv, a checkpoint, a model directory") {
    TempDir tmp("cli_train");
    const fs::path model = make_gpt2(tmp, "m");
    std::ofstream(tmp / "text.txt") << text_of_words(2000, 1);
    const fs::path out = tmp / "out";
    const Run r = run({"train", "--model", model.string(), "--data", (tmp / "text.txt").string(), "--batch", "4",
                       "--seq", "16", "--steps", "30", "--lr", "1e-2", "--warmup", "3", "--eval-every", "10",
                       "--out", out.string()});
    REQUIRE_MESSAGE(r.code == 0, r.err);
    CHECK(r.err.empty());
    CHECK(r.out.find("trained gpt2 to step 30: loss ") != std::string::npos);
    CHECK(r.out.find("checkpoint in " + out.string()) != std::string::npos);
    CHECK(r.out.find("gpt2  [") != std::string::npos);  // plain progress lines (not a terminal)
    CHECK(r.out.find('\r') == std::string::npos);

    std::string header;
    const std::vector<CsvRow> rows = read_log(out / "loss.csv", &header);
    CHECK(header == "step,loss,val_loss,lr,tokens_per_s,seconds");
    REQUIRE(rows.size() == 30);
    for (std::size_t i = 0; i < rows.size(); ++i) {
        CHECK(rows[i].step == static_cast<long long>(i + 1));
        CHECK(rows[i].val.empty() == (rows[i].step % 10 != 0));  // evaluated at 10, 20, 30
    }
    CHECK(rows[0].loss > 5.0);   // about ln(257) = 5.55 at initialisation
    CHECK(rows.back().loss < 3.5);  // the words' letters are learned quickly (seen: 2.43)
    CHECK(std::stod(rows.back().val) < 3.5);  // seen: 2.48

    for (const char* f : {"config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json",
                          "tokenizer_config.json"})
        CHECK_MESSAGE(fs::exists(out / f), f);
    const Run logits = run({"logits", "--model", out.string(), "--tokens", "116,104,101", "--out", (tmp / "l.npy").string()});
    CHECK_MESSAGE(logits.code == 0, logits.err);
}

TEST_CASE("cli train: an llm.c token file with --val, gradient accumulation and Adafactor; T5 span corruption") {
    TempDir tmp("cli_train_bin");
    const fs::path model = make_gpt2(tmp, "m", /*tokenizer=*/false);  // token files need no tokenizer
    std::vector<std::int32_t> ids;
    for (int i = 0; i < 3000; ++i) ids.push_back((i * 7) % 50 + (i % 3));
    write_token_file(tmp / "train.bin", ids);
    write_token_file(tmp / "val.bin", std::vector<std::int32_t>(ids.begin(), ids.begin() + 400));
    const fs::path out = tmp / "out";
    const Run r = run({"train", "--model", model.string(), "--data", (tmp / "train.bin").string(), "--val",
                       (tmp / "val.bin").string(), "--batch", "2", "--seq", "16", "--steps", "12", "--lr", "0.3",
                       "--grad-accum", "2", "--optimizer", "adafactor", "--z-loss", "1e-4", "--out", out.string(),
                       "--log", (tmp / "log.csv").string()});
    REQUIRE_MESSAGE(r.code == 0, r.err);
    const std::vector<CsvRow> rows = read_log(tmp / "log.csv", nullptr);
    REQUIRE(rows.size() == 12);
    // A repeating pattern: the loss drops fast (seen: 5.58 -> 3.67; Adafactor's step is lr * RMS(parameter)).
    CHECK(rows.back().loss < rows.front().loss - 1.0);
    CHECK(!fs::exists(out / "loss.csv"));              // --log replaces it
    CHECK(fs::exists(out / "optimizer.safetensors"));
    CHECK(SafetensorsFile(out / "optimizer.safetensors").contains("wte.weight.exp_avg_sq_row"));  // Adafactor, factored

    // T5: span corruption of byte text (sentinels 255, 254, ...: above every ASCII byte).
    const fs::path t5 = tmp / "t5";
    REQUIRE(run({"init", "--arch", "t5", "--preset", "tiny", "--out", t5.string()}).code == 0);
    ModelTokenizer::save_byte_config(t5, {});
    std::ofstream(tmp / "text.txt") << text_of_words(1000, 2);
    const Run t = run({"train", "--model", t5.string(), "--data", (tmp / "text.txt").string(), "--batch", "4", "--seq",
                       "24", "--steps", "10", "--lr", "3e-3", "--out", (tmp / "t5out").string()});
    REQUIRE_MESSAGE(t.code == 0, t.err);
    CHECK(t.out.find("trained t5 to step 10") != std::string::npos);
    CHECK(read_log(tmp / "t5out" / "loss.csv", nullptr).size() == 10);
    const Run bad = run({"train", "--model", t5.string(), "--data", (tmp / "text.txt").string(), "--batch", "4", "--seq",
                         "24", "--steps", "10", "--lr", "3e-3", "--objective", "causal", "--out", (tmp / "x").string()});
    CHECK(bad.code == 2);
    CHECK(bad.err.find("'--objective causal' is for decoder-only models") != std::string::npos);
}

TEST_CASE("cli train: 2N steps straight == N steps, then --resume to 2N (model and optimizer bit for bit)") {
    TempDir tmp("cli_train_resume");
    const fs::path model = make_gpt2(tmp, "m");
    std::ofstream(tmp / "text.txt") << text_of_words(2000, 3);
    auto train = [&](const std::string& steps, const fs::path& out, bool resume) {
        std::vector<std::string> a{"train", "--model", model.string(), "--data", (tmp / "text.txt").string(),
                                   "--batch", "3", "--seq", "16", "--steps", steps, "--lr", "5e-3", "--min-lr", "5e-3",
                                   "--warmup", "4", "--clip", "0.5", "--grad-accum", "2", "--objective", "prefix",
                                   "--seed", "9", "--out", out.string()};
        if (resume) a.push_back("--resume");
        return run(a);
    };
    const Run straight = train("16", tmp / "a", false);
    REQUIRE_MESSAGE(straight.code == 0, straight.err);
    const Run half = train("8", tmp / "b", false);
    REQUIRE_MESSAGE(half.code == 0, half.err);
    const Run rest = train("16", tmp / "b", true);
    REQUIRE_MESSAGE(rest.code == 0, rest.err);
    CHECK(rest.out.find("trained gpt2 to step 16") != std::string::npos);

    check_same_tensors(tmp / "a" / "model.safetensors", tmp / "b" / "model.safetensors");
    check_same_tensors(tmp / "a" / "optimizer.safetensors", tmp / "b" / "optimizer.safetensors");
    const std::vector<CsvRow> a = read_log(tmp / "a" / "loss.csv", nullptr), b = read_log(tmp / "b" / "loss.csv", nullptr);
    REQUIRE(a.size() == 16);
    REQUIRE(b.size() == 16);  // appended, step numbers continued
    for (std::size_t i = 0; i < a.size(); ++i) {
        CHECK(b[i].step == a[i].step);
        CHECK(b[i].loss == a[i].loss);
    }

    // Resuming a finished run does nothing; other settings are refused by name.
    const Run again = train("16", tmp / "b", true);
    CHECK(again.code == 0);
    CHECK(again.out.find("already at step 16") != std::string::npos);
    const Run other = run({"train", "--model", model.string(), "--data", (tmp / "text.txt").string(), "--batch", "4",
                           "--seq", "16", "--steps", "20", "--lr", "5e-3", "--min-lr", "5e-3", "--warmup", "4", "--clip",
                           "0.5", "--grad-accum", "2", "--objective", "prefix", "--seed", "9", "--out",
                           (tmp / "b").string(), "--resume"});
    CHECK(other.code == 1);
    CHECK(other.err.find("trainer_state.json") != std::string::npos);
    CHECK(other.err.find("--batch 4 (checkpoint: 3)") != std::string::npos);
    // Without --resume an existing checkpoint is never overwritten.
    const Run overwrite = train("16", tmp / "b", false);
    CHECK(overwrite.code == 1);
    CHECK(overwrite.err.find("pass --resume") != std::string::npos);
}

TEST_CASE("cli train: errors name the file or flag") {
    TempDir tmp("cli_train_err");
    const fs::path model = make_gpt2(tmp, "m");
    const fs::path bare = make_gpt2(tmp, "bare", /*tokenizer=*/false);
    std::ofstream(tmp / "text.txt") << text_of_words(500, 4);
    auto train = [&](const fs::path& m, const fs::path& data, std::vector<std::string> extra = {}) {
        std::vector<std::string> a{"train", "--model", m.string(), "--data", data.string(), "--batch", "2", "--seq", "8",
                                   "--steps", "2", "--lr", "1e-3", "--out", (tmp / "out").string()};
        a.insert(a.end(), extra.begin(), extra.end());
        return run(a);
    };

    const Run missing = train(model, tmp / "nope.txt");
    CHECK(missing.code == 1);
    CHECK(missing.err.find("data file '" + (tmp / "nope.txt").string() + "' does not exist") != std::string::npos);

    write_token_file(tmp / "big.bin", std::vector<std::int32_t>{1, 2, 300, 4, 5, 6, 7, 8, 9, 10, 11, 12});
    const Run big = train(model, tmp / "big.bin");
    CHECK(big.code == 1);
    CHECK(big.err.find("big.bin': token id 300 (at position 2) is out of range for the model's vocabulary of 257") !=
          std::string::npos);

    const Run no_tokenizer = train(bare, tmp / "text.txt");
    CHECK(no_tokenizer.code == 1);
    CHECK(no_tokenizer.err.find("has no tokenizer") != std::string::npos);

    const Run no_ckpt = train(model, tmp / "text.txt", {"--resume"});
    CHECK(no_ckpt.code == 1);
    CHECK(no_ckpt.err.find("--resume: '" + (tmp / "out" / "trainer_state.json").string() + "' does not exist") !=
          std::string::npos);

    const Run long_seq = run({"train", "--model", model.string(), "--data", (tmp / "text.txt").string(), "--batch", "2",
                              "--seq", "64", "--steps", "2", "--lr", "1e-3", "--out", (tmp / "out").string()});
    CHECK(long_seq.code == 1);
    CHECK(long_seq.err.find("--seq 64 exceeds the model's context of 32") != std::string::npos);

    // Usage errors: exit 2.
    CHECK(run({"train", "--model", model.string(), "--data", "x", "--batch", "2", "--seq", "8", "--steps", "2",
               "--out", "o"}).code == 2);  // no --lr
    CHECK(train(model, tmp / "text.txt", {"--optimizer", "lion"}).code == 2);
    CHECK(train(model, tmp / "text.txt", {"--min-lr", "1"}).code == 2);
    CHECK(train(model, tmp / "text.txt", {"--objective", "span"}).code == 2);
    const Run bad_num = train(model, tmp / "text.txt", {"--clip", "abc"});
    CHECK(bad_num.code == 2);
    CHECK(bad_num.err.find("option '--clip' needs a number, got 'abc'") != std::string::npos);
    CHECK(!fs::exists(tmp / "out" / "trainer_state.json"));

    std::ostringstream help;
    std::istringstream in;
    std::ostringstream err;
    CHECK(cli::run_cli({"train", "--help"}, in, help, err) == 0);
    CHECK(help.str().find("--grad-accum K") != std::string::npos);
}

}  // namespace test_cli_train
