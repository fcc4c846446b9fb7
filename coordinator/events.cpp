#include "coordinator/events.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

namespace federa {

std::string_view outcome_name(UpdateOutcome outcome) {
  switch (outcome) {
    case UpdateOutcome::accepted:
      return "accepted";
    case UpdateOutcome::rejected:
      return "rejected";
    case UpdateOutcome::dropped:
      return "dropped";
  }
  return "?";
}

namespace {

bool plain_key(std::string_view k) {
  return !k.empty() && std::all_of(k.begin(), k.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

std::string number(double v) {
  return std::isfinite(v) ? fmt::format("{}", v) : std::string("null");
}

std::string number(const std::optional<double>& v) { return v ? number(*v) : std::string("null"); }

}  // namespace

std::string format_metrics_line(const RoundReport& r, const std::map<std::string, double>& extra) {
  // Hand-formatted so numbers read as people write them (0.8512, 163.1, 3), which Boost.JSON's
  // serializer does not do for doubles; keys are plain identifiers, so no escaping is needed.
  std::string out = "{";
  std::set<std::string, std::less<>> keys;
  auto add = [&](std::string_view key, const std::string& value) {
    if (!keys.emplace(key).second) return;  // the first writer of a key wins
    if (out.size() > 1) out += ',';
    out += fmt::format("\"{}\":{}", key, value);
  };
  add("round", std::to_string(r.round));
  add("clients", std::to_string(r.accepted));
  add("selected", std::to_string(r.selected));
  add("rejected", std::to_string(r.rejected));
  add("dropped", std::to_string(r.dropped));
  add("loss", number(r.loss));
  if (!r.r2) add("accuracy", number(r.accuracy));  // a regression model has none
  add("train_loss", number(r.train_loss));
  if (r.r2) {
    add("rmse", number(r.rmse));
    add("mae", number(r.mae));
    add("r2", number(r.r2));
  }
  add("duration_ms", number(std::round(r.duration_ms * 10) / 10));
  std::string strategy;  // names are [a-z-]; anything else is dropped rather than escaped
  for (char c : r.strategy)
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') strategy += c;
  add("strategy", "\"" + strategy + "\"");
  if (const auto& e = r.evaluation) {
    add("fed_clients", std::to_string(e->clients));
    add("fed_loss", number(e->loss));
    // A regression model's answers carry a loss and no accuracy: no fed_accuracy then.
    const bool accuracy = e->accuracy || !e->loss;
    if (accuracy) add("fed_accuracy", number(e->accuracy));
    add("fed_loss_min", number(e->loss_min));
    add("fed_loss_max", number(e->loss_max));
    if (accuracy) add("fed_accuracy_min", number(e->accuracy_min));
    if (accuracy) add("fed_accuracy_max", number(e->accuracy_max));
    for (const auto& [k, v] : e->metrics)
      if (plain_key(k)) add("fed_" + k, number(v));
  }
  for (const auto& [k, v] : r.stats)
    if (plain_key(k)) add(k, number(v));
  for (const auto& [k, v] : extra)
    if (plain_key(k)) add(k, number(v));
  return out + "}";
}

}  // namespace federa
