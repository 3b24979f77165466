// llmblocks/io/npy.hpp — NumPy .npy files: the CLI's `logits --out FILE.npy`
// output (float32 [T, vocab], C order), and a reader for reference arrays
// saved by numpy.save.
//
// Format (numpy.lib.format, "NEP 1"):
//   6 bytes  magic "\x93NUMPY"
//   2 bytes  version major, minor: 1.0; 2.0 and 3.0 differ only in the next field
//   2 bytes  header length H, unsigned little-endian (4 bytes in 2.0 and 3.0)
//   H bytes  a Python dict literal {'descr': '<f4', 'fortran_order': False,
//            'shape': (T, V), } padded with spaces and ended by '\n' so that the
//            data starts at a multiple of 64 bytes (numpy's ARRAY_ALIGN)
//   the rest the elements, row-major when fortran_order is False
//
// save_npy writes version 1.0 (2.0 only if the header would not fit in 65535
// bytes) with '<f4', '<f8', '<i4' or '<i8', through a temporary file renamed
// into place. load_npy reads versions 1.0, 2.0 and 3.0, little-endian '<f4' or
// '<f8', C order, and refuses everything else with an Error naming the file and
// the problem.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/tensor.hpp"
#include "llmblocks/io/mapped_file.hpp"

namespace llmblocks {

static_assert(std::endian::native == std::endian::little,
              "llmblocks io: safetensors and .npy data are little-endian; big-endian hosts are not supported");

// The parsed header of a .npy file.
struct NpyHeader {
    int major = 1, minor = 0;        // format version
    std::string descr;               // element type, e.g. "<f4"
    bool fortran_order = false;
    Shape shape;                     // outermost first; () for a 0-dim array
    std::uint64_t data_offset = 0;   // where the elements start in the file
};

namespace detail {

// numpy's descr for the element types save_npy writes.
template <class T>
constexpr const char* npy_descr() {
    if constexpr (std::is_same_v<T, float>) return "<f4";
    else if constexpr (std::is_same_v<T, double>) return "<f8";
    else if constexpr (std::is_same_v<T, std::int32_t>) return "<i4";
    else if constexpr (std::is_same_v<T, std::int64_t>) return "<i8";
    else static_assert(sizeof(T) == 0, "save_npy: T must be float, double, int32_t or int64_t");
}

// A parser for the one Python literal .npy headers hold: a dict of string keys
// to strings, True/False and tuples of integers.
class NpyDictParser {
public:
    NpyDictParser(std::string_view text, std::string where) : s_(text), where_(std::move(where)) {}

    NpyHeader parse() {
        NpyHeader h;
        bool has_descr = false, has_order = false, has_shape = false;
        expect('{');
        while (true) {
            skip_space();
            if (peek() == '}') break;
            const std::string key = string_literal();
            expect(':');
            skip_space();
            if (key == "descr") {
                if (peek() != '\'' && peek() != '"')
                    fail(where_, "header 'descr' is not a string (structured dtypes are not supported)");
                h.descr = string_literal();
                has_descr = true;
            } else if (key == "fortran_order") {
                h.fortran_order = boolean_literal();
                has_order = true;
            } else if (key == "shape") {
                h.shape = shape_literal();
                has_shape = true;
            } else {
                fail(where_, "header has an unexpected key '", key, "'");
            }
            skip_space();
            if (peek() == ',') {
                ++pos_;
                continue;
            }
            if (peek() != '}') fail(where_, "header dict: expected ',' or '}' at byte ", pos_, context());
        }
        ++pos_;
        skip_space();
        if (pos_ != s_.size()) fail(where_, "header dict: unexpected text after '}'", context());
        if (!has_descr || !has_order || !has_shape)
            fail(where_, "header lacks '", !has_descr ? "descr" : !has_order ? "fortran_order" : "shape", "'");
        return h;
    }

private:
    char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
    void skip_space() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
    }
    std::string context() const {
        const std::string_view rest = s_.substr(pos_ < s_.size() ? pos_ : s_.size(), 20);
        return " (near \"" + std::string(rest) + "\")";
    }
    void expect(char c) {
        skip_space();
        if (peek() != c) fail(where_, "header dict: expected '", c, "' at byte ", pos_, context());
        ++pos_;
    }
    std::string string_literal() {
        skip_space();
        const char quote = peek();
        if (quote != '\'' && quote != '"') fail(where_, "header dict: expected a quoted string at byte ", pos_, context());
        const std::size_t start = ++pos_;
        while (pos_ < s_.size() && s_[pos_] != quote) {
            if (s_[pos_] == '\\') fail(where_, "header dict: escapes in strings are not supported", context());
            ++pos_;
        }
        if (pos_ >= s_.size()) fail(where_, "header dict: unterminated string");
        return std::string(s_.substr(start, pos_++ - start));
    }
    bool boolean_literal() {
        if (s_.substr(pos_, 4) == "True") {
            pos_ += 4;
            return true;
        }
        if (s_.substr(pos_, 5) == "False") {
            pos_ += 5;
            return false;
        }
        fail(where_, "header 'fortran_order' is not True or False", context());
    }
    Shape shape_literal() {
        if (peek() != '(') fail(where_, "header 'shape' is not a tuple", context());
        ++pos_;
        Shape shape;
        while (true) {
            skip_space();
            if (peek() == ')') break;
            if (peek() == '-') fail(where_, "header 'shape' has a negative size", context());
            if (peek() < '0' || peek() > '9') fail(where_, "header 'shape' entry is not an integer", context());
            std::uint64_t value = 0;
            while (peek() >= '0' && peek() <= '9') {
                const std::uint64_t digit = static_cast<std::uint64_t>(peek() - '0');
                if (value > (static_cast<std::uint64_t>(std::numeric_limits<index_t>::max()) - digit) / 10)
                    fail(where_, "header 'shape' size is too large", context());
                value = value * 10 + digit;
                ++pos_;
            }
            shape.push_back(static_cast<index_t>(value));
            skip_space();
            if (peek() == ',') {
                ++pos_;
                continue;
            }
            if (peek() != ')') fail(where_, "header 'shape': expected ',' or ')'", context());
        }
        ++pos_;
        return shape;
    }

    std::string_view s_;
    std::string where_;
    std::size_t pos_ = 0;
};

inline std::string npy_shape_literal(const Shape& shape) {
    std::string s = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
}

}  // namespace detail

// The complete header bytes save_npy writes for an array of this descr and
// shape: magic, version, length, dict, padding and '\n' (a multiple of 64 bytes).
inline std::string npy_header_bytes(const std::string& descr, const Shape& shape) {
    const std::string dict =
        "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + detail::npy_shape_literal(shape) + ", }";
    // Pads the dict so that preamble + dict + '\n' is a multiple of 64 bytes.
    auto padded = [&](std::size_t preamble) {
        std::string text = dict;
        text.append((64 - (preamble + text.size() + 1) % 64) % 64, ' ');
        return text + '\n';
    };
    std::string text = padded(10);
    const bool v1 = text.size() <= 65535;  // version 1.0 stores the length in 2 bytes
    if (!v1) text = padded(12);
    std::string out = "\x93NUMPY";
    out += static_cast<char>(v1 ? 1 : 2);
    out += '\0';
    for (std::size_t i = 0; i < (v1 ? 2u : 4u); ++i) out += static_cast<char>((text.size() >> (8 * i)) & 0xff);
    return out + text;
}

// Writes `tensor` (any strides; written row-major) as a .npy file, atomically.
template <class T>
void save_npy(const std::filesystem::path& path, const Tensor<T>& tensor) {
    LLMBLOCKS_CHECK(tensor.defined(), "save_npy: '", path.string(), "': tensor is undefined");
    const std::string header = npy_header_bytes(detail::npy_descr<T>(), tensor.shape());
    AtomicFileWriter out(path);
    out.write(header.data(), header.size());
    if (tensor.numel() > 0) {
        const Tensor<T> packed = tensor.contiguous();
        out.write(packed.data(), static_cast<std::size_t>(packed.numel()) * sizeof(T));
    }
    out.commit();
}

// Parses and checks the header at the start of `bytes` (the whole file).
inline NpyHeader parse_npy_header(std::span<const std::byte> bytes, const std::string& path) {
    const std::string where = "npy: '" + path + "': ";
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    const std::size_t size = bytes.size();
    if (size < 10 || std::memcmp(p, "\x93NUMPY", 6) != 0) fail(where, "not a .npy file (no \\x93NUMPY magic)");
    NpyHeader h;
    h.major = p[6];
    h.minor = p[7];
    if (!((h.major == 1 || h.major == 2 || h.major == 3) && h.minor == 0))
        fail(where, "unsupported format version ", h.major, ".", h.minor, " (expected 1.0, 2.0 or 3.0)");
    std::uint64_t header_len = 0;
    std::size_t preamble = 10;
    if (h.major == 1) {
        header_len = p[8] | (static_cast<std::uint64_t>(p[9]) << 8);
    } else {
        preamble = 12;
        if (size < 12) fail(where, "the file is ", size, " bytes, too short for a version ", h.major, ".0 header");
        for (int i = 3; i >= 0; --i) header_len = (header_len << 8) | p[8 + i];
    }
    if (header_len > size - preamble)
        fail(where, "header length ", header_len, " runs past the end of the file (", size, " bytes)");
    h.data_offset = preamble + header_len;
    const std::string_view text(reinterpret_cast<const char*>(p + preamble), header_len);
    NpyHeader dict = detail::NpyDictParser(text, where).parse();
    h.descr = std::move(dict.descr);
    h.fortran_order = dict.fortran_order;
    h.shape = std::move(dict.shape);
    return h;
}

// Reads a .npy file of '<f4' or '<f8' elements in C order into a Tensor<T>
// (T float or double; '<f8' read as float rounds). Throws Error naming the file
// and the problem for anything else: another dtype, big-endian data, Fortran
// order, a truncated file or bytes after the data.
template <class T>
Tensor<T> load_npy(const std::filesystem::path& path) {
    static_assert(std::is_floating_point_v<T>, "load_npy<T>: T must be float or double");
    const MappedFile file(path);
    const std::string where = "npy: '" + path.string() + "': ";
    const NpyHeader h = parse_npy_header(file.bytes(), path.string());
    std::uint64_t itemsize;
    if (h.descr == "<f4") itemsize = 4;
    else if (h.descr == "<f8") itemsize = 8;
    else if (h.descr == ">f4" || h.descr == ">f8") fail(where, "big-endian data ('", h.descr, "') is not supported");
    else fail(where, "unsupported dtype '", h.descr, "' (expected '<f4' or '<f8')");
    if (h.fortran_order)
        fail(where, "Fortran-order arrays are not supported (save numpy.ascontiguousarray(a) instead)");
    // numel <= extent, the product of max(size, 1) that the tensor's strides reach; both must fit index_t.
    constexpr auto kMaxIndex = static_cast<std::uint64_t>(std::numeric_limits<index_t>::max());
    std::uint64_t numel = 1, extent = 1;
    for (index_t s : h.shape) {
        const auto m = std::max<std::uint64_t>(static_cast<std::uint64_t>(s), 1);
        if (extent > kMaxIndex / m) fail(where, "shape ", h.shape, " has too many elements");
        extent *= m;
        numel *= static_cast<std::uint64_t>(s);
    }
    if (numel > kMaxIndex / itemsize) fail(where, "shape ", h.shape, " has too many elements");
    const std::uint64_t have = file.size() - h.data_offset, need = numel * itemsize;
    if (have < need)
        fail(where, "shape ", h.shape, " ", h.descr, " needs ", need, " bytes of data but the file has ", have,
             " (is it truncated?)");
    if (have > need) fail(where, "the file has ", have - need, " bytes after the ", need, " bytes of data");

    Tensor<T> out = Tensor<T>::empty(h.shape);
    const std::byte* src = file.data() + h.data_offset;
    const index_t n = out.numel();
    if (itemsize == sizeof(T)) {
        if (n > 0) std::memcpy(out.data(), src, static_cast<std::size_t>(need));
    } else if (itemsize == 4) {
        for (index_t i = 0; i < n; ++i) {
            float v;
            std::memcpy(&v, src + 4 * i, 4);
            out.data()[i] = static_cast<T>(v);
        }
    } else {
        for (index_t i = 0; i < n; ++i) {
            double v;
            std::memcpy(&v, src + 8 * i, 8);
            out.data()[i] = static_cast<T>(v);
        }
    }
    return out;
}

}  // namespace llmblocks
