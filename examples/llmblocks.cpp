// The `llmblocks` command-line program (DESIGN.md, "Command-line program
// `llmblocks`"); everything is in cli/cli.hpp, so the tests can run it in process.
#include <iostream>
#include <string>
#include <vector>

#include "cli/cli.hpp"

int main(int argc, char** argv) {
    std::ios::sync_with_stdio(false);
    return llmblocks::cli::run_cli(std::vector<std::string>(argv + 1, argv + argc), std::cin, std::cout, std::cerr);
}
