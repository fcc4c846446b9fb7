// Building, encoding and reading X.509 objects for the PKI (internal to common/pki*.cpp).
//
//   auto ca = load_ca(dir);                                  // DIR/ca.pem + DIR/ca.key, checked
//   CertSpec spec{name, kClientValidityDays, false, "clientAuth"};
//   auto kit = make_kit(spec, *ca);                          // new key + signed certificate, PEM
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "common/ossl.hpp"
#include "common/result.hpp"

namespace federa::pki_detail {

inline constexpr const char* kCaCommonName = "federa federation CA";
inline constexpr const char* kCoordinatorCommonName = "coordinator";

// federa's private OIDs sit under a UUID arc, 2.25.<UUID as an integer> (ITU-T X.667: anyone
// may mint one, no registry needed). .1 is the admin key purpose (an extended key usage), .2 the
// admin role extension (a DER UTF8String, "viewer" or "operator").
inline constexpr const char* kAdminPurposeOid = "2.25.118243678027174591455259721420516730177.1";
inline constexpr const char* kAdminRoleOid = "2.25.118243678027174591455259721420516730177.2";

struct CertSpec {
  std::string common_name;
  int days = 0;
  bool is_ca = false;
  const char* extended_key_usage = nullptr;  // "serverAuth", "clientAuth" or kAdminPurposeOid
  std::vector<std::string> hosts;            // SANs
  std::string admin_role;                    // non-empty: add the role extension
};

Result<ossl::PkeyPtr> generate_key();

// Builds and signs a certificate for `key`. With issuer == nullptr it is self-signed by `key`.
Result<ossl::X509Ptr> make_certificate(const CertSpec& spec, EVP_PKEY* key, X509* issuer,
                                       EVP_PKEY* issuer_key);

// invalid_argument naming the first host that is neither an IP address nor a DNS name; checked
// before anything is written.
Status check_hosts(const std::vector<std::string>& hosts);

Result<std::string> cert_to_pem(X509* cert);
Result<std::string> key_to_pem(EVP_PKEY* key);

// `what` names the file in errors ("CA certificate", "certificate file").
Result<ossl::X509StackPtr> load_certificates(const std::filesystem::path& path,
                                             const std::string& what);
Result<ossl::X509Ptr> load_certificate(const std::filesystem::path& path, const std::string& what);
Result<ossl::PkeyPtr> load_private_key(const std::filesystem::path& path, const std::string& what);

struct LoadedCa {
  ossl::X509Ptr cert;
  ossl::PkeyPtr key;
};
// DIR/ca.pem and DIR/ca.key, checked to match and to be a CA.
Result<LoadedCa> load_ca(const std::filesystem::path& dir);

// A kit's three files as PEM text: a new key, its certificate per `spec` signed by `ca`, and
// the CA certificate.
struct KitPem {
  std::string key;
  std::string cert;
  std::string ca;
};
Result<KitPem> make_kit(const CertSpec& spec, const LoadedCa& ca);

std::string time_string(const ASN1_TIME* t);  // "2026-11-23 09:00:00 UTC", "?" when unreadable
Result<std::chrono::system_clock::time_point> to_time_point(const ASN1_TIME* t);

bool has_admin_purpose(const X509* cert);
// The role text in the admin role extension; not_found without one.
Result<std::string> admin_role_text(const X509* cert);

}  // namespace federa::pki_detail
