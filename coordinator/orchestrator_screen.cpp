#include "coordinator/orchestrator_screen.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace federa {

void UpdateScreen::begin_round(std::span<const float> global) {
  current_.clear();
  if (!enabled()) return;
  std::vector<double> recent;
  for (const auto& r : rounds_) recent.insert(recent.end(), r.begin(), r.end());
  if (!recent.empty()) {
    const std::size_t mid = recent.size() / 2;
    std::nth_element(recent.begin(), recent.begin() + mid, recent.end());
    double median = recent[mid];
    if (recent.size() % 2 == 0) {
      const double lower = *std::max_element(recent.begin(), recent.begin() + mid);
      median = (median + lower) / 2;
    }
    bound_ = factor_ * median;
    basis_ =
        fmt::format("{:g} x the median change norm {:.4g} of {} updates accepted in recent rounds",
                    factor_, median, recent.size());
    return;
  }
  double sq = 0;
  for (float v : global) sq += double(v) * double(v);
  const double model = std::sqrt(sq);
  const double floor = std::sqrt(double(global.size())) * scale_;
  bound_ = factor_ * std::max(model, floor);
  basis_ =
      model >= floor ? fmt::format("{:g} x the global model's norm {:.4g} (no recent rounds yet)",
                                   factor_, model)
      : scale_ > 1.0
          ? fmt::format(
                "{:g} x sqrt(parameters) x output scale {:.4g} = {:.4g} (no recent rounds yet)",
                factor_, scale_, floor)
          : fmt::format("{:g} x sqrt(parameters) = {:.4g} (no recent rounds yet)", factor_, floor);
}

std::optional<std::string> UpdateScreen::check(double norm) const {
  if (!std::isfinite(norm))
    return std::string("the update's change from the global model is not finite");
  if (!enabled() || norm <= bound_) return std::nullopt;
  return fmt::format(
      "outlier: the update's change from the global model has norm {:.4g}, over the bound {:.4g} "
      "({}; --outlier-factor)",
      norm, bound_, basis_);
}

void UpdateScreen::accept(double norm) {
  if (enabled() && std::isfinite(norm)) current_.push_back(norm);
}

void UpdateScreen::end_round(bool committed) {
  if (committed && !current_.empty()) {
    rounds_.push_back(std::move(current_));
    while (rounds_.size() > kHistoryRounds) rounds_.pop_front();
  }
  current_.clear();
}

std::vector<double> UpdateScreen::history() const {
  std::vector<double> out;
  for (const auto& r : rounds_) out.insert(out.end(), r.begin(), r.end());
  return out;
}

void UpdateScreen::set_history(const std::vector<double>& norms) {
  rounds_.clear();
  std::vector<double> ok;
  for (double v : norms)
    if (std::isfinite(v) && v >= 0) ok.push_back(v);
  if (!ok.empty()) rounds_.push_back(std::move(ok));
}

}  // namespace federa
