#include "common/shamir.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <string>

namespace federa::shamir {
namespace {

constexpr unsigned kChunkBits[kElements] = {56, 56, 56, 56, 32};

Status check_points(std::span<const std::uint32_t> xs) {
  std::set<std::uint32_t> seen;
  for (std::uint32_t x : xs) {
    if (x == 0) return make_error("shamir: evaluation point 0 is the secret");
    if (!seen.insert(x).second)
      return make_error("shamir: duplicate evaluation point " + std::to_string(x));
  }
  return Status::success();
}

// Uniform field element by rejection sampling on 61-bit draws.
Result<std::uint64_t> random_element() {
  for (;;) {
    std::uint64_t v = 0;
    if (Status s = crypto::random_bytes({reinterpret_cast<std::uint8_t*>(&v), sizeof(v)}); !s)
      return s.error();
    v &= kPrime;
    if (v < kPrime) return v;
  }
}

}  // namespace

std::uint64_t field_inv(std::uint64_t a) {
  // Fermat: a^(p-2).
  std::uint64_t result = 1, base = a, e = kPrime - 2;
  while (e) {
    if (e & 1) result = field_mul(result, base);
    base = field_mul(base, base);
    e >>= 1;
  }
  return result;
}

std::array<std::uint64_t, kElements> encode_secret(const Secret& s) {
  std::array<std::uint64_t, kElements> e{};
  std::size_t byte = 0;
  for (std::size_t i = 0; i < kElements; ++i) {
    std::uint64_t v = 0;
    const std::size_t n = kChunkBits[i] / 8;
    for (std::size_t j = 0; j < n; ++j) v |= std::uint64_t{s[byte + j]} << (8 * j);
    byte += n;
    e[i] = v;
  }
  return e;
}

Result<Secret> decode_secret(const std::array<std::uint64_t, kElements>& e) {
  Secret s{};
  std::size_t byte = 0;
  for (std::size_t i = 0; i < kElements; ++i) {
    if (e[i] >> kChunkBits[i])
      return make_error("shamir: reconstructed value out of range (inconsistent shares)");
    const std::size_t n = kChunkBits[i] / 8;
    for (std::size_t j = 0; j < n; ++j) s[byte + j] = static_cast<std::uint8_t>(e[i] >> (8 * j));
    byte += n;
  }
  return s;
}

Result<std::vector<Share>> split(const Secret& secret, std::uint32_t t,
                                 std::span<const std::uint32_t> xs) {
  if (t == 0 || t > xs.size())
    return make_error("shamir: need 1 <= t <= number of shares (t=" + std::to_string(t) +
                      ", n=" + std::to_string(xs.size()) + ")");
  if (Status s = check_points(xs); !s) return s.error();
  const auto enc = encode_secret(secret);
  // coeffs[i][0] = secret element, coeffs[i][1..t-1] uniform.
  std::vector<std::array<std::uint64_t, kElements>> coeffs(t);
  coeffs[0] = enc;
  for (std::uint32_t d = 1; d < t; ++d)
    for (std::size_t i = 0; i < kElements; ++i) {
      auto r = random_element();
      if (!r) return r.error();
      coeffs[d][i] = *r;
    }
  std::vector<Share> shares(xs.size());
  for (std::size_t k = 0; k < xs.size(); ++k) {
    shares[k].x = xs[k];
    const std::uint64_t x = xs[k] % kPrime;
    for (std::size_t i = 0; i < kElements; ++i) {
      std::uint64_t acc = 0;  // Horner
      for (std::uint32_t d = t; d-- > 0;) acc = field_add(field_mul(acc, x), coeffs[d][i]);
      shares[k].y[i] = acc;
    }
  }
  OPENSSL_cleanse(coeffs.data(), coeffs.size() * sizeof(coeffs[0]));
  return shares;
}

Result<std::vector<std::uint64_t>> lagrange_at_zero(std::span<const std::uint32_t> xs) {
  if (xs.empty()) return make_error("shamir: no points");
  if (Status s = check_points(xs); !s) return s.error();
  const std::size_t n = xs.size();
  // l_i(0) = prod_{j!=i} x_j / (x_j - x_i) = (prod_j x_j) / (x_i * prod_{j!=i} (x_j - x_i)).
  std::uint64_t all = 1;
  for (std::uint32_t x : xs) all = field_mul(all, x);
  std::vector<std::uint64_t> den(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t d = xs[i];
    for (std::size_t j = 0; j < n; ++j)
      if (j != i) d = field_mul(d, field_sub(xs[j], xs[i]));
    den[i] = d;
  }
  // Batch inversion (Montgomery): one field_inv for all denominators.
  std::vector<std::uint64_t> prefix(n);
  std::uint64_t acc = 1;
  for (std::size_t i = 0; i < n; ++i) {
    prefix[i] = acc;
    acc = field_mul(acc, den[i]);
  }
  std::uint64_t inv = field_inv(acc);
  std::vector<std::uint64_t> out(n);
  for (std::size_t i = n; i-- > 0;) {
    out[i] = field_mul(field_mul(inv, prefix[i]), all);
    inv = field_mul(inv, den[i]);
  }
  return out;
}

Result<Secret> reconstruct(std::span<const Share> shares, std::span<const std::uint64_t> coeffs) {
  if (shares.size() != coeffs.size() || shares.empty())
    return make_error("shamir: share and coefficient counts differ");
  std::array<std::uint64_t, kElements> e{};
  for (std::size_t k = 0; k < shares.size(); ++k)
    for (std::size_t i = 0; i < kElements; ++i)
      e[i] = field_add(e[i], field_mul(coeffs[k], shares[k].y[i]));
  auto s = decode_secret(e);
  OPENSSL_cleanse(e.data(), sizeof(e));
  return s;
}

Result<Secret> reconstruct(std::span<const Share> shares, std::uint32_t t) {
  if (t == 0 || shares.size() < t)
    return make_error("shamir: " + std::to_string(shares.size()) + " shares, need " +
                      std::to_string(t));
  std::vector<std::uint32_t> xs(t);
  for (std::uint32_t i = 0; i < t; ++i) xs[i] = shares[i].x;
  auto coeffs = lagrange_at_zero(xs);
  if (!coeffs) return coeffs.error();
  return reconstruct(shares.first(t), *coeffs);
}

Result<const std::vector<std::uint64_t>*> LagrangeCache::at_zero(
    std::span<const std::uint32_t> xs) {
  std::vector<std::uint32_t> key(xs.begin(), xs.end());
  auto it = cache_.find(key);
  if (it != cache_.end()) return &it->second;
  auto coeffs = lagrange_at_zero(xs);
  if (!coeffs) return coeffs.error();
  return &cache_.emplace(std::move(key), std::move(*coeffs)).first->second;
}

std::array<std::uint8_t, kShareBytes> serialize_y(const Share& s) {
  std::array<std::uint8_t, kShareBytes> out{};
  for (std::size_t i = 0; i < kElements; ++i)
    for (std::size_t j = 0; j < 8; ++j)
      out[i * 8 + j] = static_cast<std::uint8_t>(s.y[i] >> (8 * j));
  return out;
}

Result<Share> parse_y(std::uint32_t x, crypto::ByteView bytes) {
  if (bytes.size() != kShareBytes)
    return make_error("shamir: share has " + std::to_string(bytes.size()) + " bytes, expected " +
                      std::to_string(kShareBytes));
  if (x == 0) return make_error("shamir: share at x = 0");
  Share s;
  s.x = x;
  for (std::size_t i = 0; i < kElements; ++i) {
    std::uint64_t v = 0;
    for (std::size_t j = 0; j < 8; ++j) v |= std::uint64_t{bytes[i * 8 + j]} << (8 * j);
    if (v >= kPrime) return make_error("shamir: share element out of field");
    s.y[i] = v;
  }
  return s;
}

}  // namespace federa::shamir
