// examples/cli/generate.hpp — `llmblocks generate`: text or token ids from a
// checkpoint directory, with the KV cache and the samplers of llmblocks/infer/
// (docs/generation.md):
//
//   llmblocks generate --model DIR (--prompt TEXT | --tokens IDS) [--max-new-tokens N]
//                      [--temperature X] [--top-k K] [--top-p P] [--seed S] [--eos ID]
//
// --prompt TEXT needs the directory's tokenizer (io/model_tokenizer.hpp: vocab.json +
// merges.txt, or tokenizer_config.json); the prompt is echoed, then each new token's bytes
// are written and flushed as it is produced, then one newline. An empty prompt starts
// from <|endoftext|> when the tokenizer has it. --tokens IDS gives the prompt as ids and
// writes the new ids, space-separated as they are produced, then one newline. For T5 the
// prompt is the encoder input and is not echoed. stdout holds only the text (or ids);
// stderr gets one line "N tokens in S s, X tokens/s" (generation only, not loading).
//
// The eos id (a sequence stops after it; its text is not written, its id is) defaults to
// the tokenizer's <|endoftext|>, else for T5 the config's eos_token_id, else none; --eos -1
// turns it off. Sampling defaults: temperature 0.8, no top-k, no top-p; --temperature 0
// is greedy. Errors follow cli.hpp: a malformed option is exit 2, a problem with the
// model, its files or an id (outside the vocabulary, beyond the context) is exit 1.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iomanip>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <variant>
#include <vector>

#include "cli/args.hpp"
#include "cli/io.hpp"
#include "cli/model_commands.hpp"
#include "llmblocks/infer/generate.hpp"
#include "llmblocks/io/model_tokenizer.hpp"

namespace llmblocks::cli {

namespace detail {

// A finite number in plain decimal notation ("0.8", "1e-3"); UsageError otherwise.
inline double generate_number(const Args& args, const std::string& name, double fallback) {
    if (!args.has(name)) return fallback;
    const std::string& v = args.get(name);
    double x = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (v.empty() || ec != std::errc() || end != v.data() + v.size() || !std::isfinite(x))
        throw UsageError("option '" + name + "' needs a number, got '" + v + "'");
    return x;
}

// The generation settings of the command line (checked before the model is loaded).
inline GenerateOptions generate_options(const Args& args) {
    GenerateOptions o;
    o.max_new_tokens = args.get_int("--max-new-tokens", 32);
    if (o.max_new_tokens < 0)
        throw UsageError("option '--max-new-tokens' must be >= 0, got " + args.get("--max-new-tokens"));
    o.sampling.temperature = generate_number(args, "--temperature", 0.8);
    if (o.sampling.temperature < 0)
        throw UsageError("option '--temperature' must be >= 0 (0 = greedy), got " + args.get("--temperature"));
    o.sampling.top_k = args.get_int("--top-k", 0);
    if (o.sampling.top_k < 0) throw UsageError("option '--top-k' must be >= 0 (0 = off), got " + args.get("--top-k"));
    o.sampling.top_p = generate_number(args, "--top-p", 1.0);
    if (!(o.sampling.top_p > 0 && o.sampling.top_p <= 1))
        throw UsageError("option '--top-p' must be in (0, 1] (1 = off), got " + args.get("--top-p"));
    const std::int64_t seed = args.get_int("--seed", 0);
    if (seed < 0) throw UsageError("option '--seed' needs a non-negative integer, got " + args.get("--seed"));
    o.seed = static_cast<std::uint64_t>(seed);
    return o;
}

// The eos id: --eos (-1 = none), else the tokenizer's <|endoftext|> if the model has that
// id, else T5's eos_token_id, else none.
inline std::int32_t generate_eos(const Args& args, const LoadedModel& m, const std::optional<ModelTokenizer>& tok) {
    const index_t V = m.vocab_size();
    if (args.has("--eos")) {
        const std::int64_t eos = args.get_int("--eos", -1);
        if (eos < -1) throw UsageError("option '--eos' needs a token id or -1 (none), got " + args.get("--eos"));
        if (eos >= V) fail("option '--eos': token id ", eos, " is out of range [0, ", V, ") for this model's vocabulary");
        return static_cast<std::int32_t>(eos);
    }
    if (tok && tok->eos_id() && *tok->eos_id() < V) return *tok->eos_id();
    if (const auto* t5 = std::get_if<T5Config>(&m.config)) return static_cast<std::int32_t>(t5->eos_token_id);
    return -1;
}

// The bytes of one new token ("<|id|>" for an id the tokenizer does not have, as a
// model whose vocabulary is padded beyond the tokenizer's may produce).
inline std::string token_text(const ModelTokenizer& tok, std::int32_t id) {
    if (id >= tok.vocab_size()) return "<|" + std::to_string(id) + "|>";
    const std::int32_t ids[1] = {id};
    return tok.decode(ids);
}

}  // namespace detail

inline int run_generate(const Args& args, Io& io) {
    if (args.has("--prompt") == args.has("--tokens"))
        throw UsageError("give exactly one of '--prompt TEXT' and '--tokens IDS'");
    GenerateOptions options = detail::generate_options(args);
    const std::filesystem::path dir = args.get("--model");
    const LoadedModel m = load_model_dir(dir);
    const std::optional<ModelTokenizer> tok = ModelTokenizer::from_directory(dir);
    const bool text = args.has("--prompt");
    if (text && !tok)
        throw UsageError("option '--prompt' needs a tokenizer, but '" + dir.string() +
                         "' has no vocab.json/merges.txt or tokenizer_config.json; use '--tokens IDS'");
    options.eos_id = detail::generate_eos(args, m, tok);

    std::vector<std::int32_t> prompt;
    if (text) {
        prompt = tok->encode(args.get("--prompt"));
        if (prompt.empty() && !m.is_t5() && tok->eos_id()) prompt = {*tok->eos_id()};  // GPT-2's unconditional start
        if (prompt.empty()) throw UsageError("option '--prompt' is empty (the model needs at least one token)");
    } else {
        const TensorI ids = detail::parse_tokens(args, "--tokens", m.vocab_size(), 0);  // the context: generate()
        prompt.assign(ids.data(), ids.data() + ids.numel());
    }

    // The prompt is echoed just before the first token (so that a request generate() refuses
    // writes nothing); T5's prompt is the encoder input and is not echoed.
    bool started = false;
    const auto start = [&] {
        if (!started && text && !m.is_t5()) io.out << args.get("--prompt");
        started = true;
    };
    bool first = true;
    const TokenCallback on_token = [&](index_t, std::int32_t token) {
        start();
        if (!text) {
            io.out << (first ? "" : " ") << token;
        } else if (token != options.eos_id) {
            io.out << detail::token_text(*tok, token);
        }
        first = false;
        io.out.flush();
    };
    const Generation g = std::visit(
        [&](const auto& model) { return generate(model, {prompt}, options, on_token); }, m.model);
    start();
    io.out << '\n';
    io.out.flush();  // the text's last line before the stderr line on a shared terminal

    std::ostringstream stats;
    stats << g.new_tokens << " tokens in " << std::fixed << std::setprecision(3)
          << g.prefill_seconds + g.decode_seconds << " s, " << std::setprecision(1) << g.tokens_per_second()
          << " tokens/s\n";
    io.err << stats.str();
    return 0;
}

// The row of cli.hpp's subcommand table for generate.
template <class Subcommand>
std::vector<Subcommand> generate_subcommands() {
    return {
        {"generate",
         "--model DIR (--prompt TEXT | --tokens IDS) [--max-new-tokens N] [--temperature X] [--top-k K] [--top-p P] "
         "[--seed S] [--eos ID]",
         "text (or ids) from a model with the KV cache: temperature, top-k and top-p sampling, printed as produced",
         {{"--model", "DIR", "checkpoint directory: config.json, model.safetensors and its tokenizer files if any"},
          {"--prompt", "TEXT", "the prompt as text (needs the tokenizer); echoed, then the new text (T5: the encoder input)"},
          {"--tokens", "IDS", "the prompt as comma-separated ids, e.g. 1,2,3; the new ids are printed"},
          {"--max-new-tokens", "N", "how many tokens to generate at most (default 32)"},
          {"--temperature", "X", "softmax temperature (default 0.8); 0 = greedy (argmax)"},
          {"--top-k", "K", "sample among the K most likely tokens only (default 0 = off)"},
          {"--top-p", "P", "nucleus: the most likely tokens whose probability sums to >= P (default 1 = off)"},
          {"--seed", "S", "random seed of the sampling (default 0): the same seed gives the same text"},
          {"--eos", "ID", "stop after this id (default: the tokenizer's <|endoftext|>, T5's eos; -1 = never)"}},
         run_generate},
    };
}

}  // namespace llmblocks::cli
