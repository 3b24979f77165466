// examples/cli/model_commands.hpp — the `llmblocks` subcommands that build or
// run a model from a checkpoint directory (DIR/config.json + DIR/model.safetensors,
// the Hugging Face layout; DESIGN.md, "Command-line program `llmblocks`",
// checkpoint contract 1-4 and contract details 1-10):
//
//   llmblocks init   --arch gpt2|gpt3|palm|t5 (--preset NAME | --config FILE) --out DIR [--seed N]
//   llmblocks logits --model DIR --tokens 1,2,3 [--decoder-tokens 0,4,5] --out FILE.npy
//   llmblocks grad   --model DIR --tokens ... --targets ... [--decoder-tokens ...] --out FILE.safetensors
//
// `logits` writes float32 logits (T, vocab), C order, .npy v1.0, for one
// sequence (batch 1); for T5, --tokens are the encoder ids, --decoder-tokens
// the decoder ids (used as given: no shift, no start token) and T is the
// decoder length. `grad` writes `loss` (0-dim F32: the mean cross-entropy over
// rows whose target is not -100, targets aligned with the logits rows, no
// shift) and the gradient of every parameter under the name it has in
// DIR/model.safetensors (with the file's `transformer.` prefix if it has one;
// GPT-2's mask buffers and copies of a tied weight get no entry; a tied
// embedding has one gradient summing both uses; a parameter the loss does not
// reach gets zeros). When every target is -100 the loss is 0 and every
// gradient is zero (PyTorch would give NaN). The models have no dropout.
//
// Errors follow cli.hpp: a malformed command line (a missing or malformed id
// list, --targets of the wrong length, --decoder-tokens missing for T5 or given
// for a decoder-only model) is a UsageError (exit 2); what depends on the files
// (a missing directory or file, a bad config, a token id outside the
// vocabulary, a sequence longer than the context) is an llmblocks::Error
// (exit 1). Every message names the option or file and the value.
//
// cli.hpp lists these rows through model_subcommands<Subcommand>() (a template
// because Subcommand is defined there).
#pragma once

#include <charconv>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <unistd.h>

#include "cli/args.hpp"
#include "cli/io.hpp"
#include "llmblocks/analysis/counts.hpp"
#include "llmblocks/core/error.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/core/tensor.hpp"
#include "llmblocks/io/checkpoint.hpp"
#include "llmblocks/io/config.hpp"
#include "llmblocks/io/gpt2_checkpoint.hpp"
#include "llmblocks/io/npy.hpp"
#include "llmblocks/io/palm_checkpoint.hpp"
#include "llmblocks/io/safetensors.hpp"
#include "llmblocks/io/t5_checkpoint.hpp"
#include "llmblocks/models/gpt2.hpp"
#include "llmblocks/models/palm.hpp"
#include "llmblocks/models/t5.hpp"
#include "llmblocks/ops/loss.hpp"

namespace llmblocks::cli {

// One of the three model types, in float32.
using AnyModel = std::variant<GPT2Model<float>, PaLMModel<float>, T5Model<float>>;

// A model built from a config and, for a checkpoint directory, loaded from its weights.
struct LoadedModel {
    ModelConfig config;
    AnyModel model;
    CheckpointSchema<float> schema;  // every parameter under its checkpoint name
    CheckpointMatch match;           // the names model.safetensors uses (file_names[i] for schema.entries[i])

    bool is_t5() const { return std::holds_alternative<T5Model<float>>(model); }
    index_t vocab_size() const {
        return std::visit([](const auto& c) -> index_t { return c.vocab_size; }, config);
    }
    // The longest sequence the model takes (0: no limit, T5's relative positions).
    index_t context() const {
        if (const auto* g = std::get_if<GPT2Config>(&config)) return g->n_positions;
        if (const auto* p = std::get_if<PaLMConfig>(&config)) return p->max_position_embeddings;
        return 0;
    }
};

namespace detail {

// The model of `cfg` with its own initialisation drawn from `rng`.
inline AnyModel build_model(const ModelConfig& cfg, Rng& rng) {
    if (const auto* g = std::get_if<GPT2Config>(&cfg)) return AnyModel(std::in_place_type<GPT2Model<float>>, *g, rng);
    if (const auto* p = std::get_if<PaLMConfig>(&cfg)) return AnyModel(std::in_place_type<PaLMModel<float>>, *p, rng);
    return AnyModel(std::in_place_type<T5Model<float>>, std::get<T5Config>(cfg), rng);
}

inline CheckpointSchema<float> schema_of(const AnyModel& model) {
    return std::visit([](const auto& m) { return checkpoint_schema(m); }, model);
}

// "1,2,3" -> {1, 2, 3}. Each entry is a base-10 integer with an optional '-';
// an empty list, an empty entry ("1,,2"), anything else ("a", "1.5", " 1") or
// a value outside int64 is a UsageError naming the option and the value.
inline std::vector<std::int64_t> parse_id_list(const std::string& option, const std::string& text) {
    const auto shown = [](std::string_view s) {
        return s.size() > 40 ? std::string(s.substr(0, 37)) + "..." : std::string(s);
    };
    if (text.empty()) throw UsageError("option '" + option + "' needs a comma-separated list of ids, got ''");
    std::vector<std::int64_t> ids;
    std::size_t begin = 0;
    while (true) {
        const std::size_t comma = text.find(',', begin);
        const std::size_t end = comma == std::string::npos ? text.size() : comma;
        const std::string_view word(text.data() + begin, end - begin);
        std::int64_t v = 0;
        const auto [ptr, ec] = std::from_chars(word.data(), word.data() + word.size(), v);
        if (word.empty())
            throw UsageError("option '" + option + "': empty entry " + std::to_string(ids.size()) + " in '" +
                             shown(text) + "' (expected ids like 1,2,3)");
        if (ec == std::errc::result_out_of_range)
            throw UsageError("option '" + option + "': '" + shown(word) + "' is out of the integer range");
        if (ec != std::errc() || ptr != word.data() + word.size())
            throw UsageError("option '" + option + "': '" + shown(word) + "' is not an integer (in '" + shown(text) +
                             "')");
        ids.push_back(v);
        if (comma == std::string::npos) break;
        begin = comma + 1;
    }
    return ids;
}

// Token ids of `option`, each in [0, vocab); the sequence no longer than `context` (0: no limit).
inline TensorI parse_tokens(const Args& args, const std::string& option, index_t vocab, index_t context) {
    const std::vector<std::int64_t> ids = parse_id_list(option, args.get(option));
    for (std::size_t i = 0; i < ids.size(); ++i)
        if (ids[i] < 0 || ids[i] >= vocab)
            fail("option '", option, "': token id ", ids[i], " (entry ", i, ") is out of range [0, ", vocab,
                 ") for this model's vocabulary");
    const index_t n = static_cast<index_t>(ids.size());
    if (context > 0 && n > context)
        fail("option '", option, "': ", n, " tokens exceed the model's context of ", context, " positions");
    TensorI t = TensorI::empty({1, n});
    for (index_t i = 0; i < n; ++i) t.data()[i] = static_cast<std::int32_t>(ids[static_cast<std::size_t>(i)]);
    return t;
}

// Targets: one per logits row (`rows` of them), each in [0, vocab) or -100 (ignored).
inline TensorI parse_targets(const Args& args, index_t rows, const std::string& rows_from, index_t vocab) {
    const std::vector<std::int64_t> ids = parse_id_list("--targets", args.get("--targets"));
    const index_t n = static_cast<index_t>(ids.size());
    if (n != rows)
        throw UsageError("option '--targets' has " + std::to_string(n) + " entries but " + rows_from + " has " +
                         std::to_string(rows) + " (one target per logits row, no shift)");
    for (std::size_t i = 0; i < ids.size(); ++i)
        if (ids[i] != -100 && (ids[i] < 0 || ids[i] >= vocab))
            fail("option '--targets': target ", ids[i], " (entry ", i, ") is out of range [0, ", vocab,
                 ") and is not -100 (ignored)");
    TensorI t = TensorI::empty({1, n});
    for (index_t i = 0; i < n; ++i) t.data()[i] = static_cast<std::int32_t>(ids[static_cast<std::size_t>(i)]);
    return t;
}

// The model's inputs from --tokens / --decoder-tokens: encoder ids (T5 only) and the ids whose rows become logits.
struct ModelInputs {
    TensorI tokens;          // (1, T): decoder-only input, or the T5 encoder input
    TensorI decoder_tokens;  // (1, Td): T5 only
    index_t rows = 0;        // logits rows: T, or Td for T5
    std::string rows_from;   // the option that sets the rows
};

inline ModelInputs parse_inputs(const Args& args, const LoadedModel& m) {
    ModelInputs in;
    const index_t V = m.vocab_size();
    if (m.is_t5()) {
        if (!args.has("--decoder-tokens"))
            throw UsageError("a t5 model needs '--decoder-tokens IDS' (the decoder input; --tokens is the encoder input)");
        in.tokens = parse_tokens(args, "--tokens", V, 0);
        in.decoder_tokens = parse_tokens(args, "--decoder-tokens", V, 0);
        in.rows = in.decoder_tokens.size(1);
        in.rows_from = "'--decoder-tokens'";
    } else {
        if (args.has("--decoder-tokens"))
            throw UsageError("option '--decoder-tokens' is for t5 models; this model is " + model_type_of(m.config) +
                             " (decoder-only: give --tokens only)");
        in.tokens = parse_tokens(args, "--tokens", V, m.context());
        in.rows = in.tokens.size(1);
        in.rows_from = "'--tokens'";
    }
    return in;
}

// Logits (1, T, V) of the inputs; records the graph when gradients are enabled.
inline Variable<float> forward(const LoadedModel& m, const ModelInputs& in) {
    return std::visit(
        [&](const auto& model) -> Variable<float> {
            if constexpr (std::is_same_v<std::decay_t<decltype(model)>, T5Model<float>>)
                return model.forward(in.tokens, in.decoder_tokens);
            else
                return model.forward(in.tokens);
        },
        m.model);
}

// The usable memory of this machine in bytes (0 if unknown).
inline double physical_memory_bytes() {
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long page_size = ::sysconf(_SC_PAGESIZE);
    return pages > 0 && page_size > 0 ? static_cast<double>(pages) * static_cast<double>(page_size) : 0.0;
}

}  // namespace detail

// Loads DIR/config.json and DIR/model.safetensors (float32; F16/BF16 converted).
// Throws llmblocks::Error naming the directory or file on any problem.
inline LoadedModel load_model_dir(const std::filesystem::path& dir) {
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec)) fail("model directory '", dir.string(), "' does not exist");
    if (!std::filesystem::is_directory(dir, ec))
        fail("model directory '", dir.string(), "' is not a directory (expected DIR with config.json and model.safetensors)");
    const std::filesystem::path config_path = dir / "config.json";
    if (!std::filesystem::exists(config_path, ec)) fail("model directory '", dir.string(), "' has no config.json");
    const std::filesystem::path weights = dir / "model.safetensors";
    if (!std::filesystem::exists(weights, ec)) fail("model directory '", dir.string(), "' has no model.safetensors");

    LoadedModel m;
    m.config = load_config(config_path);
    Rng rng(0);  // the initial values are overwritten by the checkpoint's
    m.model = detail::build_model(m.config, rng);
    m.schema = detail::schema_of(m.model);
    m.match = load_checkpoint(weights, m.schema);
    return m;
}

inline int run_init(const Args& args, Io& io) {
    const std::string arch = args.get("--arch");
    if (args.has("--preset") == args.has("--config"))
        throw UsageError("give exactly one of '--preset NAME' and '--config FILE'");
    const std::filesystem::path dir = args.get("--out");
    if (dir.empty()) throw UsageError("option '--out' needs a directory, got ''");
    const std::int64_t seed = args.get_int("--seed", 0);
    if (seed < 0) throw UsageError("option '--seed' needs a non-negative integer, got '" + args.get("--seed") + "'");
    bool known_arch = false;
    for (const std::string& a : supported_model_types()) known_arch = known_arch || a == arch;
    if (!known_arch) throw UsageError("option '--arch': unknown architecture '" + arch + "' (expected gpt2, gpt3, palm or t5)");

    ModelConfig cfg;
    if (args.has("--preset")) {
        cfg = preset_config(arch, args.get("--preset"));
    } else {
        cfg = load_config(args.get("--config"));
        if (model_type_of(cfg) != arch)
            fail("'", args.get("--config"), "' has model_type ", model_type_of(cfg), ", not --arch ", arch);
    }

    std::error_code ec;
    const std::filesystem::path weights = dir / "model.safetensors", config_path = dir / "config.json";
    if (std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec))
        fail("'", dir.string(), "' exists and is not a directory");
    if (std::filesystem::exists(weights, ec))
        fail("'", weights.string(), "' already exists; refusing to overwrite it (choose another --out or remove it)");
    if (std::filesystem::exists(config_path, ec))
        fail("'", config_path.string(), "' already exists; refusing to overwrite it (choose another --out or remove it)");

    // A preset like gpt3 175B does not fit: say so instead of exhausting memory.
    const std::int64_t n_params = std::visit([](const auto& c) { return count(c).parameters; }, cfg);
    const double bytes = 4.0 * static_cast<double>(n_params), memory = detail::physical_memory_bytes();
    if (memory > 0 && bytes > memory)
        fail("the model has ", n_params, " parameters (", bytes / 1e9, " GB in float32), more than this machine's ",
             memory / 1e9, " GB of memory");

    Rng rng(static_cast<std::uint64_t>(seed));
    const AnyModel model = detail::build_model(cfg, rng);
    std::filesystem::create_directories(dir, ec);
    if (ec) fail("cannot create directory '", dir.string(), "': ", ec.message());
    save_config(config_path, cfg);
    save_checkpoint(weights, detail::schema_of(model), "", {{"format", "pt"}});
    io.out << "wrote " << config_path.string() << " and " << weights.string() << " (" << model_type_of(cfg) << ", "
           << n_params << " parameters, seed " << seed << ")\n";
    return 0;
}

inline int run_logits(const Args& args, Io& io) {
    (void)io;  // the result goes to --out
    const std::filesystem::path out = args.get("--out");
    const LoadedModel m = load_model_dir(args.get("--model"));
    const detail::ModelInputs in = detail::parse_inputs(args, m);
    auto guard = no_grad();
    const Variable<float> logits = detail::forward(m, in);  // (1, T, V)
    save_npy<float>(out, logits.value().select(0, 0));      // (T, V)
    return 0;
}

inline int run_grad(const Args& args, Io& io) {
    (void)io;  // the result goes to --out
    const std::filesystem::path out = args.get("--out");
    const LoadedModel m = load_model_dir(args.get("--model"));
    const detail::ModelInputs in = detail::parse_inputs(args, m);
    const TensorI targets = detail::parse_targets(args, in.rows, in.rows_from, m.vocab_size());

    for (const auto& e : m.schema.entries) {
        CheckpointEntry<float> entry = e;
        entry.variable.set_requires_grad(true);
        entry.variable.clear_grad();
    }
    Variable<float> loss = cross_entropy(detail::forward(m, in), targets);  // mean over rows with target != -100
    loss.backward();

    std::vector<std::pair<std::string, TensorF>> tensors;
    tensors.reserve(m.schema.entries.size() + 1);
    TensorF loss_value = TensorF::empty({});
    loss_value.data()[0] = loss.item();
    tensors.emplace_back("loss", loss_value);
    for (std::size_t i = 0; i < m.schema.entries.size(); ++i) {
        const Variable<float>& v = m.schema.entries[i].variable;
        // A parameter the loss does not reach has no gradient buffer: write zeros.
        tensors.emplace_back(m.match.file_names[i], v.grad().defined() ? v.grad() : TensorF::zeros(v.shape()));
    }
    save_safetensors(out, tensors, {{"format", "pt"}});
    return 0;
}

// The rows of cli.hpp's subcommand table for init, logits and grad.
template <class Subcommand>
std::vector<Subcommand> model_subcommands() {
    return {
        {"init", "--arch gpt2|gpt3|palm|t5 (--preset NAME | --config FILE) --out DIR [--seed N]",
         "a freshly initialised model: DIR/config.json + DIR/model.safetensors",
         {{"--arch", "ARCH", "gpt2, gpt3, palm or t5"},
          {"--preset", "NAME", "a preset of --arch, e.g. tiny, 124M (gpt2), 8B (palm), small (t5)"},
          {"--config", "FILE", "a config.json whose model_type is --arch"},
          {"--out", "DIR", "the checkpoint directory to create (an existing model is never overwritten)"},
          {"--seed", "N", "random seed of the initialisation (default 0)"}},
         run_init},
        {"logits", "--model DIR --tokens IDS [--decoder-tokens IDS] --out FILE.npy",
         "float32 logits (T, vocab) of one sequence as .npy (T5: T = decoder length)",
         {{"--model", "DIR", "checkpoint directory: DIR/config.json and DIR/model.safetensors"},
          {"--tokens", "IDS", "comma-separated token ids, e.g. 1,2,3 (T5: the encoder input)"},
          {"--decoder-tokens", "IDS", "T5 only, required: the decoder input, used as given (no shift)"},
          {"--out", "FILE", "the .npy file to write"}},
         run_logits},
        {"grad", "--model DIR --tokens IDS --targets IDS [--decoder-tokens IDS] --out FILE.safetensors",
         "loss (mean cross-entropy, targets -100 ignored) and the gradient of every parameter",
         {{"--model", "DIR", "checkpoint directory: DIR/config.json and DIR/model.safetensors"},
          {"--tokens", "IDS", "comma-separated token ids (T5: the encoder input)"},
          {"--targets", "IDS", "one target per logits row (no shift); -100 = ignored, e.g. -100,7,3"},
          {"--decoder-tokens", "IDS", "T5 only, required: the decoder input, used as given (no shift)"},
          {"--out", "FILE", "the .safetensors file to write: 'loss' and one gradient per parameter"}},
         run_grad},
    };
}

}  // namespace llmblocks::cli
