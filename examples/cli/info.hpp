// examples/cli/info.hpp — `llmblocks info`: a one-screen summary of a model:
// its architecture, config, parameter count, FLOPs per token and KV-cache
// bytes (from analysis/counts.hpp), and, for a checkpoint directory, what
// model.safetensors holds.
//
//   llmblocks info --model DIR                  DIR/config.json (+ DIR/model.safetensors if present)
//   llmblocks info --config FILE                a config.json anywhere
//   llmblocks info --arch gpt2 --preset 124M    a preset, no files
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <variant>

#include "cli/args.hpp"
#include "cli/format.hpp"
#include "cli/io.hpp"
#include "llmblocks/analysis/counts.hpp"
#include "llmblocks/io/config.hpp"
#include "llmblocks/io/safetensors.hpp"

namespace llmblocks::cli {

namespace detail {

inline std::string heads_kind(index_t heads, index_t kv_heads) {
    if (kv_heads == heads) return "multi-head";
    if (kv_heads == 1) return "multi-query";
    return "grouped-query, " + std::to_string(heads / kv_heads) + " query heads per KV head";
}

inline std::string eps_str(double eps) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", eps);
    return buf;
}

// Architecture rows; returns the context the counts use.
inline index_t describe(Table& t, const GPT2Config& c, index_t context) {
    const bool gpt3 = c.model_type == "gpt3";
    t.row("architecture", gpt3 ? "gpt3 (GPT-3, Brown et al. 2020: GPT-2 with dense and locally banded layers)"
                               : "gpt2 (GPT-2, Radford et al. 2019)");
    t.row("layers", std::to_string(c.n_layer));
    t.row("width (d_model)", with_commas(c.n_embd));
    t.row("heads", std::to_string(c.n_head) + " query, " + std::to_string(c.n_head) + " key/value (multi-head), head dim " +
                       std::to_string(c.head_dim()));
    t.row("feed-forward", with_commas(c.n_inner()) + " wide, GELU (tanh) MLP, with biases");
    t.row("norm", "LayerNorm with bias (eps " + eps_str(c.layer_norm_epsilon) + "), pre-norm, final ln_f");
    t.row("positions", "learned absolute embeddings (" + with_commas(c.n_positions) + ")");
    t.row("block", "serial: h = x + attn(ln_1(x)); y = h + mlp(ln_2(h))");
    index_t local = 0;
    for (index_t i = 0; i < c.n_layer; ++i) local += c.span(i) == AttentionSpan::Local ? 1 : 0;
    t.row("attention", local == 0 ? "dense causal in every layer"
                                  : std::to_string(c.n_layer - local) + " dense causal + " + std::to_string(local) +
                                        " local causal layers (window " + with_commas(c.window_size) + ")");
    t.row("embeddings", "LM head tied to the token embedding");
    const index_t T = context > 0 ? context : c.n_positions;
    t.row("context", with_commas(c.n_positions) + " tokens");
    t.row("vocabulary", with_commas(c.vocab_size));
    return T;
}

inline index_t describe(Table& t, const PaLMConfig& c, index_t context) {
    t.row("architecture", "palm (PaLM, Chowdhery et al. 2022)");
    t.row("layers", std::to_string(c.num_hidden_layers));
    t.row("width (d_model)", with_commas(c.hidden_size));
    t.row("heads", std::to_string(c.num_attention_heads) + " query, " + std::to_string(c.num_key_value_heads) +
                       " key/value (" + heads_kind(c.num_attention_heads, c.num_key_value_heads) + "), head dim " +
                       std::to_string(c.resolved_head_dim()));
    t.row("feed-forward", with_commas(c.intermediate_size) + " wide, SwiGLU: down(silu(gate(x)) * up(x)), no biases");
    t.row("norm", std::string(c.norm_type == NormType::LayerNorm ? "LayerNorm without bias" : "RMSNorm") + " (eps " +
                      eps_str(c.layer_norm_epsilon) + "), pre-norm, final norm");
    t.row("positions", "RoPE (rotate-half, theta " + eps_str(c.rope_theta) + ")");
    t.row("block", c.parallel_block ? "parallel: y = x + attn(norm(x)) + mlp(norm(x))"
                                    : "serial: h = x + attn(n1(x)); y = h + mlp(n2(h))");
    t.row("attention", "dense causal in every layer");
    t.row("embeddings", c.tie_word_embeddings ? "LM head tied to the token embedding" : "separate LM head");
    const index_t T = context > 0 ? context : c.max_position_embeddings;
    t.row("context", with_commas(c.max_position_embeddings) + " tokens");
    t.row("vocabulary", with_commas(c.vocab_size));
    return T;
}

inline index_t describe(Table& t, const T5Config& c, index_t context) {
    t.row("architecture", "t5 (T5, Raffel et al. 2020: encoder-decoder)");
    t.row("layers", std::to_string(c.num_layers) + " encoder + " + std::to_string(c.decoder_layers()) + " decoder");
    t.row("width (d_model)", with_commas(c.d_model));
    t.row("heads", std::to_string(c.num_heads) + " query, " + std::to_string(c.num_heads) +
                       " key/value (multi-head), head dim " + std::to_string(c.d_kv) + " (inner " +
                       with_commas(c.inner_dim()) + ")");
    t.row("feed-forward", with_commas(c.d_ff) + " wide, " +
                              (c.feed_forward_proj == T5FeedForward::ReLU ? "ReLU (relu)" : "gated GELU (gated-gelu)") +
                              ", no biases");
    t.row("norm", "RMSNorm (eps " + eps_str(c.layer_norm_epsilon) + "), pre-norm, final norm per stack");
    t.row("positions", "relative position buckets (" + std::to_string(c.relative_attention_num_buckets) +
                           " buckets, max distance " + std::to_string(c.relative_attention_max_distance) +
                           "), one table per stack");
    t.row("block", "serial: self-attention, (decoder: cross-attention), feed-forward");
    t.row("attention", "encoder bidirectional, decoder causal + cross; no 1/sqrt(d) scaling");
    t.row("embeddings", c.tie_word_embeddings ? "LM head tied to the token embedding (scaled by d_model^-0.5)"
                                              : "separate LM head");
    const index_t T = context > 0 ? context : 512;
    t.row("context", "no fixed limit (relative positions); counts use " + with_commas(T) +
                         (context > 0 ? "" : " (T5's pre-training input length)"));
    t.row("vocabulary", with_commas(c.vocab_size));
    return T;
}

// Tensors a checkpoint may hold that are not parameters: buffers and copies of
// a tied weight. The same rules as the `ignorable` names of the checkpoint
// schemas (io/gpt2_checkpoint.hpp, io/palm_checkpoint.hpp, io/t5_checkpoint.hpp),
// which need a built model; `info` works from the config alone (a 175B model
// is never instantiated), so it restates them here.
inline bool is_non_parameter(const ModelConfig& cfg, std::string name) {
    const auto ends_with = [&](const std::string& suffix) {
        return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (std::holds_alternative<GPT2Config>(cfg)) {
        // GPT-2: the attention-mask buffers and a copy of the tied head; names may carry "transformer."
        if (name.rfind("transformer.", 0) == 0) name = name.substr(12);
        return name == "lm_head.weight" ||
               (name.rfind("h.", 0) == 0 && (ends_with(".attn.bias") || ends_with(".attn.masked_bias")));
    }
    if (const auto* p = std::get_if<PaLMConfig>(&cfg))
        return (p->tie_word_embeddings && name == "lm_head.weight") || ends_with(".self_attn.rotary_emb.inv_freq");
    const bool tied = std::get<T5Config>(cfg).tie_word_embeddings;
    return name == "encoder.embed_tokens.weight" || name == "decoder.embed_tokens.weight" ||
           (tied && name == "lm_head.weight");
}

}  // namespace detail

inline int run_info(const Args& args, Io& io) {
    const int sources = (args.has("--model") ? 1 : 0) + (args.has("--config") ? 1 : 0) + (args.has("--preset") ? 1 : 0);
    if (sources != 1) throw UsageError("give exactly one of --model DIR, --config FILE or --arch ARCH --preset NAME");
    const index_t context = args.get_int("--context", 0);
    if (args.has("--context") && context <= 0)
        throw UsageError("option '--context' needs a positive integer, got '" + args.get("--context") + "'");

    ModelConfig cfg;
    std::string source;
    std::filesystem::path weights;
    if (args.has("--preset")) {
        if (!args.has("--arch")) throw UsageError("option '--preset' needs '--arch gpt2|gpt3|palm|t5'");
        cfg = preset_config(args.get("--arch"), args.get("--preset"));
        source = "preset " + args.get("--arch") + " " + args.get("--preset");
    } else {
        const std::filesystem::path path = args.has("--model")
                                               ? std::filesystem::path(args.get("--model")) / "config.json"
                                               : std::filesystem::path(args.get("--config"));
        cfg = load_config(path);
        source = path.string();
        if (args.has("--model")) weights = std::filesystem::path(args.get("--model")) / "model.safetensors";
        if (args.has("--arch") && args.get("--arch") != model_type_of(cfg))
            fail("'", path.string(), "' has model_type ", model_type_of(cfg), ", not ", args.get("--arch"));
    }

    Table t;
    t.row("source", source);
    const index_t T = std::visit([&](const auto& c) { return detail::describe(t, c, context); }, cfg);
    const ModelCounts n = std::visit([&](const auto& c) { return count(c, T); }, cfg);
    const bool t5 = std::holds_alternative<T5Config>(cfg);

    t.row("parameters", with_commas(n.parameters) + " (" + short_count(static_cast<double>(n.parameters)) + ")");
    t.row("  non-embedding", with_commas(n.non_embedding_parameters()) + " (" +
                                 short_count(static_cast<double>(n.non_embedding_parameters())) + ")");
    t.row("  embedding", with_commas(n.embedding_parameters) + " (" +
                             short_count(static_cast<double>(n.embedding_parameters)) + ")");
    t.row(t5 ? "FLOPs per token pair" : "FLOPs per token",
          "forward " + short_flops(n.forward_flops_per_token) + ", training " +
              short_flops(n.training_flops_per_token) + " (3x forward), at context " + with_commas(T) +
              (t5 ? " (one encoder + one decoder token)" : ""));
    const double kv_full = static_cast<double>(n.kv_cache_bytes_per_token) * static_cast<double>(T);
    t.row(t5 ? "KV cache (decoder)" : "KV cache",
          with_commas(n.kv_cache_bytes_per_token) + " bytes per token (" +
              short_bytes(static_cast<double>(n.kv_cache_bytes_per_token)) + ", fp32); " +
              short_bytes(kv_full) + " at context " + with_commas(T));

    std::error_code ec;
    if (!weights.empty() && std::filesystem::exists(weights, ec)) {
        const SafetensorsFile file(weights);
        std::int64_t elements = 0, skipped = 0;
        std::map<std::string, std::int64_t> dtypes;
        for (const SafetensorsTensor& tensor : file.tensors()) {
            if (detail::is_non_parameter(cfg, tensor.name)) {
                ++skipped;
                continue;
            }
            elements += tensor.numel();
            ++dtypes[dtype_name(tensor.dtype)];
        }
        std::string kinds;
        for (const auto& [name, k] : dtypes) kinds += (kinds.empty() ? "" : ", ") + std::to_string(k) + " " + name;
        if (skipped > 0)
            kinds += (kinds.empty() ? "" : "; ") + std::to_string(skipped) + " buffers or tied copies not counted";
        std::string line = with_commas(static_cast<std::int64_t>(file.size())) + " tensors";
        if (!kinds.empty()) line += " (" + kinds + ")";
        line += ", " + with_commas(elements) + " parameters";
        line += elements == n.parameters ? " (matches the config)" : " (the config implies " + with_commas(n.parameters) + ")";
        t.row("weights", weights.filename().string() + ": " + line);
    } else if (!weights.empty()) {
        t.row("weights", "none (no " + weights.filename().string() + ")");
    }
    t.print(io.out);
    return 0;
}

}  // namespace llmblocks::cli
