// llmblocks/kernels/simd.hpp — the library's only use of xsimd.
//
// The instruction set is picked once, here, at compile time: xsimd's
// default_arch is the best one the compiler targets (AVX2+FMA with
// -march=native on a Zen 3, SSE2 on a plain x86-64 build). Every kernel writes
// its vector loop with simd::batch<T> and handles the tail (the last n % width
// elements) with a scalar loop.
#pragma once

#include <cstddef>
#include <cstdint>

#include <xsimd/xsimd.hpp>

namespace llmblocks::simd {

using arch = xsimd::default_arch;

template <class T>
using batch = xsimd::batch<T, arch>;

// Lanes per register for T (8 floats with AVX2).
template <class T>
inline constexpr std::int64_t width = static_cast<std::int64_t>(batch<T>::size);

// Name of the instruction set in use, for benchmark labels and `info` output.
inline const char* arch_name() { return arch::name(); }

template <class T>
inline batch<T> load(const T* p) { return batch<T>::load_unaligned(p); }

template <class T>
inline void store(T* p, const batch<T>& v) { v.store_unaligned(p); }

}  // namespace llmblocks::simd
