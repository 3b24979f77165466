// llmblocks/core.hpp — the core layer: Tensor, Error, Rng, memory counters, threading.
#pragma once

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/memory.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/core/tensor.hpp"
#include "llmblocks/core/threading.hpp"
