// examples/cli/train.hpp — `llmblocks train` (being written).
#pragma once

#include <vector>

namespace llmblocks::cli {

// The rows of cli.hpp's subcommand table for train.
template <class Subcommand>
std::vector<Subcommand> train_subcommands() {
    return {};
}

}  // namespace llmblocks::cli
