// llmblocks/io/tokenizer.hpp — the tokenizers: GPT-2 byte-level BPE
// (BpeTokenizer, loaded from Hugging Face vocab.json + merges.txt) and the
// byte-level demo tokenizer (ByteTokenizer). See docs/tokenizers.md.
#pragma once

#include "llmblocks/io/bpe_tokenizer.hpp"
#include "llmblocks/io/byte_tokenizer.hpp"
#include "llmblocks/io/pretokenize.hpp"
#include "llmblocks/io/utf8.hpp"
