// llmblocks/train.hpp — the training building blocks in one include:
// optimizers (SGD, AdamW, Adafactor) and gradient accumulation, learning-rate
// schedules, global gradient-norm clipping, the pre-training objectives
// (causal LM, prefix LM, T5 span corruption) and token data (llm.c token files,
// text, seeded window sampling, validation split), and training checkpoints
// that resume bit-exactly. See docs/training.md.
#pragma once

#include "llmblocks/train/checkpoint.hpp"
#include "llmblocks/train/clip.hpp"
#include "llmblocks/train/data.hpp"
#include "llmblocks/train/objectives.hpp"
#include "llmblocks/train/optimizer.hpp"
#include "llmblocks/train/schedule.hpp"
