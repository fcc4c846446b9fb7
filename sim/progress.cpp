#include "sim/progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

namespace federa {

Progress::Progress(bool want, std::uint64_t rounds)
    : enabled_(want && ::isatty(STDERR_FILENO)),
      rounds_(rounds),
      started_(std::chrono::steady_clock::now()) {}

void Progress::begin_round(std::uint64_t round, std::size_t clients) {
  if (!enabled_) return;
  round_ = round;
  draw(0, clients);
}

void Progress::set_accuracy(const std::optional<double>& accuracy) {
  if (accuracy) last_accuracy_ = fmt::format("{:.4f}", *accuracy);
}

void Progress::track(const std::atomic<std::size_t>& done, std::size_t total) {
  // Polls often (the round's uploads wait on this) but redraws at most ten times a second.
  auto last = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  for (;;) {
    std::size_t d = done.load();
    auto now = std::chrono::steady_clock::now();
    if (enabled_ && (d >= total || now - last >= std::chrono::milliseconds(100))) {
      draw(d, total);
      last = now;
    }
    if (d >= total) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void Progress::end_round() {
  if (!enabled_) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
}

void Progress::finish() { end_round(); }

void Progress::draw(std::size_t done, std::size_t total) {
  constexpr int kWidth = 30;
  const double frac =
      rounds_
          ? (double(round_ - 1) + (total ? double(done) / double(total) : 1.0)) / double(rounds_)
          : 1.0;
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(kWidth, '.');
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  std::fprintf(stderr, "\r\033[K[%s] round %llu/%llu  training %zu/%zu  %s%s  %.0f s", bar.c_str(),
               static_cast<unsigned long long>(round_), static_cast<unsigned long long>(rounds_),
               done, total, last_accuracy_.empty() ? "" : "accuracy ", last_accuracy_.c_str(),
               secs);
  std::fflush(stderr);
}

}  // namespace federa
