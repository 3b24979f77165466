// examples/cli/format.hpp — number formatting for the `llmblocks` program's
// summaries: thousands separators ("124,439,808"), short counts ("124.4M"),
// FLOPs ("291.0 GFLOP") and bytes ("72.0 KiB"), and an aligned two-column table.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace llmblocks::cli {

// 124439808 -> "124,439,808"; -1234 -> "-1,234".
inline std::string with_commas(std::int64_t value) {
    const bool negative = value < 0;
    // Through unsigned so that the most negative value has a magnitude too.
    std::uint64_t magnitude = negative ? 0 - static_cast<std::uint64_t>(value) : static_cast<std::uint64_t>(value);
    std::string digits = std::to_string(magnitude);
    std::string out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return negative ? "-" + out : out;
}

namespace detail {
inline std::string fixed1(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f", v);
    return buf;
}
}  // namespace detail

// Decimal short form: 124439808 -> "124.4M", 175e9 -> "175.0B", 999 -> "999".
inline std::string short_count(double value) {
    const double a = std::fabs(value);
    if (a >= 1e12) return detail::fixed1(value / 1e12) + "T";
    if (a >= 1e9) return detail::fixed1(value / 1e9) + "B";
    if (a >= 1e6) return detail::fixed1(value / 1e6) + "M";
    if (a >= 1e3) return detail::fixed1(value / 1e3) + "K";
    return detail::fixed1(value);
}

// FLOPs with an SI prefix: 2.9e8 -> "290.0 MFLOP", 1.06e12 -> "1.06 TFLOP".
inline std::string short_flops(double flops) {
    const char* prefixes[] = {"", "K", "M", "G", "T", "P", "E"};
    int k = 0;
    while (k < 6 && std::fabs(flops) >= 1000.0) flops /= 1000.0, ++k;
    char buf[64];
    std::snprintf(buf, sizeof buf, std::fabs(flops) < 10.0 ? "%.2f" : "%.1f", flops);  // 3 significant digits at least
    return std::string(buf) + " " + prefixes[k] + "FLOP";
}

// Bytes with a binary prefix: 73728 -> "72.0 KiB".
inline std::string short_bytes(double bytes) {
    const char* prefixes[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int k = 0;
    while (k < 6 && std::fabs(bytes) >= 1024.0) bytes /= 1024.0, ++k;
    return k == 0 ? detail::fixed1(bytes).substr(0, detail::fixed1(bytes).size() - 2) + " B"
                  : detail::fixed1(bytes) + " " + prefixes[k];
}

// Rows of "label  value", printed with the values aligned.
class Table {
public:
    void row(std::string label, std::string value) { rows_.emplace_back(std::move(label), std::move(value)); }
    void print(std::ostream& out) const {
        std::size_t width = 0;
        for (const auto& r : rows_) width = std::max(width, r.first.size());
        for (const auto& [label, value] : rows_) out << label << std::string(width + 2 - label.size(), ' ') << value << '\n';
    }

private:
    std::vector<std::pair<std::string, std::string>> rows_;
};

}  // namespace llmblocks::cli
