// llmblocks/core/threading.hpp — the library's only use of OpenMP.
//
// parallel_for splits a range into one contiguous chunk per thread. Without
// OpenMP (or inside an OpenMP region already, so that a threaded kernel never
// nests teams) it runs the whole range on the calling thread. The thread count
// defaults to OpenMP's and can be set with set_num_threads().
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "llmblocks/core/error.hpp"

namespace llmblocks {

namespace detail {
inline int& thread_count_setting() {
    static int n = 0;  // 0: use OpenMP's default
    return n;
}
}  // namespace detail

// True when the library was compiled with OpenMP.
constexpr bool has_openmp() {
#if defined(_OPENMP)
    return true;
#else
    return false;
#endif
}

// Threads that parallel_for uses (1 without OpenMP).
inline int get_num_threads() {
#if defined(_OPENMP)
    const int n = detail::thread_count_setting();
    return n > 0 ? n : omp_get_max_threads();
#else
    return 1;
#endif
}

// Sets the threads for parallel_for; n <= 0 restores OpenMP's default.
inline void set_num_threads(int n) { detail::thread_count_setting() = std::max(n, 0); }

// True inside a parallel region (where parallel_for runs serially).
inline bool in_parallel_region() {
#if defined(_OPENMP)
    return omp_in_parallel() != 0;
#else
    return false;
#endif
}

// Index of the calling thread within the current parallel_for (0 outside one).
inline int thread_index() {
#if defined(_OPENMP)
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// Calls fn(lo, hi) on disjoint chunks covering [begin, end), at most one chunk
// per thread and none smaller than `grain` items (so small ranges stay on one
// thread). An exception thrown by fn is rethrown on the calling thread.
template <class Fn>
void parallel_for(std::int64_t begin, std::int64_t end, std::int64_t grain, Fn&& fn) {
    if (end <= begin) return;
    const std::int64_t n = end - begin;
    grain = std::max<std::int64_t>(grain, 1);
    const std::int64_t max_chunks = (n + grain - 1) / grain;
    const int threads = static_cast<int>(std::min<std::int64_t>(get_num_threads(), max_chunks));
    if (threads <= 1 || in_parallel_region()) {
        fn(begin, end);
        return;
    }
#if defined(_OPENMP)
    std::exception_ptr error;
    std::mutex error_mutex;
#pragma omp parallel num_threads(threads)
    {
        const std::int64_t t = omp_get_thread_num();
        const std::int64_t nt = omp_get_num_threads();
        const std::int64_t lo = begin + n * t / nt;
        const std::int64_t hi = begin + n * (t + 1) / nt;
        if (lo < hi) {
            try {
                fn(lo, hi);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!error) error = std::current_exception();
            }
        }
    }
    if (error) std::rethrow_exception(error);
#else
    fn(begin, end);
#endif
}

}  // namespace llmblocks
