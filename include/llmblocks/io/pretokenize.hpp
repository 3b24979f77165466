// llmblocks/io/pretokenize.hpp — the GPT-2 pre-tokenizer (Radford et al. 2019,
// "Language Models are Unsupervised Multitask Learners"; also GPT-3, which
// reuses the GPT-2 vocabulary). Before byte-level BPE runs, text is cut into
// pieces by the regex
//
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// and BPE merges never cross a piece boundary. This header implements that
// regex by hand as a scanner with the same leftmost-first, greedy semantics as
// a backtracking engine (Hugging Face tokenizers uses Oniguruma, OpenAI's
// encoder.py the Python `regex` module). At each position the first rule that
// matches wins:
//   1. an ASCII apostrophe followed by s, t, m, d, re, ve or ll (case-sensitive);
//   2. an optional U+0020 SPACE, then a maximal run of letters (\p{L} = Lu Ll Lt
//      Lm Lo), of numbers (\p{N} = Nd Nl No) or of "other" characters (neither
//      whitespace, letter nor number: punctuation, symbols, marks, controls);
//   3. a whitespace run: all of it if it reaches the end of the text; otherwise
//      all but its last character when it is two or more characters long (the
//      backtracking of \s+(?!\S)), so that a final U+0020 can prefix the next
//      word by rule 2; a single whitespace character alone (\s+).
// Character classes come from utf8proc's general categories. Whitespace (\s) is
// Oniguruma's Unicode definition, which equals the Unicode White_Space property:
// U+0009..U+000D, U+0085 and the categories Zs, Zl, Zp. (JavaScript's \s differs
// at U+0085 and U+FEFF; see docs/tokenizers.md.) Bytes that are not valid UTF-8
// count as "other", so any byte string is cut into pieces that cover it exactly.
//
// Also here, shared by both tokenizers: the TokenId type and the splitting of
// text at special tokens such as "<|endoftext|>".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <utf8proc.h>

#include "llmblocks/core/error.hpp"
#include "llmblocks/io/utf8.hpp"

namespace llmblocks {

// Token ids of every tokenizer are int32, like TensorI.
using TokenId = std::int32_t;

// The classes the GPT-2 regex distinguishes.
enum class Gpt2CharClass : std::uint8_t { letter, number, whitespace, other };

// Class of a Unicode code point (any value; non-characters and unassigned code
// points are "other").
inline Gpt2CharClass gpt2_char_class(char32_t cp) {
    if (cp > 0x10FFFF) return Gpt2CharClass::other;
    if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x85) return Gpt2CharClass::whitespace;
    switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
        case UTF8PROC_CATEGORY_LU:
        case UTF8PROC_CATEGORY_LL:
        case UTF8PROC_CATEGORY_LT:
        case UTF8PROC_CATEGORY_LM:
        case UTF8PROC_CATEGORY_LO: return Gpt2CharClass::letter;
        case UTF8PROC_CATEGORY_ND:
        case UTF8PROC_CATEGORY_NL:
        case UTF8PROC_CATEGORY_NO: return Gpt2CharClass::number;
        case UTF8PROC_CATEGORY_ZS:
        case UTF8PROC_CATEGORY_ZL:
        case UTF8PROC_CATEGORY_ZP: return Gpt2CharClass::whitespace;
        default: return Gpt2CharClass::other;
    }
}

namespace detail {

// ASCII classes, looked up instead of asking utf8proc (most text is ASCII).
struct AsciiClassTable {
    Gpt2CharClass cls[128];
    AsciiClassTable() {
        for (char32_t c = 0; c < 128; ++c) cls[c] = gpt2_char_class(c);
    }
};

inline Gpt2CharClass unit_class(const Utf8Unit& unit) {
    static const AsciiClassTable table;
    if (!unit.valid) return Gpt2CharClass::other;
    if (unit.codepoint < 128) return table.cls[unit.codepoint];
    return gpt2_char_class(unit.codepoint);
}

// End of the maximal run of class cls that starts at pos.
inline std::size_t class_run_end(std::string_view text, std::size_t pos, Gpt2CharClass cls) {
    while (pos < text.size()) {
        const Utf8Unit unit = utf8_next(text, pos);
        if (unit_class(unit) != cls) break;
        pos += unit.size;
    }
    return pos;
}

// Length of a contraction ('s 't 'm 'd 're 've 'll) starting at pos, or 0.
inline std::size_t contraction_size(std::string_view text, std::size_t pos) {
    if (text[pos] != '\'' || pos + 1 >= text.size()) return 0;
    const char a = text[pos + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 >= text.size()) return 0;
    const char b = text[pos + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

// End of the piece that starts at pos (pos < text.size()).
inline std::size_t gpt2_piece_end(std::string_view text, std::size_t pos) {
    if (const std::size_t n = contraction_size(text, pos)) return pos + n;
    const Utf8Unit first = utf8_next(text, pos);
    const Gpt2CharClass first_class = unit_class(first);
    // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": a leading U+0020 joins the run after it.
    if (first.codepoint == ' ' && pos + 1 < text.size()) {
        const Gpt2CharClass next_class = unit_class(utf8_next(text, pos + 1));
        if (next_class != Gpt2CharClass::whitespace) return class_run_end(text, pos + 1, next_class);
    }
    if (first_class != Gpt2CharClass::whitespace) return class_run_end(text, pos + first.size, first_class);
    // "\s+(?!\S)|\s+": scan the whitespace run, remembering where its last character starts.
    std::size_t last_start = pos;
    std::size_t end = pos + first.size;
    std::size_t count = 1;
    while (end < text.size()) {
        const Utf8Unit unit = utf8_next(text, end);
        if (unit_class(unit) != Gpt2CharClass::whitespace) break;
        last_start = end;
        end += unit.size;
        ++count;
    }
    if (end == text.size() || count == 1) return end;
    return last_start;
}

}  // namespace detail

// Calls fn(piece) for each GPT-2 pre-tokenizer piece of text, in order. The
// pieces are non-empty views into text and concatenate to exactly text.
template <class Fn>
void gpt2_pretokenize_each(std::string_view text, Fn&& fn) {
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t end = detail::gpt2_piece_end(text, pos);
        fn(text.substr(pos, end - pos));
        pos = end;
    }
}

// The GPT-2 pre-tokenizer pieces of text (views into text).
inline std::vector<std::string_view> gpt2_pretokenize(std::string_view text) {
    std::vector<std::string_view> pieces;
    gpt2_pretokenize_each(text, [&](std::string_view piece) { pieces.push_back(piece); });
    return pieces;
}

// Cuts text at occurrences of special tokens (e.g. "<|endoftext|>"), the step
// Hugging Face runs before pre-tokenization when special tokens are allowed:
// on_text(segment) for the ordinary text between them (never empty), and
// on_special(index into specials) for each occurrence. The leftmost occurrence
// wins; among specials starting at the same byte, the longest.
template <class OnText, class OnSpecial>
void split_on_special_tokens(std::string_view text, const std::vector<std::string>& specials,
                             OnText&& on_text, OnSpecial&& on_special) {
    for (const std::string& s : specials)
        LLMBLOCKS_CHECK(!s.empty(), "split_on_special_tokens: a special token is the empty string");
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t best_at = std::string_view::npos;
        std::size_t best = 0;
        for (std::size_t k = 0; k < specials.size(); ++k) {
            const std::size_t at = text.find(specials[k], pos);
            if (at == std::string_view::npos) continue;
            if (at < best_at || (at == best_at && specials[k].size() > specials[best].size())) {
                best_at = at;
                best = k;
            }
        }
        if (best_at == std::string_view::npos) {
            on_text(text.substr(pos));
            return;
        }
        if (best_at > pos) on_text(text.substr(pos, best_at - pos));
        on_special(best);
        pos = best_at + specials[best].size();
    }
}

}  // namespace llmblocks
