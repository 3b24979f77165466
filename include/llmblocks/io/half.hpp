// llmblocks/io/half.hpp — exact conversions between float and the two 16-bit
// float formats found in checkpoints.
//
// F16 is IEEE 754 binary16 (1 sign, 5 exponent, 10 fraction bits; bias 15;
// subnormals down to 2^-24; max 65504), the `torch.float16` of mixed-precision
// training. BF16 is bfloat16 (1 sign, 8 exponent, 7 fraction bits): the top 16
// bits of a float, used by PaLM, T5 and most Hugging Face checkpoints since.
//
// 16 -> 32 bits is exact (every F16 and BF16 value is a float). 32 -> 16 bits
// rounds to nearest, ties to even (as torch's .half() and .bfloat16()), overflows
// to infinity, and turns NaN into a quiet NaN of the same sign that keeps the top
// payload bits. Plain integer arithmetic on the bit patterns: the result does not
// depend on the FPU rounding mode or on flush-to-zero flags.
#pragma once

#include <bit>
#include <cstdint>

namespace llmblocks {

// binary16 bits -> float, exact. NaN payloads are kept as they are (not quieted).
inline float half_to_float(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t exponent = (h >> 10) & 0x1fu;
    std::uint32_t fraction = h & 0x3ffu;
    std::uint32_t bits;
    if (exponent == 0x1f) {  // infinity or NaN
        bits = sign | 0x7f800000u | (fraction << 13);
    } else if (exponent != 0) {  // normal: rebias 15 -> 127
        bits = sign | ((exponent + 112u) << 23) | (fraction << 13);
    } else if (fraction == 0) {  // signed zero
        bits = sign;
    } else {
        // Subnormal: fraction * 2^-24. Shift the leading 1 up to the implicit-bit
        // position (bit 10); every shift lowers the exponent by one.
        std::uint32_t e = 113;  // exponent of 2^-14, the scale of bit 10, as float bias 127 (-14 + 127)
        while ((fraction & 0x400u) == 0) {
            fraction <<= 1;
            --e;
        }
        bits = sign | (e << 23) | ((fraction & 0x3ffu) << 13);
    }
    return std::bit_cast<float>(bits);
}

// float -> binary16 bits, rounding to nearest even.
inline std::uint16_t float_to_half(float f) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
    const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
    const std::uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u)  // NaN: quiet it, keep the top 9 payload bits
        return static_cast<std::uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
    // 65520 = 0x477ff000 lies halfway between 65504 (the largest F16, odd
    // fraction) and 65536; the tie goes to the even neighbour, infinity.
    if (magnitude >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);
    // Up to 2^-25 (0x33000000), half the smallest subnormal: the tie goes to even, zero.
    if (magnitude <= 0x33000000u) return sign;

    // Keep the top bits of the 24-bit significand and round on the dropped ones.
    // A rounding carry ripples into the exponent field, which is exactly right
    // (0x3ff + 1 -> next binade; the largest subnormal + 1 -> the smallest normal).
    const std::uint32_t exponent = magnitude >> 23;  // biased by 127
    std::uint32_t kept, dropped, halfway;
    if (exponent >= 113) {  // |f| >= 2^-14: a normal F16; rebias 127 -> 15, drop 13 fraction bits
        kept = ((exponent - 112u) << 10) | ((magnitude >> 13) & 0x3ffu);
        dropped = magnitude & 0x1fffu;
        halfway = 0x1000u;
    } else {  // a subnormal F16: value / 2^-24 = significand * 2^(exponent - 126)
        const std::uint32_t significand = (magnitude & 0x7fffffu) | 0x800000u;
        const std::uint32_t shift = 126u - exponent;  // 14..24 since 102 <= exponent <= 112
        kept = significand >> shift;
        dropped = significand & ((1u << shift) - 1u);
        halfway = 1u << (shift - 1u);
    }
    if (dropped > halfway || (dropped == halfway && (kept & 1u))) ++kept;
    return static_cast<std::uint16_t>(sign | kept);
}

// bfloat16 bits -> float, exact: they are the float's top 16 bits.
inline float bf16_to_float(std::uint16_t b) {
    return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

// float -> bfloat16 bits, rounding to nearest even (the largest finite floats round to infinity).
inline std::uint16_t float_to_bf16(float f) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
    if ((bits & 0x7fffffffu) > 0x7f800000u)  // NaN: quiet it, keep the sign and top payload bits
        return static_cast<std::uint16_t>((bits >> 16) | 0x0040u);
    // Adding 0x7fff rounds up exactly the values above halfway; the extra 1 when
    // the kept part is odd makes the halfway case round up to even too.
    const std::uint32_t rounded = bits + 0x7fffu + ((bits >> 16) & 1u);
    return static_cast<std::uint16_t>(rounded >> 16);
}

}  // namespace llmblocks
