// bench/bench_model.cpp — whole-model figures for GPT-2 124M (random init, fp32):
//
//   train_step/gpt2-124M/B4xT64   forward + backward + AdamW on a (4, 64) batch
//   decode/gpt2-124M/p16n128      batch 1: generate() 128 greedy tokens after a
//                                 16-token prompt (prefill, then the KV cache)
//
// Counters: tokens_per_s (train: B*T per step; decode: the 128 new tokens over
// the whole call, prefill included), and for the training step GFLOPS and MFU: the model FLOPs of
// analysis/counts.hpp (6 N + attention per token, Chinchilla-style) over the
// time, divided by the FMA peak that peak/fma measures first in the same run
// (every thread runs independent fused multiply-adds on registers: the most
// fp32 FLOP/s this machine can do; --peak_gflops=X gives it instead).
//
// PyTorch, side by side: ../shared/peers/torch_gpt2.py train|decode (see
// docs/performance.md for the commands).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "llmblocks/analysis/counts.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/infer/generate.hpp"
#include "llmblocks/kernels/simd.hpp"
#include "llmblocks/models/gpt2.hpp"
#include "llmblocks/nn/module.hpp"
#include "llmblocks/train/optimizer.hpp"

namespace {

using namespace llmblocks;

double g_peak_gflops = 0.0;     // the best peak/fma run, or --peak_gflops=X
bool g_peak_from_flag = false;

// 2 * width * kChains FLOPs per iteration per thread, from independent FMA
// chains (enough of them to cover the FMA latency on both FMA ports).
void peak_fma(benchmark::State& state) {
    using B = simd::batch<float>;
    constexpr int kChains = 16;
    constexpr std::int64_t kIterations = 1 << 22;
    const index_t threads = get_num_threads();
    const double flops = 2.0 * simd::width<float> * kChains * static_cast<double>(kIterations) * static_cast<double>(threads);
    for (auto _ : state) {
        const auto start = std::chrono::steady_clock::now();
        parallel_for(0, threads, 1, [&](index_t lo, index_t hi) {
            for (index_t t = lo; t < hi; ++t) {
                B acc[kChains];
                for (int c = 0; c < kChains; ++c) acc[c] = B(1.0f + 1e-3f * static_cast<float>(c + t));
                const B a(0.999999f), b(1e-7f);
                for (std::int64_t i = 0; i < kIterations; ++i)
                    for (int c = 0; c < kChains; ++c) acc[c] = xsimd::fma(acc[c], a, b);
                B sum = acc[0];
                for (int c = 1; c < kChains; ++c) sum += acc[c];
                benchmark::DoNotOptimize(sum);
            }
        });
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (!g_peak_from_flag) g_peak_gflops = std::max(g_peak_gflops, flops * 1e-9 / seconds);  // the best run
    }
    state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(peak_fma)->Name("peak/fma")->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);

GPT2Model<float>& gpt2_124m() {
    static Rng rng(0);
    static GPT2Model<float> model(GPT2Config::gpt2_preset("124M"), rng);
    return model;
}

TensorI random_ids(index_t B, index_t T, index_t vocab, std::uint64_t seed) {
    Rng rng(seed);
    return TensorI::rand({B, T}, rng, 0, static_cast<std::int32_t>(vocab));
}

void train_step(benchmark::State& state) {
    constexpr index_t B = 4, T = 64;
    GPT2Model<float>& model = gpt2_124m();
    const index_t V = model.config.vocab_size;
    const TensorI inputs = random_ids(B, T, V, 1), targets = random_ids(B, T, V, 2);
    AdamW<float> optimizer(named_parameters<float>(model), {.lr = 1e-4});
    for (auto _ : state) {
        Variable<float> loss = model.loss(inputs, targets);
        loss.backward();
        optimizer.step();
        optimizer.zero_grad();
        benchmark::DoNotOptimize(loss.item());
    }
    const ModelCounts counts = count(model.config, T);
    const double flops = counts.training_flops_per_token * B * T;
    state.counters["tokens_per_s"] = benchmark::Counter(double(B * T), benchmark::Counter::kIsIterationInvariantRate);
    state.counters["GFLOPS"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
    if (g_peak_gflops > 0)
        state.counters["MFU"] = benchmark::Counter(flops * 1e-9 / g_peak_gflops, benchmark::Counter::kIsIterationInvariantRate);
    else
        state.counters["MFU"] = 0;  // run peak/fma in the same process to get it
}
BENCHMARK(train_step)->Name("train_step/gpt2-124M/B4xT64")->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(5.0);

void decode(benchmark::State& state) {
    constexpr index_t prompt = 16, new_tokens = 128;
    GPT2Model<float>& model = gpt2_124m();
    const TensorI ids = random_ids(1, prompt, model.config.vocab_size, 3);
    const std::vector<std::int32_t> tokens(ids.data(), ids.data() + prompt);
    GenerateOptions options;
    options.max_new_tokens = new_tokens;
    options.sampling.temperature = 0;  // greedy: what is timed is the model, not the draw
    for (auto _ : state) {
        const Generation g = generate(model, {tokens}, options);  // prefill + 127 cached steps
        benchmark::DoNotOptimize(g.tokens.data());
    }
    state.counters["tokens_per_s"] = benchmark::Counter(double(new_tokens), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(decode)->Name("decode/gpt2-124M/p16n128")->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(5.0);

}  // namespace

int main(int argc, char** argv) {
    for (int i = 1; i < argc; ++i)
        if (std::strncmp(argv[i], "--peak_gflops=", 14) == 0) {
            g_peak_gflops = std::atof(argv[i] + 14);
            g_peak_from_flag = true;
        }
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
}
