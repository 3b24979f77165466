// Consumer through add_subdirectory: the headers, the target's usage requirements and a kernel call.
#include <llmblocks/core.hpp>

#include <iostream>

int main() {
    llmblocks::Rng rng(1);
    auto x = llmblocks::TensorF::randn({3, 5}, rng);
    auto xt = x.t().contiguous();
    if (xt(4, 2) != x(2, 4)) return 1;
    std::cout << "add_subdirectory consumer: ok, " << llmblocks::get_num_threads() << " thread(s)\n";
    return 0;
}
