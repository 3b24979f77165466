// llmblocks/ops.hpp — every differentiable op (and Variable, no_grad):
// include this one header to write or train a model with the reference autograd.
#pragma once

#include "llmblocks/autograd/variable.hpp"
#include "llmblocks/ops/activation.hpp"
#include "llmblocks/ops/attention.hpp"
#include "llmblocks/ops/dropout.hpp"
#include "llmblocks/ops/elementwise.hpp"
#include "llmblocks/ops/embedding.hpp"
#include "llmblocks/ops/linear.hpp"
#include "llmblocks/ops/loss.hpp"
#include "llmblocks/ops/norm.hpp"
#include "llmblocks/ops/reduce.hpp"
#include "llmblocks/ops/relative_position.hpp"
#include "llmblocks/ops/rope.hpp"
#include "llmblocks/ops/shape.hpp"
#include "llmblocks/ops/softmax.hpp"
