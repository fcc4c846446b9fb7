// The OpenSSL-backed primitives of common/crypto: HKDF, X25519, AES-GCM, the mask PRG.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/crypto.hpp"
#include "tests/common/test_secagg_util.hpp"

using namespace federa;
using namespace federa::test;
using crypto::Key32;

namespace {

std::vector<std::uint8_t> hex(const std::string& h) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2)
    out.push_back(static_cast<std::uint8_t>(std::stoul(h.substr(i, 2), nullptr, 16)));
  return out;
}

}  // namespace

TEST_CASE("crypto: HKDF-SHA256 matches RFC 5869 test case 1") {
  const auto ikm = hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
  const auto salt = hex("000102030405060708090a0b0c");
  const auto info = hex("f0f1f2f3f4f5f6f7f8f9");
  auto okm = crypto::hkdf_sha256(ikm, salt, info, 42);
  REQUIRE(okm);
  CHECK(
      *okm ==
      hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"));
}

TEST_CASE("crypto: X25519 agreement is symmetric and RFC 7748 section 6.1 holds") {
  auto a = crypto::x25519_generate();
  auto b = crypto::x25519_generate();
  REQUIRE(a);
  REQUIRE(b);
  auto ab = crypto::x25519_agree(a->private_key, b->public_key);
  auto ba = crypto::x25519_agree(b->private_key, a->public_key);
  REQUIRE(ab);
  REQUIRE(ba);
  CHECK(*ab == *ba);
  // RFC 7748 6.1
  Key32 alice_priv, bob_pub;
  auto ap = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  auto bp = hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  std::copy(ap.begin(), ap.end(), alice_priv.begin());
  std::copy(bp.begin(), bp.end(), bob_pub.begin());
  auto k = crypto::x25519_agree(alice_priv, bob_pub);
  REQUIRE(k);
  CHECK(std::vector<std::uint8_t>(k->begin(), k->end()) ==
        hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"));
  // A low-order point (all zeros) is refused.
  CHECK_FALSE(crypto::x25519_agree(alice_priv, Key32{}));
}

TEST_CASE("crypto: AES-256-GCM round trip; tampering, wrong key or wrong AAD fail") {
  const Key32 key = key_from(3);
  const std::vector<std::uint8_t> msg = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const auto aad = crypto::as_bytes("sender=1,recipient=2,round=7");
  auto sealed = crypto::aead_seal(key, msg, aad);
  REQUIRE(sealed);
  CHECK(sealed->size() == msg.size() + crypto::kAeadOverhead);
  auto opened = crypto::aead_open(key, *sealed, aad);
  REQUIRE(opened);
  CHECK(*opened == msg);
  auto again = crypto::aead_seal(key, msg, aad);
  REQUIRE(again);
  CHECK(*again != *sealed);  // fresh nonce
  auto bad = *sealed;
  bad[crypto::kAeadNonceBytes] ^= 1;
  CHECK_FALSE(crypto::aead_open(key, bad, aad));
  CHECK_FALSE(crypto::aead_open(key_from(4), *sealed, aad));
  CHECK_FALSE(crypto::aead_open(key, *sealed, crypto::as_bytes("sender=2,recipient=1,round=7")));
  CHECK_FALSE(crypto::aead_open(key, std::vector<std::uint8_t>(10), aad));
}

TEST_CASE("crypto: mask PRG is deterministic, prefix-stable, and distinct seeds differ") {
  std::vector<std::uint32_t> a(10007), b(10007), c(10007), prefix(5000);
  REQUIRE(crypto::prg_expand(key_from(1), a));
  REQUIRE(crypto::prg_expand(key_from(1), b));
  REQUIRE(crypto::prg_expand(key_from(2), c));
  REQUIRE(crypto::prg_expand(key_from(1), prefix));
  CHECK(a == b);
  CHECK(a != c);
  CHECK(std::equal(prefix.begin(), prefix.end(), a.begin()));
  std::size_t equal_words = 0;
  for (std::size_t i = 0; i < a.size(); ++i) equal_words += a[i] == c[i];
  CHECK(equal_words < 3);
  // add then subtract is the identity; add equals assign on a zero vector
  std::vector<std::uint32_t> acc(10007, 12345u);
  REQUIRE(crypto::prg_accumulate(key_from(1), acc, crypto::PrgOp::add));
  CHECK(acc[17] == 12345u + a[17]);
  REQUIRE(crypto::prg_accumulate(key_from(1), acc, crypto::PrgOp::subtract));
  CHECK(std::all_of(acc.begin(), acc.end(), [](std::uint32_t v) { return v == 12345u; }));
  // roughly uniform: mean of the top bit
  std::size_t ones = 0;
  for (std::uint32_t v : a) ones += v >> 31;
  CHECK(ones > 4700);
  CHECK(ones < 5300);
}
