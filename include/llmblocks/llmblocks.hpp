// llmblocks/llmblocks.hpp — includes the whole library, layer by layer. Each
// header also stands alone, and each layer has its own umbrella header.
#pragma once

#include "llmblocks/core.hpp"
#include "llmblocks/kernels.hpp"
#include "llmblocks/autograd.hpp"
#include "llmblocks/ops.hpp"
#include "llmblocks/nn.hpp"
#include "llmblocks/models.hpp"
#include "llmblocks/train.hpp"
#include "llmblocks/infer.hpp"
#include "llmblocks/io.hpp"
#include "llmblocks/analysis.hpp"
