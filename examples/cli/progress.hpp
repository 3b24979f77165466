// examples/cli/progress.hpp — the training progress display of `llmblocks
// train` and the demo. On a terminal it redraws one line in place:
//
//   gpt2  [##########..........]  150/300  loss 1.234  val 1.301  52.1k tok/s  ETA 0:07
//
// and ends it with a newline at the last step; elsewhere (a pipe, a file, CI)
// it writes that line as plain text every `log_every` steps, at the first and
// the last step, and whenever a validation loss arrives.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <ostream>
#include <string>

#include <unistd.h>

namespace llmblocks::cli {

// Whether standard output is a terminal (then progress redraws in place).
inline bool stdout_is_terminal() { return ::isatty(STDOUT_FILENO) == 1; }

// "950", "12.3k", "1.25M".
inline std::string format_rate(double x) {
    char buf[32];
    if (!std::isfinite(x) || x < 0) return "-";
    if (x >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", x / 1e6);
    else if (x >= 1e4) std::snprintf(buf, sizeof buf, "%.1fk", x / 1e3);
    else std::snprintf(buf, sizeof buf, "%.0f", x);
    return buf;
}

// "0:07", "12:30", "1:02:03".
inline std::string format_duration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return "-";
    const auto s = static_cast<long long>(seconds + 0.5);
    char buf[32];
    if (s >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
    else std::snprintf(buf, sizeof buf, "%lld:%02lld", s / 60, s % 60);
    return buf;
}

class ProgressBar {
public:
    // Steps run from first_step + 1 to total_steps (first_step > 0 when resuming).
    ProgressBar(std::ostream& out, std::string label, std::int64_t total_steps, bool interactive,
                std::int64_t log_every = 10, std::int64_t first_step = 0)
        : out_(out), label_(std::move(label)), total_(total_steps), first_(first_step), interactive_(interactive),
          log_every_(log_every > 0 ? log_every : 1), start_(Clock::now()) {}

    // After step `step` (1-based) with training loss `loss`; tokens_per_s is the
    // caller's throughput figure; val_loss when a validation pass just ran.
    void update(std::int64_t step, double loss, double tokens_per_s, std::optional<double> val_loss = std::nullopt) {
        if (val_loss) last_val_ = val_loss;
        const bool last = step >= total_;
        const double elapsed = seconds_since(start_);
        const double per_step = step > first_ ? elapsed / static_cast<double>(step - first_) : NAN;
        const std::string line = render(step, loss, tokens_per_s, per_step * static_cast<double>(total_ - step));
        if (interactive_) {
            // Redraw at most ten times a second, but always the last step.
            if (!last && drawn_ && seconds_since(last_draw_) < 0.1) return;
            out_ << '\r' << line << "\x1b[K";
            if (last) out_ << '\n';
            out_.flush();
            open_line_ = !last;
        } else if (step == first_ + 1 || last || val_loss || step % log_every_ == 0) {
            out_ << line << '\n';
            out_.flush();
        }
        drawn_ = true;
        last_draw_ = Clock::now();
    }

    // Ends the line on a terminal if the last update was not the last step.
    void finish() {
        if (open_line_) out_ << '\n';
        open_line_ = false;
    }

private:
    using Clock = std::chrono::steady_clock;
    static double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

    std::string render(std::int64_t step, double loss, double tokens_per_s, double eta) const {
        constexpr int kWidth = 20;
        const double done = total_ > 0 ? static_cast<double>(step) / static_cast<double>(total_) : 1.0;
        const int filled = static_cast<int>(std::lround(std::min(1.0, std::max(0.0, done)) * kWidth));
        std::string bar(static_cast<std::size_t>(filled), '#');
        bar.append(static_cast<std::size_t>(kWidth - filled), '.');
        const int digits = static_cast<int>(std::to_string(total_).size());
        char buf[256];
        std::snprintf(buf, sizeof buf, "%s  [%s]  %*lld/%lld  loss %.4f", label_.c_str(), bar.c_str(), digits,
                      static_cast<long long>(step), static_cast<long long>(total_), loss);
        std::string line = buf;
        if (last_val_) {
            std::snprintf(buf, sizeof buf, "  val %.4f", *last_val_);
            line += buf;
        }
        line += "  " + format_rate(tokens_per_s) + " tok/s  ETA " + format_duration(step >= total_ ? 0.0 : eta);
        return line;
    }

    std::ostream& out_;
    std::string label_;
    std::int64_t total_, first_;
    bool interactive_;
    std::int64_t log_every_;
    Clock::time_point start_, last_draw_{};
    bool drawn_ = false;
    bool open_line_ = false;  // a redrawn line without its newline yet
    std::optional<double> last_val_;
};

}  // namespace llmblocks::cli
