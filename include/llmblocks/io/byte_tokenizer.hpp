// llmblocks/io/byte_tokenizer.hpp — the byte-level tokenizer for demos and
// small experiments (no vocabulary files, as in character-level nanoGPT runs,
// but over UTF-8 bytes so any text works): id = byte value (0..255), plus
// optional special tokens with ids 256, 257, ... in the order given
// (e.g. {"<|endoftext|>"} gives the end-of-text id 256).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "llmblocks/core/error.hpp"
#include "llmblocks/io/pretokenize.hpp"

namespace llmblocks {

class ByteTokenizer {
public:
    explicit ByteTokenizer(std::vector<std::string> special_tokens = {}) : specials_(std::move(special_tokens)) {
        for (std::size_t i = 0; i < specials_.size(); ++i) {
            LLMBLOCKS_CHECK(!specials_[i].empty(), "ByteTokenizer: special token ", i, " is the empty string");
            for (std::size_t j = 0; j < i; ++j)
                LLMBLOCKS_CHECK(specials_[j] != specials_[i], "ByteTokenizer: special token '", specials_[i], "' is listed twice");
        }
    }

    // 256 byte ids plus the special tokens.
    TokenId vocab_size() const { return static_cast<TokenId>(256 + specials_.size()); }

    // The id of a special token, if it is one.
    std::optional<TokenId> special_id(std::string_view token) const {
        for (std::size_t i = 0; i < specials_.size(); ++i)
            if (specials_[i] == token) return static_cast<TokenId>(256 + i);
        return std::nullopt;
    }

    // Text -> one id per byte; special-token strings are plain text here.
    std::vector<TokenId> encode(std::string_view text) const {
        std::vector<TokenId> ids;
        ids.reserve(text.size());
        for (const char c : text) ids.push_back(static_cast<unsigned char>(c));
        return ids;
    }

    // Text -> ids, with each occurrence of a special token mapped to its id.
    std::vector<TokenId> encode_with_special(std::string_view text) const {
        std::vector<TokenId> ids;
        split_on_special_tokens(
            text, specials_,
            [&](std::string_view segment) {
                for (const char c : segment) ids.push_back(static_cast<unsigned char>(c));
            },
            [&](std::size_t k) { ids.push_back(static_cast<TokenId>(256 + k)); });
        return ids;
    }

    // Ids -> bytes; a special id decodes to its text.
    std::string decode(std::span<const TokenId> ids) const {
        std::string out;
        out.reserve(ids.size());
        for (const TokenId id : ids) {
            if (id < 0 || id >= vocab_size()) fail("ByteTokenizer::decode: unknown token id ", id, " (vocab size ", vocab_size(), ")");
            if (id < 256) out.push_back(static_cast<char>(static_cast<unsigned char>(id)));
            else out += specials_[static_cast<std::size_t>(id - 256)];
        }
        return out;
    }
    std::string decode(const std::vector<TokenId>& ids) const { return decode(std::span<const TokenId>(ids)); }

private:
    std::vector<std::string> specials_;
};

}  // namespace llmblocks
