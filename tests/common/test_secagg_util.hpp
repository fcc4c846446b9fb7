// Helpers shared by the secure-aggregation suites (test_crypto, test_shamir, test_secagg*).
//
//   Key32 k = key_from(3);                     // a fixed, distinct key per byte value
//   RoundOptions o = options(20, 1000, 0.1);   // round 3, 20 clients, 1000 words, 10% dropout
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "common/crypto.hpp"
#include "common/secagg.hpp"

namespace federa::test {

inline crypto::Key32 key_from(std::uint8_t v) {
  crypto::Key32 k{};
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::uint8_t>(v + 7 * i);
  return k;
}

inline bool contains(const std::string& s, const std::string& sub) {
  return s.find(sub) != std::string::npos;
}

inline secagg::RoundOptions options(std::uint32_t n, std::uint64_t len, double dropout) {
  secagg::RoundOptions o;
  o.round = 3;
  o.num_clients = n;
  o.vector_length = len;
  o.dropout = std::max(dropout, 0.05);
  o.corrupt = 0.05;
  return o;
}

}  // namespace federa::test
