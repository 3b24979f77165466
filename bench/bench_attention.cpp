// bench/bench_attention.cpp — the fused attention kernel (kernels/attention.hpp)
// on GPT-style shapes: batch 1, 12 query heads of 64, causal; multi-head (12 KV
// heads), grouped-query (4) and multi-query (1); prefill of T = 256, 1024, 4096
// tokens and decode (one new query at position T - 1 against a cache of T keys).
//
// Counters: cpu_ms_all_threads is the process CPU time per call, summed over
// threads (on an idle machine wall time ~ cpu_ms_all_threads / threads; on a
// loaded one it is the steadier figure). GFLOPS counts the visible part only (causal prefill
// 2 * 2 * H * D * T (T + 1) / 2, decode 2 * 2 * H * D * T); scratch_bytes is the
// peak of memory_stats() the call allocates on top of its inputs and outputs
// (linear in T for the fused kernel, T^2 for the reference, which keeps one
// (Tq, Tk) double matrix). The plain reference runs as attention_reference/...
// at T = 256 and 1024 only (serial scalar: T = 4096 would take a minute a run).
//
// PyTorch, side by side: bench/attention_torch.py.
//   ./bench_attention --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdint>
#include <ctime>
#include <string>

#include "llmblocks/core/memory.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/core/tensor.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/attention.hpp"
#include "llmblocks/kernels/simd.hpp"

namespace {

using namespace llmblocks;
using kernels::AttentionConfig;
using kernels::BiasView;
using kernels::HeadsView;

constexpr index_t kHeads = 12, kHeadDim = 64;

struct Case {
    AttentionConfig c;
    TensorF q, k, v, out, lse;
    double flops = 0;
};

Case make_case(index_t kv_heads, bool decode, index_t T) {
    Case x;
    x.c.batch = 1;
    x.c.n_heads = kHeads;
    x.c.n_kv_heads = kv_heads;
    x.c.head_dim = kHeadDim;
    x.c.mask = kernels::AttentionMask::causal;
    x.c.kv_len = T;
    x.c.q_len = decode ? 1 : T;
    x.c.q_pos0 = decode ? T - 1 : 0;
    Rng rng(42);
    x.q = TensorF::randn({1, kHeads, x.c.q_len, kHeadDim}, rng);
    x.k = TensorF::randn({1, kv_heads, T, kHeadDim}, rng);
    x.v = TensorF::randn({1, kv_heads, T, kHeadDim}, rng);
    x.out = TensorF::zeros({1, kHeads, x.c.q_len, kHeadDim});
    x.lse = TensorF::zeros({1, kHeads, x.c.q_len});
    const double visible = decode ? static_cast<double>(T) : static_cast<double>(T) * (T + 1) / 2.0;
    x.flops = 2.0 * 2.0 * kHeads * kHeadDim * visible;
    return x;
}

// CPU seconds used by the whole process (all threads): on a shared, loaded
// machine the wall time depends on what else runs, this much less.
double process_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

HeadsView<float> view(const TensorF& t) {
    return HeadsView<float>(t.data(), t.strides()[0], t.strides()[1], t.strides()[2]);
}

template <bool kReference>
void run(Case& x) {
    if constexpr (kReference)
        kernels::attention_reference(view(x.out), x.lse.data(), view(x.q), view(x.k), view(x.v),
                                     BiasView<const float>(), x.c);
    else
        kernels::attention_forward(view(x.out), x.lse.data(), view(x.q), view(x.k), view(x.v),
                                   BiasView<const float>(), x.c);
}

template <bool kReference>
void bench(benchmark::State& state, index_t kv_heads, bool decode, index_t T) {
    Case x = make_case(kv_heads, decode, T);
    const std::int64_t live = memory_stats().live_bytes;
    reset_peak_memory();
    run<kReference>(x);
    const std::int64_t scratch = memory_stats().peak_bytes - live;
    const double cpu0 = process_cpu_seconds();
    for (auto _ : state) {
        run<kReference>(x);
        benchmark::DoNotOptimize(x.out.data());
        benchmark::ClobberMemory();
    }
    state.counters["cpu_ms_all_threads"] = benchmark::Counter((process_cpu_seconds() - cpu0) * 1e3,
                                                              benchmark::Counter::kAvgIterations);
    state.counters["GFLOPS"] =
        benchmark::Counter(x.flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    state.counters["scratch_bytes"] = static_cast<double>(scratch);
    state.counters["threads"] = get_num_threads();
}

void register_all() {
    struct Layout {
        const char* name;
        index_t kv_heads;
    };
    for (const Layout lay : {Layout{"mha", 12}, Layout{"gqa", 4}, Layout{"mqa", 1}})
        for (const bool decode : {false, true})
            for (const index_t T : {256, 1024, 4096}) {
                const std::string suffix =
                    std::string(lay.name) + (decode ? "/decode/T" : "/prefill/T") + std::to_string(T);
                auto* b = benchmark::RegisterBenchmark(("attention/" + suffix).c_str(), bench<false>, lay.kv_heads,
                                                       decode, T);
                b->Unit(benchmark::kMillisecond)->UseRealTime();
                if (!decode && T >= 4096) b->Iterations(2);
                if (T < 4096) {
                    auto* r = benchmark::RegisterBenchmark(("attention_reference/" + suffix).c_str(), bench<true>,
                                                           lay.kv_heads, decode, T);
                    r->Unit(benchmark::kMillisecond)->UseRealTime();
                    if (!decode && T >= 1024) r->Iterations(1);
                }
            }
}

}  // namespace

int main(int argc, char** argv) {
    register_all();
    benchmark::AddCustomContext("simd", llmblocks::simd::arch_name());
    benchmark::AddCustomContext("threads", std::to_string(llmblocks::get_num_threads()));
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
