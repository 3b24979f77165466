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

// GCC 12 reports "'__Y' may be used uninitialized" inside its own AVX-512
// intrinsics (_mm512_undefined_*) once xsimd's exp or erf inline into a
// kernel: a false positive fixed in GCC 13 (GCC bug 105593). The warning is
// located in the intrinsics headers, so silencing it around this include
// silences it for every kernel without hiding warnings in our own code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <xsimd/xsimd.hpp>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// Marks a hot kernel whose body must be inlined whole: the register-blocked
// kernels are written with static_for lambdas and xsimd calls, and their
// accumulators stay in registers only if every one of those calls is inlined.
// GCC decides that per translation unit, by budget: in a test program that
// also called the GEMM micro-kernel directly, it left two of the micro-kernel's
// lambdas out of line and every product ran 3 times slower. flatten inlines
// all calls in the body, recursively.
#if defined(__GNUC__)
#define LLMBLOCKS_FLATTEN __attribute__((flatten))
#else
#define LLMBLOCKS_FLATTEN
#endif

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
