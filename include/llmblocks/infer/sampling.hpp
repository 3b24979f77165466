// llmblocks/infer/sampling.hpp — choosing the next token from a row of logits:
// greedy (argmax), temperature, top-k (Fan et al. 2018) and nucleus / top-p
// sampling (Holtzman et al. 2020, "The Curious Case of Neural Text
// Degeneration"), as GPT-2's and most later models' samplers apply them.
//
// sample_token(logits (V), options, rng):
//   temperature == 0       argmax (the first largest logit); no draw
//   otherwise, in this order:
//   1. temperature   z_i = (l_i - max l) / temperature                  (double)
//   2. top-k         keep the k ids with the largest logits (k = 0: all); ties: smaller id first
//   3. softmax       p_i = exp(z_i) / sum_kept exp(z_j)                  (double)
//   4. top-p         sort the kept ids by logit (descending, ties: smaller id first) and keep
//                    the shortest prefix whose probability sum is >= top_p (1: all)
//   5. draw          u = uniform[0, 1) * sum_kept p, the first kept id whose running sum exceeds u
// Steps 2 and 4 only reorder by logit when they are on: with top_k = 0 and top_p = 1 the
// draw walks the ids in vocabulary order (no sort, O(V)); top-k sorts only the k best, and
// top-p sorts in growing blocks until the nucleus is complete (O(V) for a small nucleus).
// Either way the result is a deterministic function of the logits and the Rng state, and
// exactly one Rng::uniform() is consumed per sampled token.
// A logit of -inf has probability 0; NaN or +inf logits are an Error (a broken model).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/random.hpp"

namespace llmblocks {

struct SamplingOptions {
    double temperature = 1.0;  // 0 = greedy (argmax)
    index_t top_k = 0;         // 0 = off; keep the k largest logits
    double top_p = 1.0;        // 1 = off; nucleus: smallest set whose probability >= top_p

    void validate() const {
        LLMBLOCKS_CHECK(std::isfinite(temperature) && temperature >= 0.0,
                        "SamplingOptions: temperature must be finite and >= 0 (0 = greedy), got ", temperature);
        LLMBLOCKS_CHECK(top_k >= 0, "SamplingOptions: top_k must be >= 0 (0 = off), got ", top_k);
        LLMBLOCKS_CHECK(top_p > 0.0 && top_p <= 1.0, "SamplingOptions: top_p must be in (0, 1] (1 = off), got ", top_p);
    }
};

namespace detail {

// logits (V): non-empty, no NaN or +inf, at least one finite value, V < 2^31. Returns the
// largest finite logit. (One branch-free pass; the error path finds the culprit after.)
template <class T>
double check_logits(const char* op, std::span<const T> logits) {
    LLMBLOCKS_CHECK(!logits.empty(), op, ": the logits are empty");
    LLMBLOCKS_CHECK(logits.size() <= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()), op, ": ",
                    logits.size(), " logits do not fit 32-bit token ids");
    constexpr double inf = std::numeric_limits<double>::infinity();
    double max_logit = -inf;
    bool bad = false;
    for (const T x : logits) {
        const double l = static_cast<double>(x);
        bad |= !(l < inf);  // NaN or +inf
        max_logit = l > max_logit ? l : max_logit;
    }
    if (bad)
        for (std::size_t i = 0; i < logits.size(); ++i)
            LLMBLOCKS_CHECK(static_cast<double>(logits[i]) < inf, op, ": logit ", i, " of ", logits.size(), " is ",
                            static_cast<double>(logits[i]), " (the model produced non-finite logits)");
    LLMBLOCKS_CHECK(max_logit > -inf, op, ": all ", logits.size(), " logits are -inf");
    return max_logit;
}

// (logit, id), ordered "larger logit first, then smaller id": a strict total order, so the
// result never depends on how a sort breaks ties.
using SampleCandidate = std::pair<double, std::int32_t>;
inline bool sample_before(const SampleCandidate& a, const SampleCandidate& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
}

// The first id whose running weight sum exceeds u * total (ids[i] has weight[i]).
inline std::int32_t draw_from(const std::vector<double>& weight, const std::vector<std::int32_t>& ids, double total,
                              Rng& rng) {
    const double u = rng.uniform() * total;
    double cumulative = 0.0;
    std::size_t last_positive = 0;
    for (std::size_t i = 0; i < weight.size(); ++i) {
        if (weight[i] <= 0.0) continue;
        cumulative += weight[i];
        last_positive = i;
        if (u < cumulative) return ids[i];
    }
    return ids[last_positive];  // u rounded up to the total
}

}  // namespace detail

// The id of the largest logit (the first one on ties).
template <class T>
std::int32_t argmax_token(std::span<const T> logits) {
    detail::check_logits("argmax_token", logits);
    std::size_t best = 0;
    for (std::size_t i = 1; i < logits.size(); ++i)
        if (logits[i] > logits[best]) best = i;
    return static_cast<std::int32_t>(best);
}

// One token drawn from logits (V) with `options` (see the top of this file); uses one
// rng.uniform() unless options.temperature is 0.
template <class T>
std::int32_t sample_token(std::span<const T> logits, const SamplingOptions& options, Rng& rng) {
    options.validate();
    const double max_logit = detail::check_logits("sample_token", logits);
    if (options.temperature == 0.0) return argmax_token(logits);
    // 1. temperature, and the softmax numerator in double: w = exp((l - max l) / temperature).
    // The largest w is exactly 1, so sums neither overflow nor vanish; -inf gives w = 0.
    const auto weight_of = [&](double l) { return std::exp((l - max_logit) / options.temperature); };
    const std::size_t V = logits.size();

    const bool use_top_k = options.top_k > 0 && static_cast<std::size_t>(options.top_k) < V;
    const bool use_top_p = options.top_p < 1.0;
    std::vector<double> weight;
    std::vector<std::int32_t> ids;
    if (!use_top_k && !use_top_p) {  // plain softmax sampling: vocabulary order, no sort
        weight.resize(V);
        ids.resize(V);
        double total = 0.0;
        for (std::size_t i = 0; i < V; ++i) {
            weight[i] = weight_of(static_cast<double>(logits[i]));
            ids[i] = static_cast<std::int32_t>(i);
            total += weight[i];
        }
        return detail::draw_from(weight, ids, total, rng);
    }

    std::vector<detail::SampleCandidate> kept;  // the ids with a non-zero probability
    kept.reserve(V);
    for (std::size_t i = 0; i < V; ++i) {
        const double l = static_cast<double>(logits[i]);
        if (l != -std::numeric_limits<double>::infinity()) kept.emplace_back(l, static_cast<std::int32_t>(i));
    }
    // 2. top-k: the k best by logit (the temperature does not change the order), sorted.
    std::size_t sorted = 0;  // kept[0, sorted) are the best, in order
    if (use_top_k && static_cast<std::size_t>(options.top_k) < kept.size()) {
        const auto k = static_cast<std::ptrdiff_t>(options.top_k);
        std::nth_element(kept.begin(), kept.begin() + (k - 1), kept.end(), detail::sample_before);
        kept.resize(static_cast<std::size_t>(k));
    }
    if (use_top_k) {
        std::sort(kept.begin(), kept.end(), detail::sample_before);
        sorted = kept.size();
    }
    // 3. the softmax denominator over the kept ids.
    double total = 0.0;
    for (const auto& c : kept) total += weight_of(c.first);

    // 4. top-p: walk the kept ids in logit order until the probability reaches top_p; the
    // order is extended in growing blocks (nth_element + sort), so a small nucleus costs O(V).
    const double threshold = use_top_p ? options.top_p * total : std::numeric_limits<double>::infinity();
    double cumulative = 0.0;
    for (std::size_t n = 0; n < kept.size();) {
        if (n == sorted) {
            const std::size_t next = std::min(kept.size(), std::max<std::size_t>(64, 4 * sorted));
            const auto first = kept.begin() + static_cast<std::ptrdiff_t>(sorted);
            const auto last = kept.begin() + static_cast<std::ptrdiff_t>(next);
            std::nth_element(first, last - 1, kept.end(), detail::sample_before);
            std::sort(first, last, detail::sample_before);
            sorted = next;
        }
        weight.push_back(weight_of(kept[n].first));
        ids.push_back(kept[n].second);
        cumulative += weight.back();
        ++n;
        if (cumulative >= threshold) break;
    }
    // 5. one uniform draw over the kept probability mass.
    return detail::draw_from(weight, ids, cumulative, rng);
}

}  // namespace llmblocks
