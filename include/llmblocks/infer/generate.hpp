// llmblocks/infer/generate.hpp — autoregressive generation with the KV cache
// (nn/kv_cache.hpp) for the decoder-only models (GPT-2, GPT-3, PaLM) and T5's
// decoder, with infer/sampling.hpp choosing each token.
//
// Decoder-only, per batch of prompts of one length L (B sequences):
//   cache  = model.make_cache(B, L + max_new_tokens - 1)
//   logits = model.prefill(prompts (B, L), cache)        (B, V): the prompt in one pass
//   repeat: token = sample(logits row) per sequence; logits = model.decode_step(tokens (B), cache)
// so each new token costs one single-position pass that attends to the cached keys/values
// instead of a pass over the whole sequence. The cache has one length for the whole
// batch and prefill takes no padding mask, so prompts are grouped by length and each
// group runs as its own batch (in increasing length; within a group in prompt order).
//
// T5 (encoder-decoder): the encoder inputs are padded at the end to the longest one and
// masked (T5's positions are relative, so a padded row encodes as its unpadded prefix);
// start_decoding encodes once, the decoder starts from config.decoder_start_token_id
// (the pad id 0 in every released T5) and decode_step feeds one token per step against
// the decoder's self-attention cache and the cross-attention K/V of the encoder output.
//
// Randomness: sequence i (its index in `prompts`) samples from its own Rng seeded from
// (options.seed, i), so its tokens depend neither on the other prompts, nor on how the
// prompts are grouped into batches, nor on when the other sequences stop. The same seed
// gives the same tokens.
//
// Stopping: a sequence stops after max_new_tokens tokens or right after it emits
// options.eos_id (which is kept in its tokens); a batch stops when all of its sequences
// have. Finished sequences of a running batch are still fed (their eos) but their
// outputs are ignored.
//
// Timing: prefill_seconds is the prompt passes plus the first token's sampling (time to
// the first token); decode_seconds the later steps. Both exclude the on_token callback.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/core/tensor.hpp"
#include "llmblocks/infer/sampling.hpp"
#include "llmblocks/models/gpt2.hpp"
#include "llmblocks/models/palm.hpp"
#include "llmblocks/models/t5.hpp"

namespace llmblocks {

struct GenerateOptions {
    index_t max_new_tokens = 32;
    SamplingOptions sampling;
    std::int32_t eos_id = -1;  // a sequence stops after it emits this id (-1: never)
    std::uint64_t seed = 0;    // seeds the sampling Rng: same seed, same tokens
};

struct Generation {
    std::vector<std::vector<std::int32_t>> tokens;  // per prompt: the new tokens (the eos id included when emitted)
    index_t new_tokens = 0;                         // total over the batch
    double prefill_seconds = 0, decode_seconds = 0;

    // new_tokens / (prefill + decode); 0 when nothing was timed.
    double tokens_per_second() const {
        const double seconds = prefill_seconds + decode_seconds;
        return seconds > 0 ? static_cast<double>(new_tokens) / seconds : 0.0;
    }
};

// Called as each token is produced: the prompt's index and the token.
using TokenCallback = std::function<void(index_t sequence, std::int32_t token)>;

namespace detail {

inline std::string generation_model_name(const GPT2Config& c) { return c.model_type; }
inline std::string generation_model_name(const PaLMConfig&) { return "palm"; }
// The positions a decoder-only model has, and the config field that sets them.
inline index_t generation_context(const GPT2Config& c) { return c.n_positions; }
inline index_t generation_context(const PaLMConfig& c) { return c.max_position_embeddings; }
inline const char* generation_context_name(const GPT2Config&) { return "n_positions"; }
inline const char* generation_context_name(const PaLMConfig&) { return "max_position_embeddings"; }

// The seed of sequence i's Rng: splitmix64's finaliser over (mixed seed + i), so nearby
// seeds and nearby sequences get unrelated streams.
inline std::uint64_t sequence_seed(std::uint64_t seed, index_t sequence) {
    const auto mix = [](std::uint64_t z) {
        z += 0x9e3779b97f4a7c15ULL;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    };
    return mix(mix(seed) + static_cast<std::uint64_t>(sequence));
}

// The checks every generate() makes: options, a non-empty list of non-empty prompts, ids
// in [0, vocab), and (context > 0) prompt + max_new_tokens <= context.
inline void check_generate_request(const std::string& model, const char* what,
                                   const std::vector<std::vector<std::int32_t>>& prompts,
                                   const GenerateOptions& options, index_t vocab, index_t context,
                                   const char* context_name) {
    options.sampling.validate();
    LLMBLOCKS_CHECK(options.max_new_tokens >= 0, "generate (", model, "): max_new_tokens must be >= 0, got ",
                    options.max_new_tokens);
    LLMBLOCKS_CHECK(options.eos_id >= -1 && options.eos_id < vocab, "generate (", model, "): eos_id ", options.eos_id,
                    " is outside the vocabulary [0, ", vocab, ") (-1: no eos)");
    LLMBLOCKS_CHECK(!prompts.empty(), "generate (", model, "): no ", what, "s given");
    for (std::size_t i = 0; i < prompts.size(); ++i) {
        const auto& p = prompts[i];
        LLMBLOCKS_CHECK(!p.empty(), "generate (", model, "): ", what, " ", i, " is empty (it needs at least one token)");
        for (std::size_t j = 0; j < p.size(); ++j)
            LLMBLOCKS_CHECK(p[j] >= 0 && p[j] < vocab, "generate (", model, "): ", what, " ", i, ", position ", j,
                            ": token id ", p[j], " is outside the vocabulary [0, ", vocab, ")");
        const index_t n = static_cast<index_t>(p.size());
        LLMBLOCKS_CHECK(context <= 0 || n + options.max_new_tokens <= context, "generate (", model, "): ", what, " ",
                        i, " has ", n, " tokens; with max_new_tokens ", options.max_new_tokens, " that is ",
                        n + options.max_new_tokens, " positions, more than the model's ", context, " (",
                        context_name, ")");
    }
}

// Wall-clock seconds since construction.
struct Stopwatch {
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    double seconds() const {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
};

// The sequences of one running batch: `members[b]` is the prompt index of batch row b.
struct DecodeBatch {
    std::vector<index_t> members;
    std::vector<Rng> rngs;            // one per row, seeded from (seed, prompt index)
    std::vector<std::uint8_t> done;   // row b has stopped
    TensorI next;                     // (B) the tokens to feed next
    std::vector<std::pair<index_t, std::int32_t>> produced;  // this step's (prompt, token), for the callback

    DecodeBatch(std::vector<index_t> members_, std::uint64_t seed)
        : members(std::move(members_)), done(members.size(), 0),
          next(TensorI::zeros({static_cast<index_t>(members.size())})) {
        for (const index_t m : members) rngs.emplace_back(sequence_seed(seed, m));
    }

    index_t size() const { return static_cast<index_t>(members.size()); }
    bool running() const {
        for (const std::uint8_t d : done)
            if (!d) return true;
        return false;
    }

    // Samples each running row's token from logits (B, V) and records it in `out`.
    template <class T>
    void sample(const Tensor<T>& logits, const GenerateOptions& options, Generation& out) {
        const Tensor<T> rows = logits.contiguous();
        const index_t V = rows.size(1);
        produced.clear();
        for (index_t b = 0; b < size(); ++b) {
            const auto row = static_cast<std::size_t>(b);
            if (done[row]) continue;
            const std::span<const T> l(rows.data() + b * V, static_cast<std::size_t>(V));
            const std::int32_t token = sample_token(l, options.sampling, rngs[row]);
            auto& tokens = out.tokens[static_cast<std::size_t>(members[row])];
            tokens.push_back(token);
            ++out.new_tokens;
            next.data()[b] = token;
            produced.emplace_back(members[row], token);
            if (token == options.eos_id || static_cast<index_t>(tokens.size()) >= options.max_new_tokens) done[row] = 1;
        }
    }

    void report(const TokenCallback& on_token) const {
        if (on_token)
            for (const auto& [sequence, token] : produced) on_token(sequence, token);
    }
};

}  // namespace detail

// Generates up to options.max_new_tokens tokens after each prompt with a decoder-only
// model (GPT2Model<T>, PaLMModel<T>). Throws Error on an empty prompt list or prompt, a
// token id outside the vocabulary, or a prompt + max_new_tokens longer than the context.
template <class Model>
    requires requires(const Model& m, index_t batch) { m.make_cache(batch); }
Generation generate(const Model& model, const std::vector<std::vector<std::int32_t>>& prompts,
                    const GenerateOptions& options, const TokenCallback& on_token = {}) {
    const auto& config = model.config;
    const std::string name = detail::generation_model_name(config);
    detail::check_generate_request(name, "prompt", prompts, options, config.vocab_size,
                                   detail::generation_context(config), detail::generation_context_name(config));
    Generation out;
    out.tokens.resize(prompts.size());
    if (options.max_new_tokens == 0) return out;

    std::map<std::size_t, std::vector<index_t>> by_length;  // prompt length -> prompt indices
    for (std::size_t i = 0; i < prompts.size(); ++i) by_length[prompts[i].size()].push_back(static_cast<index_t>(i));

    for (auto& [length, members] : by_length) {
        detail::DecodeBatch batch(members, options.seed);
        const index_t B = batch.size(), L = static_cast<index_t>(length);
        TensorI ids = TensorI::empty({B, L});  // (B, L)
        for (index_t b = 0; b < B; ++b) {
            const auto& p = prompts[static_cast<std::size_t>(batch.members[static_cast<std::size_t>(b)])];
            for (index_t t = 0; t < L; ++t) ids.data()[b * L + t] = p[static_cast<std::size_t>(t)];
        }

        const detail::Stopwatch first;
        auto cache = model.make_cache(B, L + options.max_new_tokens - 1);  // the last token is never fed
        batch.sample(model.prefill(ids, cache), options, out);            // (B, V)
        out.prefill_seconds += first.seconds();
        batch.report(on_token);

        while (batch.running()) {
            const detail::Stopwatch step;
            batch.sample(model.decode_step(batch.next, cache), options, out);
            out.decode_seconds += step.seconds();
            batch.report(on_token);
        }
    }
    return out;
}

// Generates up to options.max_new_tokens decoder tokens for each encoder input with T5.
// There is no length limit (relative positions); the other checks are generate()'s above.
template <class T>
Generation generate(const T5Model<T>& model, const std::vector<std::vector<std::int32_t>>& encoder_inputs,
                    const GenerateOptions& options, const TokenCallback& on_token = {}) {
    const T5Config& config = model.config;
    detail::check_generate_request("t5", "encoder input", encoder_inputs, options, config.vocab_size, 0, "");
    const index_t start = config.decoder_start_token_id;
    LLMBLOCKS_CHECK(start >= 0 && start < config.vocab_size, "generate (t5): decoder_start_token_id ", start,
                    " is outside the vocabulary [0, ", config.vocab_size, ")");
    Generation out;
    out.tokens.resize(encoder_inputs.size());
    if (options.max_new_tokens == 0) return out;

    std::vector<index_t> members(encoder_inputs.size());
    std::size_t Te = 0;
    for (std::size_t i = 0; i < encoder_inputs.size(); ++i) {
        members[i] = static_cast<index_t>(i);
        Te = std::max(Te, encoder_inputs[i].size());
    }
    detail::DecodeBatch batch(members, options.seed);
    const index_t B = batch.size();
    TensorI ids = TensorI::zeros({B, static_cast<index_t>(Te)});  // (B, Te), padded at the end
    std::vector<std::uint8_t> padding(static_cast<std::size_t>(B) * Te, 0);  // (B, Te): 1 = token
    bool padded = false;
    for (std::size_t b = 0; b < encoder_inputs.size(); ++b) {
        const auto& p = encoder_inputs[b];
        for (std::size_t t = 0; t < p.size(); ++t) {
            ids.data()[b * Te + t] = p[t];
            padding[b * Te + t] = 1;
        }
        padded = padded || p.size() < Te;
    }
    if (!padded) padding.clear();  // no mask: every input has the full length

    const detail::Stopwatch first;
    T5DecodeState<T> state = model.start_decoding(ids, options.max_new_tokens, padding);
    TensorI decoder_ids = TensorI::full({B, 1}, static_cast<std::int32_t>(start));  // (B, 1)
    batch.sample(model.decode_step(state, decoder_ids).select(1, 0), options, out);  // (B, 1, V) -> (B, V)
    out.prefill_seconds += first.seconds();
    batch.report(on_token);

    while (batch.running()) {
        const detail::Stopwatch step;
        const TensorI next = batch.next.reshape({B, 1});  // (B, 1)
        batch.sample(model.decode_step(state, next).select(1, 0), options, out);
        out.decode_seconds += step.seconds();
        batch.report(on_token);
    }
    return out;
}

}  // namespace llmblocks
