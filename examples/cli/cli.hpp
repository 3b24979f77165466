// examples/cli/cli.hpp — the `llmblocks` command-line program as a function:
// run_cli(args, in, out, err) returns the exit code, so the tests run it in
// process with string streams and examples/llmblocks.cpp is a three-line main.
// DESIGN.md, "Command-line program `llmblocks`", is the specification.
//
// Exit codes: 0 success; 1 the command failed (a missing or malformed file, a
// bad token id, ...: any llmblocks::Error or std::exception); 2 a usage error
// (unknown subcommand or option, missing value or required option). Every
// failure is one line on `err`: "llmblocks <sub>: <message>", plus for usage
// errors a pointer to the help. Nothing escapes run_cli.
//
// Adding a subcommand: write `int run_<name>(const Args&, Io&)` in its own
// header under examples/cli/, include it here and add one row to
// subcommands() with its options.
#pragma once

#include <exception>
#include <istream>
#include <new>
#include <ostream>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "cli/info.hpp"
#include "cli/io.hpp"
#include "cli/generate.hpp"
#include "cli/model_commands.hpp"
#include "cli/tokens.hpp"
#include "cli/train.hpp"
#include "llmblocks/core/error.hpp"

namespace llmblocks::cli {

struct Subcommand {
    std::string name;
    std::string synopsis;  // the options line of the usage
    std::string summary;   // one line
    std::vector<OptionSpec> options;
    int (*run)(const Args&, Io&);
};

// The table of subcommands, in the order the usage lists them.
inline const std::vector<Subcommand>& subcommands() {
    static const std::vector<Subcommand> table = [] {
        std::vector<Subcommand> rows{
            {"info", "--model DIR | --config FILE | --arch gpt2|gpt3|palm|t5 --preset NAME [--context N]",
             "architecture summary, parameter count, FLOPs per token, KV-cache bytes",
             {{"--model", "DIR", "checkpoint directory: DIR/config.json, and DIR/model.safetensors if present"},
              {"--config", "FILE", "a config.json file"},
              {"--arch", "ARCH", "gpt2, gpt3, palm or t5 (with --preset)"},
              {"--preset", "NAME", "a preset of --arch, e.g. 124M (gpt2), 175B (gpt3), 540B (palm), 11B (t5)"},
              {"--context", "N", "context length for FLOPs and KV-cache totals (default: the model's)"}},
             run_info},
            {"encode", "--model DIR [--plain]",
             "GPT-2 BPE: text on stdin -> ids on stdout (space-separated, one final newline)",
             {{"--model", "DIR", "directory with vocab.json and merges.txt"},
              {"--plain", "", "encode <|endoftext|> in the text as plain text (default: its id, as Hugging Face)"}},
             run_encode},
            {"decode", "--model DIR",
             "GPT-2 BPE: ids on stdin (whitespace-separated) -> the exact bytes on stdout",
             {{"--model", "DIR", "directory with vocab.json and merges.txt"}},
             run_decode},
        };
        // init, logits, grad: the commands that load or build a model (cli/model_commands.hpp).
        for (Subcommand& s : model_subcommands<Subcommand>()) rows.push_back(std::move(s));
        // train (cli/train.hpp) and generate (cli/generate.hpp).
        for (Subcommand& s : train_subcommands<Subcommand>()) rows.push_back(std::move(s));
        for (Subcommand& s : generate_subcommands<Subcommand>()) rows.push_back(std::move(s));
        return rows;
    }();
    return table;
}

inline void print_usage(std::ostream& os) {
    os << "usage: llmblocks <subcommand> [options]   (llmblocks <subcommand> --help for its options)\n\n";
    for (const Subcommand& s : subcommands()) os << "  llmblocks " << s.name << " " << s.synopsis << "\n      " << s.summary << "\n";
}

inline void print_help(std::ostream& os, const Subcommand& s) {
    os << "usage: llmblocks " << s.name << " " << s.synopsis << "\n" << s.summary << "\n\noptions:\n";
    std::size_t width = 0;
    for (const OptionSpec& o : s.options) width = std::max(width, o.name.size() + 1 + o.value_name.size());
    for (const OptionSpec& o : s.options) {
        const std::string left = o.value_name.empty() ? o.name : o.name + " " + o.value_name;
        os << "  " << left << std::string(width + 2 - left.size(), ' ') << o.help << "\n";
    }
}

namespace detail {

// Error messages are printed on one line.
inline std::string one_line(std::string s) {
    for (char& c : s)
        if (c == '\n' || c == '\r') c = ' ';
    return s;
}

}  // namespace detail

// Runs the program on `args` (argv without the program name); returns the exit code.
inline int run_cli(const std::vector<std::string>& args, std::istream& in, std::ostream& out, std::ostream& err) {
    if (args.empty()) {
        print_usage(err);
        return 2;
    }
    const std::string& name = args[0];
    if (name == "--help" || name == "-h" || name == "help") {
        if (args.size() > 1) {
            for (const Subcommand& s : subcommands())
                if (s.name == args[1]) return print_help(out, s), 0;
            err << "llmblocks: unknown subcommand '" << detail::one_line(args[1]) << "' (run 'llmblocks --help')\n";
            return 2;
        }
        print_usage(out);
        return 0;
    }
    const Subcommand* sub = nullptr;
    for (const Subcommand& s : subcommands())
        if (s.name == name) sub = &s;
    if (sub == nullptr) {
        err << "llmblocks: unknown subcommand '" << detail::one_line(name) << "' (run 'llmblocks --help')\n";
        return 2;
    }
    const std::string prefix = "llmblocks " + sub->name + ": ";
    try {
        const Args parsed = Args::parse(std::vector<std::string>(args.begin() + 1, args.end()), sub->options);
        if (parsed.help_requested()) {
            print_help(out, *sub);
            return 0;
        }
        Io io{in, out, err};
        const int code = sub->run(parsed, io);
        out.flush();
        if (!out) {
            err << prefix << "cannot write the output\n";
            return 1;
        }
        return code;
    } catch (const UsageError& e) {
        err << prefix << detail::one_line(e.what()) << " (run 'llmblocks " << sub->name << " --help')\n";
        return 2;
    } catch (const std::bad_alloc&) {
        err << prefix << "out of memory\n";
        return 1;
    } catch (const std::exception& e) {
        err << prefix << detail::one_line(e.what()) << "\n";
        return 1;
    } catch (...) {
        err << prefix << "unknown error\n";
        return 1;
    }
}

}  // namespace llmblocks::cli
