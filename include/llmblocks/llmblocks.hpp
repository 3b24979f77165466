// llmblocks/llmblocks.hpp — includes the whole library. Each header also stands alone.
#pragma once

#include "llmblocks/core.hpp"
#include "llmblocks/kernels.hpp"
