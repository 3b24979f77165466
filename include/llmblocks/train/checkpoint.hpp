// llmblocks/train/checkpoint.hpp — training checkpoints: everything a run
// needs to continue bit-exactly where it stopped, in one directory that is
// also an ordinary model directory (the layout llm.c and Hugging Face's
// Trainer use, with llmblocks' own state file):
//
//   config.json            the model's config (io/config.hpp)
//   model.safetensors      the weights under the Hugging Face names (io/*_checkpoint.hpp),
//                          F32; metadata {"format": "pt", "step": "<step>"}
//   optimizer.safetensors  Optimizer::state(): "<checkpoint name>.<slot>" (exp_avg, exp_avg_sq, ...),
//                          F32; metadata {"step": "<step>", "optimizer_step": "<n>"}
//   trainer_state.json     the step, every Rng's snapshot (the data sampler's,
//                          the objective's), the elapsed seconds, and the
//                          settings a resume must repeat (batch, sequence length,
//                          data size and hash, optimizer, schedule, ...)
//
// An Rng snapshot is four uint64 words and a pending normal value; JSON
// numbers are doubles in most readers, so every word is written as 16 hex
// digits and the double as the hex of its bits: they round-trip exactly.
//
// Crash safety: every file is written atomically (temporary file + fsync +
// rename, io/mapped_file.hpp's AtomicFileWriter, also used by save_safetensors
// and save_config), so no file is ever half-written. The four files together
// cannot be renamed at once; instead each records the step, the state file is
// written last, and loading refuses files whose steps disagree (a save that
// was interrupted between two files) with a message naming them.
//
// Loading checks everything before changing anything: the state file's
// fields, the optimizer tensors' names and shapes, the model tensors' names
// and shapes (load_checkpoint); a mismatch names the file, the tensor and the
// expected and actual shapes, and leaves model and optimizer untouched.
//
// Only float models: the safetensors writer stores F32, which holds a float
// exactly (a double would be rounded, and the resume would not be bit-exact).
#pragma once

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/io/checkpoint.hpp"
#include "llmblocks/io/config.hpp"
#include "llmblocks/io/mapped_file.hpp"
#include "llmblocks/io/safetensors.hpp"
#include "llmblocks/train/optimizer.hpp"

namespace llmblocks {

inline constexpr const char* kModelWeightsFile = "model.safetensors";
inline constexpr const char* kOptimizerStateFile = "optimizer.safetensors";
inline constexpr const char* kTrainerStateFile = "trainer_state.json";
inline constexpr int kTrainerStateVersion = 1;

// What a training loop keeps besides the model and the optimizer.
struct TrainerState {
    std::int64_t step = 0;                         // training steps done
    double elapsed_seconds = 0.0;                  // wall time of those steps (for logs only)
    std::map<std::string, Rng::Snapshot> rngs;     // "sampler", "objective", ...: every Rng of the run
    std::map<std::string, std::string> settings;   // what a resume must repeat, e.g. "--batch" -> "8"
};

// The optimizer's parameters are the schema's entries under their checkpoint
// names, so optimizer.safetensors names match model.safetensors
// ("h.0.attn.c_attn.weight.exp_avg"). Each parameter is made to require grad.
template <class T>
ParameterList<T> checkpoint_parameters(const CheckpointSchema<T>& schema) {
    ParameterList<T> params;
    params.reserve(schema.entries.size());
    for (const auto& e : schema.entries) {
        Variable<T> v = e.variable;
        v.set_requires_grad(true);
        params.push_back({e.name, v});
    }
    return params;
}

namespace detail {

inline std::string hex_u64(std::uint64_t x) {
    char buf[20];
    std::snprintf(buf, sizeof buf, "%016" PRIx64, x);
    return buf;
}

inline std::uint64_t parse_hex_u64(const nlohmann::json& j, const std::string& where) {
    LLMBLOCKS_CHECK(j.is_string(), where, ": expected a string of 16 hex digits, got ", j.dump());
    const std::string s = j.get<std::string>();
    LLMBLOCKS_CHECK(s.size() == 16 && s.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos, where,
                    ": expected 16 hex digits, got \"", s, "\"");
    return std::stoull(s, nullptr, 16);
}

inline nlohmann::json rng_to_json(const Rng::Snapshot& s) {
    nlohmann::json words = nlohmann::json::array();
    for (std::uint64_t w : s.words) words.push_back(hex_u64(w));
    std::uint64_t bits = 0;
    std::memcpy(&bits, &s.spare_normal, sizeof bits);
    return {{"words", words}, {"has_spare_normal", s.has_spare_normal}, {"spare_normal_bits", hex_u64(bits)}};
}

inline Rng::Snapshot rng_from_json(const nlohmann::json& j, const std::string& where) {
    LLMBLOCKS_CHECK(j.is_object() && j.contains("words") && j["words"].is_array() && j["words"].size() == 4 &&
                        j.contains("has_spare_normal") && j["has_spare_normal"].is_boolean() &&
                        j.contains("spare_normal_bits"),
                    where, ": expected {\"words\": [4 hex strings], \"has_spare_normal\": bool, \"spare_normal_bits\": hex}");
    Rng::Snapshot s;
    for (std::size_t i = 0; i < 4; ++i) s.words[i] = parse_hex_u64(j["words"][i], where + ".words[" + std::to_string(i) + "]");
    s.has_spare_normal = j["has_spare_normal"].get<bool>();
    const std::uint64_t bits = parse_hex_u64(j["spare_normal_bits"], where + ".spare_normal_bits");
    std::memcpy(&s.spare_normal, &bits, sizeof bits);
    return s;
}

// The "step" entry of a safetensors file's metadata, or a message naming the file.
inline std::int64_t metadata_step(const SafetensorsFile& file, const char* key) {
    const auto it = file.metadata().find(key);
    LLMBLOCKS_CHECK(it != file.metadata().end(), "training checkpoint: '", file.path().string(), "' has no \"", key,
                    "\" in its __metadata__ (not written by save_training_checkpoint)");
    std::int64_t v = 0;
    try {
        std::size_t used = 0;
        v = std::stoll(it->second, &used);
        LLMBLOCKS_CHECK(used == it->second.size(), "");
    } catch (const std::exception&) {
        fail("training checkpoint: '", file.path().string(), "': metadata \"", key, "\" = \"", it->second,
             "\" is not an integer");
    }
    return v;
}

}  // namespace detail

// trainer_state.json as text (what save_training_checkpoint writes).
inline std::string trainer_state_to_string(const TrainerState& state) {
    nlohmann::ordered_json j;
    j["format"] = "llmblocks trainer state";
    j["version"] = kTrainerStateVersion;
    j["step"] = state.step;
    j["elapsed_seconds"] = state.elapsed_seconds;
    nlohmann::ordered_json rngs = nlohmann::ordered_json::object();
    for (const auto& [name, snap] : state.rngs) rngs[name] = detail::rng_to_json(snap);
    j["rngs"] = rngs;
    j["settings"] = state.settings;
    return j.dump(2) + "\n";
}

// Parses and validates a trainer_state.json; errors name the file and the field.
inline TrainerState load_trainer_state(const std::filesystem::path& path) {
    const std::string name = path.string();
    std::ifstream in(path, std::ios::binary);
    LLMBLOCKS_CHECK(in.good(), "training checkpoint: cannot open '", name, "'");
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
        fail("training checkpoint: '", name, "' is not valid JSON: ", e.what());
    }
    LLMBLOCKS_CHECK(j.is_object() && j.value("format", "") == "llmblocks trainer state", "training checkpoint: '", name,
                    "' is not an llmblocks trainer state (no \"format\": \"llmblocks trainer state\")");
    LLMBLOCKS_CHECK(j.contains("version") && j["version"].is_number_integer() && j["version"].get<int>() == kTrainerStateVersion,
                    "training checkpoint: '", name, "': unsupported version ", j.contains("version") ? j["version"].dump() : "(none)",
                    " (this build reads version ", kTrainerStateVersion, ")");
    LLMBLOCKS_CHECK(j.contains("step") && j["step"].is_number_integer() && j["step"].get<std::int64_t>() >= 0,
                    "training checkpoint: '", name, "': \"step\" must be a non-negative integer");
    TrainerState s;
    s.step = j["step"].get<std::int64_t>();
    if (j.contains("elapsed_seconds") && j["elapsed_seconds"].is_number()) s.elapsed_seconds = j["elapsed_seconds"].get<double>();
    LLMBLOCKS_CHECK(j.contains("rngs") && j["rngs"].is_object(), "training checkpoint: '", name,
                    "': \"rngs\" must be an object");
    for (const auto& [key, value] : j["rngs"].items())
        s.rngs[key] = detail::rng_from_json(value, "training checkpoint: '" + name + "': rngs." + key);
    LLMBLOCKS_CHECK(j.contains("settings") && j["settings"].is_object(), "training checkpoint: '", name,
                    "': \"settings\" must be an object");
    for (const auto& [key, value] : j["settings"].items()) {
        LLMBLOCKS_CHECK(value.is_string(), "training checkpoint: '", name, "': settings.", key, " must be a string");
        s.settings[key] = value.get<std::string>();
    }
    return s;
}

// The settings of `now` that differ from the checkpoint's, as one message
// ("--batch 4 (checkpoint: 8); --seq 32 (checkpoint: 16)"); empty when they agree.
// A key missing on one side counts as a difference.
inline std::string settings_difference(const std::map<std::string, std::string>& saved,
                                       const std::map<std::string, std::string>& now) {
    std::string msg;
    auto add = [&msg](const std::string& key, const std::string& mine, const std::string& theirs) {
        msg += (msg.empty() ? "" : "; ") + key + " " + mine + " (checkpoint: " + theirs + ")";
    };
    for (const auto& [key, value] : now) {
        const auto it = saved.find(key);
        if (it == saved.end()) add(key, value, "not set");
        else if (it->second != value) add(key, value, it->second);
    }
    for (const auto& [key, value] : saved)
        if (!now.count(key)) add(key, "not set", value);
    return msg;
}

// Writes a training checkpoint into `dir` (created if needed): config.json,
// model.safetensors, optimizer.safetensors, then trainer_state.json, each
// atomically. `schema` binds the model's parameters to their checkpoint names.
template <class T>
void save_training_checkpoint(const std::filesystem::path& dir, const ModelConfig& config,
                              const CheckpointSchema<T>& schema, const Optimizer<T>& optimizer,
                              const TrainerState& state) {
    static_assert(std::is_same_v<T, float>, "save_training_checkpoint: float models only (F32 files keep floats exactly)");
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    LLMBLOCKS_CHECK(!ec, "training checkpoint: cannot create directory '", dir.string(), "': ", ec.message());
    const std::string step = std::to_string(state.step);

    const OptimizerState<T> opt = optimizer.state();
    std::vector<std::pair<std::string, TensorF>> tensors;
    tensors.reserve(opt.tensors.size());
    for (const auto& t : opt.tensors) tensors.emplace_back(t.name, t.tensor);
    // The optimizer first, the state file last: a crash in between leaves steps that disagree.
    save_safetensors(dir / kOptimizerStateFile, tensors, {{"step", step}, {"optimizer_step", std::to_string(opt.step)}});
    save_checkpoint(dir / kModelWeightsFile, schema, "", {{"format", "pt"}, {"step", step}});
    save_config(dir / "config.json", config);
    const std::string text = trainer_state_to_string(state);
    AtomicFileWriter writer(dir / kTrainerStateFile);
    writer.write(text.data(), text.size());
    writer.commit();
}

// Whether `dir` holds a training checkpoint (its trainer_state.json exists).
inline bool has_training_checkpoint(const std::filesystem::path& dir) {
    std::error_code ec;
    return std::filesystem::exists(dir / kTrainerStateFile, ec);
}

// Loads a checkpoint written by save_training_checkpoint into a model (bound
// by `schema`, built from the same config) and an optimizer of the same kind
// over checkpoint_parameters(schema); returns the trainer state. Nothing is
// changed unless every file matches.
template <class T>
TrainerState load_training_checkpoint(const std::filesystem::path& dir, const CheckpointSchema<T>& schema,
                                      Optimizer<T>& optimizer) {
    static_assert(std::is_same_v<T, float>, "load_training_checkpoint: float models only");
    std::error_code ec;
    for (const char* name : {kTrainerStateFile, kOptimizerStateFile, kModelWeightsFile})
        LLMBLOCKS_CHECK(std::filesystem::exists(dir / name, ec), "training checkpoint: '", (dir / name).string(),
                        "' is missing");
    const TrainerState state = load_trainer_state(dir / kTrainerStateFile);

    const std::filesystem::path opt_path = dir / kOptimizerStateFile;
    OptimizerState<T> opt;
    {
        const SafetensorsFile file(opt_path);
        const std::int64_t step = detail::metadata_step(file, "step");
        LLMBLOCKS_CHECK(step == state.step, "training checkpoint: '", opt_path.string(), "' is from step ", step, " but '",
                        (dir / kTrainerStateFile).string(), "' from step ", state.step,
                        " (a save was interrupted; the checkpoint is inconsistent)");
        opt.step = detail::metadata_step(file, "optimizer_step");
        for (const auto& t : file.tensors()) opt.tensors.push_back({t.name, file.load<T>(t.name)});
    }
    {
        const SafetensorsFile file(dir / kModelWeightsFile);
        const std::int64_t step = detail::metadata_step(file, "step");
        LLMBLOCKS_CHECK(step == state.step, "training checkpoint: '", (dir / kModelWeightsFile).string(),
                        "' is from step ", step, " but '", (dir / kTrainerStateFile).string(), "' from step ", state.step,
                        " (a save was interrupted; the checkpoint is inconsistent)");
    }

    const OptimizerState<T> before = optimizer.state();
    try {
        optimizer.load_state(opt);  // checks names and shapes first; changes nothing on a mismatch
    } catch (const Error& e) {
        fail("training checkpoint: '", opt_path.string(), "': ", e.what());
    }
    try {
        load_checkpoint(dir / kModelWeightsFile, schema);  // checks the whole file first
    } catch (...) {
        optimizer.load_state(before);
        throw;
    }
    return state;
}

}  // namespace llmblocks
