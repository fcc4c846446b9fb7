// t-of-n Shamir secret sharing of 256-bit secrets over GF(p), p = 2^61 - 1 (a Mersenne prime,
// so reduction is two shifts and an add). A secret is cut into 5 field elements (four 56-bit
// chunks and one 32-bit chunk); each element gets its own random polynomial of degree t-1 and a
// share is (x, y[5]). Any t shares reconstruct; any t-1 are consistent with every secret.
//
//   std::vector<uint32_t> xs = {1, 2, 3, 4, 5};            // distinct, non-zero
//   auto shares = shamir::split(secret, /*t=*/3, xs);
//   std::vector<shamir::Share> some = {(*shares)[0], (*shares)[2], (*shares)[4]};
//   std::vector<uint32_t> pts = {some[0].x, some[1].x, some[2].x};
//   shamir::LagrangeCache cache;                           // reuse across secrets
//   auto coeffs = cache.at_zero(pts);                      // once per point set
//   auto secret2 = shamir::reconstruct(some, **coeffs);    // == secret
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "common/crypto.hpp"
#include "common/result.hpp"

namespace federa::shamir {

inline constexpr std::uint64_t kPrime = (std::uint64_t{1} << 61) - 1;
inline constexpr std::size_t kElements = 5;  // field elements per 256-bit secret
// Wire form: y[0..4] as little-endian uint64 (x travels next to it, e.g. as the holder's index).
inline constexpr std::size_t kShareBytes = kElements * 8;

using Secret = crypto::Key32;

struct Share {
  std::uint32_t x = 0;  // evaluation point, non-zero
  std::array<std::uint64_t, kElements> y{};
};

// --- GF(2^61 - 1) arithmetic, exposed for tests and batching. Inputs must be < kPrime. ---
inline std::uint64_t field_reduce(unsigned __int128 v) {
  std::uint64_t lo = static_cast<std::uint64_t>(v) & kPrime;
  std::uint64_t hi = static_cast<std::uint64_t>(v >> 61);
  std::uint64_t r = lo + hi;  // < 2^62 + small; one more fold suffices
  r = (r & kPrime) + (r >> 61);
  return r >= kPrime ? r - kPrime : r;
}
inline std::uint64_t field_add(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r = a + b;
  return r >= kPrime ? r - kPrime : r;
}
inline std::uint64_t field_sub(std::uint64_t a, std::uint64_t b) {
  return a >= b ? a - b : a + kPrime - b;
}
inline std::uint64_t field_mul(std::uint64_t a, std::uint64_t b) {
  return field_reduce(static_cast<unsigned __int128>(a) * b);
}
std::uint64_t field_inv(std::uint64_t a);  // a != 0

// Secret <-> field elements (the encoding is injective; decode rejects out-of-range chunks,
// which is how inconsistent share sets are usually detected).
std::array<std::uint64_t, kElements> encode_secret(const Secret& s);
[[nodiscard]] Result<Secret> decode_secret(const std::array<std::uint64_t, kElements>& e);

// Shares of `secret` at the given points (distinct, non-zero). Needs 1 <= t <= xs.size().
[[nodiscard]] Result<std::vector<Share>> split(const Secret& secret, std::uint32_t t,
                                               std::span<const std::uint32_t> xs);

// Lagrange basis at 0 for the points xs (distinct, non-zero): secret = sum coeff[i] * y_i.
// O(t^2) multiplications and one field inversion (batch inversion).
[[nodiscard]] Result<std::vector<std::uint64_t>> lagrange_at_zero(
    std::span<const std::uint32_t> xs);

// Reconstructs from shares whose x's match the points `coeffs` was computed for (same order).
[[nodiscard]] Result<Secret> reconstruct(std::span<const Share> shares,
                                         std::span<const std::uint64_t> coeffs);
// Convenience: uses the first t shares.
[[nodiscard]] Result<Secret> reconstruct(std::span<const Share> shares, std::uint32_t t);

// Caches Lagrange coefficients by point set. A SecAgg server reconstructs one secret per
// client; clients whose responders form the same x-set (the common case in a dense graph, and
// between a client's self-mask and its neighbours' keys) share one computation.
class LagrangeCache {
 public:
  [[nodiscard]] Result<const std::vector<std::uint64_t>*> at_zero(
      std::span<const std::uint32_t> xs);
  std::size_t size() const { return cache_.size(); }

 private:
  std::map<std::vector<std::uint32_t>, std::vector<std::uint64_t>> cache_;
};

// Wire form of the y values (kShareBytes); parse rejects elements >= kPrime.
std::array<std::uint8_t, kShareBytes> serialize_y(const Share& s);
[[nodiscard]] Result<Share> parse_y(std::uint32_t x, crypto::ByteView bytes);

}  // namespace federa::shamir
