// llmblocks/io/safetensors.hpp — reads (memory-mapped) and writes Hugging
// Face safetensors files, the checkpoint format of `model.safetensors` for
// GPT-2, T5 and Llama-style (PaLM-like) models, and of the CLI's `grad` output.
//
// Format (github.com/huggingface/safetensors, README "Format"):
//   8 bytes   N, the header length, unsigned 64-bit little-endian
//   N bytes   UTF-8 JSON object: {"name": {"dtype": "F32", "shape": [768, 2304],
//             "data_offsets": [begin, end]}, ..., "__metadata__": {"k": "v"}}
//             (__metadata__ optional, string -> string)
//   the rest  the byte buffer; [begin, end) is relative to its start. Tensors are
//             little-endian, row-major, packed; the buffer has no holes.
//
// Reading treats the file as hostile: every number in the header is checked
// before it is used (header length against the file and a 100 MB limit, each
// range against the buffer, each range length against shape and dtype with
// overflow checks, ranges against each other), duplicate keys are refused, and
// every failure throws llmblocks::Error naming the file and the tensor:
//   "safetensors: tensor 'h.0.attn.c_attn.weight' in '/m/model.safetensors':
//    shape (768, 2304) F32 needs 7077888 bytes but data_offsets give 7077884"
// A lying header can never make the reader touch bytes outside the file.
//
// Writing (save_safetensors) produces F32 tensors in the order given, the
// header padded with spaces so the buffer starts at a multiple of 8 bytes (every
// tensor is then 4-byte aligned in a mapped file), through a temporary file that
// is renamed into place only when complete.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/tensor.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/io/half.hpp"
#include "llmblocks/io/mapped_file.hpp"

namespace llmblocks {

static_assert(std::endian::native == std::endian::little,
              "llmblocks io: safetensors and .npy data are little-endian; big-endian hosts are not supported");

// The element types of the safetensors format.
enum class SafetensorsDtype { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

namespace detail {

struct SafetensorsDtypeInfo {
    SafetensorsDtype dtype;
    const char* name;
    std::uint64_t size;  // bytes per element
};

inline constexpr std::array<SafetensorsDtypeInfo, 15> kSafetensorsDtypes{{
    {SafetensorsDtype::BOOL, "BOOL", 1},   {SafetensorsDtype::U8, "U8", 1},
    {SafetensorsDtype::I8, "I8", 1},       {SafetensorsDtype::F8_E5M2, "F8_E5M2", 1},
    {SafetensorsDtype::F8_E4M3, "F8_E4M3", 1}, {SafetensorsDtype::I16, "I16", 2},
    {SafetensorsDtype::U16, "U16", 2},     {SafetensorsDtype::F16, "F16", 2},
    {SafetensorsDtype::BF16, "BF16", 2},   {SafetensorsDtype::I32, "I32", 4},
    {SafetensorsDtype::U32, "U32", 4},     {SafetensorsDtype::F32, "F32", 4},
    {SafetensorsDtype::F64, "F64", 8},     {SafetensorsDtype::I64, "I64", 8},
    {SafetensorsDtype::U64, "U64", 8},
}};

inline const SafetensorsDtypeInfo& dtype_info(SafetensorsDtype dtype) {
    for (const auto& d : kSafetensorsDtypes)
        if (d.dtype == dtype) return d;
    fail("safetensors: invalid dtype value ", static_cast<int>(dtype));
}

// Levenshtein distance (names are short; longer ones are cut at 256 characters).
inline std::size_t edit_distance(std::string_view a, std::string_view b) {
    a = a.substr(0, 256);
    b = b.substr(0, 256);
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = up;
        }
    }
    return row[b.size()];
}

// Reads a little-endian U from possibly unaligned bytes.
template <class U>
U load_unaligned(const std::byte* p) {
    U value;
    std::memcpy(&value, p, sizeof(U));
    return value;
}

// Converts n elements of `dtype` at `src` into out[0, n).
template <class T>
void convert_elements(T* out, const std::byte* src, SafetensorsDtype dtype, index_t n) {
    auto cast_all = [&](auto tag) {
        using U = decltype(tag);
        parallel_for(0, n, 1 << 16, [&](index_t lo, index_t hi) {
            for (index_t i = lo; i < hi; ++i) out[i] = static_cast<T>(load_unaligned<U>(src + i * sizeof(U)));
        });
    };
    switch (dtype) {
        case SafetensorsDtype::F32:
            if constexpr (std::is_same_v<T, float>) {
                if (n > 0) std::memcpy(out, src, static_cast<std::size_t>(n) * sizeof(float));
            } else {
                cast_all(float{});
            }
            return;
        case SafetensorsDtype::F64:
            if constexpr (std::is_same_v<T, double>) {
                if (n > 0) std::memcpy(out, src, static_cast<std::size_t>(n) * sizeof(double));
            } else {
                cast_all(double{});
            }
            return;
        case SafetensorsDtype::F16:
            parallel_for(0, n, 1 << 16, [&](index_t lo, index_t hi) {
                for (index_t i = lo; i < hi; ++i)
                    out[i] = static_cast<T>(half_to_float(load_unaligned<std::uint16_t>(src + 2 * i)));
            });
            return;
        case SafetensorsDtype::BF16:
            parallel_for(0, n, 1 << 16, [&](index_t lo, index_t hi) {
                for (index_t i = lo; i < hi; ++i)
                    out[i] = static_cast<T>(bf16_to_float(load_unaligned<std::uint16_t>(src + 2 * i)));
            });
            return;
        case SafetensorsDtype::BOOL:
            parallel_for(0, n, 1 << 16, [&](index_t lo, index_t hi) {
                for (index_t i = lo; i < hi; ++i) out[i] = load_unaligned<std::uint8_t>(src + i) != 0 ? T(1) : T(0);
            });
            return;
        case SafetensorsDtype::U8: return cast_all(std::uint8_t{});
        case SafetensorsDtype::I8: return cast_all(std::int8_t{});
        case SafetensorsDtype::I16: return cast_all(std::int16_t{});
        case SafetensorsDtype::U16: return cast_all(std::uint16_t{});
        case SafetensorsDtype::I32: return cast_all(std::int32_t{});
        case SafetensorsDtype::U32: return cast_all(std::uint32_t{});
        case SafetensorsDtype::I64: return cast_all(std::int64_t{});
        case SafetensorsDtype::U64: return cast_all(std::uint64_t{});
        case SafetensorsDtype::F8_E5M2:
        case SafetensorsDtype::F8_E4M3: break;
    }
    fail("safetensors: cannot convert dtype ", dtype_info(dtype).name, " to a floating-point tensor");
}

}  // namespace detail

inline const char* dtype_name(SafetensorsDtype dtype) { return detail::dtype_info(dtype).name; }
// Bytes per element.
inline std::uint64_t dtype_size(SafetensorsDtype dtype) { return detail::dtype_info(dtype).size; }
// The dtype spelled `name` ("F32", "BF16", ...), or nothing if the format has no such dtype.
inline std::optional<SafetensorsDtype> parse_safetensors_dtype(std::string_view name) {
    for (const auto& d : detail::kSafetensorsDtypes)
        if (name == d.name) return d.dtype;
    return std::nullopt;
}

// One tensor of a safetensors file, as its header describes it (validated).
struct SafetensorsTensor {
    std::string name;
    SafetensorsDtype dtype = SafetensorsDtype::F32;
    Shape shape;             // outermost first; () for a 0-dim tensor
    std::uint64_t begin = 0;  // byte range [begin, end) within the data buffer
    std::uint64_t end = 0;

    index_t numel() const { return shape_numel(shape); }
    std::uint64_t nbytes() const { return end - begin; }
};

// A safetensors file opened for reading: the file is memory-mapped and its
// header parsed and validated in the constructor. Tensors are listed in file
// order (by their place in the byte buffer). Move-only; views and spans stay
// valid as long as the object lives.
class SafetensorsFile {
public:
    // The reference implementation's limit on the header size.
    static constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

    explicit SafetensorsFile(std::filesystem::path path) : file_(std::move(path)) { parse_header(); }

    const std::filesystem::path& path() const { return file_.path(); }
    // All tensors, in file order.
    const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        out.reserve(tensors_.size());
        for (const auto& t : tensors_) out.push_back(t.name);
        return out;
    }
    std::size_t size() const { return tensors_.size(); }
    bool contains(std::string_view name) const { return index_.find(name) != index_.end(); }
    // The `__metadata__` strings (empty if the header has none).
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    // Offset of the byte buffer from the start of the file (8 + header length).
    std::uint64_t data_offset() const { return data_offset_; }

    // The tensor called `name`; throws Error listing the closest names if there is none.
    const SafetensorsTensor& info(std::string_view name) const {
        const auto it = index_.find(name);
        if (it == index_.end()) fail_unknown_name(name);
        return tensors_[it->second];
    }

    // The raw little-endian bytes of a tensor, inside the mapping (no copy).
    std::span<const std::byte> bytes(std::string_view name) const {
        const SafetensorsTensor& t = info(name);
        return {file_.data() + data_offset_ + t.begin, static_cast<std::size_t>(t.nbytes())};
    }

    // A zero-copy view of an F32 tensor's elements (row-major, t.shape), valid
    // while this object lives. Throws unless the dtype is F32 and the data is
    // 4-byte aligned in the file (always so for files padded as the spec's
    // writer and save_safetensors pad them).
    std::span<const float> view_f32(std::string_view name) const {
        const SafetensorsTensor& t = info(name);
        LLMBLOCKS_CHECK(t.dtype == SafetensorsDtype::F32, prefix(t.name), "view_f32 needs an F32 tensor, this one is ",
                        dtype_name(t.dtype), "; use load_float()");
        const std::byte* p = file_.data() + data_offset_ + t.begin;
        LLMBLOCKS_CHECK(reinterpret_cast<std::uintptr_t>(p) % alignof(float) == 0, prefix(t.name),
                        "data at file offset ", data_offset_ + t.begin, " is not 4-byte aligned; use load_float()");
        // The mapped bytes hold float objects written by the file's producer.
        return {reinterpret_cast<const float*>(p), static_cast<std::size_t>(t.numel())};
    }

    // A tensor converted to T (float or double): F32, F64, F16 and BF16 exactly
    // (F64 -> float rounds), the integer types and BOOL by value. F8 types throw.
    template <class T>
    Tensor<T> load(std::string_view name) const {
        static_assert(std::is_floating_point_v<T>, "SafetensorsFile::load<T>: T must be float or double");
        const SafetensorsTensor& t = info(name);
        LLMBLOCKS_CHECK(t.dtype != SafetensorsDtype::F8_E5M2 && t.dtype != SafetensorsDtype::F8_E4M3,
                        prefix(t.name), "dtype ", dtype_name(t.dtype), " cannot be loaded as a floating-point tensor");
        Tensor<T> out = Tensor<T>::empty(t.shape);
        detail::convert_elements(out.data(), file_.data() + data_offset_ + t.begin, t.dtype, t.numel());
        return out;
    }
    TensorF load_float(std::string_view name) const { return load<float>(name); }

    // Every tensor as float, in file order.
    std::vector<std::pair<std::string, TensorF>> load_all_float() const {
        std::vector<std::pair<std::string, TensorF>> out;
        out.reserve(tensors_.size());
        for (const auto& t : tensors_) out.emplace_back(t.name, load_float(t.name));
        return out;
    }

private:
    std::string file_prefix() const { return "safetensors: '" + path().string() + "': "; }
    std::string prefix(std::string_view name) const {
        return "safetensors: tensor '" + std::string(name) + "' in '" + path().string() + "': ";
    }

    [[noreturn]] void fail_unknown_name(std::string_view name) const {
        std::string msg = "safetensors: no tensor '" + std::string(name) + "' in '" + path().string() + "'";
        if (tensors_.empty()) fail(msg, " (the file holds no tensors)");
        // Closest names first: those containing the name or contained in it
        // (a missing or extra "transformer." prefix), then by edit distance.
        std::vector<std::pair<std::size_t, const std::string*>> ranked;
        for (const auto& t : tensors_) {
            const bool nested = t.name.find(name) != std::string::npos || name.find(t.name) != std::string_view::npos;
            ranked.emplace_back(nested ? 0 : 1 + detail::edit_distance(name, t.name), &t.name);
        }
        const std::size_t shown = std::min<std::size_t>(5, ranked.size());
        std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(shown), ranked.end(),
                          [](const auto& a, const auto& b) { return a.first != b.first ? a.first < b.first : *a.second < *b.second; });
        msg += " (" + std::to_string(tensors_.size()) + " tensors; closest: ";
        for (std::size_t i = 0; i < shown; ++i) msg += (i ? ", '" : "'") + *ranked[i].second + "'";
        fail(msg, shown < ranked.size() ? ", ...)" : ")");
    }

    using Json = nlohmann::json;

    // Parses the header JSON; refuses duplicate keys at any level (nlohmann
    // would silently keep the last one).
    Json parse_json(const char* begin, const char* end) const {
        std::vector<std::set<std::string>> keys;  // one set per open object
        std::string top_key;                       // the tensor entry being parsed
        auto on_event = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
            if (event == Json::parse_event_t::object_start) {
                keys.emplace_back();
            } else if (event == Json::parse_event_t::object_end) {
                if (!keys.empty()) keys.pop_back();
            } else if (event == Json::parse_event_t::key && !keys.empty()) {
                const std::string& key = parsed.get_ref<const std::string&>();
                if (keys.size() == 1) top_key = key;
                if (!keys.back().insert(key).second) {
                    if (keys.size() == 1)
                        fail(file_prefix(), "duplicate tensor name '", key, "' in the header");
                    fail(file_prefix(), "duplicate key '", key, "' in the header entry of '", top_key, "'");
                }
            }
            return true;
        };
        try {
            return Json::parse(begin, end, on_event);
        } catch (const Json::exception& e) {
            fail(file_prefix(), "header is not valid JSON: ", e.what());
        }
    }

    // Reads a shape entry or offset: a JSON integer >= 0.
    static std::optional<std::uint64_t> as_count(const Json& v) {
        if (!v.is_number_unsigned()) return std::nullopt;
        return v.get<std::uint64_t>();
    }

    void parse_header() {
        const std::byte* data = file_.data();
        const std::uint64_t size = file_.size();
        if (size < 8)
            fail(file_prefix(), "the file is ", size, " bytes, too short for the 8-byte header length");
        std::uint64_t header_len = 0;
        for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<std::uint64_t>(data[i]);
        if (header_len > kMaxHeaderBytes)
            fail(file_prefix(), "header length ", header_len, " exceeds the limit of ", kMaxHeaderBytes,
                 " bytes (the file is ", size, " bytes; not a safetensors file?)");
        if (header_len > size - 8)
            fail(file_prefix(), "header length ", header_len, " runs past the end of the file (", size,
                 " bytes, so at most ", size - 8, " bytes of header; is the file truncated?)");
        data_offset_ = 8 + header_len;
        const std::uint64_t buffer_size = size - data_offset_;

        const char* text = reinterpret_cast<const char*>(data + 8);
        const Json header = parse_json(text, text + header_len);
        if (!header.is_object()) fail(file_prefix(), "header is not a JSON object (it is ", header.type_name(), ")");

        for (const auto& [name, entry] : header.items()) {
            if (name == "__metadata__") {
                if (!entry.is_object())
                    fail(file_prefix(), "\"__metadata__\" is not a JSON object (it is ", entry.type_name(), ")");
                for (const auto& [key, value] : entry.items()) {
                    if (!value.is_string())
                        fail(file_prefix(), "\"__metadata__\" value of '", key, "' is not a string (it is ",
                             value.type_name(), ")");
                    metadata_[key] = value.get<std::string>();
                }
                continue;
            }
            tensors_.push_back(parse_entry(name, entry, buffer_size));
        }

        // File order; then the spec's rule: the ranges tile the buffer exactly,
        // no overlaps (a zero-size tensor may sit between two others) and no holes.
        std::sort(tensors_.begin(), tensors_.end(), [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
            return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
        });
        std::uint64_t covered = 0;
        const SafetensorsTensor* last = nullptr;
        for (const auto& t : tensors_) {
            if (t.begin < covered)
                fail("safetensors: tensors '", last->name, "' [", last->begin, ", ", last->end, ") and '", t.name, "' [",
                     t.begin, ", ", t.end, ") in '", path().string(), "' overlap");
            if (t.begin > covered)
                fail(file_prefix(), "bytes [", covered, ", ", t.begin, ") of the data buffer belong to no tensor (before '",
                     t.name, "'); the format allows no holes");
            covered = t.end;
            last = &t;
        }
        if (covered != buffer_size)
            fail(file_prefix(), "the data buffer has ", buffer_size, " bytes but the tensors cover only ", covered,
                 " (", buffer_size - covered, " stray bytes at the end)");
        for (std::size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
    }

    SafetensorsTensor parse_entry(const std::string& name, const Json& entry, std::uint64_t buffer_size) const {
        const std::string where = prefix(name);
        if (!entry.is_object()) fail(where, "header entry is not a JSON object (it is ", entry.type_name(), ")");
        auto field = [&](const char* key) -> const Json& {
            const auto it = entry.find(key);
            if (it == entry.end()) fail(where, "header entry has no \"", key, "\"");
            return *it;
        };
        SafetensorsTensor t;
        t.name = name;

        const Json& dtype = field("dtype");
        if (!dtype.is_string()) fail(where, "\"dtype\" is not a string (it is ", dtype.dump(), ")");
        const auto parsed = parse_safetensors_dtype(dtype.get_ref<const std::string&>());
        if (!parsed) {
            std::string known;
            for (const auto& d : detail::kSafetensorsDtypes) known += std::string(known.empty() ? "" : ", ") + d.name;
            fail(where, "unknown dtype '", dtype.get_ref<const std::string&>(), "' (known: ", known, ")");
        }
        t.dtype = *parsed;

        const Json& shape = field("shape");
        if (!shape.is_array()) fail(where, "\"shape\" is not an array (it is ", shape.dump(), ")");
        // numel <= extent, the product of max(size, 1) that a tensor's strides
        // reach; both must fit index_t (a zero size does not excuse the others).
        std::uint64_t numel = 1, extent = 1;
        constexpr auto kMaxIndex = static_cast<std::uint64_t>(std::numeric_limits<index_t>::max());
        for (const Json& s : shape) {
            const auto n = as_count(s);
            if (!n) {
                if (s.is_number_integer()) fail(where, "negative size ", s.dump(), " in shape ", shape.dump());
                fail(where, "shape entry ", s.dump(), " is not a non-negative integer in shape ", shape.dump());
            }
            const std::uint64_t m = std::max<std::uint64_t>(*n, 1);
            if (extent > kMaxIndex / m) fail(where, "shape ", shape.dump(), " has too many elements");
            extent *= m;
            numel *= *n;
            t.shape.push_back(static_cast<index_t>(*n));
        }
        const std::uint64_t elem = dtype_size(t.dtype);
        if (numel > kMaxIndex / elem) fail(where, "shape ", shape.dump(), " has too many elements");

        const Json& offsets = field("data_offsets");
        if (!offsets.is_array() || offsets.size() != 2)
            fail(where, "\"data_offsets\" is not a [begin, end] pair (it is ", offsets.dump(), ")");
        const auto begin = as_count(offsets[0]), end = as_count(offsets[1]);
        if (!begin || !end)
            fail(where, "\"data_offsets\" ", offsets.dump(), " are not non-negative integers");
        t.begin = *begin;
        t.end = *end;
        if (t.end < t.begin) fail(where, "data_offsets [", t.begin, ", ", t.end, "] end before they begin");
        if (t.end > buffer_size)
            fail(where, "data_offsets [", t.begin, ", ", t.end, "] run past the end of the data buffer (", buffer_size,
                 " bytes; is the file truncated?)");
        if (t.end - t.begin != numel * elem)
            fail(where, "shape ", t.shape, " ", dtype_name(t.dtype), " needs ", numel * elem,
                 " bytes but data_offsets give ", t.end - t.begin);
        return t;
    }

    MappedFile file_;
    std::uint64_t data_offset_ = 0;
    std::vector<SafetensorsTensor> tensors_;
    std::map<std::string, std::size_t, std::less<>> index_;
    std::map<std::string, std::string> metadata_;
};

// Writes `tensors` as F32 to a safetensors file at `path`, in the order given
// (header and data alike), with `metadata` as "__metadata__" (omitted when
// empty). Any strides are accepted; the data is written row-major. A 0-dim
// tensor gets "shape": []. Names must be unique, not "__metadata__", and valid
// UTF-8. The file appears at `path` only when complete: it is written to a
// temporary file in the same directory and renamed, so an error (or a crash)
// leaves any previous file untouched.
inline void save_safetensors(const std::filesystem::path& path,
                             const std::vector<std::pair<std::string, TensorF>>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
    const std::string where = "save_safetensors: '" + path.string() + "': ";
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::set<std::string_view> seen;
    std::uint64_t offset = 0;
    for (const auto& [name, tensor] : tensors) {
        LLMBLOCKS_CHECK(name != "__metadata__", where, "\"__metadata__\" is reserved and cannot name a tensor");
        LLMBLOCKS_CHECK(seen.insert(name).second, where, "duplicate tensor name '", name, "'");
        LLMBLOCKS_CHECK(tensor.defined(), where, "tensor '", name, "' is undefined");
        const std::uint64_t nbytes = static_cast<std::uint64_t>(tensor.numel()) * sizeof(float);
        header[name] = {{"dtype", "F32"},
                        {"shape", nlohmann::ordered_json(tensor.shape())},
                        {"data_offsets", {offset, offset + nbytes}}};
        offset += nbytes;
    }
    std::string text;
    try {
        text = header.dump();
    } catch (const nlohmann::ordered_json::exception& e) {
        fail(where, "tensor names and metadata must be valid UTF-8: ", e.what());
    }
    // Pad with spaces so that the byte buffer starts at a multiple of 8.
    text.append((8 - (8 + text.size()) % 8) % 8, ' ');

    AtomicFileWriter out(path);
    std::array<unsigned char, 8> length{};
    for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(static_cast<std::uint64_t>(text.size()) >> (8 * i));
    out.write(length.data(), length.size());
    out.write(text.data(), text.size());
    for (const auto& [name, tensor] : tensors) {
        if (tensor.numel() == 0) continue;
        const TensorF packed = tensor.contiguous();
        out.write(packed.data(), static_cast<std::size_t>(packed.numel()) * sizeof(float));
    }
    out.commit();
}

}  // namespace llmblocks
