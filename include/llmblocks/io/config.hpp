// llmblocks/io/config.hpp — reads and writes a checkpoint's config.json for
// the four architectures (GPT-2, GPT-3, PaLM, T5) with Hugging Face's key names
// (DESIGN.md, checkpoint contract 1-4 and contract details 6, 7, 9).
//
//   ModelConfig cfg = load_config("gpt2/config.json");   // dispatches on "model_type"
//   save_config("out/config.json", cfg);                  // pretty JSON, atomic write
//
// Reading keeps what changes the math and ignores the rest (dropout rates,
// initializer_range, n_ctx, bos/pad token ids, dense_act_fn, is_gated_act,
// use_cache, torch_dtype, ...). A key that would change the math in a way
// llmblocks does not implement is refused, never ignored: a GPT-2
// activation_function other than the tanh GELU, n_inner other than 4 * n_embd,
// scale_attn_weights false, scale_attn_by_inverse_layer_idx true,
// add_cross_attention true, tie_word_embeddings false; a T5 feed_forward_proj
// other than "relu" and "gated-gelu". Every failure throws llmblocks::Error
// naming the file and the key, e.g.
//   "config '/m/config.json': key 'n_embd' must be an integer, got string \"768\""
//
// Required keys. gpt2 / gpt3: vocab_size, n_positions, n_embd, n_layer, n_head
// (layer_norm_epsilon defaults to 1e-5 and activation_function to gelu_new, as
// in Hugging Face's GPT2Config); gpt3 also attention_layers and window_size.
// palm: vocab_size, hidden_size, num_hidden_layers, num_attention_heads,
// intermediate_size; the others default to num_key_value_heads =
// num_attention_heads (Hugging Face Llama), head_dim = hidden_size / heads,
// max_position_embeddings 2048, rope_theta 10000, layer_norm_epsilon 1e-6,
// norm_type "layernorm", parallel_block true, tie_word_embeddings true (PaLM).
// t5: none; every absent key takes Hugging Face T5Config's default
// (num_decoder_layers = num_layers, feed_forward_proj "relu", 32 buckets,
// max distance 128, eps 1e-6, tie_word_embeddings true, ...). A null value
// counts as absent. The loaded config passes validate().
#pragma once

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string>
#include <system_error>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmblocks/core/error.hpp"
#include "llmblocks/io/mapped_file.hpp"
#include "llmblocks/models/gpt2_config.hpp"
#include "llmblocks/models/palm_config.hpp"
#include "llmblocks/models/t5_config.hpp"

namespace llmblocks {

// One model's configuration. GPT2Config carries model_type "gpt2" or "gpt3".
using ModelConfig = std::variant<GPT2Config, PaLMConfig, T5Config>;

// The model_type values load_config accepts, in the order error messages list them.
inline const std::vector<std::string>& supported_model_types() {
    static const std::vector<std::string> types{"gpt2", "gpt3", "palm", "t5"};
    return types;
}

// "gpt2", "gpt3", "palm" or "t5".
inline std::string model_type_of(const ModelConfig& cfg) {
    if (const auto* g = std::get_if<GPT2Config>(&cfg)) return g->model_type;
    return std::holds_alternative<PaLMConfig>(cfg) ? "palm" : "t5";
}

// A preset by architecture name ("gpt2", "gpt3", "palm", "t5") and preset name.
inline ModelConfig preset_config(const std::string& arch, const std::string& preset) {
    if (arch == "gpt2") return GPT2Config::gpt2_preset(preset);
    if (arch == "gpt3") return GPT2Config::gpt3_preset(preset);
    if (arch == "palm") return PaLMConfig::preset(preset);
    if (arch == "t5") return T5Config::preset(preset);
    fail("unknown architecture '", arch, "' (expected gpt2, gpt3, palm or t5)");
}

namespace detail {

inline std::string join_model_types() {
    std::string s;
    for (const std::string& t : supported_model_types()) s += (s.empty() ? "" : ", ") + t;
    return s;
}

// Reads typed values out of one config.json object; every error names the
// file (`source`) and the key.
class ConfigReader {
public:
    using Json = nlohmann::json;

    ConfigReader(const Json& json, std::string source) : json_(json), source_(std::move(source)) {}

    const std::string& source() const { return source_; }

    [[noreturn]] void error(const std::string& message) const { fail("config '", source_, "': ", message); }

    // True if the key is present and not null.
    bool has(const char* key) const {
        const auto it = json_.find(key);
        return it != json_.end() && !it->is_null();
    }

    index_t required_int(const char* key) const {
        if (!has(key)) error(std::string("missing required key '") + key + "'" + for_type());
        return as_int(key, json_.at(key));
    }
    index_t optional_int(const char* key, index_t fallback) const {
        return has(key) ? as_int(key, json_.at(key)) : fallback;
    }
    double optional_number(const char* key, double fallback) const {
        if (!has(key)) return fallback;
        const Json& v = json_.at(key);
        if (!v.is_number()) error(type_message(key, "a number", v));
        return v.get<double>();
    }
    bool optional_bool(const char* key, bool fallback) const {
        if (!has(key)) return fallback;
        const Json& v = json_.at(key);
        if (!v.is_boolean()) error(type_message(key, "true or false", v));
        return v.get<bool>();
    }
    std::string optional_string(const char* key, const std::string& fallback) const {
        if (!has(key)) return fallback;
        const Json& v = json_.at(key);
        if (!v.is_string()) error(type_message(key, "a string", v));
        return v.get<std::string>();
    }
    // A list of strings; empty if the key is absent or null.
    std::vector<std::string> optional_string_list(const char* key) const {
        std::vector<std::string> out;
        if (!has(key)) return out;
        const Json& v = json_.at(key);
        if (!v.is_array()) error(type_message(key, "a list of strings", v));
        for (std::size_t i = 0; i < v.size(); ++i) {
            if (!v[i].is_string())
                error(type_message((std::string(key) + "[" + std::to_string(i) + "]").c_str(), "a string", v[i]));
            out.push_back(v[i].get<std::string>());
        }
        return out;
    }

    void set_model_type(std::string type) { model_type_ = std::move(type); }

private:
    index_t as_int(const char* key, const Json& v) const {
        if (v.is_number_unsigned()) {
            const auto u = v.get<std::uint64_t>();
            if (u > static_cast<std::uint64_t>(std::numeric_limits<index_t>::max()))
                error(std::string("key '") + key + "' is too large: " + v.dump());
            return static_cast<index_t>(u);
        }
        if (v.is_number_integer()) return v.get<index_t>();
        error(type_message(key, "an integer", v));
    }
    static std::string type_message(const char* key, const char* expected, const Json& v) {
        std::string shown = v.dump();
        if (shown.size() > 40) shown = shown.substr(0, 37) + "...";
        return std::string("key '") + key + "' must be " + expected + ", got " + v.type_name() + " " + shown;
    }
    std::string for_type() const { return model_type_.empty() ? "" : " (model_type " + model_type_ + ")"; }

    const Json& json_;
    std::string source_;
    std::string model_type_;
};

inline GPT2Config read_gpt2_config(const ConfigReader& r, const std::string& model_type) {
    GPT2Config c;
    c.model_type = model_type;
    c.vocab_size = r.required_int("vocab_size");
    c.n_positions = r.required_int("n_positions");
    c.n_embd = r.required_int("n_embd");
    c.n_layer = r.required_int("n_layer");
    c.n_head = r.required_int("n_head");
    c.layer_norm_epsilon = r.optional_number("layer_norm_epsilon", 1e-5);

    // GPT-2's MLP uses the tanh approximation of GELU; Hugging Face spells it
    // "gelu_new" (or "gelu_pytorch_tanh", the same function). The erf GELU
    // ("gelu") or anything else would be a different model.
    const std::string act = r.optional_string("activation_function", "gelu_new");
    if (act != "gelu_new" && act != "gelu_pytorch_tanh")
        r.error("activation_function '" + act +
                "' is not supported (llmblocks' GPT-2 MLP is the tanh GELU: 'gelu_new' or 'gelu_pytorch_tanh')");
    if (r.has("n_inner") && r.optional_int("n_inner", 0) != 4 * c.n_embd)
        r.error("n_inner " + std::to_string(r.optional_int("n_inner", 0)) +
                " is not supported (llmblocks' GPT-2 MLP is 4 * n_embd = " + std::to_string(4 * c.n_embd) +
                " wide; use null)");
    if (!r.optional_bool("scale_attn_weights", true))
        r.error("scale_attn_weights false is not supported (attention is scaled by 1/sqrt(head_dim))");
    if (r.optional_bool("scale_attn_by_inverse_layer_idx", false))
        r.error("scale_attn_by_inverse_layer_idx true is not supported");
    if (r.optional_bool("add_cross_attention", false))
        r.error("add_cross_attention true is not supported (GPT-2 is decoder-only here)");
    if (!r.optional_bool("tie_word_embeddings", true))
        r.error("tie_word_embeddings false is not supported (the GPT-2 LM head is tied to wte)");

    const std::vector<std::string> spans = r.optional_string_list("attention_layers");
    for (std::size_t i = 0; i < spans.size(); ++i) {
        if (spans[i] == "global") {
            c.attention_layers.push_back(AttentionSpan::Global);
        } else if (spans[i] == "local") {
            if (model_type == "gpt2")
                r.error("attention_layers[" + std::to_string(i) +
                        "] is 'local', but model_type gpt2 has only global layers (use model_type gpt3)");
            c.attention_layers.push_back(AttentionSpan::Local);
        } else {
            r.error("attention_layers[" + std::to_string(i) + "] must be 'global' or 'local', got '" + spans[i] + "'");
        }
    }
    if (model_type == "gpt3") {
        if (!r.has("attention_layers")) r.error("missing required key 'attention_layers' (model_type gpt3)");
        c.window_size = r.required_int("window_size");
    } else {
        c.window_size = r.optional_int("window_size", c.window_size);
    }
    return c;
}

inline PaLMConfig read_palm_config(const ConfigReader& r) {
    PaLMConfig c;
    c.vocab_size = r.required_int("vocab_size");
    c.hidden_size = r.required_int("hidden_size");
    c.num_hidden_layers = r.required_int("num_hidden_layers");
    c.num_attention_heads = r.required_int("num_attention_heads");
    c.num_key_value_heads = r.optional_int("num_key_value_heads", c.num_attention_heads);
    c.intermediate_size = r.required_int("intermediate_size");
    c.head_dim = r.optional_int("head_dim", 0);  // 0: hidden_size / num_attention_heads
    if (r.has("head_dim") && c.head_dim <= 0)
        r.error("head_dim must be positive, got " + std::to_string(c.head_dim));
    c.max_position_embeddings = r.optional_int("max_position_embeddings", 2048);
    c.rope_theta = r.optional_number("rope_theta", 10000.0);
    c.layer_norm_epsilon = r.optional_number("layer_norm_epsilon", 1e-6);
    const std::string norm = r.optional_string("norm_type", "layernorm");
    if (norm == "layernorm") {
        c.norm_type = NormType::LayerNorm;
    } else if (norm == "rmsnorm") {
        c.norm_type = NormType::RMSNorm;
    } else {
        r.error("norm_type must be 'layernorm' or 'rmsnorm', got '" + norm + "'");
    }
    c.parallel_block = r.optional_bool("parallel_block", true);
    c.tie_word_embeddings = r.optional_bool("tie_word_embeddings", true);
    return c;
}

inline T5Config read_t5_config(const ConfigReader& r) {
    T5Config c;  // its defaults are Hugging Face T5Config's
    c.vocab_size = r.optional_int("vocab_size", c.vocab_size);
    c.d_model = r.optional_int("d_model", c.d_model);
    c.d_kv = r.optional_int("d_kv", c.d_kv);
    c.d_ff = r.optional_int("d_ff", c.d_ff);
    c.num_layers = r.optional_int("num_layers", c.num_layers);
    c.num_decoder_layers = r.optional_int("num_decoder_layers", c.num_layers);
    c.num_heads = r.optional_int("num_heads", c.num_heads);
    c.relative_attention_num_buckets = r.optional_int("relative_attention_num_buckets", 32);
    c.relative_attention_max_distance = r.optional_int("relative_attention_max_distance", 128);
    c.layer_norm_epsilon = r.optional_number("layer_norm_epsilon", 1e-6);
    c.tie_word_embeddings = r.optional_bool("tie_word_embeddings", true);
    c.decoder_start_token_id = r.optional_int("decoder_start_token_id", 0);
    c.eos_token_id = r.optional_int("eos_token_id", 1);

    // Hugging Face: act_info = feed_forward_proj.split("-"); gated = act_info[0] == "gated";
    // dense_act_fn = act_info[-1], except "gated-gelu" -> "gelu_new". So "relu" is
    // wo(relu(wi x)) and "gated-gelu" is wo(gelu_tanh(wi_0 x) * wi_1 x); the other
    // spellings ("gelu" = ungated erf GELU, "gated-relu", "gated-silu", ...) are
    // different feed-forwards, which llmblocks does not implement.
    const std::string ffn = r.optional_string("feed_forward_proj", "relu");
    if (ffn == "relu") {
        c.feed_forward_proj = T5FeedForward::ReLU;
    } else if (ffn == "gated-gelu") {
        c.feed_forward_proj = T5FeedForward::GatedGELU;
    } else {
        r.error("feed_forward_proj '" + ffn + "' is not supported (expected 'relu' or 'gated-gelu')");
    }
    return c;
}

inline std::string read_config_text(const std::filesystem::path& path) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (!std::filesystem::exists(status))
        fail("config: cannot open '", path.string(), "': ", errno_text(ENOENT));
    if (std::filesystem::is_directory(status)) fail("config: cannot read '", path.string(), "': it is a directory");
    errno = 0;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        const int err = errno;
        fail("config: cannot open '", path.string(), "'", err ? ": " + errno_text(err) : std::string());
    }
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) fail("config: cannot read '", path.string(), "'");
    return text;
}

}  // namespace detail

// Parses a config.json object; `source` names it in error messages.
inline ModelConfig config_from_json(const nlohmann::json& json, const std::string& source = "config.json") {
    detail::ConfigReader r(json, source);
    if (!json.is_object()) r.error(std::string("expected a JSON object, got ") + json.type_name());
    if (!r.has("model_type"))
        r.error("missing key 'model_type' (supported: " + detail::join_model_types() + ")");
    const nlohmann::json& type_json = json.at("model_type");
    if (!type_json.is_string())
        r.error("unsupported model_type " + type_json.dump() + " (supported: " + detail::join_model_types() + ")");
    const std::string type = type_json.get<std::string>();
    r.set_model_type(type);

    ModelConfig cfg;
    if (type == "gpt2" || type == "gpt3") {
        cfg = detail::read_gpt2_config(r, type);
    } else if (type == "palm") {
        cfg = detail::read_palm_config(r);
    } else if (type == "t5") {
        cfg = detail::read_t5_config(r);
    } else {
        r.error("unsupported model_type '" + type + "' (supported: " + detail::join_model_types() + ")");
    }
    try {
        std::visit([](const auto& c) { c.validate(); }, cfg);
    } catch (const Error& e) {
        r.error(e.what());
    }
    return cfg;
}
inline ModelConfig config_from_json(const nlohmann::ordered_json& json, const std::string& source = "config.json") {
    return config_from_json(nlohmann::json::parse(json.dump()), source);
}

// Hugging Face style config.json contents of a config (validated first), keys
// in the order written here.
inline nlohmann::ordered_json config_to_json(const ModelConfig& cfg) {
    using Json = nlohmann::ordered_json;
    std::visit([](const auto& c) { c.validate(); }, cfg);
    Json j;
    if (const auto* g = std::get_if<GPT2Config>(&cfg)) {
        if (g->model_type == "gpt2") j["architectures"] = {"GPT2LMHeadModel"};
        j["model_type"] = g->model_type;
        j["vocab_size"] = g->vocab_size;
        j["n_positions"] = g->n_positions;
        j["n_ctx"] = g->n_positions;
        j["n_embd"] = g->n_embd;
        j["n_layer"] = g->n_layer;
        j["n_head"] = g->n_head;
        j["n_inner"] = nullptr;  // Hugging Face: null means 4 * n_embd
        j["activation_function"] = "gelu_new";
        j["layer_norm_epsilon"] = g->layer_norm_epsilon;
        if (g->model_type != "gpt2" || !g->attention_layers.empty()) {
            Json spans = Json::array();
            for (index_t i = 0; i < g->n_layer; ++i) spans.push_back(g->span(i) == AttentionSpan::Local ? "local" : "global");
            j["attention_layers"] = spans;
            j["window_size"] = g->window_size;
        }
        j["tie_word_embeddings"] = true;
    } else if (const auto* p = std::get_if<PaLMConfig>(&cfg)) {
        j["model_type"] = "palm";
        j["vocab_size"] = p->vocab_size;
        j["hidden_size"] = p->hidden_size;
        j["num_hidden_layers"] = p->num_hidden_layers;
        j["num_attention_heads"] = p->num_attention_heads;
        j["num_key_value_heads"] = p->num_key_value_heads;
        if (p->head_dim > 0) j["head_dim"] = p->head_dim;  // absent: hidden_size / num_attention_heads
        j["intermediate_size"] = p->intermediate_size;
        j["max_position_embeddings"] = p->max_position_embeddings;
        j["rope_theta"] = p->rope_theta;
        j["layer_norm_epsilon"] = p->layer_norm_epsilon;
        j["norm_type"] = p->norm_type == NormType::LayerNorm ? "layernorm" : "rmsnorm";
        j["parallel_block"] = p->parallel_block;
        j["tie_word_embeddings"] = p->tie_word_embeddings;
    } else {
        const T5Config& t = std::get<T5Config>(cfg);
        const bool gated = t.feed_forward_proj == T5FeedForward::GatedGELU;
        j["architectures"] = {"T5ForConditionalGeneration"};
        j["model_type"] = "t5";
        j["vocab_size"] = t.vocab_size;
        j["d_model"] = t.d_model;
        j["d_kv"] = t.d_kv;
        j["d_ff"] = t.d_ff;
        j["num_layers"] = t.num_layers;
        j["num_decoder_layers"] = t.decoder_layers();
        j["num_heads"] = t.num_heads;
        j["relative_attention_num_buckets"] = t.relative_attention_num_buckets;
        j["relative_attention_max_distance"] = t.relative_attention_max_distance;
        j["layer_norm_epsilon"] = t.layer_norm_epsilon;
        j["feed_forward_proj"] = gated ? "gated-gelu" : "relu";
        // What Hugging Face's T5Config derives from feed_forward_proj (ignored when read).
        j["dense_act_fn"] = gated ? "gelu_new" : "relu";
        j["is_gated_act"] = gated;
        j["is_encoder_decoder"] = true;
        j["tie_word_embeddings"] = t.tie_word_embeddings;
        j["decoder_start_token_id"] = t.decoder_start_token_id;
        j["eos_token_id"] = t.eos_token_id;
    }
    return j;
}

// The pretty-printed text save_config writes (2-space indent, newline at the end).
inline std::string config_to_string(const ModelConfig& cfg) {
    return config_to_json(cfg).dump(2) + "\n";
}

// Reads and validates a config.json file.
inline ModelConfig load_config(const std::filesystem::path& path) {
    const std::string text = detail::read_config_text(path);
    nlohmann::json json;
    try {
        json = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        fail("config '", path.string(), "': malformed JSON: ", e.what());
    }
    return config_from_json(json, path.string());
}

// Writes a config.json file atomically (readers see the old file or the new one).
inline void save_config(const std::filesystem::path& path, const ModelConfig& cfg) {
    const std::string text = config_to_string(cfg);
    AtomicFileWriter writer(path);
    writer.write(text.data(), text.size());
    writer.commit();
}

}  // namespace llmblocks
