// llmblocks/core/error.hpp — the one exception type of the library and the
// helpers that build its messages.
//
// Every misuse (a wrong shape, an index out of range, a malformed file) throws
// llmblocks::Error with a message that names the operation and the shapes
// involved, e.g. "matmul: inner sizes differ: a (2, 3) vs b (4, 5)".
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace llmblocks {

// Sizes, indices and strides are signed 64-bit everywhere (as in PyTorch).
using index_t = std::int64_t;
// A tensor shape, outermost dimension first (PyTorch order).
using Shape = std::vector<index_t>;

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// "(2, 3, 4)"; "()" for a scalar.
inline std::string shape_str(const Shape& shape) {
    std::string s = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i) s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + ")";
}

namespace detail {

inline void append(std::ostringstream& os, const Shape& shape) { os << shape_str(shape); }
template <class T>
void append(std::ostringstream& os, const T& part) { os << part; }

}  // namespace detail

// Throws Error with the parts concatenated; a Shape part prints as "(2, 3)".
template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
    std::ostringstream os;
    (detail::append(os, parts), ...);
    throw Error(os.str());
}

}  // namespace llmblocks

// LLMBLOCKS_CHECK(cond, "op: what", shape, ...) throws Error unless cond holds.
#define LLMBLOCKS_CHECK(cond, ...)                      \
    do {                                                \
        if (!(cond)) ::llmblocks::fail(__VA_ARGS__);    \
    } while (0)
