// The README's first example: tensors, views and a SIMD kernel's neighbour, the reference check.
#include <iostream>

#include "llmblocks/core.hpp"

int main() {
    namespace lb = llmblocks;
    lb::Rng rng(0);
    auto x = lb::TensorF::randn({2, 3, 4}, rng);  // (B, T, C)
    auto xt = x.transpose(1, 2);                   // (B, C, T): a view, no copy
    std::cout << "x " << lb::shape_str(x.shape()) << ", x^T " << lb::shape_str(xt.shape())
              << " shares storage: " << std::boolalpha << xt.same_storage(x) << "\n";
    std::cout << xt.contiguous().select(0, 0) << "\n";
}
