// llmblocks/io/palm_checkpoint.hpp — the checkpoint names of PaLM (contract 3):
// the name map from a PaLMModel's parameters to the tensors of a Hugging Face-style
// model.safetensors. Loading and saving go through io/checkpoint.hpp.
#pragma once

#include <string>

#include "llmblocks/io/checkpoint.hpp"
#include "llmblocks/models/palm.hpp"

namespace llmblocks {

// Contract 3's names. Also accepted and ignored: Hugging Face Llama's
// model.layers.<i>.self_attn.rotary_emb.inv_freq buffers, and lm_head.weight when tied
// (a copy of the embedding).
template <class T>
CheckpointSchema<T> checkpoint_schema(const PaLMModel<T>& model) {
    CheckpointSchema<T> s;
    s.model = "palm";
    auto add = [&s](const std::string& name, const Variable<T>& v) { s.entries.push_back({name, v}); };
    auto add_layer = [&add](const std::string& p, const Attention<T>& attn, const FeedForward<T>& mlp) {
        add(p + "self_attn.q_proj.weight", attn.q_proj.weight);  // (Hq D, C)
        add(p + "self_attn.k_proj.weight", attn.k_proj.weight);  // (Hkv D, C)
        add(p + "self_attn.v_proj.weight", attn.v_proj.weight);  // (Hkv D, C)
        add(p + "self_attn.o_proj.weight", attn.o_proj.weight);  // (C, Hq D)
        add(p + "mlp.gate_proj.weight", mlp.gate.weight);        // (F, C)
        add(p + "mlp.up_proj.weight", mlp.up.weight);            // (F, C)
        add(p + "mlp.down_proj.weight", mlp.down.weight);        // (C, F)
    };
    add("model.embed_tokens.weight", model.embed_tokens.weight);
    for (std::size_t i = 0; i < model.parallel_layers.size(); ++i) {
        const std::string p = "model.layers." + std::to_string(i) + ".";
        const ParallelBlock<T>& b = model.parallel_layers[i];
        add(p + "input_layernorm.weight", b.norm.weight);  // PaLM: the one norm of a parallel block
        add_layer(p, b.attn, b.mlp);
    }
    for (std::size_t i = 0; i < model.serial_layers.size(); ++i) {
        const std::string p = "model.layers." + std::to_string(i) + ".";
        const SerialBlock<T>& b = model.serial_layers[i];
        add(p + "input_layernorm.weight", b.ln_1.weight);
        add(p + "post_attention_layernorm.weight", b.ln_2.weight);
        add_layer(p, b.attn, b.mlp);
    }
    add("model.norm.weight", model.norm.weight);
    if (model.lm_head.weight.defined()) add("lm_head.weight", model.lm_head.weight);  // (V, C), untied only
    const index_t n_layers = model.config.num_hidden_layers;
    const bool tied = model.config.tie_word_embeddings;
    s.ignorable = [n_layers, tied](const std::string& name) {
        return (tied && name == "lm_head.weight") ||
               detail::is_layer_name(name, "model.layers.", n_layers, ".self_attn.rotary_emb.inv_freq");
    };
    return s;
}

}  // namespace llmblocks
