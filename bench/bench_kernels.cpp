// bench/bench_kernels.cpp — Google Benchmark of the non-GEMM kernels
// (elementwise, reductions, softmax, norms): the SIMD path against its scalar
// reference, in float.
//
// Names are kernels/<name>/<impl>/<size>, where <impl> is
//   reference  the plain scalar loop (one thread),
//   simd_t1    the SIMD kernel on one thread,
//   simd       the SIMD kernel with the default thread count (it threads only
//              above its grain: 64K elements for arithmetic, 32K for
//              transcendental functions, 16K elements of whole rows for row kernels),
// and <size> is n, or rows x cols for the row kernels. The bytes_per_second
// counter counts the bytes each call must move at least (every input read and
// every output written once), so it compares with the memory bandwidth.
//
//   bench_kernels --benchmark_filter='kernels/gelu' --benchmark_repetitions=5
//                 --benchmark_report_aggregates_only=true   (one command line)
#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "llmblocks/core/memory.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/elementwise.hpp"
#include "llmblocks/kernels/norm.hpp"
#include "llmblocks/kernels/reduce.hpp"
#include "llmblocks/kernels/simd.hpp"
#include "llmblocks/kernels/softmax.hpp"

using namespace llmblocks;
namespace kn = llmblocks::kernels;
using T = float;

namespace {

// A 64-byte aligned array of n random normal values.
struct Array {
    AlignedBuffer<T> mem;
    explicit Array(index_t n, std::uint64_t seed = 1, double mean = 0.0, double std = 1.0) : mem(n) {
        Rng rng(seed);
        for (index_t i = 0; i < n; ++i) mem.data()[i] = static_cast<T>(rng.normal(mean, std));
    }
    T* p() const { return mem.data(); }
};

enum class Impl { reference, simd_t1, simd };
const char* impl_name(Impl impl) {
    switch (impl) {
        case Impl::reference: return "reference";
        case Impl::simd_t1: return "simd_t1";
        case Impl::simd: return "simd";
    }
    return "?";
}

// Runs `call` in the benchmark loop with the thread count of `impl`; `bytes`
// is the traffic of one call.
void run(benchmark::State& state, Impl impl, double bytes, const std::function<void()>& call) {
    const int threads = get_num_threads();
    if (impl != Impl::simd) set_num_threads(1);
    for (auto _ : state) {
        call();
        benchmark::ClobberMemory();
    }
    set_num_threads(threads);
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes * static_cast<double>(state.iterations())));
    state.counters["threads"] = impl == Impl::simd ? get_num_threads() : 1;
}

void add_bench(const std::string& name, Impl impl, const std::string& size,
               std::function<void(benchmark::State&)> fn) {
    benchmark::RegisterBenchmark(("kernels/" + name + "/" + impl_name(impl) + "/" + size).c_str(),
                                 [fn](benchmark::State& state) { fn(state); })
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
}

const Impl kImpls[] = {Impl::reference, Impl::simd_t1, Impl::simd};
const index_t kSizes[] = {4096, 1 << 16, 1 << 20};
// (rows, cols): attention rows of a 1024-token context, GPT-2 small (768) and
// GPT-2 XL (1600) activations, a 50257-token vocabulary row.
const std::pair<index_t, index_t> kRowShapes[] = {{64, 1024}, {1024, 768}, {1024, 1600}, {8, 50257}};

using Binary = void (*)(T*, const T*, const T*, index_t);
using Unary = void (*)(T*, const T*, index_t);
using Backward = void (*)(T*, const T*, const T*, index_t);

void register_elementwise() {
    struct B2 {
        const char* name;
        Binary simd, reference;
    };
    for (const B2& op : {B2{"add", &kn::add<T>, &kn::add_reference<T>}, B2{"mul", &kn::mul<T>, &kn::mul_reference<T>}}) {
        for (Impl impl : kImpls)
            for (index_t n : kSizes)
                add_bench(op.name, impl, std::to_string(n), [op, impl, n](benchmark::State& state) {
                    Array a(n, 1), b(n, 2), out(n, 3);
                    const Binary f = impl == Impl::reference ? op.reference : op.simd;
                    run(state, impl, 3.0 * n * sizeof(T), [&] { f(out.p(), a.p(), b.p(), n); });
                });
    }
    for (Impl impl : kImpls)
        for (index_t n : kSizes)
            add_bench("axpy", impl, std::to_string(n), [impl, n](benchmark::State& state) {
                Array x(n, 1), y(n, 2);
                run(state, impl, 3.0 * n * sizeof(T), [&] {
                    if (impl == Impl::reference)
                        kn::axpy_reference(y.p(), T(1e-3), x.p(), n);
                    else
                        kn::axpy(y.p(), T(1e-3), x.p(), n);
                });
            });
    struct U {
        const char* name;
        Unary simd, reference;
    };
    for (const U& op : {U{"exp", &kn::exp<T>, &kn::exp_reference<T>},
                        U{"gelu_forward", &kn::gelu_forward<T>, &kn::gelu_forward_reference<T>},
                        U{"gelu_tanh_forward", &kn::gelu_tanh_forward<T>, &kn::gelu_tanh_forward_reference<T>},
                        U{"silu_forward", &kn::silu_forward<T>, &kn::silu_forward_reference<T>},
                        U{"relu_forward", &kn::relu_forward<T>, &kn::relu_forward_reference<T>}}) {
        for (Impl impl : kImpls)
            for (index_t n : kSizes)
                add_bench(op.name, impl, std::to_string(n), [op, impl, n](benchmark::State& state) {
                    Array x(n, 1, 0.0, 2.0), out(n, 3);
                    const Unary f = impl == Impl::reference ? op.reference : op.simd;
                    run(state, impl, 2.0 * n * sizeof(T), [&] { f(out.p(), x.p(), n); });
                });
    }
    struct Bw {
        const char* name;
        Backward simd, reference;
    };
    for (const Bw& op : {Bw{"gelu_backward", &kn::gelu_backward<T>, &kn::gelu_backward_reference<T>},
                         Bw{"gelu_tanh_backward", &kn::gelu_tanh_backward<T>, &kn::gelu_tanh_backward_reference<T>},
                         Bw{"silu_backward", &kn::silu_backward<T>, &kn::silu_backward_reference<T>}}) {
        for (Impl impl : kImpls)
            for (index_t n : kSizes)
                add_bench(op.name, impl, std::to_string(n), [op, impl, n](benchmark::State& state) {
                    Array x(n, 1, 0.0, 2.0), dout(n, 2), dinp(n, 3, 0.0, 0.0);
                    const Backward f = impl == Impl::reference ? op.reference : op.simd;
                    run(state, impl, 4.0 * n * sizeof(T), [&] { f(dinp.p(), x.p(), dout.p(), n); });
                });
    }
}

void register_reduce() {
    for (Impl impl : kImpls)
        for (index_t n : kSizes) {
            add_bench("sum", impl, std::to_string(n), [impl, n](benchmark::State& state) {
                Array a(n, 1);
                run(state, impl, 1.0 * n * sizeof(T), [&] {
                    benchmark::DoNotOptimize(impl == Impl::reference ? kn::sum_reference(a.p(), n) : kn::sum(a.p(), n));
                });
            });
            add_bench("max", impl, std::to_string(n), [impl, n](benchmark::State& state) {
                Array a(n, 1);
                run(state, impl, 1.0 * n * sizeof(T), [&] {
                    benchmark::DoNotOptimize(impl == Impl::reference ? kn::max_reference(a.p(), n) : kn::max(a.p(), n));
                });
            });
            add_bench("dot", impl, std::to_string(n), [impl, n](benchmark::State& state) {
                Array a(n, 1), b(n, 2);
                run(state, impl, 2.0 * n * sizeof(T), [&] {
                    benchmark::DoNotOptimize(impl == Impl::reference ? kn::dot_reference(a.p(), b.p(), n)
                                                                     : kn::dot(a.p(), b.p(), n));
                });
            });
        }
}

std::string shape_name(index_t rows, index_t cols) { return std::to_string(rows) + "x" + std::to_string(cols); }

void register_softmax() {
    for (Impl impl : kImpls)
        for (auto [rows, cols] : kRowShapes) {
            const index_t n = rows * cols;
            add_bench("softmax_forward", impl, shape_name(rows, cols), [impl, rows, cols, n](benchmark::State& state) {
                Array x(n, 1, 0.0, 3.0), y(n, 2);
                run(state, impl, 2.0 * n * sizeof(T), [&] {
                    if (impl == Impl::reference)
                        kn::softmax_forward_reference(y.p(), x.p(), rows, cols);
                    else
                        kn::softmax_forward(y.p(), x.p(), rows, cols);
                });
            });
            add_bench("softmax_backward", impl, shape_name(rows, cols), [impl, rows, cols, n](benchmark::State& state) {
                Array x(n, 1, 0.0, 3.0), y(n, 2), dout(n, 3), dinp(n, 4, 0.0, 0.0);
                kn::softmax_forward(y.p(), x.p(), rows, cols);
                run(state, impl, 4.0 * n * sizeof(T), [&] {
                    if (impl == Impl::reference)
                        kn::softmax_backward_reference(dinp.p(), y.p(), dout.p(), rows, cols);
                    else
                        kn::softmax_backward(dinp.p(), y.p(), dout.p(), rows, cols);
                });
            });
            add_bench("log_softmax_forward", impl, shape_name(rows, cols), [impl, rows, cols, n](benchmark::State& state) {
                Array x(n, 1, 0.0, 3.0), y(n, 2);
                run(state, impl, 2.0 * n * sizeof(T), [&] {
                    if (impl == Impl::reference)
                        kn::log_softmax_forward_reference(y.p(), x.p(), rows, cols);
                    else
                        kn::log_softmax_forward(y.p(), x.p(), rows, cols);
                });
            });
        }
}

void register_norm() {
    for (Impl impl : kImpls)
        for (auto [rows, cols] : kRowShapes) {
            if (cols > 4096) continue;  // norms run over model widths
            const index_t n = rows * cols;
            add_bench("layernorm_forward", impl, shape_name(rows, cols), [impl, rows, cols, n](benchmark::State& state) {
                Array x(n, 1), y(n, 2), w(cols, 3, 1.0, 0.1), b(cols, 4), mean(rows, 5), rstd(rows, 6);
                run(state, impl, 2.0 * n * sizeof(T), [&] {
                    if (impl == Impl::reference)
                        kn::layernorm_forward_reference(y.p(), mean.p(), rstd.p(), x.p(), w.p(), b.p(), rows, cols, T(1e-5));
                    else
                        kn::layernorm_forward(y.p(), mean.p(), rstd.p(), x.p(), w.p(), b.p(), rows, cols, T(1e-5));
                });
            });
            add_bench("layernorm_backward", impl, shape_name(rows, cols), [impl, rows, cols, n](benchmark::State& state) {
                Array x(n, 1), y(n, 2), w(cols, 3, 1.0, 0.1), b(cols, 4), mean(rows, 5), rstd(rows, 6), dout(n, 7);
                Array dinp(n, 8, 0.0, 0.0), dw(cols, 9, 0.0, 0.0), db(cols, 10, 0.0, 0.0);
                kn::layernorm_forward(y.p(), mean.p(), rstd.p(), x.p(), w.p(), b.p(), rows, cols, T(1e-5));
                run(state, impl, 4.0 * n * sizeof(T), [&] {
                    if (impl == Impl::reference)
                        kn::layernorm_backward_reference(dinp.p(), dw.p(), db.p(), dout.p(), x.p(), w.p(), mean.p(), rstd.p(),
                                                         rows, cols);
                    else
                        kn::layernorm_backward(dinp.p(), dw.p(), db.p(), dout.p(), x.p(), w.p(), mean.p(), rstd.p(), rows,
                                               cols);
                });
            });
            add_bench("rmsnorm_forward", impl, shape_name(rows, cols), [impl, rows, cols, n](benchmark::State& state) {
                Array x(n, 1), y(n, 2), w(cols, 3, 1.0, 0.1), rstd(rows, 6);
                run(state, impl, 2.0 * n * sizeof(T), [&] {
                    if (impl == Impl::reference)
                        kn::rmsnorm_forward_reference(y.p(), rstd.p(), x.p(), w.p(), rows, cols, T(1e-6));
                    else
                        kn::rmsnorm_forward(y.p(), rstd.p(), x.p(), w.p(), rows, cols, T(1e-6));
                });
            });
            add_bench("rmsnorm_backward", impl, shape_name(rows, cols), [impl, rows, cols, n](benchmark::State& state) {
                Array x(n, 1), y(n, 2), w(cols, 3, 1.0, 0.1), rstd(rows, 6), dout(n, 7);
                Array dinp(n, 8, 0.0, 0.0), dw(cols, 9, 0.0, 0.0);
                kn::rmsnorm_forward(y.p(), rstd.p(), x.p(), w.p(), rows, cols, T(1e-6));
                run(state, impl, 4.0 * n * sizeof(T), [&] {
                    if (impl == Impl::reference)
                        kn::rmsnorm_backward_reference(dinp.p(), dw.p(), dout.p(), x.p(), w.p(), rstd.p(), rows, cols);
                    else
                        kn::rmsnorm_backward(dinp.p(), dw.p(), dout.p(), x.p(), w.p(), rstd.p(), rows, cols);
                });
            });
        }
}

}  // namespace

int main(int argc, char** argv) {
    register_elementwise();
    register_reduce();
    register_softmax();
    register_norm();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::AddCustomContext("simd_arch", simd::arch_name());
    benchmark::AddCustomContext("simd_width_float", std::to_string(simd::width<float>));
    benchmark::AddCustomContext("threads", std::to_string(get_num_threads()));
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
