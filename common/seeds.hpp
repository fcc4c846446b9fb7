// Seed derivation shared by the coordinator, the client and the simulator: one splitmix64, so a
// (seed, round, client) triple means the same stream everywhere.
//
//   std::mt19937_64 rng(mix_seeds(options.seed, round));   // per-round seed
//   std::uint64_t s = splitmix64(config.seed ^ splitmix64(client_seed));
#pragma once

#include <cstdint>

namespace federa {

inline constexpr std::uint64_t kGoldenGamma = 0x9E3779B97F4A7C15ull;

// Steele, Lea and Flood's splitmix64 step: one increment by the golden gamma, then the
// finaliser. A bijection on 64-bit values with good avalanche.
constexpr std::uint64_t splitmix64(std::uint64_t x) {
  x += kGoldenGamma;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Combines two values (a seed and a round, say) so that neighbouring inputs give unrelated
// outputs: splitmix64 of a * gamma + b + an odd constant.
constexpr std::uint64_t mix_seeds(std::uint64_t a, std::uint64_t b) {
  return splitmix64(a * kGoldenGamma + b + (0x632BE59BD9B4E019ull - kGoldenGamma));
}

}  // namespace federa
