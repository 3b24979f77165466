// llmblocks/nn.hpp — every module of the nn layer: Linear, Embedding,
// PositionEmbedding, Norm, FeedForward, RotaryEmbedding, RelativePositionBias,
// Attention (with its KV cache) and the SerialBlock / ParallelBlock /
// T5DecoderBlock of GPT-2, GPT-3, PaLM and T5. Each header also stands alone.
#pragma once

#include "llmblocks/nn/attention.hpp"
#include "llmblocks/nn/blocks.hpp"
#include "llmblocks/nn/embedding.hpp"
#include "llmblocks/nn/feed_forward.hpp"
#include "llmblocks/nn/kv_cache.hpp"
#include "llmblocks/nn/linear.hpp"
#include "llmblocks/nn/module.hpp"
#include "llmblocks/nn/norm.hpp"
#include "llmblocks/nn/relative_position_bias.hpp"
#include "llmblocks/nn/rotary.hpp"
