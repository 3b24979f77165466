// llmblocks/models/t5.hpp — T5 (Raffel et al. 2020, "Exploring the Limits of
// Transfer Learning with a Unified Text-to-Text Transformer"), an
// encoder-decoder, with exactly the math of Hugging Face's
// T5ForConditionalGeneration (DESIGN.md, checkpoint contract 4):
//
//   e = shared[encoder_ids]                                       no position embedding
//   e = e + self_attn(rms(e), bias_enc)  ;  e = e + ffn(rms(e))   per encoder layer
//   e = rms_final(e)
//   d = shared[decoder_ids]                                       used as given: no shift-right
//   d = d + self_attn(rms(d), bias_dec, causal)
//   d = d + cross_attn(rms(d), e)                                 no position bias
//   d = d + ffn(rms(d))                                           per decoder layer
//   logits = (rms_final(d) * d_model^-0.5) shared^T   (tied)   or   lm_head(rms_final(d))   (untied)
//
// rms(x) = x / sqrt(mean(x^2) + eps) * w (no mean, no bias); attention has no
// 1/sqrt(d_kv) scaling; each stack's relative position bias (bidirectional
// buckets in the encoder, causal in the decoder) lives in its first layer and
// is computed once per pass and shared by all of its layers; ffn is
// wo(relu(wi x)) ("relu", v1.0) or wo(gelu_tanh(wi_0 x) * wi_1 x) ("gated-gelu",
// v1.1). Dropout is off. Hugging Face's checkpoint names are in
// io/t5_checkpoint.hpp; docs/checkpoints_t5.md lists every ambiguity.
//
// The model is T5Model<T> (alias T5<T>). Inference: start_decoding() encodes
// once and allocates the decoder's caches; decode_step() runs new decoder
// tokens against the self-attention KV cache and the cross-attention K/V
// projected from the encoder output on the first step, and gives the logits
// the full forward gives at those positions.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "llmblocks/models/t5_config.hpp"
#include "llmblocks/nn/blocks.hpp"
#include "llmblocks/nn/embedding.hpp"
#include "llmblocks/nn/kv_cache.hpp"
#include "llmblocks/nn/relative_position_bias.hpp"
#include "llmblocks/ops/linear.hpp"
#include "llmblocks/ops/loss.hpp"

namespace llmblocks {

// What cached decoding keeps between steps (one batch of sequences).
template <class T>
struct T5DecodeState {
    Variable<T> encoder_out;                    // (B, Te, d_model), computed once
    std::vector<std::uint8_t> encoder_padding;  // (B, Te), 1 = token, 0 = padding; empty: none
    KVCache<T> self_cache;                      // per decoder layer: (B, H, T_max, d_kv)
    KVCache<T> cross_cache;                     // per decoder layer: (B, H, Te, d_kv), filled by the first step
    index_t length() const { return self_cache.length(); }
};

template <class T>
struct T5Model {
    T5Config config;
    Embedding<T> shared;                       // (V, d_model): encoder input, decoder input and (tied) head
    RelativePositionBias<T> encoder_position;  // (num_buckets, H), bidirectional; HF: in encoder block 0
    std::vector<SerialBlock<T>> encoder;       // T5 encoder layer = pre-norm serial block
    Norm<T> encoder_norm;                      // encoder.final_layer_norm
    RelativePositionBias<T> decoder_position;  // (num_buckets, H), causal; HF: in decoder block 0
    std::vector<T5DecoderBlock<T>> decoder;
    Norm<T> decoder_norm;                      // decoder.final_layer_norm
    Linear<T> lm_head;                         // (V, d_model), only when tie_word_embeddings is false

    T5Model() = default;
    // Hugging Face's T5PreTrainedModel._init_weights with initializer_factor f:
    // shared, lm_head ~ N(0, f^2); q ~ N(0, f^2 / (d_model d_kv)); k, v ~ N(0, f^2 / d_model);
    // o ~ N(0, f^2 / (H d_kv)); wi, wi_0, wi_1 ~ N(0, f^2 / d_model); wo ~ N(0, f^2 / d_ff);
    // relative_attention_bias ~ N(0, f^2 / d_model); norms 1.
    T5Model(const T5Config& config_, Rng& rng, double initializer_factor = 1.0) : config(config_) {
        config.validate();
        const T5Config& c = config;
        const double f = initializer_factor;
        const double d_model = static_cast<double>(c.d_model);
        BlockConfig block = t5_block_config(c.d_model, c.num_heads, c.d_kv, c.d_ff,
                                            c.feed_forward_proj == T5FeedForward::GatedGELU);
        block.norm.eps = c.layer_norm_epsilon;
        block.attention.init_std *= f;
        block.attention.out_init_std *= f;
        block.feed_forward.init_std *= f;
        block.feed_forward.out_init_std *= f;

        shared = Embedding<T>(c.vocab_size, c.d_model, rng, f * 1.0);
        encoder_position = RelativePositionBias<T>(c.num_heads, bucket_config(true), rng, f / std::sqrt(d_model));
        decoder_position = RelativePositionBias<T>(c.num_heads, bucket_config(false), rng, f / std::sqrt(d_model));
        // T5: q's init folds in the 1/sqrt(d_kv) that attention does not apply; it is drawn with
        // k's std f/sqrt(d_model) and rescaled, so the Rng stream does not depend on it.
        const T q_rescale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(c.d_kv)));
        for (index_t i = 0; i < c.num_layers; ++i) {
            encoder.emplace_back(block, rng);
            scale_in_place(encoder.back().attn.q_proj.weight, q_rescale);
        }
        for (index_t i = 0; i < c.decoder_layers(); ++i) {
            decoder.emplace_back(block, rng);
            scale_in_place(decoder.back().self_attn.q_proj.weight, q_rescale);
            scale_in_place(decoder.back().cross_attn.q_proj.weight, q_rescale);
        }
        encoder_norm = Norm<T>(c.d_model, block.norm);
        decoder_norm = Norm<T>(c.d_model, block.norm);
        if (!c.tie_word_embeddings) lm_head = Linear<T>(c.d_model, c.vocab_size, false, rng, f * 1.0);
    }

    // encoder_ids (B, Te) -> (B, Te, d_model). encoder_padding (B, Te): 1 = token, 0 = padding
    // (HF's attention_mask); padded keys are masked in every encoder self-attention.
    Variable<T> encode(const TensorI& encoder_ids, const std::vector<std::uint8_t>& encoder_padding = {}) const {
        check_ids("encoder_ids", encoder_ids);
        check_padding(encoder_ids, encoder_padding);
        const index_t Te = encoder_ids.size(1);
        AttentionContext<T> ctx;
        ctx.mask = AttentionMask::bidirectional;
        ctx.bias = encoder_position(Te, Te);  // T5: computed once, shared by every encoder layer
        ctx.key_padding_mask = encoder_padding;
        Variable<T> h = shared(encoder_ids);  // (B, Te, d_model); T5: no position embedding
        for (const auto& layer : encoder) h = layer(h, ctx);
        return encoder_norm(h);
    }

    // decoder_ids (B, Td) against the encoder output (B, Te, d_model) -> logits (B, Td, V).
    Variable<T> decode(const TensorI& decoder_ids, const Variable<T>& encoder_out,
                       const std::vector<std::uint8_t>& encoder_padding = {}) const {
        check_ids("decoder_ids", decoder_ids);
        LLMBLOCKS_CHECK(encoder_out.defined() && encoder_out.dim() == 3 &&
                            encoder_out.size(0) == decoder_ids.size(0) && encoder_out.size(2) == config.d_model,
                        "t5: encoder output ", encoder_out.defined() ? encoder_out.shape() : Shape{},
                        " is not (B, Te, d_model = ", config.d_model, ") for decoder_ids ", decoder_ids.shape());
        const index_t Td = decoder_ids.size(1);
        AttentionContext<T> self_ctx;
        self_ctx.mask = AttentionMask::causal;
        self_ctx.bias = decoder_position(Td, Td);  // T5: causal buckets, shared by every decoder layer
        AttentionContext<T> cross_ctx;
        cross_ctx.mask = AttentionMask::bidirectional;  // T5: cross-attention has no position bias
        cross_ctx.key_padding_mask = encoder_padding;
        Variable<T> h = shared(decoder_ids);  // (B, Td, d_model); contract detail 8: ids used as given
        for (const auto& layer : decoder) h = layer(h, encoder_out, self_ctx, cross_ctx);
        return head(decoder_norm(h));
    }

    // encoder_ids (B, Te), decoder_ids (B, Td) -> logits (B, Td, V).
    Variable<T> forward(const TensorI& encoder_ids, const TensorI& decoder_ids,
                        const std::vector<std::uint8_t>& encoder_padding = {}) const {
        LLMBLOCKS_CHECK(encoder_ids.defined() && decoder_ids.defined() && encoder_ids.dim() == 2 &&
                            decoder_ids.dim() == 2 && encoder_ids.size(0) == decoder_ids.size(0),
                        "t5: encoder_ids ", encoder_ids.defined() ? encoder_ids.shape() : Shape{}, " and decoder_ids ",
                        decoder_ids.defined() ? decoder_ids.shape() : Shape{}, " must be (B, Te) and (B, Td)");
        return decode(decoder_ids, encode(encoder_ids, encoder_padding), encoder_padding);
    }

    // Mean cross-entropy over decoder positions whose target (B, Td) is not -100; no shift.
    Variable<T> loss(const TensorI& encoder_ids, const TensorI& decoder_ids, const TensorI& targets,
                     const std::vector<std::uint8_t>& encoder_padding = {}) const {
        LLMBLOCKS_CHECK(targets.defined() && targets.shape() == decoder_ids.shape(), "t5 loss: targets ",
                        targets.defined() ? targets.shape() : Shape{}, " must have the decoder_ids' shape ",
                        decoder_ids.shape());
        return cross_entropy(forward(encoder_ids, decoder_ids, encoder_padding), targets);
    }

    // ---- cached inference ----------------------------------------------------------------

    // Encodes once (no_grad) and allocates caches for up to max_decoder_len decoder tokens.
    T5DecodeState<T> start_decoding(const TensorI& encoder_ids, index_t max_decoder_len,
                                    const std::vector<std::uint8_t>& encoder_padding = {}) const {
        LLMBLOCKS_CHECK(max_decoder_len >= 1, "t5 start_decoding: max_decoder_len must be >= 1, got ", max_decoder_len);
        auto guard = no_grad();
        T5DecodeState<T> s;
        s.encoder_out = encode(encoder_ids, encoder_padding);
        s.encoder_padding = encoder_padding;
        const index_t B = encoder_ids.size(0), Te = encoder_ids.size(1), L = config.decoder_layers();
        s.self_cache = KVCache<T>(L, B, config.num_heads, max_decoder_len, config.d_kv);
        s.cross_cache = KVCache<T>(L, B, config.num_heads, Te, config.d_kv);
        return s;
    }

    // The next decoder tokens (B, Tn) after state.length() earlier ones -> logits (B, Tn, V),
    // equal to the full forward's rows at those positions.
    Tensor<T> decode_step(T5DecodeState<T>& state, const TensorI& decoder_ids) const {
        auto guard = no_grad();
        check_ids("decoder_ids", decoder_ids);
        LLMBLOCKS_CHECK(state.encoder_out.defined() && decoder_ids.size(0) == state.encoder_out.size(0),
                        "t5 decode_step: decoder_ids ", decoder_ids.shape(), " do not match the encoded batch ",
                        state.encoder_out.defined() ? state.encoder_out.shape() : Shape{},
                        " (call start_decoding first)");
        const index_t Tn = decoder_ids.size(1), pos0 = state.length();
        AttentionContext<T> self_ctx;
        self_ctx.mask = AttentionMask::causal;
        self_ctx.bias = decoder_position(Tn, pos0 + Tn, pos0);  // queries pos0.., keys 0..pos0+Tn-1
        AttentionContext<T> cross_ctx;
        cross_ctx.mask = AttentionMask::bidirectional;
        cross_ctx.key_padding_mask = state.encoder_padding;
        Variable<T> h = shared(decoder_ids);
        for (index_t i = 0; i < config.decoder_layers(); ++i) {
            self_ctx.cache = &state.self_cache[i];
            cross_ctx.cache = &state.cross_cache[i];  // projected from encoder_out on the first step only
            h = decoder[static_cast<std::size_t>(i)](h, state.encoder_out, self_ctx, cross_ctx);
        }
        return head(decoder_norm(h)).value();
    }

    // ---- parameters ------------------------------------------------------

    // llmblocks' own names: shared.weight, encoder.position.weight, encoder.blocks.{i}.ln_1.weight, ...
    void collect_parameters(ParameterList<T>& list, const std::string& prefix = "") const {
        shared.collect_parameters(list, join_name(prefix, "shared"));
        encoder_position.collect_parameters(list, join_name(prefix, "encoder.position"));
        for (std::size_t i = 0; i < encoder.size(); ++i)
            encoder[i].collect_parameters(list, join_name(prefix, "encoder.blocks." + std::to_string(i)));
        encoder_norm.collect_parameters(list, join_name(prefix, "encoder.norm"));
        decoder_position.collect_parameters(list, join_name(prefix, "decoder.position"));
        for (std::size_t i = 0; i < decoder.size(); ++i)
            decoder[i].collect_parameters(list, join_name(prefix, "decoder.blocks." + std::to_string(i)));
        decoder_norm.collect_parameters(list, join_name(prefix, "decoder.norm"));
        if (lm_head.weight.defined()) lm_head.collect_parameters(list, join_name(prefix, "lm_head"));
    }

private:
    T5BucketConfig bucket_config(bool bidirectional) const {
        return {bidirectional, config.relative_attention_num_buckets, config.relative_attention_max_distance};
    }

    // (B, Td, d_model) -> (B, Td, V)
    Variable<T> head(const Variable<T>& h) const {
        if (lm_head.weight.defined()) return lm_head(h);  // T5 v1.1: untied head, no rescale
        // T5 v1.0: tied head, the decoder output rescaled by d_model^-0.5 first
        const T rescale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(config.d_model)));
        return linear(h * rescale, shared.weight, Variable<T>(), WeightLayout::OutIn);
    }

    static void scale_in_place(const Variable<T>& v, T s) {
        Tensor<T> t = v.value();
        T* p = t.data();
        for (index_t i = 0; i < t.numel(); ++i) p[i] *= s;
    }

    static void check_ids(const char* what, const TensorI& ids) {
        LLMBLOCKS_CHECK(ids.defined() && ids.dim() == 2 && ids.size(0) >= 1 && ids.size(1) >= 1, "t5: ", what,
                        " must be (B, T) with B, T >= 1, got ", ids.defined() ? ids.shape() : Shape{});
    }

    static void check_padding(const TensorI& ids, const std::vector<std::uint8_t>& padding) {
        LLMBLOCKS_CHECK(padding.empty() || static_cast<index_t>(padding.size()) == ids.numel(),
                        "t5: encoder padding mask has ", padding.size(), " entries, expected (B, Te) = ", ids.shape());
    }
};

// The name the issue uses; T5Model matches GPT2Model and PaLMModel.
template <class T>
using T5 = T5Model<T>;

}  // namespace llmblocks
