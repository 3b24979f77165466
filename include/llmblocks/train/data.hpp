// llmblocks/train/data.hpp — token data for training: the llm.c token-file
// format, raw text through any tokenizer, a held-out validation split, and a
// seeded sampler of random (B, T) windows.
//
// llm.c token file (dev/data/data_common.py, used by train_gpt2.c): a header
// of 256 little-endian int32 — [0] = 20240520 (magic), [1] = 1 (version: GPT-2
// tokens as uint16), [2] = number of tokens, the rest 0 — followed by the
// tokens as little-endian uint16. The reader maps the file (io/mapped_file.hpp)
// and checks the magic, the version and that the size is exactly
// 1024 + 2 * count bytes; every error names the file.
//
// Sampling follows nanoGPT's get_batch: each of the B rows is a window of T + 1
// consecutive tokens starting at a uniformly random offset; inputs are the first
// T, targets the last T (the causal-LM shift). The sampler's Rng snapshot is its
// whole state, so a resumed run draws the same windows.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "llmblocks/core/error.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/core/tensor.hpp"
#include "llmblocks/io/mapped_file.hpp"

namespace llmblocks {

static_assert(std::endian::native == std::endian::little, "train/data.hpp: the llm.c token format is little-endian");

inline constexpr std::int32_t kTokenFileMagic = 20240520;
inline constexpr std::int32_t kTokenFileVersion = 1;      // uint16 tokens (GPT-2's 50257-token vocabulary)
inline constexpr std::size_t kTokenFileHeaderInts = 256;  // 1024 bytes
inline constexpr std::size_t kTokenFileHeaderBytes = kTokenFileHeaderInts * sizeof(std::int32_t);

// Writes tokens (each in [0, 65535]) as an llm.c token file, atomically.
inline void write_token_file(const std::filesystem::path& path, std::span<const std::int32_t> tokens) {
    const std::string name = path.string();
    LLMBLOCKS_CHECK(tokens.size() <= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()), "token file '", name, "': ", tokens.size(),
                    " tokens do not fit the int32 count of the header");
    std::vector<std::uint16_t> body(tokens.size());
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        LLMBLOCKS_CHECK(tokens[i] >= 0 && tokens[i] <= 65535, "token file '", name, "': token ", i, " = ", tokens[i],
                        " does not fit uint16 (version 1 holds ids 0..65535)");
        body[i] = static_cast<std::uint16_t>(tokens[i]);
    }
    std::int32_t header[kTokenFileHeaderInts] = {};
    header[0] = kTokenFileMagic;
    header[1] = kTokenFileVersion;
    header[2] = static_cast<std::int32_t>(tokens.size());
    AtomicFileWriter out(path);
    out.write(header, sizeof(header));
    if (!body.empty()) out.write(body.data(), body.size() * sizeof(std::uint16_t));
    out.commit();
}

// Reads an llm.c token file; the tokens widened to int32.
inline std::vector<std::int32_t> read_token_file(const std::filesystem::path& path) {
    const std::string name = path.string();
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (!ec && size < kTokenFileHeaderBytes)
        fail("token file '", name, "': truncated header (", size, " bytes, the header alone is ",
             kTokenFileHeaderBytes, ")");
    const MappedFile file(path);  // names the file on open/map errors
    std::int32_t header[kTokenFileHeaderInts];
    LLMBLOCKS_CHECK(file.size() >= kTokenFileHeaderBytes, "token file '", name, "': truncated header (", file.size(),
                    " bytes)");
    std::memcpy(header, file.data(), kTokenFileHeaderBytes);
    LLMBLOCKS_CHECK(header[0] == kTokenFileMagic, "token file '", name, "': bad magic number ", header[0],
                    " (expected ", kTokenFileMagic, ": not an llm.c token file)");
    LLMBLOCKS_CHECK(header[1] == kTokenFileVersion, "token file '", name, "': unsupported version ", header[1],
                    " (supported: 1, uint16 tokens)");
    LLMBLOCKS_CHECK(header[2] >= 0, "token file '", name, "': negative token count ", header[2]);
    const std::size_t count = static_cast<std::size_t>(header[2]);
    const std::size_t expected = kTokenFileHeaderBytes + count * sizeof(std::uint16_t);
    LLMBLOCKS_CHECK(file.size() >= expected, "token file '", name, "': truncated: the header says ", count,
                    " tokens (", expected, " bytes) but the file has ", file.size(), " bytes");
    LLMBLOCKS_CHECK(file.size() == expected, "token file '", name, "': token count mismatch: the header says ", count,
                    " tokens (", expected, " bytes) but the file has ", file.size(), " bytes");
    std::vector<std::int32_t> tokens(count);
    const std::byte* body = file.data() + kTokenFileHeaderBytes;
    for (std::size_t i = 0; i < count; ++i) {
        std::uint16_t t;
        std::memcpy(&t, body + 2 * i, sizeof(t));
        tokens[i] = t;
    }
    return tokens;
}

// The whole file as bytes.
inline std::string read_text_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    LLMBLOCKS_CHECK(in.good(), "cannot open text file '", path.string(), "'");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    LLMBLOCKS_CHECK(!in.bad(), "cannot read text file '", path.string(), "'");
    return text;
}

// Byte-level tokens: each UTF-8 byte is its own id (0..255).
inline std::vector<std::int32_t> byte_tokens(std::string_view text) {
    std::vector<std::int32_t> ids(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
}

// Any text -> ids function (the GPT-2 BPE tokenizer's encode, byte_tokens, ...).
using TokenizeFn = std::function<std::vector<std::int32_t>(std::string_view)>;

// A read-only run of tokens. Copies share the tokens; split() returns views.
class TokenDataset {
public:
    TokenDataset() : TokenDataset(std::vector<std::int32_t>{}) {}
    explicit TokenDataset(std::vector<std::int32_t> tokens)
        : tokens_(std::make_shared<const std::vector<std::int32_t>>(std::move(tokens))), begin_(0),
          size_(tokens_->size()) {}

    static TokenDataset from_token_file(const std::filesystem::path& path) { return TokenDataset(read_token_file(path)); }
    static TokenDataset from_text(std::string_view text, const TokenizeFn& tokenize) {
        LLMBLOCKS_CHECK(static_cast<bool>(tokenize), "TokenDataset::from_text: the tokenizer function is empty");
        return TokenDataset(tokenize(text));
    }
    static TokenDataset from_text_file(const std::filesystem::path& path, const TokenizeFn& tokenize = byte_tokens) {
        return from_text(read_text_file(path), tokenize);
    }

    index_t size() const { return static_cast<index_t>(size_); }
    std::span<const std::int32_t> tokens() const { return {tokens_->data() + begin_, size_}; }
    std::int32_t operator[](index_t i) const { return (*tokens_)[begin_ + static_cast<std::size_t>(i)]; }

    // {train, validation}: the last round(size * val_fraction) tokens are held out.
    std::pair<TokenDataset, TokenDataset> split(double val_fraction) const {
        LLMBLOCKS_CHECK(val_fraction >= 0.0 && val_fraction < 1.0, "TokenDataset::split: val_fraction must be in [0, 1), got ",
                        val_fraction);
        const auto val = static_cast<std::size_t>(std::llround(static_cast<double>(size_) * val_fraction));
        return {view(0, size_ - val), view(size_ - val, val)};
    }

    // Tokens [start, start + length) as a dataset sharing the storage.
    TokenDataset view(std::size_t start, std::size_t length) const {
        LLMBLOCKS_CHECK(start <= size_ && length <= size_ - start, "TokenDataset::view: [", start, ", ", start + length,
                        ") is outside the ", size_, " tokens");
        TokenDataset d = *this;
        d.begin_ = begin_ + start;
        d.size_ = length;
        return d;
    }

private:
    std::shared_ptr<const std::vector<std::int32_t>> tokens_;
    std::size_t begin_ = 0;
    std::size_t size_ = 0;
};

// A batch for a causal LM.
struct TokenBatch {
    TensorI inputs;   // (B, T)
    TensorI targets;  // (B, T): inputs shifted left by one
};

namespace detail {
inline void fill_window(TokenBatch& batch, index_t b, const TokenDataset& data, index_t start, index_t T) {
    std::int32_t* x = batch.inputs.data() + b * T;
    std::int32_t* y = batch.targets.data() + b * T;
    for (index_t t = 0; t < T; ++t) {
        x[t] = data[start + t];
        y[t] = data[start + t + 1];
    }
}
}  // namespace detail

// Random windows of T + 1 tokens, B per batch, from a seeded Rng.
class WindowSampler {
public:
    WindowSampler(TokenDataset data, index_t batch_size, index_t seq_len, std::uint64_t seed)
        : data_(std::move(data)), B_(batch_size), T_(seq_len), rng_(seed) {
        LLMBLOCKS_CHECK(B_ >= 1 && T_ >= 1, "WindowSampler: batch size ", B_, " and sequence length ", T_,
                        " must be >= 1");
        LLMBLOCKS_CHECK(data_.size() >= T_ + 1, "WindowSampler: ", data_.size(),
                        " tokens are too few for one window of T + 1 = ", T_ + 1);
    }

    index_t batch_size() const { return B_; }
    index_t seq_len() const { return T_; }
    const TokenDataset& data() const { return data_; }

    // The next batch; each row starts uniformly in [0, N - T - 1].
    TokenBatch next() {
        TokenBatch batch{TensorI::empty({B_, T_}), TensorI::empty({B_, T_})};
        for (index_t b = 0; b < B_; ++b) detail::fill_window(batch, b, data_, rng_.randint(0, data_.size() - T_), T_);
        return batch;
    }

    // The sampler's whole state, for checkpoints.
    Rng::Snapshot snapshot() const { return rng_.snapshot(); }
    void restore(const Rng::Snapshot& s) { rng_.restore(s); }

private:
    TokenDataset data_;
    index_t B_, T_;
    Rng rng_;
};

// Validation without randomness: batch i holds the windows starting at
// (i * B + b) * T for b < B (consecutive, non-overlapping except for the shifted
// last token, as llm.c's validation loader). There are (N - 1) / (B * T) such batches.
inline index_t num_sequential_batches(const TokenDataset& data, index_t B, index_t T) {
    LLMBLOCKS_CHECK(B >= 1 && T >= 1, "num_sequential_batches: B ", B, " and T ", T, " must be >= 1");
    return data.size() <= 1 ? 0 : (data.size() - 1) / (B * T);
}

inline TokenBatch sequential_batch(const TokenDataset& data, index_t i, index_t B, index_t T) {
    const index_t n = num_sequential_batches(data, B, T);
    LLMBLOCKS_CHECK(i >= 0 && i < n, "sequential_batch: batch ", i, " of ", n, " (", data.size(),
                    " tokens, B = ", B, ", T = ", T, ")");
    TokenBatch batch{TensorI::empty({B, T}), TensorI::empty({B, T})};
    for (index_t b = 0; b < B; ++b) detail::fill_window(batch, b, data, (i * B + b) * T, T);
    return batch;
}

}  // namespace llmblocks
