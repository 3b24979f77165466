// llmblocks/train/schedule.hpp — learning-rate schedules, pure functions of the step.
//
// - constant_lr: the same rate at every step.
// - WarmupCosine: linear warmup, then cosine decay to min_lr, as llm.c's
//   train_gpt2 and nanoGPT (GPT-3 trained with warmup then cosine decay to 10%
//   of the peak rate):
//     step <  warmup:              max_lr * (step + 1) / warmup
//     warmup <= step <= total:     min_lr + 0.5 (1 + cos(pi (step - warmup) / (total - warmup))) (max_lr - min_lr)
//     step >  total:               min_lr
//   Steps count from 0 (the first optimizer step uses lr(0)).
// - inverse_sqrt_lr: PaLM's Adafactor schedule, peak for `hold` steps, then peak * sqrt(hold / step)
//   (PaLM: 1e-2 for 10k steps, then 1/sqrt(k)).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>

#include "llmblocks/core/error.hpp"

namespace llmblocks {

inline double constant_lr(double lr, std::int64_t /*step*/) { return lr; }

struct WarmupCosine {
    double max_lr = 6e-4;
    double min_lr = 0.0;            // llm.c: max_lr * final_lr_frac
    std::int64_t warmup_steps = 0;  // 0: start at max_lr
    std::int64_t total_steps = 1;   // the cosine reaches min_lr here

    void validate() const {
        LLMBLOCKS_CHECK(max_lr >= 0.0 && min_lr >= 0.0 && min_lr <= max_lr, "WarmupCosine: need 0 <= min_lr (", min_lr,
                        ") <= max_lr (", max_lr, ")");
        LLMBLOCKS_CHECK(warmup_steps >= 0 && total_steps >= warmup_steps, "WarmupCosine: need 0 <= warmup_steps (",
                        warmup_steps, ") <= total_steps (", total_steps, ")");
    }

    double operator()(std::int64_t step) const { return lr(step); }
    double lr(std::int64_t step) const {
        validate();
        LLMBLOCKS_CHECK(step >= 0, "WarmupCosine: negative step ", step);
        if (step < warmup_steps) return max_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
        if (step >= total_steps) return min_lr;  // also covers total_steps == warmup_steps
        const double ratio =
            static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps);
        const double coeff = 0.5 * (1.0 + std::cos(std::numbers::pi * ratio));  // 1 -> 0
        return min_lr + coeff * (max_lr - min_lr);
    }
};

// peak for steps [0, hold), then peak * sqrt(hold / (step + 1)) with steps counted from 1 as in PaLM's k.
inline double inverse_sqrt_lr(double peak, std::int64_t hold, std::int64_t step) {
    LLMBLOCKS_CHECK(hold >= 1 && step >= 0, "inverse_sqrt_lr: need hold >= 1 and step >= 0, got ", hold, ", ", step);
    const double k = static_cast<double>(step + 1);
    return k <= static_cast<double>(hold) ? peak : peak * std::sqrt(static_cast<double>(hold) / k);
}

}  // namespace llmblocks
