// Tests for the model subcommands of the `llmblocks` program
// (examples/cli/model_commands.hpp: init, logits, grad), run in process with
// string streams: `logits` and `grad` on every committed fixture checkpoint
// (tests/reference/models/*/) against the PyTorch reference values at the
// conformance tolerances (logits: 1e-4 relative to the largest |logit|;
// gradients: 1e-3 relative norm), output names and shapes exactly as the
// contract says, init -> load round trips bit-identical for each architecture,
// and the error paths (exit code and one-line message naming the problem).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli.hpp"
#include "cli/model_commands.hpp"
#include "llmblocks/io/npy.hpp"
#include "llmblocks/io/safetensors.hpp"
#include "support/temp_dir.hpp"

#ifndef LLMBLOCKS_TEST_DATA_DIR
#define LLMBLOCKS_TEST_DATA_DIR "tests/reference"
#endif

// Everything of this file in its own namespace: the test build compiles the files that
// instantiate the whole model stack as one unity group (tests/CMakeLists.txt).
namespace test_cli_models {

using namespace llmblocks;
namespace fs = std::filesystem;

namespace {

const fs::path kModels = fs::path(LLMBLOCKS_TEST_DATA_DIR) / "models";

using llmblocks::testing::TempDir;

struct Run {
    int code = 0;
    std::string out, err;
};

// Runs one model subcommand as run_cli does: parse, run, UsageError -> 2, other errors -> 1,
// every error one line "llmblocks <sub>: <message>".
Run run_model_command(const std::vector<std::string>& argv) {
    Run r;
    std::istringstream in;
    std::ostringstream out, err;
    const auto table = cli::model_subcommands<cli::Subcommand>();
    const cli::Subcommand* sub = nullptr;
    for (const auto& s : table)
        if (s.name == argv.at(0)) sub = &s;
    REQUIRE(sub != nullptr);
    const std::string prefix = "llmblocks " + sub->name + ": ";
    try {
        const cli::Args args = cli::Args::parse(std::vector<std::string>(argv.begin() + 1, argv.end()), sub->options);
        cli::Io io{in, out, err};
        r.code = sub->run(args, io);
    } catch (const cli::UsageError& e) {
        err << prefix << cli::detail::one_line(e.what()) << "\n";
        r.code = 2;
    } catch (const std::exception& e) {
        err << prefix << cli::detail::one_line(e.what()) << "\n";
        r.code = 1;
    }
    r.out = out.str();
    r.err = err.str();
    return r;
}

std::string join_ids(const std::vector<std::int64_t>& ids) {
    std::string s;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (i) s += ',';
        s += std::to_string(ids[i]);
    }
    return s;
}

std::vector<std::int64_t> ids_of(const TensorF& t, index_t begin, index_t end) {
    std::vector<std::int64_t> ids;
    const TensorF c = t.contiguous();
    for (index_t i = begin; i < end; ++i) ids.push_back(static_cast<std::int64_t>(std::llround(c.data()[i])));
    return ids;
}

// max |a - e| <= rtol * max |e| (the logits contract).
void check_close_to_max(const TensorF& actual, const TensorF& expected, double rtol, const std::string& what) {
    REQUIRE_MESSAGE(actual.shape() == expected.shape(), what, ": shape ", shape_str(actual.shape()), " vs ",
                    shape_str(expected.shape()));
    const TensorF a = actual.contiguous(), e = expected.contiguous();
    double max_abs = 0, max_diff = 0;
    for (index_t i = 0; i < e.numel(); ++i) {
        max_abs = std::max(max_abs, std::fabs(static_cast<double>(e.data()[i])));
        max_diff = std::max(max_diff, std::fabs(static_cast<double>(a.data()[i]) - e.data()[i]));
    }
    CHECK_MESSAGE(max_diff <= rtol * max_abs, what, ": max |diff| ", max_diff, " > ", rtol, " * ", max_abs);
}

// ||a - e|| <= rtol * ||e|| (the gradient contract); an all-zero expectation needs ||a|| <= 1e-7.
void check_rel_norm(const TensorF& actual, const TensorF& expected, double rtol, const std::string& what) {
    REQUIRE_MESSAGE(actual.shape() == expected.shape(), what, ": shape ", shape_str(actual.shape()), " vs ",
                    shape_str(expected.shape()));
    const TensorF a = actual.contiguous(), e = expected.contiguous();
    double diff2 = 0, norm2 = 0;
    for (index_t i = 0; i < e.numel(); ++i) {
        const double d = static_cast<double>(a.data()[i]) - e.data()[i];
        diff2 += d * d;
        norm2 += static_cast<double>(e.data()[i]) * e.data()[i];
    }
    const double bound = norm2 > 0 ? rtol * std::sqrt(norm2) : 1e-7;
    CHECK_MESSAGE(std::sqrt(diff2) <= bound, what, ": ||diff|| ", std::sqrt(diff2), " > ", bound, " (||expected|| ",
                  std::sqrt(norm2), ")");
}

std::vector<fs::path> fixture_dirs(bool t5) {
    std::vector<fs::path> dirs;
    for (const auto& entry : fs::directory_iterator(kModels)) {
        if (!entry.is_directory()) continue;
        const bool is_t5 = entry.path().filename().string().rfind("t5", 0) == 0;
        if (is_t5 == t5) dirs.push_back(entry.path());
    }
    std::sort(dirs.begin(), dirs.end());
    return dirs;
}

// Parameter names of a grad output (everything but "loss").
std::set<std::string> grad_names(const SafetensorsFile& f) {
    std::set<std::string> names;
    for (const auto& t : f.tensors())
        if (t.name != "loss") names.insert(t.name);
    return names;
}

}  // namespace

TEST_CASE("cli models: logits and grad of every decoder-only fixture match PyTorch") {
    const auto dirs = fixture_dirs(false);
    REQUIRE(dirs.size() >= 7);
    TempDir tmp;
    for (const fs::path& dir : dirs) {
        const std::string name = dir.filename().string();
        CAPTURE(name);
        const SafetensorsFile expected(dir / "expected.safetensors");
        const TensorF tokens = expected.load<float>("tokens"), targets = expected.load<float>("targets");
        const std::string tok = join_ids(ids_of(tokens, 0, tokens.numel()));
        const std::string tgt = join_ids(ids_of(targets, 0, targets.numel()));

        const fs::path npy = tmp.path / (name + ".npy");
        const Run lr = run_model_command({"logits", "--model", dir.string(), "--tokens", tok, "--out", npy.string()});
        REQUIRE_MESSAGE(lr.code == 0, lr.err);
        CHECK(lr.err.empty());
        check_close_to_max(load_npy<float>(npy), expected.load<float>("logits"), 1e-4, name + " logits");

        const fs::path st = tmp.path / (name + ".safetensors");
        const Run gr = run_model_command(
            {"grad", "--model", dir.string(), "--tokens", tok, "--targets", tgt, "--out", st.string()});
        REQUIRE_MESSAGE(gr.code == 0, gr.err);
        const SafetensorsFile got(st), want(dir / "grad.safetensors");
        // exactly the reference's names: loss + one gradient per parameter under the file's name
        CHECK(grad_names(got) == grad_names(want));
        REQUIRE(got.contains("loss"));
        CHECK(got.info("loss").shape.empty());
        for (const auto& t : got.tensors()) CHECK(std::string(dtype_name(t.dtype)) == "F32");
        const double loss = got.load<float>("loss").item(), loss_ref = want.load<float>("loss").item();
        CHECK_MESSAGE(std::fabs(loss - loss_ref) <= 1e-4 * std::fabs(loss_ref), name, " loss ", loss, " vs ", loss_ref);
        for (const std::string& g : grad_names(want))
            if (got.contains(g)) check_rel_norm(got.load<float>(g), want.load<float>(g), 1e-3, name + " " + g);
    }
}

TEST_CASE("cli models: logits and grad of every T5 fixture match PyTorch") {
    const auto dirs = fixture_dirs(true);
    REQUIRE(dirs.size() >= 3);
    TempDir tmp;
    for (const fs::path& dir : dirs) {
        const std::string name = dir.filename().string();
        CAPTURE(name);
        const SafetensorsFile expected(dir / "expected.safetensors");
        const TensorF enc = expected.load<float>("encoder_ids"), dec = expected.load<float>("decoder_ids");
        const TensorF targets = expected.load<float>("targets"), logits = expected.load<float>("logits");
        const index_t B = enc.size(0), Te = enc.size(1), Td = dec.size(1);
        const bool masked = expected.contains("encoder_mask");
        const TensorF mask = masked ? expected.load<float>("encoder_mask") : TensorF::ones({B, Te});

        // One batch row at a time: the CLI runs batch 1, and a padded row is its
        // unpadded prefix (the padding is at the end; T5's positions are relative).
        for (index_t b = 0; b < B; ++b) {
            index_t len = 0;
            while (len < Te && mask.at({b, len}) != 0.0f) ++len;
            for (index_t j = len; j < Te; ++j) REQUIRE(mask.at({b, j}) == 0.0f);
            const std::string enc_ids = join_ids(ids_of(enc, b * Te, b * Te + len));
            const std::string dec_ids = join_ids(ids_of(dec, b * Td, (b + 1) * Td));
            const fs::path npy = tmp.path / (name + "_" + std::to_string(b) + ".npy");
            const Run lr = run_model_command({"logits", "--model", dir.string(), "--tokens", enc_ids, "--decoder-tokens",
                                              dec_ids, "--out", npy.string()});
            REQUIRE_MESSAGE(lr.code == 0, lr.err);
            check_close_to_max(load_npy<float>(npy), logits.select(0, b).contiguous(), 1e-4,
                               name + " logits row " + std::to_string(b));
        }

        // The reference loss and gradients are over the whole batch: compare them for batch 1.
        if (B != 1) continue;
        const fs::path st = tmp.path / (name + ".safetensors");
        const Run gr = run_model_command({"grad", "--model", dir.string(), "--tokens", join_ids(ids_of(enc, 0, Te)),
                                          "--decoder-tokens", join_ids(ids_of(dec, 0, Td)), "--targets",
                                          join_ids(ids_of(targets, 0, Td)), "--out", st.string()});
        REQUIRE_MESSAGE(gr.code == 0, gr.err);
        const SafetensorsFile got(st);
        std::set<std::string> want_names;
        for (const auto& t : expected.tensors())
            if (t.name.rfind("grad.", 0) == 0) want_names.insert(t.name.substr(5));
        CHECK(grad_names(got) == want_names);
        CHECK(got.info("loss").shape.empty());
        const double loss = got.load<float>("loss").item(), loss_ref = expected.load<float>("loss").item();
        CHECK_MESSAGE(std::fabs(loss - loss_ref) <= 1e-4 * std::fabs(loss_ref), name, " loss ", loss, " vs ", loss_ref);
        for (const std::string& g : want_names)
            if (got.contains(g)) check_rel_norm(got.load<float>(g), expected.load<float>("grad." + g), 1e-3, name + " " + g);
    }
}

TEST_CASE("cli models: grad with every target -100 is loss 0 and zero gradients") {
    TempDir tmp;
    const fs::path dir = kModels / "gpt2_prefixed_buffers", st = tmp.path / "g.safetensors";
    const Run r = run_model_command(
        {"grad", "--model", dir.string(), "--tokens", "1,2,3", "--targets", "-100,-100,-100", "--out", st.string()});
    REQUIRE_MESSAGE(r.code == 0, r.err);
    const SafetensorsFile got(st);
    CHECK(got.load<float>("loss").item() == 0.0f);
    CHECK(got.size() == SafetensorsFile(kModels / dir.filename() / "grad.safetensors").size());
    for (const auto& t : got.tensors()) {
        const TensorF v = got.load<float>(t.name);
        for (index_t i = 0; i < v.numel(); ++i) REQUIRE(v.data()[i] == 0.0f);
    }
}

TEST_CASE("cli models: a parameter the loss does not reach gets an all-zero gradient") {
    // One token: wpe rows 1.. get nothing, but every entry is there with its full shape.
    TempDir tmp;
    const fs::path dir = kModels / "gpt2_plain", st = tmp.path / "g.safetensors";
    const Run r = run_model_command({"grad", "--model", dir.string(), "--tokens", "5", "--targets", "7", "--out", st.string()});
    REQUIRE_MESSAGE(r.code == 0, r.err);
    const SafetensorsFile got(st), want(dir / "grad.safetensors");
    CHECK(grad_names(got) == grad_names(want));
    const TensorF wpe = got.load<float>("wpe.weight");
    REQUIRE(wpe.size(0) > 1);
    for (index_t i = wpe.size(1); i < wpe.numel(); ++i) REQUIRE(wpe.data()[i] == 0.0f);
}

TEST_CASE("cli models: init then load gives bit-identical parameters for each architecture") {
    TempDir tmp;
    for (const std::string arch : {"gpt2", "gpt3", "palm", "t5"}) {
        CAPTURE(arch);
        const fs::path dir = tmp.path / arch;
        const Run r = run_model_command({"init", "--arch", arch, "--preset", "tiny", "--out", dir.string(), "--seed", "7"});
        REQUIRE_MESSAGE(r.code == 0, r.err);
        CHECK(fs::exists(dir / "config.json"));

        const cli::LoadedModel loaded = cli::load_model_dir(dir);
        CHECK(model_type_of(loaded.config) == arch);
        Rng rng(7);
        const cli::AnyModel fresh = cli::detail::build_model(preset_config(arch, "tiny"), rng);
        const CheckpointSchema<float> schema = cli::detail::schema_of(fresh);
        REQUIRE(schema.entries.size() == loaded.schema.entries.size());
        for (std::size_t i = 0; i < schema.entries.size(); ++i) {
            const TensorF a = schema.entries[i].variable.value().contiguous();
            const TensorF b = loaded.schema.entries[i].variable.value().contiguous();
            REQUIRE(a.shape() == b.shape());
            CHECK_MESSAGE(std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(a.numel())) == 0,
                          schema.entries[i].name);
            CHECK(loaded.match.file_names[i] == schema.entries[i].name);
        }

        // the new checkpoint runs through logits
        const bool t5 = arch == "t5";
        std::vector<std::string> argv{"logits", "--model", dir.string(), "--tokens", "0,1,2", "--out",
                                      (tmp.path / (arch + ".npy")).string()};
        if (t5) argv.insert(argv.end(), {"--decoder-tokens", "0,3"});
        const Run lr = run_model_command(argv);
        REQUIRE_MESSAGE(lr.code == 0, lr.err);
        CHECK(load_npy<float>(tmp.path / (arch + ".npy")).shape() == Shape{t5 ? 2 : 3, loaded.vocab_size()});

        // init never overwrites a model
        const Run again = run_model_command({"init", "--arch", arch, "--preset", "tiny", "--out", dir.string()});
        CHECK(again.code == 1);
        CHECK(again.err.find("already exists") != std::string::npos);
    }

    // --config: a config file of the same architecture; another architecture is refused
    const fs::path from_config = tmp.path / "from_config";
    const Run r = run_model_command({"init", "--arch", "palm", "--config", (tmp.path / "palm" / "config.json").string(),
                                     "--out", from_config.string()});
    REQUIRE_MESSAGE(r.code == 0, r.err);
    const Run mismatch = run_model_command({"init", "--arch", "gpt2", "--config", (tmp.path / "palm" / "config.json").string(),
                                            "--out", (tmp.path / "x").string()});
    CHECK(mismatch.code == 1);
    CHECK(mismatch.err.find("model_type palm") != std::string::npos);
    CHECK(run_model_command({"init", "--arch", "gpt2", "--out", (tmp.path / "y").string()}).code == 2);
    CHECK(run_model_command({"init", "--arch", "bert", "--preset", "tiny", "--out", (tmp.path / "y").string()}).code == 2);
}

TEST_CASE("cli models: error paths exit non-zero with one line naming the problem") {
    TempDir tmp;
    const std::string gpt2 = (kModels / "gpt2_plain").string(), t5 = (kModels / "t5_relu_tied").string();
    const std::string out = (tmp.path / "o.npy").string(), gout = (tmp.path / "o.safetensors").string();
    const auto expect = [](const Run& r, int code, const std::string& needle) {
        CAPTURE(r.err);
        CHECK(r.code == code);
        CHECK(r.err.find(needle) != std::string::npos);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        CHECK(r.out.empty());
    };

    expect(run_model_command({"logits", "--model", (tmp.path / "nope").string(), "--tokens", "1", "--out", out}), 1,
           "does not exist");
    fs::create_directories(tmp.path / "empty");
    expect(run_model_command({"logits", "--model", (tmp.path / "empty").string(), "--tokens", "1", "--out", out}), 1,
           "has no config.json");
    fs::create_directories(tmp.path / "bert");
    std::ofstream(tmp.path / "bert" / "config.json") << R"({"model_type": "bert"})";
    std::ofstream(tmp.path / "bert" / "model.safetensors") << "x";
    expect(run_model_command({"logits", "--model", (tmp.path / "bert").string(), "--tokens", "1", "--out", out}), 1,
           "unsupported model_type 'bert'");

    expect(run_model_command({"logits", "--model", gpt2, "--tokens", "1,40,2", "--out", out}), 1, "token id 40");
    expect(run_model_command({"logits", "--model", gpt2, "--tokens", "-1", "--out", out}), 1, "token id -1");
    expect(run_model_command({"logits", "--model", gpt2, "--tokens", "1,,2", "--out", out}), 2, "--tokens");
    expect(run_model_command({"logits", "--model", gpt2, "--tokens", "a", "--out", out}), 2, "'a' is not an integer");
    expect(run_model_command({"logits", "--model", gpt2, "--tokens", "1.5", "--out", out}), 2, "'1.5'");
    expect(run_model_command({"logits", "--model", gpt2, "--tokens", "1,2,", "--out", out}), 2, "empty entry");
    expect(run_model_command({"logits", "--model", gpt2, "--tokens", "", "--out", out}), 2, "--tokens");
    expect(run_model_command({"logits", "--model", gpt2, "--tokens", "99999999999999999999", "--out", out}), 2,
           "out of the integer range");
    std::string long_ids = "1";
    for (int i = 0; i < 16; ++i) long_ids += ",1";  // 17 tokens, n_positions 16
    expect(run_model_command({"logits", "--model", gpt2, "--tokens", long_ids, "--out", out}), 1, "context of 16");
    expect(run_model_command({"logits", "--model", gpt2, "--tokens", "1", "--decoder-tokens", "1", "--out", out}), 2,
           "--decoder-tokens");
    expect(run_model_command({"logits", "--model", t5, "--tokens", "1,2", "--out", out}), 2, "--decoder-tokens");
    expect(run_model_command({"logits", "--model", gpt2, "--tokens", "1"}), 2, "--out");

    expect(run_model_command({"grad", "--model", gpt2, "--tokens", "1,2,3", "--targets", "2,3", "--out", gout}), 2,
           "has 2 entries but '--tokens' has 3");
    expect(run_model_command({"grad", "--model", t5, "--tokens", "1,2,3", "--decoder-tokens", "0,4", "--targets", "4,5,6",
                              "--out", gout}),
           2, "has 3 entries but '--decoder-tokens' has 2");
    expect(run_model_command({"grad", "--model", gpt2, "--tokens", "1,2", "--targets", "-5,3", "--out", gout}), 1,
           "target -5");
    expect(run_model_command({"grad", "--model", gpt2, "--tokens", "1,2", "--targets", "3,40", "--out", gout}), 1,
           "target 40");
    CHECK_FALSE(fs::exists(gout));
    CHECK_FALSE(fs::exists(out));
}

}  // namespace test_cli_models
