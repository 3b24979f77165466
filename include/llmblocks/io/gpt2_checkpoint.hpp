// llmblocks/io/gpt2_checkpoint.hpp — the checkpoint names of GPT-2 and GPT-3 (contract 1 and 2):
// the name map from a GPT2Model's parameters to the tensors of a Hugging Face-style
// model.safetensors. Loading and saving go through io/checkpoint.hpp.
#pragma once

#include <string>

#include "llmblocks/io/checkpoint.hpp"
#include "llmblocks/models/gpt2.hpp"

namespace llmblocks {

// Hugging Face's GPT-2 names (contract 1). Files may prefix every name with "transformer."
// (GPT2LMHeadModel); the attention-mask buffers h.<i>.attn.bias / h.<i>.attn.masked_bias
// and a copy of the tied head, lm_head.weight, are accepted and ignored.
template <class T>
CheckpointSchema<T> checkpoint_schema(const GPT2Model<T>& model) {
    CheckpointSchema<T> s;
    s.model = model.config.model_type;
    auto add = [&s](const std::string& name, const Variable<T>& v) {
        if (v.defined()) s.entries.push_back({name, v});
    };
    auto add_linear = [&add](const std::string& name, const Linear<T>& l) {
        add(name + ".weight", l.weight);  // Conv1D layout (in, out), as the Linear stores it
        add(name + ".bias", l.bias);
    };
    auto add_norm = [&add](const std::string& name, const Norm<T>& n) {
        add(name + ".weight", n.weight);
        add(name + ".bias", n.bias);
    };
    add("wte.weight", model.wte.weight);
    add("wpe.weight", model.wpe.weight);
    for (std::size_t i = 0; i < model.h.size(); ++i) {
        const std::string p = "h." + std::to_string(i) + ".";
        add_norm(p + "ln_1", model.h[i].ln_1);
        add_linear(p + "attn.c_attn", model.h[i].attn.qkv_proj);  // [q | k | v] along the output axis
        add_linear(p + "attn.c_proj", model.h[i].attn.o_proj);
        add_norm(p + "ln_2", model.h[i].ln_2);
        add_linear(p + "mlp.c_fc", model.h[i].mlp.up);
        add_linear(p + "mlp.c_proj", model.h[i].mlp.down);
    }
    add_norm("ln_f", model.ln_f);
    s.optional_prefixes = {"transformer."};
    const index_t n_layers = model.config.n_layer;
    s.ignorable = [n_layers](const std::string& name) {
        return name == "lm_head.weight" || detail::is_layer_name(name, "h.", n_layers, ".attn.bias") ||
               detail::is_layer_name(name, "h.", n_layers, ".attn.masked_bias");
    };
    return s;
}

}  // namespace llmblocks
