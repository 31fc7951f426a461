// Progress on a terminal: one line on stderr, redrawn in place and erased when
// the work ends: "[#####      ]  45%  1.2 GB / 2.7 GB  850.0 MB/s  2 s left  writing".
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

namespace gswarm::cli {

// Work below this size ends too soon for a progress line to help.
inline constexpr std::uint64_t kShowProgressFrom = 64ull << 20;

// "[#########           ] 45%  1.2 GB / 2.7 GB"
std::string progress_bar(std::uint64_t done, std::uint64_t total);

class ProgressLine {
 public:
  // Draws only when stderr is a terminal.
  ProgressLine();
  ~ProgressLine() { clear(); }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  bool enabled() const { return enabled_; }
  // The bar, the rate since the first call that saw bytes move, the time left
  // at that rate, and `what` (a state such as "copying").
  void draw(std::uint64_t done, std::uint64_t total, std::string_view what);
  void clear();

 private:
  using Clock = std::chrono::steady_clock;
  bool enabled_;
  bool drawn_ = false;
  std::optional<std::pair<Clock::time_point, std::uint64_t>> first_;  // when bytes first moved
};

// Runs `work(sent)` on a thread of its own and, when stderr is a terminal and
// `total` is at least kShowProgressFrom, draws how far `sent` got meanwhile.
// `work` is called with nullptr when nothing is drawn.
template <typename Work>
auto with_progress(std::uint64_t total, std::string_view what, Work work)
    -> decltype(work(nullptr)) {
  ProgressLine line;
  if (!line.enabled() || total < kShowProgressFrom) return work(nullptr);
  std::atomic<std::uint64_t> sent{0};
  std::atomic<bool> done{false};
  std::optional<decltype(work(nullptr))> result;
  std::thread worker([&] {
    result.emplace(work(&sent));
    done = true;
  });
  while (!done) {
    line.draw(sent.load(), total, what);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  worker.join();
  line.clear();
  return std::move(*result);
}

}  // namespace gswarm::cli
