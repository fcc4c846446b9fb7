#include "common/crypto.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>

#include "common/ossl.hpp"

namespace federa::crypto {

namespace {

static_assert(std::endian::native == std::endian::little,
              "the mask PRG reads the keystream as little-endian uint32 words");

using ossl::CipherCtxPtr;
using ossl::CipherPtr;
using ossl::KdfCtxPtr;
using ossl::KdfPtr;
using ossl::PkeyCtxPtr;
using ossl::PkeyPtr;

// Fetched once: implicit fetches on every init cost a lock and a lookup per call.
const EVP_CIPHER* aes_256_ctr() {
  static CipherPtr c(EVP_CIPHER_fetch(nullptr, "AES-256-CTR", nullptr));
  return c.get();
}
const EVP_CIPHER* aes_256_gcm() {
  static CipherPtr c(EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr));
  return c.get();
}
EVP_KDF* hkdf_kdf() {
  static KdfPtr k(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  return k.get();
}

Error openssl_error(const char* what, ErrorCode code = ErrorCode::internal) {
  return ossl::error(code, std::string("openssl: ") + what);
}

Result<PkeyPtr> load_private(const Key32& private_key) {
  PkeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, private_key.data(),
                                           private_key.size()));
  if (!key) return openssl_error("cannot load X25519 private key");
  return key;
}

}  // namespace

Status random_bytes(std::span<std::uint8_t> out) {
  if (out.empty()) return Status::success();
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1)
    return openssl_error("RAND_bytes failed");
  return Status::success();
}

Result<Key32> random_key() {
  Key32 k;
  if (Status s = random_bytes(k); !s) return s.error();
  return k;
}

Key32 sha256(ByteView data) {
  Key32 out{};
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

Result<X25519KeyPair> x25519_generate() {
  X25519KeyPair kp;
  if (Status s = random_bytes(kp.private_key); !s) return s.error();
  auto pub = x25519_public_from_private(kp.private_key);
  if (!pub) return pub.error();
  kp.public_key = *pub;
  return kp;
}

Result<Key32> x25519_public_from_private(const Key32& private_key) {
  auto key = load_private(private_key);
  if (!key) return key.error();
  Key32 pub{};
  std::size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(key->get(), pub.data(), &len) != 1 || len != pub.size())
    return openssl_error("cannot derive X25519 public key");
  return pub;
}

Result<Key32> x25519_agree(const Key32& private_key, const Key32& peer_public) {
  auto key = load_private(private_key);
  if (!key) return key.error();
  PkeyPtr peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public.data(),
                                           peer_public.size()));
  if (!peer) return openssl_error("cannot load X25519 peer key", ErrorCode::invalid_argument);
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(key->get(), nullptr));
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1)
    return openssl_error("X25519 derive init failed");
  Key32 secret{};
  std::size_t len = secret.size();
  if (EVP_PKEY_derive(ctx.get(), secret.data(), &len) != 1 || len != secret.size())
    return openssl_error("X25519 derive failed (low-order peer key?)", ErrorCode::invalid_argument);
  return secret;
}

Result<Bytes> hkdf_sha256(ByteView ikm, ByteView salt, ByteView info, std::size_t length) {
  EVP_KDF* kdf = hkdf_kdf();
  if (!kdf) return openssl_error("HKDF unavailable");
  KdfCtxPtr ctx(EVP_KDF_CTX_new(kdf));
  if (!ctx) return openssl_error("EVP_KDF_CTX_new failed");
  char digest[] = "SHA256";
  OSSL_PARAM params[5];
  int n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
  params[n++] = OSSL_PARAM_construct_octet_string(
      OSSL_KDF_PARAM_KEY, const_cast<std::uint8_t*>(ikm.data()), ikm.size());
  if (!salt.empty())
    params[n++] = OSSL_PARAM_construct_octet_string(
        OSSL_KDF_PARAM_SALT, const_cast<std::uint8_t*>(salt.data()), salt.size());
  params[n++] = OSSL_PARAM_construct_octet_string(
      OSSL_KDF_PARAM_INFO, const_cast<std::uint8_t*>(info.data()), info.size());
  params[n] = OSSL_PARAM_construct_end();
  Bytes out(length);
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1)
    return openssl_error("HKDF derive failed");
  return out;
}

Result<Key32> hkdf_sha256_key(const Key32& ikm, ByteView salt, ByteView info) {
  auto b = hkdf_sha256(ikm, salt, info, 32);
  if (!b) return b.error();
  Key32 k;
  std::memcpy(k.data(), b->data(), k.size());
  OPENSSL_cleanse(b->data(), b->size());
  return k;
}

Result<Bytes> aead_seal(const Key32& key, ByteView plaintext, ByteView aad) {
  Bytes out(kAeadNonceBytes + plaintext.size() + kAeadTagBytes);
  if (Status s = random_bytes(std::span(out.data(), kAeadNonceBytes)); !s) return s.error();
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (!ctx || EVP_EncryptInit_ex2(ctx.get(), aes_256_gcm(), key.data(), out.data(), nullptr) != 1)
    return openssl_error("AES-GCM init failed");
  if (!aad.empty() &&
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1)
    return openssl_error("AES-GCM aad failed");
  std::uint8_t* ct = out.data() + kAeadNonceBytes;
  if (!plaintext.empty() && EVP_EncryptUpdate(ctx.get(), ct, &len, plaintext.data(),
                                              static_cast<int>(plaintext.size())) != 1)
    return openssl_error("AES-GCM encrypt failed");
  if (EVP_EncryptFinal_ex(ctx.get(), ct + plaintext.size(), &len) != 1)
    return openssl_error("AES-GCM final failed");
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kAeadTagBytes, ct + plaintext.size()) !=
      1)
    return openssl_error("AES-GCM tag failed");
  return out;
}

Result<Bytes> aead_open(const Key32& key, ByteView sealed, ByteView aad) {
  if (sealed.size() < kAeadOverhead)
    return make_error(ErrorCode::invalid_argument, "AES-GCM: ciphertext too short");
  const std::size_t ct_len = sealed.size() - kAeadOverhead;
  const std::uint8_t* ct = sealed.data() + kAeadNonceBytes;
  Bytes out(ct_len);
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (!ctx ||
      EVP_DecryptInit_ex2(ctx.get(), aes_256_gcm(), key.data(), sealed.data(), nullptr) != 1)
    return openssl_error("AES-GCM init failed");
  if (!aad.empty() &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1)
    return openssl_error("AES-GCM aad failed");
  if (ct_len > 0 &&
      EVP_DecryptUpdate(ctx.get(), out.data(), &len, ct, static_cast<int>(ct_len)) != 1)
    return openssl_error("AES-GCM decrypt failed");
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kAeadTagBytes,
                          const_cast<std::uint8_t*>(ct + ct_len)) != 1)
    return openssl_error("AES-GCM set tag failed");
  if (EVP_DecryptFinal_ex(ctx.get(), out.data() + ct_len, &len) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    ERR_clear_error();
    return make_error(ErrorCode::invalid_argument,
                      "AES-GCM: authentication failed (wrong key, tampered data or AAD)");
  }
  return out;
}

Status prg_apply(const Key32& seed, std::span<std::uint32_t> out, PrgOp op) {
  // 16 KiB blocks: the keystream block stays in L1 while it is added into `out`.
  constexpr std::size_t kBlockWords = 4096;
  alignas(64) static const std::uint8_t zeros[kBlockWords * 4] = {};
  alignas(64) std::uint32_t block[kBlockWords];
  static const std::uint8_t iv[16] = {};
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!ctx || EVP_EncryptInit_ex2(ctx.get(), aes_256_ctr(), seed.data(), iv, nullptr) != 1)
    return openssl_error("AES-CTR init failed");
  std::size_t done = 0;
  while (done < out.size()) {
    const std::size_t n = std::min(kBlockWords, out.size() - done);
    std::uint32_t* dst = op == PrgOp::assign ? out.data() + done : block;
    int len = 0;
    if (EVP_EncryptUpdate(ctx.get(), reinterpret_cast<std::uint8_t*>(dst), &len, zeros,
                          static_cast<int>(n * 4)) != 1)
      return openssl_error("AES-CTR keystream failed");
    std::uint32_t* o = out.data() + done;
    if (op == PrgOp::add) {
      for (std::size_t i = 0; i < n; ++i) o[i] += block[i];
    } else if (op == PrgOp::subtract) {
      for (std::size_t i = 0; i < n; ++i) o[i] -= block[i];
    }
    done += n;
  }
  OPENSSL_cleanse(block, sizeof(block));
  return Status::success();
}

}  // namespace federa::crypto
