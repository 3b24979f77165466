// llmblocks/io/model_tokenizer.hpp — the tokenizer that goes with a model
// directory, found by the files in it:
//
//   vocab.json + merges.txt      GPT-2 byte-level BPE (Hugging Face layout)
//   tokenizer_config.json with   the byte-level tokenizer; "special_tokens"
//   "tokenizer_class":           lists its special tokens (ids 256, 257, ...)
//   "ByteTokenizer"
//   neither                      no tokenizer: programs read and print ids
//
// `<|endoftext|>` in text is its id in both (Hugging Face's GPT-2 behaviour),
// and is the end-of-text id that generation stops at.
#pragma once

#include <filesystem>
#include <fstream>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmblocks/core/error.hpp"
#include "llmblocks/io/bpe_tokenizer.hpp"
#include "llmblocks/io/byte_tokenizer.hpp"
#include "llmblocks/io/mapped_file.hpp"

namespace llmblocks {

inline constexpr std::string_view kEndOfText = "<|endoftext|>";

class ModelTokenizer {
public:
    explicit ModelTokenizer(BpeTokenizer bpe) : impl_(std::move(bpe)) {}
    explicit ModelTokenizer(ByteTokenizer bytes) : impl_(std::move(bytes)) {}

    // The tokenizer of model directory `dir`, or nullopt when it has no tokenizer files.
    static std::optional<ModelTokenizer> from_directory(const std::filesystem::path& dir) {
        if (std::filesystem::exists(dir / "vocab.json") || std::filesystem::exists(dir / "merges.txt"))
            return ModelTokenizer(BpeTokenizer::from_directory(dir.string()));
        const std::filesystem::path config = dir / "tokenizer_config.json";
        if (!std::filesystem::exists(config)) return std::nullopt;
        std::ifstream in(config, std::ios::binary);
        LLMBLOCKS_CHECK(in.good(), "ModelTokenizer: cannot open '", config.string(), "'");
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(in);
        } catch (const nlohmann::json::exception& e) {
            fail("ModelTokenizer: '", config.string(), "' is not valid JSON: ", e.what());
        }
        LLMBLOCKS_CHECK(j.is_object() && j.contains("tokenizer_class") && j["tokenizer_class"].is_string(),
                        "ModelTokenizer: '", config.string(), "' has no \"tokenizer_class\" string");
        const std::string cls = j["tokenizer_class"].get<std::string>();
        LLMBLOCKS_CHECK(cls == "ByteTokenizer", "ModelTokenizer: '", config.string(), "': tokenizer_class '", cls,
                        "' is not known (a GPT-2 tokenizer needs vocab.json and merges.txt)");
        std::vector<std::string> specials;
        if (j.contains("special_tokens")) {
            LLMBLOCKS_CHECK(j["special_tokens"].is_array(), "ModelTokenizer: '", config.string(),
                            "': \"special_tokens\" must be a list of strings");
            for (const auto& s : j["special_tokens"]) {
                LLMBLOCKS_CHECK(s.is_string(), "ModelTokenizer: '", config.string(), "': \"special_tokens\" must be a list of strings");
                specials.push_back(s.get<std::string>());
            }
        }
        return ModelTokenizer(ByteTokenizer(std::move(specials)));
    }

    // Writes tokenizer_config.json for a byte-level tokenizer with these special tokens.
    static void save_byte_config(const std::filesystem::path& dir, const std::vector<std::string>& special_tokens) {
        const nlohmann::json j = {{"tokenizer_class", "ByteTokenizer"}, {"special_tokens", special_tokens}};
        AtomicFileWriter writer(dir / "tokenizer_config.json");
        const std::string text = j.dump(2) + "\n";
        writer.write(text.data(), text.size());
        writer.commit();
    }

    // Copies whatever tokenizer files `from` has (vocab.json, merges.txt,
    // tokenizer_config.json) into `to`, replacing files of those names.
    static void copy_files(const std::filesystem::path& from, const std::filesystem::path& to) {
        for (const char* name : {"vocab.json", "merges.txt", "tokenizer_config.json"}) {
            if (!std::filesystem::exists(from / name)) continue;
            std::error_code ec;
            if (std::filesystem::equivalent(from / name, to / name, ec)) continue;
            std::filesystem::copy_file(from / name, to / name, std::filesystem::copy_options::overwrite_existing, ec);
            LLMBLOCKS_CHECK(!ec, "ModelTokenizer: cannot copy '", (from / name).string(), "' to '", (to / name).string(),
                            "': ", ec.message());
        }
    }

    bool is_bpe() const { return std::holds_alternative<BpeTokenizer>(impl_); }
    TokenId vocab_size() const {
        return std::visit([](const auto& t) { return t.vocab_size(); }, impl_);
    }
    // The `<|endoftext|>` id, if the tokenizer has one.
    std::optional<TokenId> eos_id() const {
        if (const auto* bpe = std::get_if<BpeTokenizer>(&impl_)) return bpe->token_to_id(kEndOfText);
        return std::get<ByteTokenizer>(impl_).special_id(kEndOfText);
    }
    // Text -> ids; `<|endoftext|>` (when the tokenizer has it) becomes its id.
    std::vector<TokenId> encode(std::string_view text) const {
        if (const auto* bpe = std::get_if<BpeTokenizer>(&impl_)) {
            if (eos_id()) return bpe->encode_with_special(text, {std::string(kEndOfText)});
            return bpe->encode(text);
        }
        return std::get<ByteTokenizer>(impl_).encode_with_special(text);
    }
    // Ids -> the exact bytes (fails on an id outside the vocabulary, naming it).
    std::string decode(std::span<const TokenId> ids) const {
        return std::visit([&](const auto& t) { return t.decode(ids); }, impl_);
    }

private:
    std::variant<BpeTokenizer, ByteTokenizer> impl_;
};

}  // namespace llmblocks
