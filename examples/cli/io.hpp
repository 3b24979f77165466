// examples/cli/io.hpp — the three streams a subcommand of the `llmblocks`
// program reads and writes (std::cin/cout/cerr in the program, string
// streams in the tests), and reading all of stdin.
#pragma once

#include <istream>
#include <iterator>
#include <ostream>
#include <string>

namespace llmblocks::cli {

struct Io {
    std::istream& in;
    std::ostream& out;  // results only
    std::ostream& err;  // progress and errors
};

// Everything left on the stream, byte for byte (nothing stripped).
inline std::string read_all(std::istream& in) {
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace llmblocks::cli
