// The one way federa owns OpenSSL objects: a std::unique_ptr whose deleter is the object's own
// free function, so every early return releases what was allocated and no call site writes a
// deleter or a manual free.
//
//   ossl::X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
//   if (!cert) return ossl::error(ErrorCode::invalid_argument, "not a PEM certificate");
//   unsigned char* utf8 = nullptr;
//   int n = ASN1_STRING_to_UTF8(&utf8, data);
//   ossl::MemoryPtr<unsigned char> owned(utf8);          // OPENSSL_malloc'd: OPENSSL_free
//
// A type missing below is one line: `using FooPtr = Ptr<FOO, FOO_free>;`. Objects OpenSSL hands
// out as "get0" stay owned by their parent and are never wrapped.
#pragma once

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>

#include "common/result.hpp"

namespace federa::ossl {

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const noexcept {
    Free(p);
  }
};

template <typename T, auto Free>
using Ptr = std::unique_ptr<T, Deleter<Free>>;

// OPENSSL_free and sk_X509_pop_free are macros; these give them an address.
inline void free_memory(void* p) noexcept { OPENSSL_free(p); }
inline void free_x509_stack(STACK_OF(X509) * s) noexcept { sk_X509_pop_free(s, X509_free); }
inline void free_object_stack(STACK_OF(ASN1_OBJECT) * s) noexcept {
  sk_ASN1_OBJECT_pop_free(s, ASN1_OBJECT_free);
}

using X509Ptr = Ptr<X509, X509_free>;
using X509StackPtr = Ptr<STACK_OF(X509), free_x509_stack>;
using X509StorePtr = Ptr<X509_STORE, X509_STORE_free>;
using X509StoreCtxPtr = Ptr<X509_STORE_CTX, X509_STORE_CTX_free>;
using ExtensionPtr = Ptr<X509_EXTENSION, X509_EXTENSION_free>;
using GeneralNamesPtr = Ptr<GENERAL_NAMES, GENERAL_NAMES_free>;
using GeneralNamePtr = Ptr<GENERAL_NAME, GENERAL_NAME_free>;
using ExtendedKeyUsagePtr = Ptr<STACK_OF(ASN1_OBJECT), free_object_stack>;
using PkeyPtr = Ptr<EVP_PKEY, EVP_PKEY_free>;
using PkeyCtxPtr = Ptr<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;
using CipherPtr = Ptr<EVP_CIPHER, EVP_CIPHER_free>;
using CipherCtxPtr = Ptr<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>;
using KdfPtr = Ptr<EVP_KDF, EVP_KDF_free>;
using KdfCtxPtr = Ptr<EVP_KDF_CTX, EVP_KDF_CTX_free>;
using BioPtr = Ptr<BIO, BIO_free_all>;
using BignumPtr = Ptr<BIGNUM, BN_free>;
using ObjectPtr = Ptr<ASN1_OBJECT, ASN1_OBJECT_free>;
using Asn1IntegerPtr = Ptr<ASN1_INTEGER, ASN1_INTEGER_free>;
using Asn1TimePtr = Ptr<ASN1_TIME, ASN1_TIME_free>;
using Ia5StringPtr = Ptr<ASN1_IA5STRING, ASN1_IA5STRING_free>;
using OctetStringPtr = Ptr<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>;
using Utf8StringPtr = Ptr<ASN1_UTF8STRING, ASN1_UTF8STRING_free>;
template <typename T>
using MemoryPtr = Ptr<T, free_memory>;  // buffers OpenSSL allocated for us (OPENSSL_malloc)

// Empties this thread's OpenSSL error queue and returns its entries joined by "; ". OpenSSL
// keeps that queue per thread; a failed call left unread would surface in an unrelated later one.
std::string drain_errors();

// An Error whose message is `what`, followed by the drained OpenSSL detail in brackets when the
// queue held any: the one place a failed OpenSSL call becomes an error value.
Error error(ErrorCode code, std::string what);

}  // namespace federa::ossl
