// Tests for include/llmblocks/io/config.hpp: save/load round trips for every
// preset of every architecture, Hugging Face config.json files as published
// (extra keys, nulls, absent T5 keys taking T5Config's defaults), and every
// error path with its message (file and key named).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "llmblocks/analysis/counts.hpp"
#include "llmblocks/io/config.hpp"
#include "support/temp_dir.hpp"

using namespace llmblocks;
namespace fs = std::filesystem;

namespace {

using llmblocks::testing::TempDir;

void write_text(const fs::path& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
}

// The message of the Error that fn throws ("" if it throws none).
std::string error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// Loads `json_text` written to DIR/config.json; returns the error message or "".
struct ConfigFile {
    TempDir dir;
    fs::path path = dir / "config.json";
    ModelConfig load(const std::string& text) {
        write_text(path, text);
        return load_config(path);
    }
    std::string error(const std::string& text) {
        write_text(path, text);
        return error_of([&] { load_config(path); });
    }
};

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

const std::vector<std::pair<std::string, std::vector<std::string>>> kAllPresets = {
    {"gpt2", {"tiny", "124M", "355M", "774M", "1.5B"}},
    {"gpt3", {"tiny", "125M", "350M", "760M", "1.3B", "2.7B", "6.7B", "13B", "175B"}},
    {"palm", {"tiny", "8B", "62B", "540B"}},
    {"t5", {"tiny", "small", "base", "large", "3B", "11B"}},
};

// The real google/gpt2 config.json (the 124M model), as Hugging Face hosts it.
const char* kHfGpt2 = R"({
  "activation_function": "gelu_new",
  "architectures": ["GPT2LMHeadModel"],
  "attn_pdrop": 0.1,
  "bos_token_id": 50256,
  "embd_pdrop": 0.1,
  "eos_token_id": 50256,
  "initializer_range": 0.02,
  "layer_norm_epsilon": 1e-05,
  "model_type": "gpt2",
  "n_ctx": 1024,
  "n_embd": 768,
  "n_head": 12,
  "n_layer": 12,
  "n_positions": 1024,
  "resid_pdrop": 0.1,
  "summary_activation": null,
  "summary_first_dropout": 0.1,
  "summary_proj_to_labels": true,
  "summary_type": "cls_index",
  "summary_use_proj": true,
  "task_specific_params": {"text-generation": {"do_sample": true, "max_length": 50}},
  "vocab_size": 50257
})";

// google-t5/t5-small's config.json: no num_decoder_layers, no feed_forward_proj,
// no relative_attention_max_distance, no tie_word_embeddings.
const char* kHfT5Small = R"({
  "architectures": ["T5WithLMHeadModel"],
  "d_ff": 2048,
  "d_kv": 64,
  "d_model": 512,
  "decoder_start_token_id": 0,
  "dropout_rate": 0.1,
  "eos_token_id": 1,
  "initializer_factor": 1.0,
  "is_encoder_decoder": true,
  "layer_norm_epsilon": 1e-06,
  "model_type": "t5",
  "n_positions": 512,
  "num_heads": 8,
  "num_layers": 6,
  "output_past": true,
  "pad_token_id": 0,
  "relative_attention_num_buckets": 32,
  "task_specific_params": {"summarization": {"prefix": "summarize: "}},
  "vocab_size": 32128
})";

// google/t5-v1_1-small's config.json (gated GELU, untied head, 8 + 8 layers).
const char* kHfT5v11Small = R"({
  "architectures": ["T5ForConditionalGeneration"],
  "d_ff": 1024,
  "d_kv": 64,
  "d_model": 512,
  "decoder_start_token_id": 0,
  "dense_act_fn": "gelu_new",
  "dropout_rate": 0.1,
  "eos_token_id": 1,
  "feed_forward_proj": "gated-gelu",
  "initializer_factor": 1.0,
  "is_encoder_decoder": true,
  "is_gated_act": true,
  "layer_norm_epsilon": 1e-06,
  "model_type": "t5",
  "num_decoder_layers": 8,
  "num_heads": 6,
  "num_layers": 8,
  "output_past": true,
  "pad_token_id": 0,
  "relative_attention_max_distance": 128,
  "relative_attention_num_buckets": 32,
  "tie_word_embeddings": false,
  "torch_dtype": "float32",
  "transformers_version": "4.30.0",
  "use_cache": true,
  "vocab_size": 32128
})";

const char* kPalmTiny = R"({"model_type": "palm", "vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "max_position_embeddings": 64,
  "rope_theta": 500.0, "layer_norm_epsilon": 1e-5, "norm_type": "rmsnorm", "parallel_block": false,
  "tie_word_embeddings": false})";

}  // namespace

TEST_CASE("config: every preset of every architecture survives save_config + load_config") {
    TempDir dir;
    for (const auto& entry : kAllPresets) {
        const std::string& arch = entry.first;  // not a structured binding: clang 14 cannot capture those
        for (const std::string& preset : entry.second) {
            CAPTURE(arch);
            CAPTURE(preset);
            const ModelConfig cfg = preset_config(arch, preset);
            CHECK(model_type_of(cfg) == arch);
            const fs::path path = dir / (arch + "_" + preset + ".json");
            save_config(path, cfg);
            const ModelConfig back = load_config(path);
            CHECK(model_type_of(back) == arch);
            CHECK(config_to_json(back) == config_to_json(cfg));
            // Same sizes, so the same counts.
            const ModelCounts a = std::visit([](const auto& c) { return count(c); }, cfg);
            const ModelCounts b = std::visit([](const auto& c) { return count(c); }, back);
            CHECK(a.parameters == b.parameters);
            CHECK(a.forward_flops_per_token == b.forward_flops_per_token);
            CHECK(a.kv_cache_bytes_per_token == b.kv_cache_bytes_per_token);
            // A second save writes the same bytes.
            const fs::path again = dir / (arch + "_" + preset + "_again.json");
            save_config(again, back);
            std::ifstream f1(path), f2(again);
            const std::string s1((std::istreambuf_iterator<char>(f1)), {}), s2((std::istreambuf_iterator<char>(f2)), {});
            CHECK(s1 == s2);
            CHECK(s1 == config_to_string(cfg));
        }
    }
    // Atomic writes leave no temporary files behind: two files per preset.
    std::size_t presets = 0;
    for (const auto& entry : kAllPresets) presets += entry.second.size();
    CHECK(dir.count_entries() == 2 * presets);
}

TEST_CASE("config: round trips keep every field") {
    TempDir dir;
    SUBCASE("gpt3 175B: alternating dense and local layers") {
        save_config(dir / "c.json", GPT2Config::gpt3_preset("175B"));
        const auto g = std::get<GPT2Config>(load_config(dir / "c.json"));
        CHECK(g.model_type == "gpt3");
        CHECK(g.n_layer == 96);
        CHECK(g.n_embd == 12288);
        CHECK(g.n_head == 96);
        CHECK(g.n_positions == 2048);
        CHECK(g.window_size == 256);
        REQUIRE(g.attention_layers.size() == 96);
        CHECK(g.span(0) == AttentionSpan::Global);
        CHECK(g.span(1) == AttentionSpan::Local);
        CHECK(g.span(95) == AttentionSpan::Local);
    }
    SUBCASE("gpt2 with a non-default epsilon") {
        GPT2Config c = GPT2Config::gpt2_preset("tiny");
        c.layer_norm_epsilon = 1.2345678901234e-7;
        save_config(dir / "c.json", c);
        const auto g = std::get<GPT2Config>(load_config(dir / "c.json"));
        CHECK(g.model_type == "gpt2");
        CHECK(g.attention_layers.empty());
        CHECK(g.layer_norm_epsilon == c.layer_norm_epsilon);  // exact: the JSON number round-trips
    }
    SUBCASE("palm: every field") {
        PaLMConfig c = PaLMConfig::preset("tiny");
        c.num_key_value_heads = 2, c.rope_theta = 12345.5, c.layer_norm_epsilon = 3e-6;
        c.norm_type = NormType::RMSNorm, c.parallel_block = false, c.tie_word_embeddings = false;
        save_config(dir / "c.json", c);
        const auto p = std::get<PaLMConfig>(load_config(dir / "c.json"));
        CHECK(p.vocab_size == 256);
        CHECK(p.hidden_size == 64);
        CHECK(p.num_hidden_layers == 2);
        CHECK(p.num_attention_heads == 4);
        CHECK(p.num_key_value_heads == 2);
        CHECK(p.head_dim == 16);
        CHECK(p.intermediate_size == 256);
        CHECK(p.max_position_embeddings == 128);
        CHECK(p.rope_theta == 12345.5);
        CHECK(p.layer_norm_epsilon == 3e-6);
        CHECK(p.norm_type == NormType::RMSNorm);
        CHECK(!p.parallel_block);
        CHECK(!p.tie_word_embeddings);
    }
    SUBCASE("palm without head_dim keeps it derived") {
        PaLMConfig c = PaLMConfig::preset("tiny");
        c.head_dim = 0;
        save_config(dir / "c.json", c);
        std::ifstream f(dir / "c.json");
        const std::string text((std::istreambuf_iterator<char>(f)), {});
        CHECK(!contains(text, "head_dim"));
        const auto p = std::get<PaLMConfig>(load_config(dir / "c.json"));
        CHECK(p.head_dim == 0);
        CHECK(p.resolved_head_dim() == 16);
    }
    SUBCASE("t5 v1.1 style: gated GELU, untied, more decoder layers") {
        T5Config c = T5Config::preset("tiny");
        c.feed_forward_proj = T5FeedForward::GatedGELU, c.tie_word_embeddings = false, c.num_decoder_layers = 3;
        c.relative_attention_num_buckets = 8, c.relative_attention_max_distance = 20, c.d_kv = 24;
        c.decoder_start_token_id = 5, c.eos_token_id = 7, c.layer_norm_epsilon = 1e-5;
        save_config(dir / "c.json", c);
        const auto t = std::get<T5Config>(load_config(dir / "c.json"));
        CHECK(t.feed_forward_proj == T5FeedForward::GatedGELU);
        CHECK(!t.tie_word_embeddings);
        CHECK(t.num_layers == 2);
        CHECK(t.decoder_layers() == 3);
        CHECK(t.relative_attention_num_buckets == 8);
        CHECK(t.relative_attention_max_distance == 20);
        CHECK(t.d_kv == 24);
        CHECK(t.inner_dim() == 96);  // d_kv * num_heads need not equal d_model
        CHECK(t.decoder_start_token_id == 5);
        CHECK(t.eos_token_id == 7);
        CHECK(t.layer_norm_epsilon == 1e-5);
    }
}

TEST_CASE("config: the files use Hugging Face's key names") {
    const nlohmann::ordered_json g = config_to_json(GPT2Config::gpt2_preset("124M"));
    CHECK(g["model_type"] == "gpt2");
    CHECK(g["architectures"][0] == "GPT2LMHeadModel");
    CHECK(g["vocab_size"] == 50257);
    CHECK(g["n_positions"] == 1024);
    CHECK(g["n_ctx"] == 1024);
    CHECK(g["n_embd"] == 768);
    CHECK(g["n_layer"] == 12);
    CHECK(g["n_head"] == 12);
    CHECK(g["n_inner"].is_null());
    CHECK(g["activation_function"] == "gelu_new");
    CHECK(g["layer_norm_epsilon"] == 1e-5);
    CHECK(!g.contains("attention_layers"));

    const nlohmann::ordered_json g3 = config_to_json(GPT2Config::gpt3_preset("tiny"));
    CHECK(g3["model_type"] == "gpt3");
    CHECK(g3["attention_layers"] == nlohmann::ordered_json({"global", "local"}));
    CHECK(g3["window_size"] == 16);

    const nlohmann::ordered_json p = config_to_json(PaLMConfig::preset("540B"));
    for (const char* key : {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                            "num_key_value_heads", "intermediate_size", "max_position_embeddings", "rope_theta",
                            "layer_norm_epsilon", "norm_type", "parallel_block", "tie_word_embeddings", "head_dim"})
        CHECK_MESSAGE(p.contains(key), key);
    CHECK(p["head_dim"] == 256);
    CHECK(p["norm_type"] == "layernorm");

    const nlohmann::ordered_json t = config_to_json(T5Config::preset("small"));
    CHECK(t["architectures"][0] == "T5ForConditionalGeneration");
    CHECK(t["feed_forward_proj"] == "relu");
    CHECK(t["num_decoder_layers"] == 6);
    CHECK(t["is_encoder_decoder"] == true);
    CHECK(config_to_json(T5Config{T5Config::preset("tiny")})["dense_act_fn"] == "relu");
    T5Config gated = T5Config::preset("tiny");
    gated.feed_forward_proj = T5FeedForward::GatedGELU;
    CHECK(config_to_json(gated)["feed_forward_proj"] == "gated-gelu");
    CHECK(config_to_json(gated)["dense_act_fn"] == "gelu_new");
    CHECK(config_to_json(gated)["is_gated_act"] == true);

    // Pretty-printed, one key per line, newline at the end.
    const std::string text = config_to_string(GPT2Config::gpt2_preset("124M"));
    CHECK(contains(text, "\n  \"n_embd\": 768,\n"));
    CHECK(text.back() == '\n');
}

TEST_CASE("config: Hugging Face files load, extra keys ignored") {
    ConfigFile file;
    SUBCASE("gpt2 (124M) as published") {
        const auto g = std::get<GPT2Config>(file.load(kHfGpt2));
        CHECK(g.model_type == "gpt2");
        CHECK(count(g).parameters == 124439808);
        CHECK(config_to_json(g) == config_to_json(GPT2Config::gpt2_preset("124M")));
    }
    SUBCASE("gpt2: defaults, nulls and harmless keys") {
        const auto g = std::get<GPT2Config>(file.load(R"({"model_type": "gpt2", "vocab_size": 100, "n_positions": 32,
            "n_embd": 16, "n_layer": 1, "n_head": 2, "n_inner": null, "layer_norm_epsilon": null,
            "activation_function": "gelu_pytorch_tanh", "scale_attn_weights": true, "reorder_and_upcast_attn": true,
            "use_cache": false, "window_size": null, "attention_layers": null})"));
        CHECK(g.layer_norm_epsilon == 1e-5);
        CHECK(g.vocab_size == 100);
        CHECK(g.attention_layers.empty());
        // n_inner equal to 4 * n_embd is the same model
        CHECK_NOTHROW(file.load(R"({"model_type": "gpt2", "vocab_size": 100, "n_positions": 32, "n_embd": 16,
            "n_layer": 1, "n_head": 2, "n_inner": 64})"));
        // gpt2 may list attention_layers if all are global
        CHECK_NOTHROW(file.load(R"({"model_type": "gpt2", "vocab_size": 100, "n_positions": 32, "n_embd": 16,
            "n_layer": 2, "n_head": 2, "attention_layers": ["global", "global"]})"));
    }
    SUBCASE("t5-small (v1.0): absent keys take T5Config's defaults") {
        const auto t = std::get<T5Config>(file.load(kHfT5Small));
        CHECK(t.num_layers == 6);
        CHECK(t.decoder_layers() == 6);
        CHECK(t.feed_forward_proj == T5FeedForward::ReLU);
        CHECK(t.relative_attention_num_buckets == 32);
        CHECK(t.relative_attention_max_distance == 128);
        CHECK(t.layer_norm_epsilon == 1e-6);
        CHECK(t.tie_word_embeddings);
        CHECK(count(t).parameters == 60506624);
    }
    SUBCASE("t5-v1_1-small: gated-gelu, untied, dense_act_fn and is_gated_act ignored") {
        const auto t = std::get<T5Config>(file.load(kHfT5v11Small));
        CHECK(t.feed_forward_proj == T5FeedForward::GatedGELU);
        CHECK(!t.tie_word_embeddings);
        CHECK(t.num_layers == 8);
        CHECK(t.decoder_layers() == 8);
        CHECK(t.num_heads == 6);
        CHECK(t.d_ff == 1024);
        CHECK(count(t).parameters == 76961152);  // num_parameters() of T5ForConditionalGeneration
    }
    SUBCASE("t5 with only model_type is T5Config's defaults (t5-small's sizes)") {
        const auto t = std::get<T5Config>(file.load(R"({"model_type": "t5"})"));
        CHECK(config_to_json(t) == config_to_json(T5Config::preset("small")));
    }
    SUBCASE("t5: num_decoder_layers null is num_layers") {
        const auto t = std::get<T5Config>(file.load(R"({"model_type": "t5", "num_layers": 3, "num_decoder_layers": null})"));
        CHECK(t.decoder_layers() == 3);
    }
    SUBCASE("palm: all keys") {
        const auto p = std::get<PaLMConfig>(file.load(kPalmTiny));
        CHECK(p.num_key_value_heads == 2);
        CHECK(p.head_dim == 0);
        CHECK(p.resolved_head_dim() == 16);
        CHECK(p.rope_theta == 500.0);
        CHECK(p.norm_type == NormType::RMSNorm);
        CHECK(!p.parallel_block);
        CHECK(!p.tie_word_embeddings);
    }
    SUBCASE("palm: head_dim given (PaLM's 256 with 48 heads at 18432), defaults for the rest") {
        const auto p = std::get<PaLMConfig>(file.load(R"({"model_type": "palm", "vocab_size": 10, "hidden_size": 18432,
            "num_hidden_layers": 1, "num_attention_heads": 48, "head_dim": 256, "intermediate_size": 8,
            "initializer_range": 0.02})"));
        CHECK(p.resolved_head_dim() == 256);
        CHECK(p.num_key_value_heads == 48);  // absent: multi-head, as Hugging Face Llama
        CHECK(p.max_position_embeddings == 2048);
        CHECK(p.rope_theta == 10000.0);
        CHECK(p.layer_norm_epsilon == 1e-6);
        CHECK(p.norm_type == NormType::LayerNorm);
        CHECK(p.parallel_block);
        CHECK(p.tie_word_embeddings);
    }
}

TEST_CASE("config: file errors name the file") {
    TempDir dir;
    const fs::path missing = dir / "nope" / "config.json";
    std::string msg = error_of([&] { load_config(missing); });
    CHECK(contains(msg, "cannot open '" + missing.string() + "'"));
    CHECK(contains(msg, "No such file or directory"));

    msg = error_of([&] { load_config(dir.path); });
    CHECK(contains(msg, dir.path.string()));
    CHECK(contains(msg, "directory"));

    ConfigFile file;
    msg = file.error("{\"model_type\": \"gpt2\",");
    CHECK(contains(msg, "config '" + file.path.string() + "': malformed JSON"));
    msg = file.error("");
    CHECK(contains(msg, "malformed JSON"));
    msg = file.error("[1, 2]");
    CHECK(contains(msg, "expected a JSON object, got array"));
}

TEST_CASE("config: model_type errors list the supported types") {
    ConfigFile file;
    std::string msg = file.error(R"({"vocab_size": 5})");
    CHECK(contains(msg, file.path.string()));
    CHECK(contains(msg, "missing key 'model_type'"));
    CHECK(contains(msg, "gpt2, gpt3, palm, t5"));
    msg = file.error(R"({"model_type": null})");
    CHECK(contains(msg, "missing key 'model_type'"));
    msg = file.error(R"({"model_type": "llama"})");
    CHECK(contains(msg, "unsupported model_type 'llama'"));
    CHECK(contains(msg, "(supported: gpt2, gpt3, palm, t5)"));
    CHECK(contains(msg, file.path.string()));
    msg = file.error(R"({"model_type": 5})");
    CHECK(contains(msg, "unsupported model_type 5"));
}

TEST_CASE("config: missing required keys and wrong types name the key") {
    ConfigFile file;
    const std::string base = R"("vocab_size": 100, "n_positions": 32, "n_layer": 1, "n_head": 2)";
    std::string msg = file.error(R"({"model_type": "gpt2", )" + base + "}");
    CHECK(msg == "config '" + file.path.string() + "': missing required key 'n_embd' (model_type gpt2)");
    msg = file.error(R"({"model_type": "gpt2", "n_embd": null, )" + base + "}");
    CHECK(contains(msg, "missing required key 'n_embd'"));
    msg = file.error(R"({"model_type": "gpt2", "n_embd": "16", )" + base + "}");
    CHECK(msg == "config '" + file.path.string() + "': key 'n_embd' must be an integer, got string \"16\"");
    msg = file.error(R"({"model_type": "gpt2", "n_embd": 16.5, )" + base + "}");
    CHECK(contains(msg, "key 'n_embd' must be an integer, got number 16.5"));
    msg = file.error(R"({"model_type": "gpt2", "n_embd": 16.0, )" + base + "}");
    CHECK(contains(msg, "key 'n_embd' must be an integer"));
    msg = file.error(R"({"model_type": "gpt2", "n_embd": 18446744073709551615, )" + base + "}");
    CHECK(contains(msg, "key 'n_embd' is too large"));
    msg = file.error(R"({"model_type": "gpt2", "n_embd": 16, "layer_norm_epsilon": true, )" + base + "}");
    CHECK(contains(msg, "key 'layer_norm_epsilon' must be a number, got boolean true"));
    msg = file.error(R"({"model_type": "gpt2", "n_embd": 16, "activation_function": 3, )" + base + "}");
    CHECK(contains(msg, "key 'activation_function' must be a string"));
    msg = file.error(R"({"model_type": "palm", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 8, "parallel_block": "yes"})");
    CHECK(contains(msg, "key 'parallel_block' must be true or false, got string \"yes\""));
    msg = file.error(R"({"model_type": "palm", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2})");
    CHECK(contains(msg, "missing required key 'intermediate_size' (model_type palm)"));
    msg = file.error(R"({"model_type": "t5", "d_model": [512]})");
    CHECK(contains(msg, "key 'd_model' must be an integer, got array [512]"));
    msg = file.error(R"({"model_type": "t5", "tie_word_embeddings": 1})");
    CHECK(contains(msg, "key 'tie_word_embeddings' must be true or false"));
    msg = file.error(R"({"model_type": "gpt3", "attention_layers": "global", "window_size": 4, )" + base +
                     R"(, "n_embd": 16})");
    CHECK(contains(msg, "key 'attention_layers' must be a list of strings, got string"));
    msg = file.error(R"({"model_type": "gpt3", "attention_layers": [1], "window_size": 4, )" + base + R"(, "n_embd": 16})");
    CHECK(contains(msg, "key 'attention_layers[0]' must be a string, got number 1"));
}

TEST_CASE("config: what would change the math is refused, not ignored") {
    ConfigFile file;
    const std::string gpt2 = R"({"model_type": "gpt2", "vocab_size": 100, "n_positions": 32, "n_embd": 16, "n_layer": 2, "n_head": 2, )";
    std::string msg = file.error(gpt2 + R"("activation_function": "gelu"})");
    CHECK(contains(msg, "activation_function 'gelu' is not supported"));
    CHECK(contains(msg, file.path.string()));
    CHECK(contains(file.error(gpt2 + R"("activation_function": "relu"})"), "activation_function 'relu'"));
    CHECK(contains(file.error(gpt2 + R"("n_inner": 100})"), "n_inner 100 is not supported"));
    CHECK(contains(file.error(gpt2 + R"("scale_attn_weights": false})"), "scale_attn_weights false"));
    CHECK(contains(file.error(gpt2 + R"("scale_attn_by_inverse_layer_idx": true})"), "scale_attn_by_inverse_layer_idx"));
    CHECK(contains(file.error(gpt2 + R"("add_cross_attention": true})"), "add_cross_attention"));
    CHECK(contains(file.error(gpt2 + R"("tie_word_embeddings": false})"), "tie_word_embeddings false"));
    CHECK(contains(file.error(gpt2 + R"("attention_layers": ["global", "local"]})"),
                   "attention_layers[1] is 'local', but model_type gpt2"));

    const std::string gpt3 = R"({"model_type": "gpt3", "vocab_size": 100, "n_positions": 32, "n_embd": 16, "n_layer": 2, "n_head": 2, )";
    CHECK(contains(file.error(gpt3 + R"("window_size": 4})"), "missing required key 'attention_layers' (model_type gpt3)"));
    CHECK(contains(file.error(gpt3 + R"("attention_layers": ["global", "local"]})"),
                   "missing required key 'window_size' (model_type gpt3)"));
    CHECK(contains(file.error(gpt3 + R"("attention_layers": ["global", "sparse"], "window_size": 4})"),
                   "attention_layers[1] must be 'global' or 'local', got 'sparse'"));
    msg = file.error(gpt3 + R"("attention_layers": ["global", "local", "global"], "window_size": 4})");
    CHECK(contains(msg, "config '" + file.path.string() + "': gpt3 config: attention_layers has 3 entries for 2 layers"));
    CHECK(contains(file.error(gpt3 + R"("attention_layers": ["global", "local"], "window_size": 0})"),
                   "window_size must be positive"));

    const std::string t5 = R"({"model_type": "t5", )";
    for (const char* ffn : {"gelu", "gated-relu", "gated-silu", "silu", "gated-gelu-new", "GATED-GELU"}) {
        CAPTURE(ffn);
        msg = file.error(t5 + R"("feed_forward_proj": ")" + ffn + "\"}");
        CHECK(contains(msg, std::string("feed_forward_proj '") + ffn + "' is not supported (expected 'relu' or 'gated-gelu')"));
    }
    CHECK(contains(file.error(t5 + R"("num_heads": 0})"), "t5 config: sizes must be positive"));

    const std::string palm = R"({"model_type": "palm", "vocab_size": 10, "hidden_size": 64, "num_hidden_layers": 1, "intermediate_size": 8, )";
    CHECK(contains(file.error(palm + R"("num_attention_heads": 4, "norm_type": "batchnorm"})"),
                   "norm_type must be 'layernorm' or 'rmsnorm', got 'batchnorm'"));
    CHECK(contains(file.error(palm + R"("num_attention_heads": 6, "num_key_value_heads": 4, "head_dim": 8})"),
                   "num_attention_heads 6 is not a multiple of num_key_value_heads 4"));
    CHECK(contains(file.error(palm + R"("num_attention_heads": 4, "head_dim": 0})"), "head_dim must be positive"));
    CHECK(contains(file.error(palm + R"("num_attention_heads": 5})"), "is not divisible by num_attention_heads 5"));
}

TEST_CASE("config: save_config refuses invalid configs and unwritable paths, atomically") {
    TempDir dir;
    GPT2Config bad = GPT2Config::gpt2_preset("tiny");
    bad.n_head = 5;
    std::string msg = error_of([&] { save_config(dir / "config.json", bad); });
    CHECK(contains(msg, "n_embd 64 is not divisible by n_head 5"));
    CHECK(!fs::exists(dir / "config.json"));
    CHECK(dir.count_entries() == 0);

    msg = error_of([&] { save_config(dir / "missing_dir" / "config.json", T5Config::preset("tiny")); });
    CHECK(contains(msg, "cannot write '" + (dir / "missing_dir" / "config.json").string() + "'"));

    // A failed save leaves the existing file as it was.
    save_config(dir / "config.json", T5Config::preset("tiny"));
    const std::string before = config_to_string(T5Config::preset("tiny"));
    CHECK_THROWS_AS(save_config(dir / "config.json", bad), Error);
    std::ifstream f(dir / "config.json");
    CHECK(std::string((std::istreambuf_iterator<char>(f)), {}) == before);
    CHECK(dir.count_entries() == 1);

    CHECK(contains(error_of([] { preset_config("llama", "7B"); }), "unknown architecture 'llama'"));
    CHECK(contains(error_of([] { preset_config("gpt2", "7B"); }), "gpt2: unknown preset '7B'"));
}
