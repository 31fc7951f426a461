#include "cli/progress.hpp"

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "core/size.hpp"

namespace gswarm::cli {

std::string progress_bar(std::uint64_t done, std::uint64_t total) {
  constexpr int kWidth = 30;
  const double share = total == 0 ? 1.0 : std::min(1.0, static_cast<double>(done) / total);
  const int filled = static_cast<int>(share * kWidth);
  return fmt::format("[{}{}] {:3.0f}%  {} / {}", std::string(filled, '#'),
                     std::string(kWidth - filled, ' '), share * 100, format_size(done),
                     format_size(total));
}

ProgressLine::ProgressLine() : enabled_(::isatty(STDERR_FILENO) != 0) {}

void ProgressLine::draw(std::uint64_t done, std::uint64_t total, std::string_view what) {
  if (!enabled_) return;
  const auto now = Clock::now();
  if (!first_ && done > 0) first_.emplace(now, done);
  std::string rate;
  if (first_ && done > first_->second) {
    const double seconds = std::chrono::duration<double>(now - first_->first).count();
    if (seconds > 0.2) {
      const double per_second = static_cast<double>(done - first_->second) / seconds;
      const double left = total > done ? static_cast<double>(total - done) / per_second : 0;
      rate = fmt::format("  {}/s  {:.0f} s left",
                         format_size(static_cast<std::uint64_t>(per_second)), left);
    }
  }
  // \033[K: erase what a longer line drawn before left on the right.
  fmt::print(stderr, "\r{}{} {}\033[K", progress_bar(done, total), rate, what);
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressLine::clear() {
  if (!drawn_) return;
  fmt::print(stderr, "\r\033[K");
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace gswarm::cli
