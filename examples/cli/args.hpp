// examples/cli/args.hpp — the argument parser of the `llmblocks` program
// (DESIGN.md, "Command-line program `llmblocks`" and contract detail 2).
//
// Rules, on purpose few:
//   - an option is `--name VALUE`: the value is the NEXT argv entry, verbatim,
//     even if it starts with '-' (`--targets -100,7`) or is empty; `--name=VALUE`
//     is accepted too;
//   - a flag is `--name` alone (its spec has no value name);
//   - `--help` / `-h` where an option may stand asks for the subcommand's help;
//   - anything else (an unknown option, a missing value, a repeated option, a
//     positional argument) is a UsageError, which the program reports in one
//     line and exits with 2.
#pragma once

#include <charconv>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace llmblocks::cli {

// A mistake on the command line (exit code 2); other errors exit with 1.
class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// One option a subcommand accepts.
struct OptionSpec {
    std::string name;        // "--model"
    std::string value_name;  // "DIR"; empty for a flag that takes no value
    std::string help;        // one line
};

// The options given to one subcommand, checked against its specs.
class Args {
public:
    // Parses `args` (the entries after the subcommand name).
    static Args parse(const std::vector<std::string>& args, const std::vector<OptionSpec>& specs) {
        Args out;
        out.specs_ = specs;
        for (std::size_t i = 0; i < args.size(); ++i) {
            const std::string& a = args[i];
            if (a == "--help" || a == "-h") {
                out.help_ = true;
                continue;
            }
            if (a.size() < 3 || a.compare(0, 2, "--") != 0) throw UsageError("unexpected argument '" + a + "'");
            const std::size_t eq = a.find('=');
            const std::string name = a.substr(0, eq);
            const OptionSpec* spec = out.find_spec(name);
            if (spec == nullptr) throw UsageError("unknown option '" + name + "'");
            if (out.values_.count(name)) throw UsageError("option '" + name + "' is given more than once");
            if (spec->value_name.empty()) {
                if (eq != std::string::npos) throw UsageError("option '" + name + "' takes no value");
                out.values_[name] = "";
            } else if (eq != std::string::npos) {
                out.values_[name] = a.substr(eq + 1);
            } else {
                if (i + 1 >= args.size())
                    throw UsageError("option '" + name + "' needs a value (" + name + " " + spec->value_name + ")");
                out.values_[name] = args[++i];  // verbatim, even if it starts with '-'
            }
        }
        return out;
    }

    bool help_requested() const { return help_; }
    bool has(const std::string& name) const {
        check_known(name);
        return values_.count(name) != 0;
    }
    // The value of a required option; UsageError if it is absent.
    const std::string& get(const std::string& name) const {
        check_known(name);
        const auto it = values_.find(name);
        if (it == values_.end())
            throw UsageError("missing required option '" + name + " " + find_spec(name)->value_name + "'");
        return it->second;
    }
    std::string get_or(const std::string& name, const std::string& fallback) const {
        return has(name) ? values_.at(name) : fallback;
    }
    // An integer option; UsageError if it is not a base-10 integer in range.
    std::int64_t get_int(const std::string& name, std::int64_t fallback) const {
        if (!has(name)) return fallback;
        const std::string& v = values_.at(name);
        std::int64_t x = 0;
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
        if (v.empty() || ec != std::errc() || end != v.data() + v.size())
            throw UsageError("option '" + name + "' needs an integer, got '" + v + "'");
        return x;
    }

private:
    const OptionSpec* find_spec(const std::string& name) const {
        for (const OptionSpec& s : specs_)
            if (s.name == name) return &s;
        return nullptr;
    }
    // Asking for an option the subcommand never declared is a bug in the program.
    void check_known(const std::string& name) const {
        if (find_spec(name) == nullptr) throw std::logic_error("llmblocks cli: option '" + name + "' is not declared");
    }

    std::vector<OptionSpec> specs_;
    std::map<std::string, std::string> values_;
    bool help_ = false;
};

}  // namespace llmblocks::cli
