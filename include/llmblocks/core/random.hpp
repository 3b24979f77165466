// llmblocks/core/random.hpp — a seeded, portable random number generator.
//
// The standard library's distributions differ between implementations, so a
// seed would not give the same weights on every machine. Rng is xoshiro256**
// (Blackman & Vigna) seeded through splitmix64, with its own uniform and
// Box-Muller normal, so a seed means the same numbers everywhere. Its whole
// state can be saved and restored (training checkpoints resume bit-exactly).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>

#include "llmblocks/core/error.hpp"

namespace llmblocks {

class Rng {
public:
    using State = std::array<std::uint64_t, 4>;

    explicit Rng(std::uint64_t seed = 0) { reseed(seed); }

    void reseed(std::uint64_t seed) {
        std::uint64_t x = seed;
        for (auto& word : s_) word = splitmix64(x);
        has_spare_normal_ = false;
    }

    // 64 random bits.
    std::uint64_t next_u64() {
        const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const std::uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

    // Uniform in [0, 1) with 53 random bits.
    double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

    // Standard normal (Box-Muller; the second value of each pair is kept).
    double normal() {
        if (has_spare_normal_) {
            has_spare_normal_ = false;
            return spare_normal_;
        }
        double u1 = uniform();
        while (u1 <= 0.0) u1 = uniform();
        const double u2 = uniform();
        const double r = std::sqrt(-2.0 * std::log(u1));
        const double theta = 2.0 * std::numbers::pi * u2;
        spare_normal_ = r * std::sin(theta);
        has_spare_normal_ = true;
        return r * std::cos(theta);
    }
    double normal(double mean, double std) { return mean + std * normal(); }

    // Uniform integer in [lo, hi), unbiased (rejection of the top partial block).
    std::int64_t randint(std::int64_t lo, std::int64_t hi) {
        LLMBLOCKS_CHECK(hi > lo, "Rng::randint: empty range [", lo, ", ", hi, ")");
        const std::uint64_t range = static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo);
        const std::uint64_t threshold = (0 - range) % range;  // 2^64 mod range
        std::uint64_t x = next_u64();
        while (x < threshold) x = next_u64();
        return static_cast<std::int64_t>(static_cast<std::uint64_t>(lo) + x % range);
    }

    // The full state, for checkpoints. A pending Box-Muller value is part of it.
    struct Snapshot {
        State words{};
        bool has_spare_normal = false;
        double spare_normal = 0.0;
    };
    Snapshot snapshot() const { return {s_, has_spare_normal_, spare_normal_}; }
    void restore(const Snapshot& snap) {
        s_ = snap.words;
        has_spare_normal_ = snap.has_spare_normal;
        spare_normal_ = snap.spare_normal;
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    static std::uint64_t splitmix64(std::uint64_t& x) {
        std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

    State s_{};
    bool has_spare_normal_ = false;
    double spare_normal_ = 0.0;
};

}  // namespace llmblocks
