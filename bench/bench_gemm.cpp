// bench/bench_gemm.cpp — llmblocks::kernels::gemm against OpenBLAS (cblas_sgemm,
// and cblas_sgemv for one-row shapes), oneDNN (dnnl_sgemm) and Eigen, float,
// 2 threads each, on the GPT-2 small (d = 768) shapes of issue 2:
//   M x K x N = 256x768x2304 (QKV), 256x768x768 (attention out), 256x768x3072
//   (MLP up), 256x3072x768 (MLP down), 1024x768x3072, 256x768x50257 (LM head)
//   and the decoding shapes 1x768x2304, 1x768x50257,
// each as x·W (NN: B is K x N) and x·Wᵀ (NT: B is N x K, PyTorch's layout).
// Environment: GEMM_BENCH_THREADS (default 2; with 1, GFLOPS come from the
// calling thread's CPU time instead of the wall clock). OpenBLAS 0.3.21 does not know
// recent Xeons and falls back to its Prescott (SSE3) kernels; run with
// OPENBLAS_CORETYPE=SkylakeX to compare against its AVX-512 kernels.
// OpenBLAS's threads spin for 2^28 cycles (about 0.1 s) after its last call,
// unless OPENBLAS_THREAD_TIMEOUT says otherwise; so that they do not take a
// core from the repetition that runs next, bench_gemm restarts itself once
// with OPENBLAS_THREAD_TIMEOUT=20 (2^20 cycles, under 1 ms) when it is unset.
// Names: gemm/<impl>/<M>x<K>x<N>/<NN|NT>; the GFLOPS counter is 2*M*N*K per
// iteration. gemm_paired/<M>x<K>x<N>/<NN|NT> times llmblocks and oneDNN call
// by call in alternation (see run_paired). bench/gemm_ratios.py turns the
// JSON output into ratios.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <dnnl.h>

#include <Eigen/Core>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "llmblocks/core/memory.hpp"
#include "llmblocks/core/random.hpp"
#include "llmblocks/core/threading.hpp"
#include "llmblocks/kernels/gemm.hpp"

extern "C" void openblas_set_num_threads(int num_threads);

namespace {

using llmblocks::index_t;

// Threads for every implementation: 2 (issue 2), or GEMM_BENCH_THREADS.
int threads() {
    static const int n = [] {
        const char* env = std::getenv("GEMM_BENCH_THREADS");
        return env && std::atoi(env) > 0 ? std::atoi(env) : 2;
    }();
    return n;
}

struct Problem {
    index_t M, K, N;
    bool trans_b;
    llmblocks::AlignedBuffer<float> a, b, c;

    Problem(index_t m, index_t k, index_t n) : M(m), K(k), N(n), trans_b(false), a(m * k), b(k * n), c(m * n) {
        llmblocks::Rng rng(42);
        for (index_t i = 0; i < m * k; ++i) a.data()[i] = static_cast<float>(rng.uniform() - 0.5);
        for (index_t i = 0; i < k * n; ++i) b.data()[i] = static_cast<float>(rng.uniform() - 0.5);
        for (index_t i = 0; i < m * n; ++i) c.data()[i] = 0.0f;
    }
    index_t ldb() const { return trans_b ? K : N; }
};

// The operands of every shape, made once and kept for the whole run, so that
// repetitions can be interleaved (--benchmark_enable_random_interleaving)
// without refilling the LM head's 154 MB B each time. NN and NT of a shape
// share them (B holds K*N floats either way); about 0.5 GB in all.
Problem& problem(index_t M, index_t K, index_t N, bool trans_b) {
    static std::map<std::tuple<index_t, index_t, index_t>, std::unique_ptr<Problem>> problems;
    std::unique_ptr<Problem>& p = problems[{M, K, N}];
    if (!p) p = std::make_unique<Problem>(M, K, N);
    p->trans_b = trans_b;
    return *p;
}

void set_counters(benchmark::State& state, const Problem& p) {
    state.counters["GFLOPS"] = benchmark::Counter(2e-9 * static_cast<double>(p.M * p.N * p.K),
                                                  benchmark::Counter::kIsIterationInvariantRate);
}

// One call of each implementation: C = A·op(B) on p. False if the library
// reported an error.
bool call_llmblocks(Problem& p) {
    llmblocks::kernels::gemm<float>(false, p.trans_b, p.M, p.N, p.K, 1.0f, p.a.data(), p.K, p.b.data(), p.ldb(),
                                    0.0f, p.c.data(), p.N);
    return true;
}

bool call_openblas(Problem& p) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, p.trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(p.M),
                static_cast<int>(p.N), static_cast<int>(p.K), 1.0f, p.a.data(), static_cast<int>(p.K), p.b.data(),
                static_cast<int>(p.ldb()), 0.0f, p.c.data(), static_cast<int>(p.N));
    return true;
}

// One row: y = x·W is W (K x N)ᵀ x, y = x·Wᵀ is W (N x K) x.
bool call_openblas_gemv(Problem& p) {
    if (p.trans_b) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(p.N), static_cast<int>(p.K), 1.0f, p.b.data(),
                    static_cast<int>(p.K), p.a.data(), 1, 0.0f, p.c.data(), 1);
    } else {
        cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(p.K), static_cast<int>(p.N), 1.0f, p.b.data(),
                    static_cast<int>(p.N), p.a.data(), 1, 0.0f, p.c.data(), 1);
    }
    return true;
}

bool call_onednn(Problem& p) {
    return dnnl_sgemm('N', p.trans_b ? 'T' : 'N', p.M, p.N, p.K, 1.0f, p.a.data(), p.K, p.b.data(), p.ldb(), 0.0f,
                      p.c.data(), p.N) == dnnl_success;
}

// Every library on threads() threads.
void set_all_threads() {
    llmblocks::set_num_threads(threads());
    openblas_set_num_threads(threads());
#if defined(_OPENMP)
    omp_set_num_threads(threads());  // oneDNN runs on OpenMP
#endif
}

template <bool (*Call)(Problem&)>
void run_impl(benchmark::State& state, index_t M, index_t K, index_t N, bool tb) {
    set_all_threads();
    Problem& p = problem(M, K, N, tb);
    for (auto _ : state) {
        if (!Call(p)) {
            state.SkipWithError("the library reported an error");
            break;
        }
        benchmark::ClobberMemory();
    }
    if (Call == call_llmblocks) state.SetLabel(llmblocks::simd::arch_name());
    set_counters(state, p);
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n == 0 ? 0.0 : (n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

// gemm_paired/<M>x<K>x<N>/<NN|NT>: llmblocks and oneDNN called in turn, one
// call each per iteration, the first of the two alternating, each call timed.
// A slow spell of the shared machine then falls on calls made within
// milliseconds of each other, and the ratio is taken call pair by call pair.
// Counters: llmblocks_GFLOPS and onednn_GFLOPS (from the median time of each
// one's calls) and vs_onednn, the median over the pairs of oneDNN's time /
// llmblocks' time (above 1: llmblocks is faster). OpenBLAS is left out: its
// own threads keep spinning after each call (see main) and would take a core
// from the library called right after it, while llmblocks and oneDNN share
// one OpenMP thread pool.
void run_paired(benchmark::State& state, index_t M, index_t K, index_t N, bool tb) {
    set_all_threads();
    Problem& p = problem(M, K, N, tb);
    std::vector<double> seconds[2];
    bool (*const calls[2])(Problem&) = {call_llmblocks, call_onednn};
    int first = 0;
    for (auto _ : state) {
        for (int i = 0; i < 2; ++i) {
            const int which = first ^ i;
            const auto t0 = std::chrono::steady_clock::now();
            const bool ok = calls[which](p);
            benchmark::ClobberMemory();
            seconds[which].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            if (!ok) {
                state.SkipWithError("dnnl_sgemm failed");
                return;
            }
        }
        first ^= 1;
    }
    std::vector<double> ratios(seconds[0].size());
    for (std::size_t i = 0; i < ratios.size(); ++i) ratios[i] = seconds[1][i] / seconds[0][i];
    const double flop = 2.0 * static_cast<double>(M * N * K);
    state.counters["llmblocks_GFLOPS"] = 1e-9 * flop / median(seconds[0]);
    state.counters["onednn_GFLOPS"] = 1e-9 * flop / median(seconds[1]);
    state.counters["vs_onednn"] = median(ratios);
    state.SetLabel(llmblocks::simd::arch_name());
}

void run_eigen(benchmark::State& state, index_t M, index_t K, index_t N, bool tb) {
    Eigen::setNbThreads(threads());
    Problem& p = problem(M, K, N, tb);
    using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<const RowMatrix> a(p.a.data(), M, K);
    Eigen::Map<RowMatrix> c(p.c.data(), M, N);
    for (auto _ : state) {
        if (tb) {
            c.noalias() = a * Eigen::Map<const RowMatrix>(p.b.data(), N, K).transpose();
        } else {
            c.noalias() = a * Eigen::Map<const RowMatrix>(p.b.data(), K, N);
        }
        benchmark::ClobberMemory();
    }
    set_counters(state, p);
}

struct ShapeMKN {
    index_t M, K, N;
};

const ShapeMKN kShapes[] = {{256, 768, 2304}, {256, 768, 768},   {256, 768, 3072}, {256, 3072, 768},
                            {1024, 768, 3072}, {256, 768, 50257}, {1, 768, 2304},   {1, 768, 50257}};

int register_all() {
    using Fn = void (*)(benchmark::State&, index_t, index_t, index_t, bool);
    struct Impl {
        const char* name;
        Fn fn;
        bool one_row_only;
    };
    const Impl impls[] = {{"llmblocks", run_impl<call_llmblocks>, false},
                          {"openblas", run_impl<call_openblas>, false},
                          {"openblas_gemv", run_impl<call_openblas_gemv>, true},
                          {"onednn", run_impl<call_onednn>, false},
                          {"eigen", run_eigen, false}};
    for (const ShapeMKN& s : kShapes) {
        for (bool tb : {false, true}) {
            for (const Impl& impl : impls) {
                if (impl.one_row_only && s.M != 1) continue;
                const std::string name = std::string("gemm/") + impl.name + "/" + std::to_string(s.M) + "x" +
                                         std::to_string(s.K) + "x" + std::to_string(s.N) + (tb ? "/NT" : "/NN");
                auto* b = benchmark::RegisterBenchmark(name.c_str(), impl.fn, s.M, s.K, s.N, tb);
                b->Unit(benchmark::kMillisecond);
                // Threaded runs are timed by the wall clock; a one-thread run by
                // the CPU time of the calling thread (which then does all the
                // work), which holds up better on a shared, loaded machine.
                if (threads() > 1) b->UseRealTime();
            }
            const std::string paired = "gemm_paired/" + std::to_string(s.M) + "x" + std::to_string(s.K) + "x" +
                                       std::to_string(s.N) + (tb ? "/NT" : "/NN");
            benchmark::RegisterBenchmark(paired.c_str(), run_paired, s.M, s.K, s.N, tb)
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime();
        }
    }
    return 0;
}

const int registered = register_all();

}  // namespace

int main(int argc, char** argv) {
    // OpenBLAS reads OPENBLAS_THREAD_TIMEOUT when it is loaded, before main,
    // so the variable only takes effect in a new process. With the default
    // timeout, in about 40% of the tries here an OpenMP product run right
    // after OpenBLAS (llmblocks' or oneDNN's alike) took ~8 ms per call
    // instead of 0.13 ms for its first ~0.1 s; 2^20 cycles is still far
    // longer than the gap between two calls of one benchmark, so OpenBLAS's
    // own figures are unchanged.
    if (std::getenv("OPENBLAS_THREAD_TIMEOUT") == nullptr) {
        setenv("OPENBLAS_THREAD_TIMEOUT", "20", 1);
        execv("/proc/self/exe", argv);
        std::fprintf(stderr, "bench_gemm: could not restart with OPENBLAS_THREAD_TIMEOUT=20; "
                             "OpenBLAS's spinning threads may slow the benchmarks that follow it\n");
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
