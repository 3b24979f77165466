// llmblocks/kernels.hpp — the kernels layer: SIMD kernels, each beside the
// plain scalar reference it is tested against (raw pointers and sizes).
#pragma once

#include "llmblocks/kernels/attention.hpp"
#include "llmblocks/kernels/elementwise.hpp"
#include "llmblocks/kernels/embedding.hpp"
#include "llmblocks/kernels/gemm.hpp"
#include "llmblocks/kernels/loss.hpp"
#include "llmblocks/kernels/norm.hpp"
#include "llmblocks/kernels/reduce.hpp"
#include "llmblocks/kernels/relative_position.hpp"
#include "llmblocks/kernels/rope.hpp"
#include "llmblocks/kernels/simd.hpp"
#include "llmblocks/kernels/softmax.hpp"
