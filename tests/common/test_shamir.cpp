// Shamir secret sharing over GF(2^61-1) (common/shamir).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/shamir.hpp"
#include "tests/common/test_secagg_util.hpp"

using namespace federa;
using namespace federa::test;
using crypto::Key32;

namespace {

// Lagrange interpolation through (xs[i], ys[i]) evaluated at `at`, in GF(2^61-1).
std::uint64_t interpolate(const std::vector<std::uint64_t>& xs,
                          const std::vector<std::uint64_t>& ys, std::uint64_t at) {
  std::uint64_t acc = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    std::uint64_t num = 1, den = 1;
    for (std::size_t j = 0; j < xs.size(); ++j) {
      if (j == i) continue;
      num = shamir::field_mul(num, shamir::field_sub(at, xs[j]));
      den = shamir::field_mul(den, shamir::field_sub(xs[i], xs[j]));
    }
    acc = shamir::field_add(
        acc, shamir::field_mul(ys[i], shamir::field_mul(num, shamir::field_inv(den))));
  }
  return acc;
}

}  // namespace

TEST_CASE("shamir: field arithmetic") {
  using namespace shamir;
  CHECK(field_add(kPrime - 1, 1) == 0);
  CHECK(field_sub(0, 1) == kPrime - 1);
  CHECK(field_mul(kPrime - 1, kPrime - 1) == 1);  // (-1)^2
  std::mt19937_64 rng(1);
  for (int i = 0; i < 1000; ++i) {
    std::uint64_t a = rng() % (kPrime - 1) + 1;
    CHECK(field_mul(a, field_inv(a)) == 1);
  }
}

TEST_CASE("shamir: split and reconstruct from any t shares") {
  auto secret = crypto::random_key();
  REQUIRE(secret);
  std::vector<std::uint32_t> xs;
  for (std::uint32_t i = 0; i < 12; ++i) xs.push_back(3 * i + 5);
  for (std::uint32_t t : {1u, 2u, 5u, 12u}) {
    auto shares = shamir::split(*secret, t, xs);
    REQUIRE(shares);
    std::mt19937 rng(t);
    for (int trial = 0; trial < 20; ++trial) {
      auto subset = *shares;
      std::shuffle(subset.begin(), subset.end(), rng);
      auto back = shamir::reconstruct(subset, t);
      REQUIRE(back);
      CHECK(*back == *secret);
    }
  }
  CHECK_FALSE(shamir::split(*secret, 0, xs));
  CHECK_FALSE(shamir::split(*secret, 13, xs));
  std::vector<std::uint32_t> bad = {1, 2, 2};
  CHECK_FALSE(shamir::split(*secret, 2, bad));
  std::vector<std::uint32_t> zero = {0, 1};
  CHECK_FALSE(shamir::split(*secret, 2, zero));
  auto shares = shamir::split(*secret, 5, xs);
  REQUIRE(shares);
  CHECK_FALSE(shamir::reconstruct(std::span(*shares).first(4), 5));
}

TEST_CASE("shamir: t-1 shares are consistent with every secret") {
  // Information-theoretic argument, checked constructively: for any t-1 shares and ANY
  // candidate secret there is a degree t-1 polynomial through both, so t-1 shares exclude
  // nothing. We build that polynomial's t-th share and check it reconstructs the candidate.
  const std::uint32_t t = 4;
  std::vector<std::uint32_t> xs = {1, 2, 3, 4, 5, 6};
  auto secret = crypto::random_key();
  REQUIRE(secret);
  auto shares = shamir::split(*secret, t, xs);
  REQUIRE(shares);
  for (int trial = 0; trial < 50; ++trial) {
    auto candidate = crypto::random_key();
    REQUIRE(candidate);
    const auto enc = shamir::encode_secret(*candidate);
    shamir::Share forged;
    forged.x = 6;
    for (std::size_t e = 0; e < shamir::kElements; ++e) {
      std::vector<std::uint64_t> px = {0}, py = {enc[e]};
      for (std::uint32_t i = 0; i < t - 1; ++i) {
        px.push_back((*shares)[i].x);
        py.push_back((*shares)[i].y[e]);
      }
      forged.y[e] = interpolate(px, py, forged.x);
    }
    std::vector<shamir::Share> set((*shares).begin(), (*shares).begin() + (t - 1));
    set.push_back(forged);
    auto back = shamir::reconstruct(set, t);
    REQUIRE(back);
    CHECK(*back == *candidate);
  }
}

TEST_CASE("shamir: a single share's distribution does not depend on the secret (t=2)") {
  // Statistical check: low 4 bits of the first element of share #1, for two different secrets,
  // are both uniform over 16 buckets.
  const int trials = 16000;
  std::vector<std::uint32_t> xs = {1, 2, 3};
  for (std::uint8_t s : {0, 255}) {
    Key32 secret;
    secret.fill(s);
    std::vector<int> bucket(16, 0);
    for (int i = 0; i < trials; ++i) {
      auto shares = shamir::split(secret, 2, xs);
      REQUIRE(shares);
      ++bucket[(*shares)[0].y[0] & 15];
    }
    for (int b : bucket) {
      CHECK(b > 1000 - 6 * 31);  // mean 1000, sd ~ 31
      CHECK(b < 1000 + 6 * 31);
    }
  }
}

TEST_CASE("shamir: Lagrange cache, wire form and inconsistent shares") {
  shamir::LagrangeCache cache;
  std::vector<std::uint32_t> xs = {2, 5, 9};
  auto a = cache.at_zero(xs);
  auto b = cache.at_zero(xs);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(*a == *b);
  CHECK(cache.size() == 1);
  auto secret = crypto::random_key();
  REQUIRE(secret);
  auto shares = shamir::split(*secret, 3, xs);
  REQUIRE(shares);
  auto back = shamir::reconstruct(*shares, **a);
  REQUIRE(back);
  CHECK(*back == *secret);
  // wire form
  auto bytes = shamir::serialize_y((*shares)[1]);
  auto parsed = shamir::parse_y(5, bytes);
  REQUIRE(parsed);
  CHECK(parsed->y == (*shares)[1].y);
  CHECK_FALSE(shamir::parse_y(5, std::span(bytes).first(39)));
  std::array<std::uint8_t, shamir::kShareBytes> ones;
  ones.fill(0xff);
  CHECK_FALSE(shamir::parse_y(5, ones));  // elements >= p
  // A corrupted share almost always decodes out of range (chunks are 56/32 bits of 61).
  auto bad = *shares;
  bad[0].y[0] = shamir::field_add(bad[0].y[0], 1);
  auto wrong = shamir::reconstruct(bad, **a);
  CHECK((!wrong || *wrong != *secret));
}
