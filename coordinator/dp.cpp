#include "coordinator/dp.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>

namespace federa {

namespace {

double log_add(double a, double b) {
  if (a == -std::numeric_limits<double>::infinity()) return b;
  if (b == -std::numeric_limits<double>::infinity()) return a;
  double m = std::max(a, b);
  return m + std::log1p(std::exp(-std::abs(a - b)));
}

}  // namespace

double rdp_sampled_gaussian(double q, double z, int alpha) {
  if (q <= 0.0) return 0.0;
  if (z <= 0.0) return std::numeric_limits<double>::infinity();
  const double a = static_cast<double>(alpha);
  if (q >= 1.0) return a / (2.0 * z * z);
  // log A_alpha = log sum_i C(alpha, i) q^i (1-q)^(alpha-i) exp((i^2 - i) / (2 z^2))
  double log_a = -std::numeric_limits<double>::infinity();
  const double lq = std::log(q), l1q = std::log1p(-q);
  for (int i = 0; i <= alpha; ++i) {
    double log_binom = std::lgamma(a + 1) - std::lgamma(i + 1.0) - std::lgamma(a - i + 1);
    double term = log_binom + i * lq + (a - i) * l1q + (double(i) * i - i) / (2.0 * z * z);
    log_a = log_add(log_a, term);
  }
  return log_a / (a - 1.0);
}

double epsilon_from_rdp(std::span<const int> orders, std::span<const double> rdp, double delta) {
  double best = std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < orders.size() && i < rdp.size(); ++i) {
    double eps = rdp[i] + std::log(1.0 / delta) / (orders[i] - 1.0);
    if (std::isfinite(eps) && eps < best) best = eps;
  }
  return best;
}

RdpAccountant::RdpAccountant() {
  // Dense at small orders (where small ε is decided), sparser at large ones (large noise/ε).
  for (int a = 2; a <= 64; ++a) orders_.push_back(a);
  for (int a : {80, 96, 128, 192, 256, 512}) orders_.push_back(a);
  rdp_.assign(orders_.size(), 0.0);
}

void RdpAccountant::add_steps(double q, double z, std::uint64_t steps) {
  for (std::size_t i = 0; i < orders_.size(); ++i)
    rdp_[i] += static_cast<double>(steps) * rdp_sampled_gaussian(q, z, orders_[i]);
  steps_ += steps;
}

double RdpAccountant::epsilon(double delta) const {
  if (steps_ == 0) return 0.0;
  return epsilon_from_rdp(orders_, rdp_, delta);
}

std::string RdpAccountant::serialize() const {
  std::string out = std::to_string(steps_);
  char buf[64];
  for (double r : rdp_) {
    std::snprintf(buf, sizeof buf, " %a", r);
    out += buf;
  }
  return out;
}

Status RdpAccountant::deserialize(const std::string& text) {
  std::istringstream in(text);
  std::uint64_t steps = 0;
  if (!(in >> steps)) return make_error("DP accountant state: missing step count");
  std::vector<double> rdp;
  std::string tok;
  while (in >> tok) {
    char* end = nullptr;
    double v = std::strtod(tok.c_str(), &end);
    if (end == tok.c_str() || *end != '\0') return make_error("DP accountant state: bad value '" + tok + "'");
    rdp.push_back(v);
  }
  if (rdp.size() != orders_.size())
    return make_error("DP accountant state: expected " + std::to_string(orders_.size()) +
                      " orders, got " + std::to_string(rdp.size()));
  rdp_ = std::move(rdp);
  steps_ = steps;
  return {};
}

}  // namespace federa
