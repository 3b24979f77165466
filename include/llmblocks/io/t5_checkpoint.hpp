// llmblocks/io/t5_checkpoint.hpp — the checkpoint names of T5 (contract 4):
// the name map from a T5Model's parameters to the tensors of a Hugging Face-style
// model.safetensors. Loading and saving go through io/checkpoint.hpp.
#pragma once

#include <string>

#include "llmblocks/io/checkpoint.hpp"
#include "llmblocks/models/t5.hpp"

namespace llmblocks {

// Hugging Face's T5ForConditionalGeneration names. Ignorable: encoder/decoder.embed_tokens.weight
// (copies of shared.weight that HF files carry) and, when tied, lm_head.weight (a copy too).
template <class T>
CheckpointSchema<T> checkpoint_schema(const T5Model<T>& model) {
    CheckpointSchema<T> s;
    s.model = "t5";
    auto add = [&s](const std::string& name, const Variable<T>& v) { s.entries.push_back({name, v}); };
    auto add_attention = [&add](const std::string& p, const Attention<T>& a) {
        add(p + ".q.weight", a.q_proj.weight);
        add(p + ".k.weight", a.k_proj.weight);
        add(p + ".v.weight", a.v_proj.weight);
        add(p + ".o.weight", a.o_proj.weight);
    };
    auto add_ffn = [&add](const std::string& p, const FeedForward<T>& m) {
        if (m.gate.weight.defined()) {  // gated-gelu: wo(gelu_tanh(wi_0 x) * wi_1 x)
            add(p + ".DenseReluDense.wi_0.weight", m.gate.weight);
            add(p + ".DenseReluDense.wi_1.weight", m.up.weight);
        } else {  // relu: wo(relu(wi x))
            add(p + ".DenseReluDense.wi.weight", m.up.weight);
        }
        add(p + ".DenseReluDense.wo.weight", m.down.weight);
    };
    add("shared.weight", model.shared.weight);
    for (std::size_t i = 0; i < model.encoder.size(); ++i) {
        const std::string b = "encoder.block." + std::to_string(i);
        add_attention(b + ".layer.0.SelfAttention", model.encoder[i].attn);
        if (i == 0) add(b + ".layer.0.SelfAttention.relative_attention_bias.weight", model.encoder_position.weight);
        add(b + ".layer.0.layer_norm.weight", model.encoder[i].ln_1.weight);
        add_ffn(b + ".layer.1", model.encoder[i].mlp);
        add(b + ".layer.1.layer_norm.weight", model.encoder[i].ln_2.weight);
    }
    add("encoder.final_layer_norm.weight", model.encoder_norm.weight);
    for (std::size_t i = 0; i < model.decoder.size(); ++i) {
        const std::string b = "decoder.block." + std::to_string(i);
        add_attention(b + ".layer.0.SelfAttention", model.decoder[i].self_attn);
        if (i == 0) add(b + ".layer.0.SelfAttention.relative_attention_bias.weight", model.decoder_position.weight);
        add(b + ".layer.0.layer_norm.weight", model.decoder[i].ln_1.weight);
        add_attention(b + ".layer.1.EncDecAttention", model.decoder[i].cross_attn);
        add(b + ".layer.1.layer_norm.weight", model.decoder[i].ln_2.weight);
        add_ffn(b + ".layer.2", model.decoder[i].mlp);
        add(b + ".layer.2.layer_norm.weight", model.decoder[i].ln_3.weight);
    }
    add("decoder.final_layer_norm.weight", model.decoder_norm.weight);
    const bool tied = model.config.tie_word_embeddings;
    if (!tied) add("lm_head.weight", model.lm_head.weight);
    s.ignorable = [tied](const std::string& name) {
        return name == "encoder.embed_tokens.weight" || name == "decoder.embed_tokens.weight" ||
               (tied && name == "lm_head.weight");
    };
    return s;
}

}  // namespace llmblocks
