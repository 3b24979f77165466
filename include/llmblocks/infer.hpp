// llmblocks/infer.hpp — inference in one include: token sampling (greedy,
// temperature, top-k, top-p) and KV-cached generation for GPT-2/GPT-3, PaLM
// and T5. See docs/generation.md.
#pragma once

#include "llmblocks/infer/generate.hpp"
#include "llmblocks/infer/sampling.hpp"
