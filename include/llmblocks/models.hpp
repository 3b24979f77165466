// llmblocks/models.hpp — GPT-2 / GPT-3, PaLM and T5: configs with presets and the models.
#pragma once

#include "llmblocks/models/gpt2.hpp"
#include "llmblocks/models/gpt2_config.hpp"
#include "llmblocks/models/palm.hpp"
#include "llmblocks/models/palm_config.hpp"
#include "llmblocks/models/t5.hpp"
#include "llmblocks/models/t5_config.hpp"
