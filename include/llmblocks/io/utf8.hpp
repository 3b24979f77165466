// llmblocks/io/utf8.hpp — UTF-8 stepping for the tokenizers (GPT-2 byte-level
// BPE pre-tokenizer). Decoding is strict (utf8proc_iterate: no overlong forms,
// no surrogates, nothing above U+10FFFF); a byte that does not start a valid
// sequence is reported as a one-byte invalid unit, so any byte string can be
// walked and every byte is covered exactly once.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <utf8proc.h>

#include "llmblocks/core/error.hpp"

namespace llmblocks {

// One step through a UTF-8 string: the code point and how many bytes it took.
// An invalid unit has valid == false, size == 1 and codepoint == the byte value.
struct Utf8Unit {
    char32_t codepoint = 0;
    std::size_t size = 0;
    bool valid = false;
};

// The unit that starts at byte offset pos (pos < text.size()).
inline Utf8Unit utf8_next(std::string_view text, std::size_t pos) {
    const auto byte = static_cast<unsigned char>(text[pos]);
    if (byte < 0x80) return {byte, 1, true};
    utf8proc_int32_t cp = -1;
    const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(text.data() + pos);
    const utf8proc_ssize_t n = utf8proc_iterate(p, static_cast<utf8proc_ssize_t>(text.size() - pos), &cp);
    if (n <= 0 || cp < 0) return {byte, 1, false};
    return {static_cast<char32_t>(cp), static_cast<std::size_t>(n), true};
}

// True when every byte of text belongs to a valid UTF-8 sequence.
inline bool utf8_is_valid(std::string_view text) {
    for (std::size_t pos = 0; pos < text.size();) {
        const Utf8Unit unit = utf8_next(text, pos);
        if (!unit.valid) return false;
        pos += unit.size;
    }
    return true;
}

// Appends the UTF-8 form of a Unicode scalar value (not a surrogate, <= U+10FFFF).
inline void utf8_append(std::string& out, char32_t codepoint) {
    LLMBLOCKS_CHECK(codepoint <= 0x10FFFF && !(codepoint >= 0xD800 && codepoint <= 0xDFFF),
                    "utf8_append: not a Unicode scalar value: ", static_cast<unsigned long>(codepoint));
    utf8proc_uint8_t buf[4];
    const utf8proc_ssize_t n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(codepoint), buf);
    out.append(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(n));
}

}  // namespace llmblocks
