// llmblocks/train/objectives.hpp — the pre-training objectives compared in the
// T5 paper (Raffel et al. 2020, section 3.3), as pure transforms of token ids:
//
// - causal LM (GPT-2, GPT-3, PaLM): inputs x[0..T-1], targets x[1..T].
// - prefix LM (T5's decoder-only "prefix LM" variant): the same shift, but
//   the loss skips the prefix: a position whose target token is still part of
//   the prefix gets -100 (cross_entropy's ignore_index). The prefix length
//   goes to the attention mask (AttentionOptions::prefix_length: the prefix
//   is fully visible, the rest causal).
// - span corruption (T5's denoising objective): 15% of the tokens, in spans of
//   mean length 3, are dropped; each dropped span becomes one sentinel id in
//   the input, and the target lists each sentinel followed by its span.
//
// Everything random takes an Rng, so a seed fixes the result. Span corruption
// follows T5's random_spans_noise_mask (t5/data/preprocessors.py):
//   num_noise_tokens = round(L * noise_density), clamped to [1, L - 1]
//   num_noise_spans  = max(1, round(num_noise_tokens / mean_noise_span_length))
//   noise span lengths     = random_segmentation(num_noise_tokens, num_noise_spans)
//   non-noise span lengths = random_segmentation(L - num_noise_tokens, num_noise_spans)
//   layout: non-noise, noise, non-noise, noise, ... (starts with non-noise, ends with noise)
// where random_segmentation(n, k) is a uniformly random composition of n into k
// positive parts: shuffle (k - 1) ones among (n - 1) "segment starts here"
// flags. round() is round-half-to-even, as Python's round() in T5's code.
// One deviation: num_noise_spans is also capped at L - num_noise_tokens so
// that every non-noise span is non-empty at any density (T5 would fail there).
// Sentinels count down from `first_sentinel` (T5: vocab_size - 1 is <extra_id_0>,
// then vocab_size - 2 is <extra_id_1>, ...).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/core/tensor.hpp"

namespace llmblocks {

inline constexpr std::int32_t kIgnoreIndex = -100;  // cross_entropy's default ignore_index

// Inputs and targets of equal length T for a decoder-only model.
struct LmExample {
    std::vector<std::int32_t> inputs;   // (T,)
    std::vector<std::int32_t> targets;  // (T,) -100 where no loss is taken
    index_t prefix_length = 0;          // prefix LM: inputs [0, prefix_length) are fully visible
};

// Causal LM from T + 1 tokens: inputs x[0..T-1], targets x[1..T].
inline LmExample causal_lm(std::span<const std::int32_t> tokens) {
    LLMBLOCKS_CHECK(tokens.size() >= 2, "causal_lm: need at least 2 tokens, got ", tokens.size());
    LmExample ex;
    ex.inputs.assign(tokens.begin(), tokens.end() - 1);
    ex.targets.assign(tokens.begin() + 1, tokens.end());
    return ex;
}

// Causal LM over a batch of windows (B, T + 1) -> inputs (B, T), targets (B, T).
inline std::pair<TensorI, TensorI> causal_lm(const TensorI& windows) {  // (B, T + 1)
    LLMBLOCKS_CHECK(windows.defined() && windows.dim() == 2 && windows.size(1) >= 2,
                    "causal_lm: windows must be (B, T + 1) with T >= 1, got ",
                    windows.defined() ? windows.shape() : Shape{});
    const index_t T = windows.size(1) - 1;
    return {windows.narrow(1, 0, T).contiguous(), windows.narrow(1, 1, T).contiguous()};
}

// Prefix LM from T + 1 tokens whose first `prefix_length` tokens are the prefix
// (1 <= prefix_length <= T). Position t predicts x[t + 1]; it is a target only
// when x[t + 1] lies after the prefix (t + 1 >= prefix_length), so the last
// prefix position predicts the first token after the prefix.
inline LmExample prefix_lm(std::span<const std::int32_t> tokens, index_t prefix_length) {
    const index_t T = static_cast<index_t>(tokens.size()) - 1;
    LLMBLOCKS_CHECK(T >= 1 && prefix_length >= 1 && prefix_length <= T, "prefix_lm: prefix length ", prefix_length,
                    " must be in [1, ", T, "] for ", tokens.size(), " tokens");
    LmExample ex = causal_lm(tokens);
    for (index_t t = 0; t + 1 < prefix_length; ++t) ex.targets[static_cast<std::size_t>(t)] = kIgnoreIndex;
    ex.prefix_length = prefix_length;
    return ex;
}

// Prefix LM with the split point drawn uniformly from [1, T] (T5's prefix LM
// objective splits each text at a random point).
inline LmExample prefix_lm(std::span<const std::int32_t> tokens, Rng& rng) {
    const index_t T = static_cast<index_t>(tokens.size()) - 1;
    LLMBLOCKS_CHECK(T >= 1, "prefix_lm: need at least 2 tokens, got ", tokens.size());
    return prefix_lm(tokens, rng.randint(1, T + 1));
}

// ---- span corruption ---------------------------------------------------------------------------

struct SpanCorruptionOptions {
    double noise_density = 0.15;          // fraction of tokens dropped
    double mean_noise_span_length = 3.0;  // average length of a dropped span
    std::int32_t first_sentinel = 32099;  // <extra_id_0>; T5: vocab_size - 1 (32100 - 1)
    std::int32_t eos_id = -1;             // >= 0: appended to inputs and targets (T5: 1)
};

// The span layout: non_noise[0], noise[0], non_noise[1], noise[1], ...
struct SpanLayout {
    std::vector<index_t> non_noise;  // lengths of the kept spans (all > 0)
    std::vector<index_t> noise;      // lengths of the dropped spans (all > 0), one per kept span
};

struct SpanCorruptionExample {
    std::vector<std::int32_t> inputs;   // kept spans, each dropped span replaced by its sentinel
    std::vector<std::int32_t> targets;  // each sentinel followed by its dropped span
};

// Python's round() on a double: halves go to the even neighbour.
inline index_t round_half_even(double x) {
    const double f = std::floor(x);
    const double diff = x - f;
    if (diff > 0.5) return static_cast<index_t>(f) + 1;
    if (diff < 0.5) return static_cast<index_t>(f);
    const auto fi = static_cast<index_t>(f);
    return fi % 2 == 0 ? fi : fi + 1;
}

// T5's counts for a sequence of `length` tokens: {num_noise_tokens, num_noise_spans}.
inline std::pair<index_t, index_t> span_corruption_counts(index_t length, const SpanCorruptionOptions& o) {
    LLMBLOCKS_CHECK(length >= 2, "span_corruption: need at least 2 tokens, got ", length);
    LLMBLOCKS_CHECK(o.noise_density > 0.0 && o.noise_density < 1.0 && o.mean_noise_span_length >= 1.0,
                    "span_corruption: need 0 < noise_density (", o.noise_density, ") < 1 and mean_noise_span_length (",
                    o.mean_noise_span_length, ") >= 1");
    index_t noise = round_half_even(static_cast<double>(length) * o.noise_density);
    noise = std::min(std::max<index_t>(noise, 1), length - 1);
    index_t spans = std::max<index_t>(round_half_even(static_cast<double>(noise) / o.mean_noise_span_length), 1);
    spans = std::min(spans, length - noise);  // every kept span non-empty (see the file comment)
    return {noise, spans};
}

// A uniformly random composition of n items into k positive parts (T5's
// _random_segmentation): of the n - 1 places after items 0..n-2, k - 1 chosen
// ones start a new segment (a Fisher-Yates shuffle of the flags).
inline std::vector<index_t> random_segmentation(index_t n, index_t k, Rng& rng) {
    LLMBLOCKS_CHECK(k >= 1 && n >= k, "random_segmentation: cannot split ", n, " items into ", k, " positive parts");
    std::vector<char> starts(static_cast<std::size_t>(n - 1), 0);
    for (index_t i = 0; i < k - 1; ++i) starts[static_cast<std::size_t>(i)] = 1;
    for (index_t i = n - 2; i > 0; --i) std::swap(starts[static_cast<std::size_t>(i)],
                                                  starts[static_cast<std::size_t>(rng.randint(0, i + 1))]);
    std::vector<index_t> lengths(1, 1);  // item 0 opens segment 0
    for (char s : starts) {
        if (s) lengths.push_back(1);
        else ++lengths.back();
    }
    return lengths;
}

// T5's random span layout for `length` tokens.
inline SpanLayout random_span_layout(index_t length, const SpanCorruptionOptions& o, Rng& rng) {
    const auto [noise, spans] = span_corruption_counts(length, o);
    SpanLayout layout;
    layout.noise = random_segmentation(noise, spans, rng);
    layout.non_noise = random_segmentation(length - noise, spans, rng);
    return layout;
}

// The deterministic core: applies an explicit layout (which must cover the
// tokens exactly) with sentinels first_sentinel, first_sentinel - 1, ...
inline SpanCorruptionExample span_corruption(std::span<const std::int32_t> tokens, const SpanLayout& layout,
                                             std::int32_t first_sentinel, std::int32_t eos_id = -1) {
    LLMBLOCKS_CHECK(layout.noise.size() == layout.non_noise.size() && !layout.noise.empty(),
                    "span_corruption: the layout needs as many kept spans as dropped spans (>= 1), got ",
                    layout.non_noise.size(), " and ", layout.noise.size());
    index_t total = 0;
    for (std::size_t s = 0; s < layout.noise.size(); ++s) {
        LLMBLOCKS_CHECK(layout.noise[s] > 0 && layout.non_noise[s] > 0, "span_corruption: span ", s,
                        " has a non-positive length");
        total += layout.noise[s] + layout.non_noise[s];
    }
    LLMBLOCKS_CHECK(total == static_cast<index_t>(tokens.size()), "span_corruption: the layout covers ", total,
                    " tokens but the sequence has ", tokens.size());
    LLMBLOCKS_CHECK(first_sentinel - static_cast<index_t>(layout.noise.size()) + 1 >= 0,
                    "span_corruption: ", layout.noise.size(), " sentinels counting down from ", first_sentinel,
                    " go below 0");
    SpanCorruptionExample ex;
    std::size_t pos = 0;
    for (std::size_t s = 0; s < layout.noise.size(); ++s) {
        const auto sentinel = static_cast<std::int32_t>(first_sentinel - static_cast<std::int32_t>(s));
        for (index_t k = 0; k < layout.non_noise[s]; ++k) ex.inputs.push_back(tokens[pos++]);
        ex.inputs.push_back(sentinel);
        ex.targets.push_back(sentinel);
        for (index_t k = 0; k < layout.noise[s]; ++k) ex.targets.push_back(tokens[pos++]);
    }
    if (eos_id >= 0) {
        ex.inputs.push_back(eos_id);
        ex.targets.push_back(eos_id);
    }
    return ex;
}

// T5's span corruption with a random layout drawn from rng.
inline SpanCorruptionExample span_corruption(std::span<const std::int32_t> tokens, const SpanCorruptionOptions& o,
                                             Rng& rng) {
    const SpanLayout layout = random_span_layout(static_cast<index_t>(tokens.size()), o, rng);
    return span_corruption(tokens, layout, o.first_sentinel, o.eos_id);
}

// A training batch for an encoder-decoder model (T5).
struct Seq2SeqBatch {
    TensorI encoder_ids;  // (B, Te)
    TensorI decoder_ids;  // (B, Td): the targets shifted right behind the decoder start token
    TensorI targets;      // (B, Td)
};

// Span corruption of each row of `windows` (B, L), one random layout per row.
// Rows of equal length get equal counts (span_corruption_counts), so every
// row's input and target have the same lengths and the batch needs no padding.
// decoder_ids = [start_id, targets[0 .. Td - 2]] (T5's shift_right).
inline Seq2SeqBatch span_corruption_batch(const TensorI& windows, const SpanCorruptionOptions& o,
                                          std::int32_t start_id, Rng& rng) {
    LLMBLOCKS_CHECK(windows.defined() && windows.dim() == 2 && windows.size(0) >= 1 && windows.size(1) >= 2,
                    "span_corruption_batch: windows must be (B, L) with B >= 1 and L >= 2, got ",
                    windows.defined() ? windows.shape() : Shape{});
    const TensorI w = windows.contiguous();
    const index_t B = w.size(0), L = w.size(1);
    Seq2SeqBatch batch;
    for (index_t b = 0; b < B; ++b) {
        const SpanCorruptionExample ex = span_corruption(std::span<const std::int32_t>(w.data() + b * L, L), o, rng);
        const auto Te = static_cast<index_t>(ex.inputs.size()), Td = static_cast<index_t>(ex.targets.size());
        if (b == 0) {
            batch.encoder_ids = TensorI::empty({B, Te});
            batch.decoder_ids = TensorI::empty({B, Td});
            batch.targets = TensorI::empty({B, Td});
        }
        std::copy(ex.inputs.begin(), ex.inputs.end(), batch.encoder_ids.data() + b * Te);
        std::copy(ex.targets.begin(), ex.targets.end(), batch.targets.data() + b * Td);
        std::int32_t* dec = batch.decoder_ids.data() + b * Td;
        dec[0] = start_id;
        std::copy(ex.targets.begin(), ex.targets.end() - 1, dec + 1);
    }
    return batch;
}

}  // namespace llmblocks
