// A one-line progress bar on stderr for federa-sim, drawn only when stderr is a terminal.
//
//   Progress bar(want_bar, rounds);
//   bar.begin_round(round, clients_to_train);
//   bar.track(done_counter, clients_to_train);   // redraws until the counter reaches the total
//   bar.end_round();                             // clears the line before the round's output
//   bar.set_accuracy(report.accuracy);           // shown from the next round on
//   bar.finish();
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace federa {

class Progress {
 public:
  // Enabled when `want` and stderr is a terminal.
  Progress(bool want, std::uint64_t rounds);
  bool enabled() const { return enabled_; }
  void begin_round(std::uint64_t round, std::size_t clients);
  void track(const std::atomic<std::size_t>& done, std::size_t total);
  void end_round();
  void set_accuracy(const std::optional<double>& accuracy);
  void finish();

 private:
  void draw(std::size_t done, std::size_t total);
  bool enabled_;
  std::uint64_t rounds_;
  std::uint64_t round_ = 0;
  std::string last_accuracy_;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace federa
