// Tests for include/llmblocks/kernels/embedding.hpp: gather and scatter-add
// against their scalar references at awkward widths and unaligned pointers,
// with repeated ids, and the id range check.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "llmblocks/core/tensor.hpp"
#include "llmblocks/kernels/embedding.hpp"
#include "support/compare.hpp"

using namespace llmblocks;

TEST_CASE("kernels/embedding: forward and backward match the reference at awkward sizes") {
    for (index_t C : {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 127, 257, 1000})
        for (index_t offset : {0, 1}) {
            INFO("C " << C << ", offset " << offset);
            Rng rng(static_cast<std::uint64_t>(C * 7 + offset));
            const index_t V = 11, n = 40;  // 40 ids from 11 rows: many repeats
            std::vector<std::int32_t> ids(n);
            for (auto& id : ids) id = static_cast<std::int32_t>(rng.randint(0, V));
            const TensorF weight = TensorF::randn({V * C + offset}, rng);
            TensorF out = TensorF::zeros({n * C + offset}), out_ref = TensorF::zeros({n * C + offset});
            kernels::embedding_forward(out.data() + offset, ids.data(), weight.data() + offset, n, V, C);
            kernels::embedding_forward_reference(out_ref.data() + offset, ids.data(), weight.data() + offset, n, V, C);
            CHECK_TENSOR_CLOSE(out, out_ref, 0.0, 0.0);

            const TensorF dout = TensorF::randn({n * C + offset}, rng);
            TensorF dw = TensorF::randn({V * C + offset}, rng);  // accumulates into what is there
            TensorF dw_ref = dw.clone();
            kernels::embedding_backward(dw.data() + offset, dout.data() + offset, ids.data(), n, V, C);
            kernels::embedding_backward_reference(dw_ref.data() + offset, dout.data() + offset, ids.data(), n, V, C);
            // same summation order per element: bit-identical
            CHECK_TENSOR_CLOSE(dw, dw_ref, 0.0, 0.0);
        }
}

TEST_CASE("kernels/embedding: a large table uses threads and stays deterministic; bad ids throw") {
    Rng rng(3);
    const index_t V = 97, C = 768, n = 512;
    std::vector<std::int32_t> ids(n);
    for (auto& id : ids) id = static_cast<std::int32_t>(rng.randint(0, V));
    const TensorD dout = TensorD::randn({n, C}, rng);
    TensorD dw = TensorD::zeros({V, C}), dw_ref = TensorD::zeros({V, C});
    kernels::embedding_backward(dw.data(), dout.data(), ids.data(), n, V, C);
    kernels::embedding_backward_reference(dw_ref.data(), dout.data(), ids.data(), n, V, C);
    CHECK_TENSOR_CLOSE(dw, dw_ref, 0.0, 0.0);

    std::vector<std::int32_t> bad{0, 5, -1};
    std::vector<float> w(5 * 2), out(3 * 2);
    CHECK_THROWS_AS(kernels::embedding_forward(out.data(), bad.data(), w.data(), 3, 5, 2), Error);
    CHECK_THROWS_AS(kernels::embedding_backward(w.data(), out.data(), bad.data(), 3, 5, 2), Error);
    CHECK_THROWS_AS(kernels::embedding_forward_reference(out.data(), bad.data(), w.data(), 3, 5, 2), Error);
}
