// llmblocks/analysis.hpp — parameter and FLOP counts, KV-cache bytes, MFU.
#pragma once

#include "llmblocks/analysis/counts.hpp"
