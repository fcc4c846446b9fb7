// OpenSSL-backed primitives for secure aggregation: X25519, HKDF-SHA256, AES-256-GCM, SHA-256,
// the CSPRNG, and the mask PRG (AES-256-CTR keystream read as little-endian uint32 words).
// Nothing here is a hand-written cipher; every OpenSSL object is owned as common/ossl.hpp says.
//
//   auto a = crypto::x25519_generate(), b = crypto::x25519_generate();
//   auto shared = crypto::x25519_agree(a->private_key, b->public_key);      // == agree(b, a)
//   auto key = crypto::hkdf_sha256_key(*shared, salt, crypto::as_bytes("federa/secagg/v1/enc"));
//   auto sealed = crypto::aead_seal(*key, plaintext, aad);                  // nonce|ct|tag
//   auto opened = crypto::aead_open(*key, *sealed, aad);                    // fails if tampered
//   std::vector<uint32_t> mask(n);
//   Status s = crypto::prg_expand(seed, mask);                              // deterministic
//   s = crypto::prg_accumulate(seed, sum, crypto::PrgOp::subtract);         // sum -= PRG(seed)
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace federa::crypto {

using Key32 = std::array<std::uint8_t, 32>;
using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

inline ByteView as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// Fills `out` from OpenSSL's CSPRNG (RAND_bytes).
[[nodiscard]] Status random_bytes(std::span<std::uint8_t> out);
[[nodiscard]] Result<Key32> random_key();

[[nodiscard]] Key32 sha256(ByteView data);

struct X25519KeyPair {
  Key32 private_key;  // raw 32-byte scalar (RFC 7748)
  Key32 public_key;
};

[[nodiscard]] Result<X25519KeyPair> x25519_generate();
[[nodiscard]] Result<Key32> x25519_public_from_private(const Key32& private_key);
// Raw shared secret; feed it through HKDF before use. Fails on a low-order peer key
// (all-zero shared secret), which OpenSSL rejects.
[[nodiscard]] Result<Key32> x25519_agree(const Key32& private_key, const Key32& peer_public);

// HKDF-SHA256 (RFC 5869), extract-and-expand.
[[nodiscard]] Result<Bytes> hkdf_sha256(ByteView ikm, ByteView salt, ByteView info,
                                        std::size_t length);
[[nodiscard]] Result<Key32> hkdf_sha256_key(const Key32& ikm, ByteView salt, ByteView info);

// AES-256-GCM with a fresh random 96-bit nonce per message. Output: nonce(12) | ct | tag(16).
inline constexpr std::size_t kAeadNonceBytes = 12;
inline constexpr std::size_t kAeadTagBytes = 16;
inline constexpr std::size_t kAeadOverhead = kAeadNonceBytes + kAeadTagBytes;
[[nodiscard]] Result<Bytes> aead_seal(const Key32& key, ByteView plaintext, ByteView aad);
// Fails (without releasing any plaintext) when the tag, the key or the AAD do not match.
[[nodiscard]] Result<Bytes> aead_open(const Key32& key, ByteView sealed, ByteView aad);

// Mask PRG: AES-256-CTR keyed by a 256-bit seed, IV 0, keystream interpreted as little-endian
// uint32 words. The stream for a seed is fixed: prg_expand(seed, out) writes words [0, n).
enum class PrgOp { assign, add, subtract };
// out = / += / -= PRG(seed)[0, out.size()) (mod 2^32). Works in cache-sized blocks.
[[nodiscard]] Status prg_apply(const Key32& seed, std::span<std::uint32_t> out, PrgOp op);
[[nodiscard]] inline Status prg_expand(const Key32& seed, std::span<std::uint32_t> out) {
  return prg_apply(seed, out, PrgOp::assign);
}
[[nodiscard]] inline Status prg_accumulate(const Key32& seed, std::span<std::uint32_t> acc,
                                           PrgOp op) {
  return prg_apply(seed, acc, op);
}

}  // namespace federa::crypto
