// llmblocks/models/gpt2.hpp — GPT2Model: GPT-2 (Radford et al. 2019) and GPT-3
// (Brown et al. 2020), one decoder-only model built from nn/ blocks (its checkpoint names, DESIGN.md
// contract 1 and 2, are in io/gpt2_checkpoint.hpp).
//
//   x      = wte[ids] + wpe[0 .. T-1]                     learned absolute positions
//   x      = SerialBlock_i(x)   for i < n_layer            h = x + attn(ln_1 x); y = h + mlp(ln_2 h)
//   logits = ln_f(x) wte^T                                 the LM head is tied to wte
//
// GPT-3 is the same network; config.attention_layers marks some layers "local":
// causal banded attention where query i sees keys j with i - W < j <= i
// (W = config.window_size; GPT-3's alternating dense and locally banded sparse
// layers). Every layer scales scores by 1/sqrt(head_dim). Dropout is not applied
// (inference and the conformance checks run without it).
//
// Initialisation follows Hugging Face's GPT2PreTrainedModel._init_weights:
// every Conv1D weight and both embeddings N(0, 0.02^2), the residual
// projections attn.c_proj and mlp.c_proj N(0, (0.02 / sqrt(2 n_layer))^2),
// biases 0, LayerNorm weight 1 and bias 0.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "llmblocks/models/gpt2_config.hpp"
#include "llmblocks/nn/blocks.hpp"
#include "llmblocks/nn/embedding.hpp"
#include "llmblocks/nn/kv_cache.hpp"
#include "llmblocks/nn/norm.hpp"
#include "llmblocks/ops/linear.hpp"
#include "llmblocks/ops/loss.hpp"
#include "llmblocks/ops/shape.hpp"

namespace llmblocks {

namespace detail {

// The last position of logits (B, T, V) as a (B, V) tensor.
template <class T>
Tensor<T> last_position(const Variable<T>& logits) {
    const index_t T_ = logits.size(1);
    return logits.value().select(1, T_ - 1).contiguous();
}

// ids must be (B, T) with B, T >= 1.
inline void check_ids(const char* model, const TensorI& ids) {
    LLMBLOCKS_CHECK(ids.defined() && ids.dim() == 2 && ids.size(0) >= 1 && ids.size(1) >= 1, model,
                    ": token ids must be (B, T) with B, T >= 1, got ", ids.defined() ? ids.shape() : Shape{});
}

// prefix_length must be in [0, T] (0: plain causal).
inline void check_prefix(const char* model, const TensorI& ids, index_t prefix_length) {
    LLMBLOCKS_CHECK(prefix_length >= 0 && prefix_length <= ids.size(1), model, ": prefix_length ", prefix_length,
                    " is outside [0, T] for ids ", ids.shape());
}

}  // namespace detail

template <class T>
struct GPT2Model {
    GPT2Config config;
    Embedding<T> wte;                 // (V, C): token embeddings, also the LM head
    PositionEmbedding<T> wpe;         // (n_positions, C)
    std::vector<SerialBlock<T>> h;    // n_layer blocks
    Norm<T> ln_f;                     // final LayerNorm

    GPT2Model() = default;
    GPT2Model(const GPT2Config& config_, Rng& rng) : config(config_) {
        config.validate();
        const GPT2Config& c = config;
        BlockConfig block = gpt2_block_config(c.n_embd, c.n_head, c.n_layer);  // residual c_proj: 0.02/sqrt(2 n_layer)
        block.norm.eps = c.layer_norm_epsilon;
        wte = Embedding<T>(c.vocab_size, c.n_embd, rng, 0.02);
        wpe = PositionEmbedding<T>(c.n_positions, c.n_embd, rng, 0.02);  // Hugging Face: 0.02 (OpenAI's TF code: 0.01)
        h.reserve(static_cast<std::size_t>(c.n_layer));
        for (index_t i = 0; i < c.n_layer; ++i) h.emplace_back(block, rng);
        ln_f = Norm<T>(c.n_embd, block.norm);
    }

    // ids (B, T) -> logits (B, T, V). Records the graph when parameters require grad and
    // gradients are enabled. padding_mask, if given, is (B, T) row-major with 0 marking padding
    // keys (Hugging Face's attention_mask); positions stay 0 .. T-1. prefix_length P > 0 makes
    // it a prefix LM (T5 paper, section 3.2.1): tokens 0 .. P-1 see each other in every global
    // layer, the rest stay causal (GPT-3's local layers keep their band).
    Variable<T> forward(const TensorI& ids, const std::vector<std::uint8_t>& padding_mask = {},
                        index_t prefix_length = 0) const {
        return run(ids, nullptr, padding_mask, prefix_length);
    }

    // Mean cross-entropy over rows with targets != -100; targets (B, T) align with the logits
    // rows (no internal shift: the caller passes next tokens as targets).
    Variable<T> loss(const TensorI& ids, const TensorI& targets, const std::vector<std::uint8_t>& padding_mask = {},
                     index_t prefix_length = 0) const {
        LLMBLOCKS_CHECK(targets.defined() && targets.shape() == ids.shape(), config.model_type, ": targets ",
                        targets.defined() ? targets.shape() : Shape{}, " must have the shape of the ids ", ids.shape());
        return cross_entropy(forward(ids, padding_mask, prefix_length), targets);
    }

    // A KV cache for `batch` sequences of up to max_len tokens (default: n_positions).
    KVCache<T> make_cache(index_t batch, index_t max_len = 0) const {
        return KVCache<T>(config.n_layer, batch, config.n_head, max_len > 0 ? max_len : config.n_positions,
                          config.head_dim());
    }

    // Incremental decoding, under no_grad: prefill runs ids (B, T) through the network, appending
    // their keys/values to `cache`, and returns the last position's logits (B, V); decode_step
    // does the same for one new token per sequence, tokens (B).
    Tensor<T> prefill(const TensorI& ids, KVCache<T>& cache) const {
        auto guard = no_grad();
        return detail::last_position(run(ids, &cache, {}, 0));
    }
    Tensor<T> decode_step(const TensorI& tokens, KVCache<T>& cache) const {
        LLMBLOCKS_CHECK(tokens.defined() && tokens.dim() == 1, config.model_type, ": decode_step takes (B) tokens, got ",
                        tokens.defined() ? tokens.shape() : Shape{});
        return prefill(tokens.contiguous().reshape({tokens.size(0), 1}), cache);
    }

    // llmblocks' own names: wte.weight, wpe.weight, h.<i>.ln_1.weight, h.<i>.attn.qkv_proj.weight, ...
    void collect_parameters(ParameterList<T>& list, const std::string& prefix = "") const {
        wte.collect_parameters(list, join_name(prefix, "wte"));
        wpe.collect_parameters(list, join_name(prefix, "wpe"));
        for (std::size_t i = 0; i < h.size(); ++i) h[i].collect_parameters(list, join_name(prefix, "h." + std::to_string(i)));
        ln_f.collect_parameters(list, join_name(prefix, "ln_f"));
    }

private:
    // The network, with or without a cache (positions then continue after the cached tokens).
    Variable<T> run(const TensorI& ids, KVCache<T>* cache, const std::vector<std::uint8_t>& padding_mask,
                    index_t prefix_length) const {
        detail::check_ids(config.model_type.c_str(), ids);
        detail::check_prefix(config.model_type.c_str(), ids, prefix_length);
        const index_t B = ids.size(0), T_ = ids.size(1);
        const index_t pos0 = cache ? cache->length() : 0;
        LLMBLOCKS_CHECK(pos0 + T_ <= config.n_positions, config.model_type, ": ", pos0, " cached + ", T_,
                        " new tokens exceed n_positions ", config.n_positions);
        LLMBLOCKS_CHECK(!cache || cache->n_layers() == config.n_layer, config.model_type, ": the KV cache has ",
                        cache ? cache->n_layers() : 0, " layers, the model ", config.n_layer);
        LLMBLOCKS_CHECK(padding_mask.empty() || static_cast<index_t>(padding_mask.size()) == B * T_,
                        config.model_type, ": padding_mask has ", padding_mask.size(), " entries for ids ", ids.shape());
        LLMBLOCKS_CHECK(padding_mask.empty() || !cache, config.model_type, ": padding_mask is for full forward passes");

        Variable<T> x = wte(ids) + wpe(T_, pos0);  // (B, T, C) + (T, C)
        for (index_t i = 0; i < config.n_layer; ++i) {
            AttentionContext<T> ctx;
            if (config.span(i) == AttentionSpan::Local) {
                ctx.mask = AttentionMask::local;  // GPT-3: banded layer, keys i - W < j <= i
                ctx.window = config.window_size;
            } else if (prefix_length > 0) {
                ctx.mask = AttentionMask::prefix_lm;
                ctx.prefix_length = prefix_length;
            }
            ctx.key_padding_mask = padding_mask;
            if (cache) ctx.cache = &(*cache)[i];
            x = h[static_cast<std::size_t>(i)](x, ctx);
        }
        x = ln_f(x);
        return linear(x, wte.weight, WeightLayout::OutIn);  // GPT-2: tied head, logits = x wte^T
    }
};

// GPT-3 is GPT-2's model with local layers in its config.
template <class T>
using GPT3Model = GPT2Model<T>;

}  // namespace llmblocks
