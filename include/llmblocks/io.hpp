// llmblocks/io.hpp — files: safetensors, .npy, config.json, checkpoints with
// their name maps, and the GPT-2 BPE and byte-level tokenizers.
#pragma once

#include "llmblocks/io/checkpoint.hpp"
#include "llmblocks/io/config.hpp"
#include "llmblocks/io/gpt2_checkpoint.hpp"
#include "llmblocks/io/half.hpp"
#include "llmblocks/io/mapped_file.hpp"
#include "llmblocks/io/model_tokenizer.hpp"
#include "llmblocks/io/npy.hpp"
#include "llmblocks/io/palm_checkpoint.hpp"
#include "llmblocks/io/safetensors.hpp"
#include "llmblocks/io/t5_checkpoint.hpp"
#include "llmblocks/io/tokenizer.hpp"
