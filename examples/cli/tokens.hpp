// examples/cli/tokens.hpp — `llmblocks encode` and `llmblocks decode`: GPT-2
// byte-level BPE (io/bpe_tokenizer.hpp) from DIR/vocab.json + DIR/merges.txt,
// exactly per DESIGN.md contract detail 11:
//   encode  reads stdin to EOF, strips nothing, writes the ids separated by
//           single spaces and then one newline; empty text writes nothing.
//   decode  reads ids separated by whitespace (or commas) from stdin and writes
//           exactly the decoded bytes: no trailing newline, no space clean-up;
//           no ids write nothing. An id that is not a token fails, naming it.
// `<|endoftext|>` in the text is its id (50256 for GPT-2), as Hugging Face's
// GPT-2 tokenizer does, unless --plain asks for plain text (7 tokens).
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "cli/args.hpp"
#include "cli/io.hpp"
#include "llmblocks/io/bpe_tokenizer.hpp"

namespace llmblocks::cli {

namespace detail {

inline bool is_id_separator(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == ',';
}

// "15496 995\n" -> {15496, 995}; anything that is not a token id fails, naming it.
inline std::vector<TokenId> parse_ids(std::string_view text, TokenId vocab_size) {
    std::vector<TokenId> ids;
    std::size_t i = 0;
    while (i < text.size()) {
        if (is_id_separator(text[i])) {
            ++i;
            continue;
        }
        std::size_t j = i;
        while (j < text.size() && !is_id_separator(text[j])) ++j;
        const std::string_view word = text.substr(i, j - i);
        std::int64_t id = 0;
        const auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), id);
        const std::string shown = word.size() > 40 ? std::string(word.substr(0, 37)) + "..." : std::string(word);
        if (end != word.data() + word.size() || (ec != std::errc() && ec != std::errc::result_out_of_range))
            fail("'", shown, "' is not a token id");
        if (ec == std::errc::result_out_of_range || id < 0 || id >= vocab_size)
            fail("token id ", shown, " is out of range (vocab size ", vocab_size, ")");
        ids.push_back(static_cast<TokenId>(id));
        i = j;
    }
    return ids;
}

}  // namespace detail

inline int run_encode(const Args& args, Io& io) {
    const BpeTokenizer tok = BpeTokenizer::from_directory(args.get("--model"));
    const std::string text = read_all(io.in);
    if (io.in.bad()) fail("cannot read stdin");
    // As Hugging Face's GPT-2 tokenizer: <|endoftext|> in the text is its special id
    // (when the vocabulary has it), unless --plain asks for plain text.
    const bool special = !args.has("--plain") && tok.token_to_id("<|endoftext|>").has_value();
    const std::vector<TokenId> ids = special ? tok.encode_with_special(text, {"<|endoftext|>"}) : tok.encode(text);
    std::string line;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (i) line += ' ';
        line += std::to_string(ids[i]);
    }
    if (!ids.empty()) io.out << line << '\n';
    return 0;
}

inline int run_decode(const Args& args, Io& io) {
    const BpeTokenizer tok = BpeTokenizer::from_directory(args.get("--model"));
    const std::string text = read_all(io.in);
    if (io.in.bad()) fail("cannot read stdin");
    const std::string bytes = tok.decode(detail::parse_ids(text, tok.vocab_size()));
    io.out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return 0;
}

}  // namespace llmblocks::cli
