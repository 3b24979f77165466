// llmblocks/io/bpe_tokenizer.hpp — GPT-2 byte-level BPE (Radford et al. 2019;
// GPT-3 uses the same vocabulary), loaded from the Hugging Face files
// vocab.json (token string -> id) and merges.txt (one merge "left right" per
// line, rank = order; an optional "#version: ..." first line).
//
// encode(text):
//   1. cut text into pieces with the GPT-2 pre-tokenizer (io/pretokenize.hpp);
//   2. map each byte of a piece to its printable stand-in character (OpenAI's
//      bytes_to_unicode: bytes '!'..'~', 0xA1..0xAC, 0xAE..0xFF stand for
//      themselves, the other 68 bytes for U+0100.. in byte order), so each
//      byte is one base token and any byte string is encodable;
//   3. within a piece, repeatedly take the adjacent pair with the lowest merge
//      rank and merge all its non-overlapping occurrences left to right, until
//      no adjacent pair has a rank (OpenAI's encoder.py semantics);
//   4. the resulting symbols are vocabulary ids.
// decode(ids) concatenates the tokens' bytes: decode(encode(x)) == x for every
// byte string x, valid UTF-8 or not.
//
// Speed: step 3 keeps the symbols of a piece in a linked list and candidate
// pairs in a min-heap keyed by (rank, position), O(n log n) for an n-byte
// piece; encode_piece_reference is the plain rescanning loop it is tested
// against. Repeated pieces within one encode call are looked up in a cache.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmblocks/core/error.hpp"
#include "llmblocks/io/pretokenize.hpp"
#include "llmblocks/io/utf8.hpp"

namespace llmblocks {

// OpenAI's bytes_to_unicode: the printable character that stands for a byte.
inline char32_t gpt2_byte_to_char(std::uint8_t byte) {
    const auto printable = [](unsigned b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; };
    if (printable(byte)) return byte;
    char32_t next = 0x100;  // the non-printable bytes take U+0100.. in byte order
    for (unsigned b = 0; b < byte; ++b)
        if (!printable(b)) ++next;
    return next;
}

// The inverse of gpt2_byte_to_char, or -1 when c stands for no byte.
inline int gpt2_char_to_byte(char32_t c) {
    static const std::array<int, 0x144> table = [] {
        std::array<int, 0x144> t{};
        t.fill(-1);
        for (unsigned b = 0; b < 256; ++b) t[gpt2_byte_to_char(static_cast<std::uint8_t>(b))] = static_cast<int>(b);
        return t;
    }();
    return c < table.size() ? table[c] : -1;
}

namespace detail {

inline std::string read_text_file(const std::string& path, const char* what) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) fail("BpeTokenizer: ", what, " file '", path, "' is a directory");
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("BpeTokenizer: cannot open ", what, " file '", path, "'");
    std::ostringstream os;
    os << in.rdbuf();
    if (in.bad()) fail("BpeTokenizer: cannot read ", what, " file '", path, "'");
    return os.str();
}

inline std::string single_quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

// Lets the token map be searched with a string_view (no temporary string).
struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Reads vocab.json as a stream of JSON events (no document tree: the GPT-2
// vocabulary has 50257 entries) into (token, id) pairs. Only a flat object of
// non-negative integer ids is accepted; the first problem is kept in `error`.
struct VocabReader : nlohmann::json_sax<nlohmann::json> {
    std::vector<std::pair<std::string, std::int32_t>> entries;
    std::string error;
    std::string key_;
    int depth = 0;

    bool reject_value(const std::string& what) {
        if (depth == 0) error = "expected a JSON object mapping token strings to ids";
        else error = "token " + single_quoted(key_) + " has id " + what + ", expected an integer in [0, 2^31 - 1)";
        return false;
    }
    bool id(std::int64_t v, const std::string& text) {
        if (depth != 1 || v < 0 || v >= std::numeric_limits<std::int32_t>::max()) return reject_value(text);
        entries.emplace_back(std::move(key_), static_cast<std::int32_t>(v));
        return true;
    }
    bool null() override { return reject_value("null"); }
    bool boolean(bool v) override { return reject_value(v ? "true" : "false"); }
    bool number_integer(number_integer_t v) override { return id(v, std::to_string(v)); }
    bool number_unsigned(number_unsigned_t v) override {
        return v > static_cast<number_unsigned_t>(std::numeric_limits<std::int64_t>::max()) ? reject_value(std::to_string(v))
                                                                                          : id(static_cast<std::int64_t>(v), std::to_string(v));
    }
    bool number_float(number_float_t, const string_t& s) override { return reject_value(s); }
    bool string(string_t& s) override { return reject_value("\"" + s + "\""); }
    bool binary(binary_t&) override { return reject_value("(binary)"); }
    bool start_object(std::size_t) override { return depth == 0 ? (++depth, true) : reject_value("(an object)"); }
    bool key(string_t& k) override {
        key_ = std::move(k);
        return true;
    }
    bool end_object() override {
        --depth;
        return true;
    }
    bool start_array(std::size_t) override { return reject_value("(an array)"); }
    bool end_array() override { return true; }
    bool parse_error(std::size_t, const std::string&, const nlohmann::json::exception& e) override {
        error = std::string("malformed JSON: ") + e.what();
        return false;
    }
};

// Merge rules keyed by (left id, right id): open addressing with linear
// probing in a power-of-two table (the hottest lookup of encode; a node-based
// std::unordered_map costs a division and a pointer chase per probe).
class PairTable {
public:
    struct Entry {
        std::uint64_t key = kEmpty;
        std::int32_t rank = 0;
        std::int32_t result = 0;
    };

    // Inserts or overwrites.
    void set(std::uint64_t key, std::int32_t rank, std::int32_t result) {
        if ((count_ + 1) * 2 > slots_.size()) grow();
        Entry& e = slots_[probe(key)];
        if (e.key == kEmpty) ++count_;
        e = Entry{key, rank, result};
    }

    const Entry* find(std::uint64_t key) const {
        if (slots_.empty()) return nullptr;
        const Entry& e = slots_[probe(key)];
        return e.key == kEmpty ? nullptr : &e;
    }

private:
    static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};  // ids are non-negative, so no pair has this key

    std::size_t probe(std::uint64_t key) const {
        const std::size_t mask = slots_.size() - 1;
        std::size_t i = static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
        while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask;
        return i;
    }

    void grow() {
        std::vector<Entry> old = std::move(slots_);
        slots_.assign(old.empty() ? 64 : old.size() * 2, Entry{});
        for (const Entry& e : old)
            if (e.key != kEmpty) slots_[probe(e.key)] = e;
    }

    std::vector<Entry> slots_;
    std::size_t count_ = 0;
};

}  // namespace detail

class BpeTokenizer {
public:
    // Loads vocab.json and merges.txt (Hugging Face layout).
    static BpeTokenizer from_files(const std::string& vocab_path, const std::string& merges_path) {
        const std::string vocab = detail::read_text_file(vocab_path, "vocab");  // vocab first: its errors come first
        const std::string merges = detail::read_text_file(merges_path, "merges");
        return from_strings(vocab, merges, vocab_path, merges_path);
    }

    // Loads DIR/vocab.json and DIR/merges.txt.
    static BpeTokenizer from_directory(const std::string& dir) {
        const std::string base = dir.empty() || dir.back() == '/' ? dir : dir + "/";
        return from_files(base + "vocab.json", base + "merges.txt");
    }

    // Builds from the files' contents; the names only label error messages.
    static BpeTokenizer from_strings(std::string_view vocab_json, std::string_view merges_text,
                                     std::string_view vocab_name = "vocab.json",
                                     std::string_view merges_name = "merges.txt") {
        BpeTokenizer tok;
        tok.load_vocab(vocab_json, vocab_name);
        tok.load_merges(merges_text, merges_name, vocab_name);
        return tok;
    }

    // Number of embedding rows the ids need: the largest id + 1.
    TokenId vocab_size() const { return static_cast<TokenId>(id_to_token_.size()); }
    // Number of merge rules.
    std::size_t num_merges() const { return num_merges_; }

    // The id of a token string (in its byte-level spelling, e.g. "Ġthe"), if any.
    std::optional<TokenId> token_to_id(std::string_view token) const {
        const auto it = token_to_id_.find(token);
        if (it == token_to_id_.end()) return std::nullopt;
        return it->second;
    }

    // The token string of an id (byte-level spelling).
    const std::string& id_to_token(TokenId id) const {
        check_id(id, "BpeTokenizer::id_to_token");
        return id_to_token_[static_cast<std::size_t>(id)];
    }

    // Text -> ids. Special-token strings such as "<|endoftext|>" are plain text
    // here (as in tiktoken's encode_ordinary and the gpt-3-encoder port);
    // Hugging Face maps them to their ids: see encode_with_special.
    std::vector<TokenId> encode(std::string_view text) const {
        std::vector<TokenId> ids;
        ids.reserve(text.size() / 3 + 1);
        Workspace ws;
        encode_into(text, ids, ws);
        return ids;
    }

    // Text -> ids, with each occurrence of one of `specials` (which must be in
    // the vocabulary) mapped to its own id, as Hugging Face does for added
    // special tokens.
    std::vector<TokenId> encode_with_special(std::string_view text, const std::vector<std::string>& specials) const {
        std::vector<TokenId> special_ids;
        for (const std::string& s : specials) {
            const auto id = token_to_id(s);
            if (!id) fail("BpeTokenizer::encode_with_special: special token ", detail::single_quoted(s), " is not in the vocabulary");
            special_ids.push_back(*id);
        }
        std::vector<TokenId> ids;
        Workspace ws;
        split_on_special_tokens(
            text, specials, [&](std::string_view segment) { encode_into(segment, ids, ws); },
            [&](std::size_t k) { ids.push_back(special_ids[k]); });
        return ids;
    }

    // Ids -> bytes, exactly (no clean-up of spaces, nothing appended).
    std::string decode(std::span<const TokenId> ids) const {
        std::string out;
        for (const TokenId id : ids) {
            check_id(id, "BpeTokenizer::decode");
            out += id_to_bytes_[static_cast<std::size_t>(id)];
        }
        return out;
    }
    std::string decode(const std::vector<TokenId>& ids) const { return decode(std::span<const TokenId>(ids)); }

    // BPE of one pre-tokenizer piece (fast path), appended to out.
    void encode_piece(std::string_view piece, std::vector<TokenId>& out) const {
        Workspace ws;
        merge_piece(piece, out, ws);
    }

    // BPE of one piece by the plain rule (rescan all pairs after every merge
    // pass; quadratic): the specification encode_piece is tested against.
    void encode_piece_reference(std::string_view piece, std::vector<TokenId>& out) const {
        std::vector<TokenId> word;
        for (const char c : piece) word.push_back(byte_ids_[static_cast<unsigned char>(c)]);
        while (word.size() > 1) {
            const Merge* best = nullptr;
            for (std::size_t i = 0; i + 1 < word.size(); ++i) {
                const Merge* m = find_merge(word[i], word[i + 1]);
                if (m && (!best || m->rank < best->rank)) best = m;
            }
            if (!best) break;
            std::vector<TokenId> merged;
            for (std::size_t i = 0; i < word.size();) {
                if (i + 1 < word.size() && find_merge(word[i], word[i + 1]) == best) {
                    merged.push_back(best->result);
                    i += 2;
                } else {
                    merged.push_back(word[i]);
                    i += 1;
                }
            }
            word.swap(merged);
        }
        out.insert(out.end(), word.begin(), word.end());
    }

private:
    using Merge = detail::PairTable::Entry;  // rank and merged id of a pair
    // A pair of adjacent symbols that may merge: symbols at pos and its successor.
    struct Candidate {
        std::int32_t rank;
        std::int32_t pos;
        TokenId left, right, result;
    };
    // Scratch space reused across the pieces of one encode call.
    struct Workspace {
        std::vector<TokenId> symbol;      // id of the symbol at each position; -1 once merged away
        std::vector<std::int32_t> next;   // next live position, -1 at the end
        std::vector<std::int32_t> prev;   // previous live position, -1 at the start
        std::vector<Candidate> heap;      // min-heap on (rank, pos)
        std::vector<Candidate> pass;      // the candidates of the rank being merged
        std::unordered_map<std::string_view, std::pair<std::size_t, std::size_t>> cache;  // piece -> ids in out
    };

    static std::uint64_t pair_key(TokenId left, TokenId right) {
        return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
    }

    const Merge* find_merge(TokenId left, TokenId right) const {
        return merges_.find(pair_key(left, right));
    }

    void check_id(TokenId id, const char* op) const {
        if (id < 0 || id >= vocab_size() || !present_[static_cast<std::size_t>(id)])
            fail(op, ": unknown token id ", id, " (vocab size ", vocab_size(), ")");
    }

    void encode_into(std::string_view text, std::vector<TokenId>& out, Workspace& ws) const {
        gpt2_pretokenize_each(text, [&](std::string_view piece) {
            if (piece.size() == 1) {
                out.push_back(byte_ids_[static_cast<unsigned char>(piece[0])]);
                return;
            }
            const auto hit = ws.cache.find(piece);
            if (hit != ws.cache.end()) {
                const auto [start, count] = hit->second;
                for (std::size_t i = 0; i < count; ++i) {
                    const TokenId id = out[start + i];  // copied first: push_back may reallocate
                    out.push_back(id);
                }
                return;
            }
            const std::size_t start = out.size();
            merge_piece(piece, out, ws);
            ws.cache.emplace(piece, std::make_pair(start, out.size() - start));
        });
    }

    void push_candidate(std::int32_t pos, Workspace& ws) const {
        const std::int32_t nxt = ws.next[static_cast<std::size_t>(pos)];
        if (nxt < 0) return;
        const TokenId left = ws.symbol[static_cast<std::size_t>(pos)];
        const TokenId right = ws.symbol[static_cast<std::size_t>(nxt)];
        const Merge* m = find_merge(left, right);
        if (!m) return;
        ws.heap.push_back({m->rank, pos, left, right, m->result});
        std::push_heap(ws.heap.begin(), ws.heap.end(), later);
    }

    // Heap order: smallest rank first, then leftmost position.
    static bool later(const Candidate& a, const Candidate& b) {
        return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
    }

    void merge_piece(std::string_view piece, std::vector<TokenId>& out, Workspace& ws) const {
        LLMBLOCKS_CHECK(piece.size() < static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()),
                        "BpeTokenizer::encode: piece of ", piece.size(), " bytes is too long");
        if (piece.empty()) return;
        const auto n = static_cast<std::int32_t>(piece.size());
        ws.symbol.resize(piece.size());
        ws.next.resize(piece.size());
        ws.prev.resize(piece.size());
        for (std::int32_t i = 0; i < n; ++i) {
            ws.symbol[static_cast<std::size_t>(i)] = byte_ids_[static_cast<unsigned char>(piece[static_cast<std::size_t>(i)])];
            ws.next[static_cast<std::size_t>(i)] = i + 1 < n ? i + 1 : -1;
            ws.prev[static_cast<std::size_t>(i)] = i - 1;
        }
        ws.heap.clear();
        for (std::int32_t i = 0; i + 1 < n; ++i) push_candidate(i, ws);
        while (!ws.heap.empty()) {
            // One pass: every adjacent occurrence of the lowest-ranked pair,
            // merged left to right without overlap. New pairs formed here rank
            // differently and wait in the heap for a later pass.
            const std::int32_t rank = ws.heap.front().rank;
            ws.pass.clear();
            while (!ws.heap.empty() && ws.heap.front().rank == rank) {
                std::pop_heap(ws.heap.begin(), ws.heap.end(), later);
                ws.pass.push_back(ws.heap.back());
                ws.heap.pop_back();
            }
            for (const Candidate& c : ws.pass) {  // already in position order (heap tie-break)
                const auto p = static_cast<std::size_t>(c.pos);
                const std::int32_t q = ws.next[p];
                if (ws.symbol[p] != c.left || q < 0 || ws.symbol[static_cast<std::size_t>(q)] != c.right) continue;
                ws.symbol[p] = c.result;
                const std::int32_t r = ws.next[static_cast<std::size_t>(q)];
                ws.symbol[static_cast<std::size_t>(q)] = -1;
                ws.next[p] = r;
                if (r >= 0) ws.prev[static_cast<std::size_t>(r)] = c.pos;
                if (ws.prev[p] >= 0) push_candidate(ws.prev[p], ws);
                push_candidate(c.pos, ws);
            }
        }
        for (std::int32_t i = 0; i >= 0; i = ws.next[static_cast<std::size_t>(i)]) out.push_back(ws.symbol[static_cast<std::size_t>(i)]);
    }

    void load_vocab(std::string_view text, std::string_view name) {
        detail::VocabReader reader;
        const bool ok = nlohmann::json::sax_parse(text.begin(), text.end(), &reader);
        if (!ok || !reader.error.empty()) fail("BpeTokenizer: ", name, ": ", reader.error);
        TokenId max_id = -1;
        for (const auto& entry : reader.entries) max_id = std::max(max_id, entry.second);
        const auto size = static_cast<std::size_t>(max_id + 1);
        id_to_token_.assign(size, std::string());
        id_to_bytes_.assign(size, std::string());
        present_.assign(size, false);
        token_to_id_.reserve(reader.entries.size());
        for (auto& [token, id] : reader.entries) {
            const auto slot = static_cast<std::size_t>(id);
            if (present_[slot])
                fail("BpeTokenizer: ", name, ": tokens ", detail::single_quoted(id_to_token_[slot]), " and ", detail::single_quoted(token),
                     " share id ", id);
            if (!token_to_id_.emplace(token, id).second) fail("BpeTokenizer: ", name, ": token ", detail::single_quoted(token), " appears twice");
            present_[slot] = true;
            id_to_bytes_[slot] = token_bytes(token);
            id_to_token_[slot] = std::move(token);
        }
        for (unsigned b = 0; b < 256; ++b) {
            std::string token;
            utf8_append(token, gpt2_byte_to_char(static_cast<std::uint8_t>(b)));
            const auto it = token_to_id_.find(token);
            if (it == token_to_id_.end())
                fail("BpeTokenizer: ", name, ": no token ", detail::single_quoted(token), " for byte ", b,
                     " (a byte-level vocabulary holds all 256 byte tokens)");
            byte_ids_[b] = it->second;
        }
    }

    // The bytes a token stands for: each character maps back through
    // bytes_to_unicode; a character outside that map stands for its own UTF-8
    // (as Hugging Face's ByteLevel decoder does).
    static std::string token_bytes(std::string_view token) {
        std::string bytes;
        for (std::size_t pos = 0; pos < token.size();) {
            const Utf8Unit unit = utf8_next(token, pos);
            const int b = unit.valid ? gpt2_char_to_byte(unit.codepoint) : -1;
            if (b >= 0) bytes.push_back(static_cast<char>(b));
            else bytes.append(token.substr(pos, unit.size));
            pos += unit.size;
        }
        return bytes;
    }

    void load_merges(std::string_view text, std::string_view name, std::string_view vocab_name) {
        std::size_t line_no = 0;
        std::int32_t rank = 0;
        std::string joined;
        std::vector<std::string_view> parts;
        for (std::size_t pos = 0; pos < text.size();) {
            std::size_t end = text.find('\n', pos);
            if (end == std::string_view::npos) end = text.size();
            std::string_view line = text.substr(pos, end - pos);
            pos = end + 1;
            ++line_no;
            if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
            if (line_no == 1 && line.starts_with("#version")) continue;
            parts.clear();
            for (std::size_t i = 0; i < line.size();) {
                if (line[i] == ' ' || line[i] == '\t') {
                    ++i;
                    continue;
                }
                std::size_t j = i;
                while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
                parts.push_back(line.substr(i, j - i));
                i = j;
            }
            if (parts.empty()) continue;  // blank line
            if (parts.size() != 2)
                fail("BpeTokenizer: ", name, " line ", line_no, ": expected two tokens separated by a space, got ",
                     detail::single_quoted(line));
            joined.assign(parts[0]).append(parts[1]);
            const auto left = token_to_id(parts[0]);
            const auto right = token_to_id(parts[1]);
            const auto result = token_to_id(joined);
            const std::string_view missing = !left ? parts[0] : !right ? parts[1] : joined;
            if (!left || !right || !result)
                fail("BpeTokenizer: ", name, " line ", line_no, ": token ", detail::single_quoted(missing), " is not in ", vocab_name);
            // A repeated pair takes its later rank (as a dict built from the list does).
            merges_.set(pair_key(*left, *right), rank, *result);
            ++rank;
        }
        num_merges_ = static_cast<std::size_t>(rank);
    }

    std::vector<std::string> id_to_token_;  // (V,) byte-level spelling; empty where no token has the id
    std::vector<std::string> id_to_bytes_;  // (V,) the bytes each token decodes to
    std::vector<bool> present_;             // (V,) whether a token has the id
    std::unordered_map<std::string, TokenId, detail::StringHash, std::equal_to<>> token_to_id_;
    detail::PairTable merges_;                         // (left id, right id) -> rank and merged id
    std::array<TokenId, 256> byte_ids_{};              // id of each byte's base token
    std::size_t num_merges_ = 0;
};

}  // namespace llmblocks
