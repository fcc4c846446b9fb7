#include "coordinator/evaluation.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <cmath>
#include <set>

namespace federa {

namespace json = boost::json;

FederatedEvaluation combine_evaluations(std::uint64_t round, std::size_t selected,
                                        std::vector<ClientEvaluation> answers,
                                        std::size_t min_clients) {
  FederatedEvaluation f;
  f.round = round;
  f.selected = selected;
  double weight = 0, loss = 0, accuracy = 0, accuracy_weight = 0;
  std::map<std::string, std::pair<double, double>> metrics;  // weighted sum, weight
  std::size_t private_clients = 0;
  auto widen = [](std::optional<double>& lo, std::optional<double>& hi, double v) {
    lo = lo ? std::min(*lo, v) : v;
    hi = hi ? std::max(*hi, v) : v;
  };
  for (const auto& a : answers) {
    if (a.outcome != UpdateOutcome::accepted || a.num_examples == 0 || !a.loss) continue;
    const double n = double(a.num_examples);
    ++f.clients;
    weight += n;
    loss += n * *a.loss;
    if (a.accuracy) {  // a regression model has none
      accuracy += n * *a.accuracy;
      accuracy_weight += n;
    }
    for (const auto& [k, v] : a.metrics) {
      metrics[k].first += n * v;
      metrics[k].second += n;
    }
    if (a.keep_private) {
      ++private_clients;
      continue;
    }
    widen(f.loss_min, f.loss_max, *a.loss);
    if (a.accuracy) widen(f.accuracy_min, f.accuracy_max, *a.accuracy);
  }
  const bool lone_private = f.clients == 1 && private_clients == 1;
  if (f.clients > 0 && f.clients >= min_clients && !lone_private) {
    f.loss = loss / weight;
    if (accuracy_weight > 0) f.accuracy = accuracy / accuracy_weight;
    for (const auto& [k, sw] : metrics) f.metrics[k] = sw.first / sw.second;
  }
  for (auto& a : answers) {
    if (!a.keep_private) continue;
    a.num_examples = 0;
    a.loss.reset();
    a.accuracy.reset();
    a.metrics.clear();
  }
  std::sort(answers.begin(), answers.end(),
            [](const auto& x, const auto& y) { return x.client < y.client; });
  f.per_client = std::move(answers);
  return f;
}

Result<KeepBestRule> parse_keep_best(const std::string& text) {
  KeepBestRule rule;
  std::string key = text;
  bool explicit_direction = false;
  for (const auto& [prefix, lower] : {std::pair{"min:", true}, std::pair{"max:", false}}) {
    if (key.rfind(prefix, 0) == 0) {
      key = key.substr(4);
      rule.lower_is_better = lower;
      explicit_direction = true;
    }
  }
  const bool plain = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
  if (!plain)
    return make_error(ErrorCode::invalid_argument,
                      "--keep-best '" + text +
                          "': expected a metrics key such as fed_accuracy, fed_loss or "
                          "accuracy, optionally as min:KEY or max:KEY");
  if (!explicit_direction) rule.lower_is_better = key.find("loss") != std::string::npos;
  rule.key = key;
  return rule;
}

std::optional<double> metrics_line_value(const std::string& line, const std::string& key) {
  boost::system::error_code ec;
  json::value v = json::parse(line, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const json::value* x = v.as_object().if_contains(key);
  if (!x) return std::nullopt;
  if (x->is_double()) return x->as_double();
  if (x->is_int64()) return double(x->as_int64());
  if (x->is_uint64()) return double(x->as_uint64());
  return std::nullopt;
}

Status ClientMetricsWriter::open(const std::filesystem::path& path, std::uint64_t committed_round) {
  return log_.open(path, committed_round, "");
}

// Hand-formatted as the metrics line is (numbers as people write them: 0.87, not 8.7E-1);
// strings through Boost.JSON, which escapes them.
std::vector<std::string> ClientMetricsWriter::lines_for(const FederatedEvaluation& e) {
  std::vector<std::string> out;
  auto text = [](const std::string& s) { return json::serialize(json::value(json::string(s))); };
  for (const auto& c : e.per_client) {
    if (c.keep_private) continue;
    std::string line = fmt::format("{{\"round\":{},\"client\":{},\"outcome\":\"{}\"", e.round,
                                   text(c.client), outcome_name(c.outcome));
    std::set<std::string> keys{"round", "client",   "outcome", "num_examples",
                               "loss",  "accuracy", "reason"};
    auto number = [&](const std::string& key, double v) {
      if (std::isfinite(v)) line += fmt::format(",{}:{}", text(key), v);
    };
    if (c.outcome == UpdateOutcome::accepted) {
      line += fmt::format(",\"num_examples\":{}", c.num_examples);
      if (c.loss) number("loss", *c.loss);
      if (c.accuracy) number("accuracy", *c.accuracy);
      for (const auto& [k, v] : c.metrics)
        if (keys.insert(k).second) number(k, v);
    } else {
      line += ",\"reason\":" + text(c.reason);
    }
    out.push_back(line + "}");
  }
  return out;
}

void ClientMetricsWriter::on_round_committed(const RoundReport& report) {
  if (!report.evaluation || !log_.enabled()) return;
  std::lock_guard lk(mu_);
  for (const auto& line : lines_for(*report.evaluation))
    if (Status s = log_.append(line); !s) {
      spdlog::error("--client-metrics-out: {}", s.message());
      return;
    }
}

}  // namespace federa
