// examples/cli/generate.hpp — `llmblocks generate` (being written).
#pragma once

#include <vector>

namespace llmblocks::cli {

// The rows of cli.hpp's subcommand table for generate.
template <class Subcommand>
std::vector<Subcommand> generate_subcommands() {
    return {};
}

}  // namespace llmblocks::cli
