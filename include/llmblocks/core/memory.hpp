// llmblocks/core/memory.hpp — aligned, reference-counted buffers and a live
// byte counter.
//
// Every tensor buffer starts on a 64-byte boundary (one cache line, and the
// widest SIMD register of any x86 target), so kernels may use aligned loads on
// a fresh tensor. The counters let tests and benchmarks show how much memory an
// operation holds: the autograd frees its graph after backward, the fused
// attention kernel grows linearly in T.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>

#include "llmblocks/core/error.hpp"

namespace llmblocks {

inline constexpr std::size_t kAlignment = 64;

struct MemoryStats {
    std::int64_t live_bytes = 0;         // bytes held by buffers alive now
    std::int64_t peak_bytes = 0;         // largest live_bytes since the last reset
    std::int64_t live_buffers = 0;       // buffers alive now
    std::int64_t total_allocations = 0;  // buffers ever allocated
};

namespace detail {

struct MemoryCounters {
    std::atomic<std::int64_t> live_bytes{0};
    std::atomic<std::int64_t> peak_bytes{0};
    std::atomic<std::int64_t> live_buffers{0};
    std::atomic<std::int64_t> total_allocations{0};
};

inline MemoryCounters& memory_counters() {
    static MemoryCounters counters;
    return counters;
}

inline void note_allocation(std::int64_t bytes) {
    auto& c = memory_counters();
    const std::int64_t live = c.live_bytes.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    std::int64_t peak = c.peak_bytes.load(std::memory_order_relaxed);
    while (live > peak && !c.peak_bytes.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
    }
    c.live_buffers.fetch_add(1, std::memory_order_relaxed);
    c.total_allocations.fetch_add(1, std::memory_order_relaxed);
}

inline void note_release(std::int64_t bytes) {
    auto& c = memory_counters();
    c.live_bytes.fetch_sub(bytes, std::memory_order_relaxed);
    c.live_buffers.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace detail

inline MemoryStats memory_stats() {
    auto& c = detail::memory_counters();
    return {c.live_bytes.load(), c.peak_bytes.load(), c.live_buffers.load(), c.total_allocations.load()};
}

// Starts a new peak measurement at the current live size.
inline void reset_peak_memory() {
    auto& c = detail::memory_counters();
    c.peak_bytes.store(c.live_bytes.load());
}

// Allocates and frees 64-byte-aligned raw memory, counted in memory_stats().
inline void* aligned_allocate(std::size_t bytes) {
    const std::size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    void* p = ::operator new(rounded == 0 ? kAlignment : rounded, std::align_val_t{kAlignment});
    detail::note_allocation(static_cast<std::int64_t>(bytes));
    return p;
}

inline void aligned_free(void* p, std::size_t bytes) noexcept {
    if (!p) return;
    detail::note_release(static_cast<std::int64_t>(bytes));
    ::operator delete(p, std::align_val_t{kAlignment});
}

// A fixed-size aligned array of n elements (uninitialised). Move-only.
// Tensors share one through std::shared_ptr; kernels use it for scratch space.
template <class T>
class AlignedBuffer {
public:
    AlignedBuffer() = default;
    explicit AlignedBuffer(std::int64_t n) : size_(n) {
        LLMBLOCKS_CHECK(n >= 0, "AlignedBuffer: negative size ", n);
        data_ = static_cast<T*>(aligned_allocate(static_cast<std::size_t>(n) * sizeof(T)));
    }
    AlignedBuffer(AlignedBuffer&& other) noexcept : data_(other.data_), size_(other.size_) {
        other.data_ = nullptr;
        other.size_ = 0;
    }
    AlignedBuffer& operator=(AlignedBuffer&& other) noexcept {
        if (this != &other) {
            release();
            data_ = other.data_;
            size_ = other.size_;
            other.data_ = nullptr;
            other.size_ = 0;
        }
        return *this;
    }
    AlignedBuffer(const AlignedBuffer&) = delete;
    AlignedBuffer& operator=(const AlignedBuffer&) = delete;
    ~AlignedBuffer() { release(); }

    T* data() const noexcept { return data_; }
    std::int64_t size() const noexcept { return size_; }

private:
    void release() noexcept {
        aligned_free(data_, static_cast<std::size_t>(size_) * sizeof(T));
        data_ = nullptr;
    }
    T* data_ = nullptr;
    std::int64_t size_ = 0;
};

}  // namespace llmblocks
