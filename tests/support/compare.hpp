// tests/support/compare.hpp — the tests' one tensor comparison: on failure it
// reports the largest difference and where it is.
#pragma once

#include <doctest/doctest.h>

#include "llmblocks/core/tensor.hpp"

// CHECK that `actual` matches `expected` within |a - b| <= atol + rtol * |b|.
#define CHECK_TENSOR_CLOSE(actual, expected, rtol, atol)                                   \
    do {                                                                                    \
        const auto llmblocks_cmp_ = ::llmblocks::compare((actual), (expected), (rtol), (atol)); \
        INFO(llmblocks_cmp_.message);                                                       \
        CHECK(llmblocks_cmp_.ok);                                                           \
    } while (0)
