// Tests for include/llmblocks/io/tokenizer.hpp: the GPT-2 pre-tokenizer, the
// byte-level BPE tokenizer (against ids from a real GPT-2 encoder, committed in
// tests/reference/gpt2_tokenizer/ with their provenance) and the byte tokenizer.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmblocks/core/random.hpp"
#include "llmblocks/io/tokenizer.hpp"

using namespace llmblocks;

namespace {

const std::string kDataDir = std::string(LLMBLOCKS_TEST_DATA_DIR) + "/gpt2_tokenizer";

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE_MESSAGE(in, "cannot open ", path);
    std::ostringstream os;
    os << in.rdbuf();
    return os.str();
}

// The GPT-2 tokenizer, loaded once for the whole test run.
const BpeTokenizer& gpt2() {
    static const BpeTokenizer tok = BpeTokenizer::from_directory(kDataDir);
    return tok;
}

struct Case {
    std::string text;
    std::vector<TokenId> ids;
};

std::vector<Case> read_cases(const std::string& file) {
    std::vector<Case> out;
    const auto json = nlohmann::json::parse(read_file(kDataDir + "/" + file));
    for (const auto& c : json.at("cases")) out.push_back({c.at("text").get<std::string>(), c.at("ids").get<std::vector<TokenId>>()});
    return out;
}

// Ids from the JavaScript port of OpenAI's encoder (make_expected.js).
const std::vector<Case>& expected_cases() {
    static const std::vector<Case> cases = read_cases("expected_ids.json");
    return cases;
}

std::string escaped(const std::string& s) {
    std::string out;
    for (const unsigned char c : s) {
        if (c >= 0x20 && c < 0x7F) out.push_back(static_cast<char>(c));
        else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02X", c);
            out += buf;
        }
    }
    return out;
}

std::vector<std::string> pieces(std::string_view text) {
    std::vector<std::string> out;
    for (const auto piece : gpt2_pretokenize(text)) out.emplace_back(piece);
    return out;
}

std::string byte_token(unsigned b) {
    std::string s;
    utf8_append(s, gpt2_byte_to_char(static_cast<std::uint8_t>(b)));
    return s;
}

// A small byte-level vocabulary: the 256 byte tokens (ids 0..255) plus `extra`
// (ids 256..), as vocab.json text.
std::string toy_vocab(const std::vector<std::string>& extra) {
    nlohmann::json json = nlohmann::json::object();
    for (unsigned b = 0; b < 256; ++b) json[byte_token(b)] = b;
    for (std::size_t i = 0; i < extra.size(); ++i) json[extra[i]] = 256 + i;
    return json.dump();
}

std::string error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

bool contains(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

}  // namespace

TEST_CASE("tokenizer: utf8_next is strict and covers every byte") {
    CHECK(utf8_next("a", 0).size == 1);
    const Utf8Unit e_acute = utf8_next("\xC3\xA9", 0);
    CHECK((e_acute.valid && e_acute.size == 2 && e_acute.codepoint == 0xE9));
    const Utf8Unit emoji = utf8_next("\xF0\x9F\x98\x80", 0);
    CHECK((emoji.valid && emoji.size == 4 && emoji.codepoint == 0x1F600));
    for (const char* bad : {"\xC0\x80", "\xE0\x80\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE2\x82", "\x80", "\xFF"}) {
        const Utf8Unit unit = utf8_next(bad, 0);
        CHECK_FALSE(unit.valid);
        CHECK(unit.size == 1);
    }
    CHECK(utf8_is_valid("h\xC3\xA9llo \xF0\x9F\x98\x80"));
    CHECK_FALSE(utf8_is_valid("h\xC3llo"));
    std::string s;
    utf8_append(s, 0x20AC);
    CHECK(s == "\xE2\x82\xAC");
    CHECK_THROWS_AS(utf8_append(s, 0xD800), Error);
}

TEST_CASE("tokenizer: GPT-2 character classes (letters, numbers, Unicode White_Space)") {
    CHECK(gpt2_char_class('a') == Gpt2CharClass::letter);
    CHECK(gpt2_char_class(0x4E16) == Gpt2CharClass::letter);    // CJK ideograph (Lo)
    CHECK(gpt2_char_class(0x02B0) == Gpt2CharClass::letter);    // modifier letter (Lm)
    CHECK(gpt2_char_class(0x0301) == Gpt2CharClass::other);     // combining acute (Mn) is not \p{L}
    CHECK(gpt2_char_class('7') == Gpt2CharClass::number);
    CHECK(gpt2_char_class(0x00BD) == Gpt2CharClass::number);    // ½ (No)
    CHECK(gpt2_char_class(0x2160) == Gpt2CharClass::number);    // Ⅰ (Nl)
    CHECK(gpt2_char_class(0x0663) == Gpt2CharClass::number);    // Arabic-Indic three (Nd)
    CHECK(gpt2_char_class(0x1F600) == Gpt2CharClass::other);    // emoji (So)
    CHECK(gpt2_char_class(0x200D) == Gpt2CharClass::other);     // ZWJ (Cf)
    // \s as in Oniguruma (Hugging Face) and Python `regex` (OpenAI): Unicode White_Space.
    for (char32_t ws : {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x200A, 0x2028, 0x2029, 0x202F,
                        0x205F, 0x3000})
        CHECK_MESSAGE(gpt2_char_class(ws) == Gpt2CharClass::whitespace, static_cast<unsigned>(ws));
    for (char32_t not_ws : {0x1C, 0x1D, 0x1E, 0x1F, 0x180E, 0x200B, 0xFEFF, 0x00})
        CHECK_MESSAGE(gpt2_char_class(not_ws) == Gpt2CharClass::other, static_cast<unsigned>(not_ws));
    CHECK(gpt2_char_class(0x110000) == Gpt2CharClass::other);
}

TEST_CASE("tokenizer: GPT-2 pre-tokenizer pieces follow the regex") {
    using V = std::vector<std::string>;
    CHECK(pieces("").empty());
    CHECK(pieces("Hello world") == V{"Hello", " world"});
    CHECK(pieces("\n\nHello") == V{"\n", "\n", "Hello"});
    CHECK(pieces("  a") == V{" ", " a"});
    CHECK(pieces("a  \n b") == V{"a", "  \n", " b"});
    CHECK(pieces("hello   ") == V{"hello", "   "});
    CHECK(pieces("\t x") == V{"\t", " x"});
    CHECK(pieces(" \tx") == V{" ", "\t", "x"});
    CHECK(pieces("don't") == V{"don", "'t"});
    CHECK(pieces("I'M") == V{"I", "'", "M"});
    CHECK(pieces("they'll've") == V{"they", "'ll", "'ve"});
    CHECK(pieces("''s") == V{"''", "s"});
    CHECK(pieces(" 's") == V{" '", "s"});
    CHECK(pieces("12345 67") == V{"12345", " 67"});
    CHECK(pieces("a1b") == V{"a", "1", "b"});
    CHECK(pieces("$1,234.56") == V{"$", "1", ",", "234", ".", "56"});
    CHECK(pieces("cafe\xCC\x81") == V{"cafe", "\xCC\x81"});                 // e + U+0301: the mark is "other"
    CHECK(pieces("a\xC2\xA0" "b") == V{"a", "\xC2\xA0", "b"});              // U+00A0 is whitespace but not " "
    CHECK(pieces("a\xE3\x80\x80\xE3\x80\x80" "b") == V{"a", "\xE3\x80\x80", "\xE3\x80\x80", "b"});  // U+3000 twice
    CHECK(pieces("hi \xF0\x9F\x98\x80!") == V{"hi", " \xF0\x9F\x98\x80!"});
    // Where Oniguruma's \s (Hugging Face) and JavaScript's differ: U+0085 is
    // whitespace, U+FEFF and U+001C are not.
    CHECK(pieces("\xC2\x85\xC2\x85x") == V{"\xC2\x85", "\xC2\x85", "x"});
    CHECK(pieces(" \xEF\xBB\xBFx") == V{" \xEF\xBB\xBF", "x"});
    CHECK(pieces("\x1C\x1Dx") == V{"\x1C\x1D", "x"});
    // Invalid UTF-8 bytes are "other" and join other runs; whitespace still splits.
    CHECK(pieces("a\xFF\xFE b") == V{"a", "\xFF\xFE", " b"});
    CHECK(pieces(" \x80!x") == V{" \x80!", "x"});
    CHECK(pieces("\xE2\x82" "x") == V{"\xE2\x82", "x"});
}

TEST_CASE("tokenizer: special tokens split the text before pre-tokenization") {
    std::vector<std::string> parts;
    split_on_special_tokens(
        "a<|endoftext|><|end|>b<|end", {"<|end|>", "<|endoftext|>"},
        [&](std::string_view s) { parts.push_back("T:" + std::string(s)); },
        [&](std::size_t k) { parts.push_back("S:" + std::to_string(k)); });
    CHECK(parts == std::vector<std::string>{"T:a", "S:1", "S:0", "T:b<|end"});
    CHECK_THROWS_AS(split_on_special_tokens("x", {""}, [](std::string_view) {}, [](std::size_t) {}), Error);
}

TEST_CASE("tokenizer: bytes_to_unicode is a bijection onto printable characters") {
    std::set<char32_t> seen;
    for (unsigned b = 0; b < 256; ++b) {
        const char32_t c = gpt2_byte_to_char(static_cast<std::uint8_t>(b));
        CHECK(gpt2_char_to_byte(c) == static_cast<int>(b));
        CHECK(gpt2_char_class(c) != Gpt2CharClass::whitespace);
        seen.insert(c);
    }
    CHECK(seen.size() == 256);
    CHECK(gpt2_byte_to_char(' ') == 0x120);   // "Ġ"
    CHECK(gpt2_byte_to_char('\n') == 0x10A);  // "Ċ"
    CHECK(gpt2_byte_to_char('A') == 'A');
    CHECK(gpt2_char_to_byte(0x3000) == -1);
}

TEST_CASE("tokenizer: GPT-2 vocabulary loads with its sizes") {
    const BpeTokenizer& tok = gpt2();
    CHECK(tok.vocab_size() == 50257);
    CHECK(tok.num_merges() == 50000);
    CHECK(tok.token_to_id("\xC4\xA0the") == 262);  // "Ġthe"
    CHECK(tok.token_to_id("<|endoftext|>") == 50256);
    CHECK_FALSE(tok.token_to_id("not a token").has_value());
    CHECK(tok.id_to_token(15496) == "Hello");
}

TEST_CASE("tokenizer: GPT-2 BPE reproduces the reference ids and decodes back") {
    const BpeTokenizer& tok = gpt2();
    REQUIRE(expected_cases().size() > 100);
    for (const Case& c : expected_cases()) {
        INFO("text: ", escaped(c.text));
        const std::vector<TokenId> ids = tok.encode(c.text);
        CHECK(ids == c.ids);
        CHECK(tok.decode(c.ids) == c.text);
    }
}

TEST_CASE("tokenizer: Unicode whitespace follows Hugging Face / OpenAI, not JavaScript") {
    // Ids from OpenAI's encoder.py (check_expected.py): U+0085 is \s, U+FEFF is not.
    const BpeTokenizer& tok = gpt2();
    const std::vector<Case> cases = read_cases("expected_ids_whitespace.json");
    REQUIRE(cases.size() >= 10);
    for (const Case& c : cases) {
        INFO("text: ", escaped(c.text));
        CHECK(tok.encode(c.text) == c.ids);
        CHECK(tok.decode(c.ids) == c.text);
    }
}

TEST_CASE("tokenizer: the fast BPE merge equals the reference loop") {
    const BpeTokenizer& tok = gpt2();
    Rng rng(7);
    // Words made of GPT-2-ish pieces, and one long word (the fast path is
    // O(n log n), the reference quadratic).
    const std::vector<std::string> alphabet = {"a", "e", "th", "in", "ing", "er", "\xC3\xA9", "\xE4\xB8\x96", "1", "!", " "};
    for (int trial = 0; trial < 300; ++trial) {
        std::string word;
        const auto len = rng.randint(1, trial < 290 ? 40 : 2000);
        for (std::int64_t i = 0; i < len; ++i) word += alphabet[static_cast<std::size_t>(rng.randint(0, static_cast<std::int64_t>(alphabet.size())))];
        std::vector<TokenId> fast, ref;
        tok.encode_piece(word, fast);
        tok.encode_piece_reference(word, ref);
        INFO("word: ", escaped(word));
        CHECK(fast == ref);
    }
}

TEST_CASE("tokenizer: a merge pass merges every occurrence before lower-ranked new pairs") {
    // Ranks out of training order: ("aa", "a") ranks before ("a", "a").
    const std::string vocab = toy_vocab({"aa", "aaa", "ab", "aab"});
    const std::string merges = "#version: 0.2\naa a\na a\naa b\na b\n";
    const BpeTokenizer tok = BpeTokenizer::from_strings(vocab, merges);
    const TokenId a = 'a', aa = 256, aaa = 257, ab = 258, aab = 259;
    for (const Case& c : std::vector<Case>{
             {"aaaa", {aa, aa}}, {"aaa", {aaa}}, {"aaaaa", {aa, aaa}}, {"aab", {aab}}, {"ab", {ab}}, {"a", {a}}}) {
        std::vector<TokenId> fast, ref;
        tok.encode_piece(c.text, fast);
        tok.encode_piece_reference(c.text, ref);
        INFO("word: ", c.text);
        CHECK(ref == c.ids);
        CHECK(fast == c.ids);
    }
    Rng rng(3);
    for (int trial = 0; trial < 500; ++trial) {
        std::string word;
        for (auto i = rng.randint(1, 30); i > 0; --i) word.push_back(rng.uniform() < 0.8 ? 'a' : 'b');
        std::vector<TokenId> fast, ref;
        tok.encode_piece(word, fast);
        tok.encode_piece_reference(word, ref);
        INFO("word: ", word);
        CHECK(fast == ref);
    }
}

TEST_CASE("tokenizer: decode(encode(x)) == x for random bytes and random tricky mixes") {
    const BpeTokenizer& tok = gpt2();
    Rng rng(11);
    for (int trial = 0; trial < 200; ++trial) {
        std::string bytes;
        for (auto i = rng.randint(0, 64); i > 0; --i) bytes.push_back(static_cast<char>(rng.randint(0, 256)));
        CHECK_MESSAGE(tok.decode(tok.encode(bytes)) == bytes, escaped(bytes));
    }
    std::vector<std::string> parts = {" ", "  ", "\n", "\r\n", "\t", "'s", "'", "don't", "I'M", "12345", "3.14", "a",
                                      "Hello", " world", "\xC2\xA0", "\xE3\x80\x80", "\xC2\x85", "\xEF\xBB\xBF", "\x1C",
                                      "e\xCC\x81", "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD", "\xE2\x80\x8D", "\xE4\xBD\xA0\xE5\xA5\xBD",
                                      "\xD9\x85\xD8\xB1", "\xFF", "\x80", "\xE2\x82", "<|endoftext|>", "!!", "$"};
    for (const Case& c : expected_cases())
        if (c.text.size() < 40) parts.push_back(c.text);
    for (int trial = 0; trial < 300; ++trial) {
        std::string text;
        for (auto i = rng.randint(0, 12); i > 0; --i) text += parts[static_cast<std::size_t>(rng.randint(0, static_cast<std::int64_t>(parts.size())))];
        const std::vector<TokenId> ids = tok.encode(text);
        CHECK_MESSAGE(tok.decode(ids) == text, escaped(text));
        // Pieces never merge across a boundary: encoding piece by piece gives the same ids.
        std::vector<TokenId> by_piece;
        for (const auto piece : gpt2_pretokenize(text)) tok.encode_piece_reference(piece, by_piece);
        CHECK_MESSAGE(ids == by_piece, escaped(text));
    }
}

TEST_CASE("tokenizer: invalid UTF-8 bytes encode as byte tokens") {
    const BpeTokenizer& tok = gpt2();
    const TokenId ff = *tok.token_to_id(byte_token(0xFF));
    CHECK(tok.encode("\xFF") == std::vector<TokenId>{ff});
    CHECK(tok.decode(tok.encode("ok \xC3\x28 \xED\xA0\x80 end")) == "ok \xC3\x28 \xED\xA0\x80 end");
}

TEST_CASE("tokenizer: special tokens are plain text unless asked for") {
    const BpeTokenizer& tok = gpt2();
    const std::vector<TokenId> plain = tok.encode("a<|endoftext|>b");
    CHECK(plain.size() > 3);
    CHECK(tok.encode_with_special("a<|endoftext|>b", {"<|endoftext|>"}) == std::vector<TokenId>{64, 50256, 65});
    CHECK(tok.encode_with_special("<|endoftext|>", {"<|endoftext|>"}) == std::vector<TokenId>{50256});
    CHECK(tok.decode(std::vector<TokenId>{50256}) == "<|endoftext|>");
    CHECK(contains(error_of([&] { (void)tok.encode_with_special("x", {"<|nope|>"}); }), "<|nope|>"));
}

TEST_CASE("tokenizer: merges.txt with or without the #version line, CRLF and blank lines") {
    const std::string vocab = read_file(kDataDir + "/vocab.json");
    const std::string merges = read_file(kDataDir + "/merges.txt");
    REQUIRE(merges.starts_with("#version"));
    const std::string without_version = merges.substr(merges.find('\n') + 1);
    const BpeTokenizer tok = BpeTokenizer::from_strings(vocab, without_version);
    CHECK(tok.num_merges() == 50000);
    for (const Case& c : expected_cases()) CHECK(tok.encode(c.text) == c.ids);

    const std::string toy = toy_vocab({"ab", "abc"});
    for (const std::string& m : {std::string("a b\nab c\n"), std::string("#version: 0.2\na b\nab c"),
                                 std::string("#version: 0.2\r\na b\r\nab c\r\n\r\n"), std::string("a b\n\nab c\n\n\n")}) {
        const BpeTokenizer t = BpeTokenizer::from_strings(toy, m);
        CHECK(t.num_merges() == 2);
        CHECK(t.encode("abc abcd") == std::vector<TokenId>{257, ' ', 257, 'd'});
    }
}

TEST_CASE("tokenizer: load and decode errors name the file, line or id") {
    const std::string toy = toy_vocab({"ab"});
    std::string msg = error_of([] { (void)BpeTokenizer::from_files("/nonexistent/vocab.json", kDataDir + "/merges.txt"); });
    CHECK(contains(msg, "/nonexistent/vocab.json"));
    msg = error_of([] { (void)BpeTokenizer::from_directory("/nonexistent_dir"); });
    CHECK_MESSAGE(contains(msg, "/nonexistent_dir/vocab.json"), msg);
    msg = error_of([] { (void)BpeTokenizer::from_files(kDataDir + "/vocab.json", "/nonexistent/merges.txt"); });
    CHECK(contains(msg, "/nonexistent/merges.txt"));
    msg = error_of([] { (void)BpeTokenizer::from_files(kDataDir, kDataDir + "/merges.txt"); });
    CHECK(contains(msg, "is a directory"));

    msg = error_of([] { (void)BpeTokenizer::from_strings("{\"a\": 1,,}", "", "my_vocab.json"); });
    CHECK(contains(msg, "my_vocab.json"));
    CHECK(contains(msg, "malformed JSON"));
    msg = error_of([] { (void)BpeTokenizer::from_strings("[1, 2]", ""); });
    CHECK(contains(msg, "JSON object"));
    msg = error_of([] { (void)BpeTokenizer::from_strings("{\"a\": \"x\"}", ""); });
    CHECK(contains(msg, "'a'"));
    msg = error_of([] { (void)BpeTokenizer::from_strings("{\"a\": -1}", ""); });
    CHECK(contains(msg, "-1"));
    msg = error_of([] { (void)BpeTokenizer::from_strings("{\"a\": 0, \"b\": 0}", ""); });
    CHECK(contains(msg, "share id 0"));
    msg = error_of([] { (void)BpeTokenizer::from_strings("{\"a\": 0}", ""); });
    CHECK(contains(msg, "for byte 0"));

    msg = error_of([&] { (void)BpeTokenizer::from_strings(toy, "#version: 0.2\na b\nab\n", "v.json", "m.txt"); });
    CHECK(contains(msg, "m.txt line 3"));
    msg = error_of([&] { (void)BpeTokenizer::from_strings(toy, "a b c\n", "v.json", "m.txt"); });
    CHECK(contains(msg, "m.txt line 1"));
    msg = error_of([&] { (void)BpeTokenizer::from_strings(toy, "a b\nb c\n", "v.json", "m.txt"); });
    CHECK(contains(msg, "m.txt line 2"));
    CHECK(contains(msg, "'bc' is not in v.json"));
    msg = error_of([&] { (void)BpeTokenizer::from_strings(toy, "a b\nzz b\n", "v.json", "m.txt"); });
    CHECK(contains(msg, "'zz'"));

    const BpeTokenizer& tok = gpt2();
    msg = error_of([&] { (void)tok.decode(std::vector<TokenId>{15496, 50257}); });
    CHECK(contains(msg, "unknown token id 50257"));
    CHECK(contains(msg, "vocab size 50257"));
    CHECK(contains(error_of([&] { (void)tok.decode(std::vector<TokenId>{-1}); }), "unknown token id -1"));
    CHECK(contains(error_of([&] { (void)tok.id_to_token(60000); }), "60000"));
    // A hole in the id range is unknown too.
    const BpeTokenizer holes = BpeTokenizer::from_strings(toy_vocab({}).substr(0, toy_vocab({}).size() - 1) + ",\"zz\":300}", "");
    CHECK(holes.vocab_size() == 301);
    CHECK(contains(error_of([&] { (void)holes.decode(std::vector<TokenId>{256}); }), "unknown token id 256"));
    CHECK(holes.decode(std::vector<TokenId>{300}) == "zz");
}

TEST_CASE("tokenizer: empty text <-> no ids") {
    CHECK(gpt2().encode("").empty());
    std::vector<TokenId> none;
    gpt2().encode_piece("", none);
    gpt2().encode_piece_reference("", none);
    CHECK(none.empty());
    CHECK(gpt2().decode(std::vector<TokenId>{}).empty());
    CHECK(ByteTokenizer().encode("").empty());
}

TEST_CASE("tokenizer: byte tokenizer") {
    const ByteTokenizer plain;
    CHECK(plain.vocab_size() == 256);
    CHECK(plain.encode("A\xFF\n") == std::vector<TokenId>{65, 255, 10});
    CHECK(plain.decode(std::vector<TokenId>{104, 105}) == "hi");
    CHECK(contains(error_of([&] { (void)plain.decode(std::vector<TokenId>{256}); }), "unknown token id 256 (vocab size 256)"));
    CHECK(contains(error_of([&] { (void)plain.decode(std::vector<TokenId>{-3}); }), "unknown token id -3"));

    const ByteTokenizer eot({"<|endoftext|>"});
    CHECK(eot.vocab_size() == 257);
    CHECK(eot.special_id("<|endoftext|>") == 256);
    CHECK_FALSE(eot.special_id("x").has_value());
    CHECK(eot.encode("a<|endoftext|>").size() == 14);  // plain text by default
    const std::vector<TokenId> ids = eot.encode_with_special("a<|endoftext|>b");
    CHECK(ids == std::vector<TokenId>{97, 256, 98});
    CHECK(eot.decode(ids) == "a<|endoftext|>b");
    CHECK_THROWS_AS(ByteTokenizer({"x", "x"}), Error);
    CHECK_THROWS_AS(ByteTokenizer({""}), Error);

    Rng rng(5);
    for (int trial = 0; trial < 50; ++trial) {
        std::string bytes;
        for (auto i = rng.randint(0, 100); i > 0; --i) bytes.push_back(static_cast<char>(rng.randint(0, 256)));
        CHECK(plain.decode(plain.encode(bytes)) == bytes);
    }
}
