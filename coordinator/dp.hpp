// Privacy accounting for central DP-FedAvg: Rényi DP of the sampled Gaussian mechanism
// (Mironov, Talwar, Zhang 2019) at integer orders, composed over rounds by adding, converted to
// (ε, δ) with ε = min_α RDP(α) + log(1/δ) / (α − 1).
//
//   RdpAccountant acc;
//   for (each round) acc.add_steps(/*q=*/0.1, /*noise_multiplier=*/1.1, 1);
//   double eps = acc.epsilon(1e-5);
//
// Integer orders give a valid (slightly looser than fractional orders) bound; the computation is
// exact in the sense of Mironov et al.'s Section 3.3 (binomial expansion, in log space).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace federa {

// RDP of one sampled Gaussian step at integer order alpha >= 2; q in [0, 1], z > 0.
double rdp_sampled_gaussian(double q, double noise_multiplier, int alpha);

// Smallest ε over `orders` for the given RDP values; +inf when none is finite.
double epsilon_from_rdp(std::span<const int> orders, std::span<const double> rdp, double delta);

// Gaussian noise from a cryptographic stream (AES-256-CTR), so the noise cannot be predicted
// from earlier rounds the way a Mersenne Twister's can. Box-Muller over 53-bit uniforms.
//
//   auto g = GaussianNoise::from_os_entropy();            // deployments
//   auto r = GaussianNoise::from_seed(seed, round);       // repeatable runs and tests
//   g->fill(noise, sigma);
class GaussianNoise {
 public:
  static Result<GaussianNoise> from_os_entropy();
  static Result<GaussianNoise> from_seed(std::uint64_t seed, std::uint64_t round);
  explicit GaussianNoise(const std::array<std::uint8_t, 32>& key);
  // out[i] = N(0, stddev^2), independent.
  Status fill(std::span<float> out, double stddev);
  Result<double> sample(double stddev);

 private:
  Status uniforms(std::span<double> out);  // in (0, 1]
  std::array<std::uint8_t, 32> key_;
  std::uint64_t block_ = 0;  // CTR position, in 16-byte blocks
};

class RdpAccountant {
 public:
  RdpAccountant();
  // Composes `steps` sampled Gaussian steps (noise std = z x sensitivity, sampling rate q).
  void add_steps(double q, double noise_multiplier, std::uint64_t steps = 1);
  double epsilon(double delta) const;
  std::uint64_t steps() const { return steps_; }
  const std::vector<int>& orders() const { return orders_; }
  // Exact round trip through text (hex floats), for --resume.
  std::string serialize() const;
  Status deserialize(const std::string& text);

 private:
  std::vector<int> orders_;
  std::vector<double> rdp_;
  std::uint64_t steps_ = 0;
};

}  // namespace federa
