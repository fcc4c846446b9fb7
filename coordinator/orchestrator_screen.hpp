// The orchestrator's default defence against a member whose plain update is absurd: before an
// update reaches the strategy, the L2 norm of its change from the round's global model is
// compared with what honest members sent recently. A member that sends finite but huge values
// (3e38 everywhere: the float32 sum overflows and the committed model is all Inf) is rejected
// for that round and the round completes with the others (docs/robustness.md).
//
//   UpdateScreen screen(10.0);                       // --outlier-factor; 0 = off
//   screen.begin_round(global);                      // fixes this round's bound
//   double norm = sqrt(*assembler.facts().sum_sq_delta);  // measured as the chunks arrived
//   if (auto why = screen.check(norm)) reject(*why); // else aggregate, then:
//   screen.accept(norm);
//   screen.end_round(committed);                     // committed: the norms join the history
//
// The rule: norm <= factor x the median of the change norms accepted in the last few committed
// rounds. Before any history (round 1, or after a restart without it): norm <= factor x
// max(|global|, sqrt(n)) -- a change ten times the size of the model itself, or an RMS change of
// ten per parameter for a model still at zero. The bound for a round is fixed when it begins, so
// the verdict on an update does not depend on the order updates arrive in.
//
// Not thread-safe: the aggregation worker alone uses it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace federa {

class UpdateScreen {
 public:
  static constexpr std::size_t kHistoryRounds = 5;

  explicit UpdateScreen(double factor) : factor_(factor) {}
  bool enabled() const { return factor_ > 0.0; }
  // The size of the model's outputs when it is not ~1: a regression on targets around 150 moves
  // its weights by hundreds in round 1. Multiplies the no-history floor sqrt(n); at least 1.
  void set_output_scale(double scale) { scale_ = std::max(1.0, scale); }

  void begin_round(std::span<const float> global);
  // The reason an update with this change norm is rejected, or nullopt when it passes (always
  // when the screen is off). A non-finite norm never passes.
  std::optional<std::string> check(double norm) const;
  void accept(double norm);
  // Ends the attempt: a committed round's accepted norms join the history, a failed attempt's
  // are forgotten.
  void end_round(bool committed);

  double bound() const { return bound_; }
  // The last rounds' accepted norms, oldest round first, for --resume; set_history restores them.
  std::vector<double> history() const;
  void set_history(const std::vector<double>& norms);

 private:
  double factor_;
  double scale_ = 1.0;
  double bound_ = 0.0;
  std::string basis_;                       // how the bound was derived, for rejection messages
  std::deque<std::vector<double>> rounds_;  // accepted norms of the last committed rounds
  std::vector<double> current_;
};

}  // namespace federa
