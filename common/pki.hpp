// The federation's PKI: one CA held by the central team, a coordinator certificate, one
// certificate per member agency (its "startup kit") and one per administrator. All keys are EC
// P-256; private keys are created with mode 0600 and nothing is overwritten, except a kit that
// `renew_kit` replaces whole.
//
//   Result<std::vector<std::filesystem::path>> w = init_pki("pki", {"fl.example.org", "10.0.0.5"});
//   if (!w) return w.error();             // e.g. "pki/ca.key already exists ..."
//   auto kit = issue_client("pki", "hospital-a");   // pki/clients/hospital-a/{ca,cert,key}.pem
//   auto admin = issue_admin("pki", "alice", AdminRole::operate);   // pki/admins/alice/...
//   auto renewed = renew_kit("pki", KitKind::client, "hospital-a");   // same name, new key
//   Result<std::string> cn = verify_certificate("pki/ca.pem", "pki/clients/hospital-a/cert.pem");
//   auto expiry = read_certificate_expiry("pki/clients/hospital-a/cert.pem");
//   if (expiry && days_until(*expiry) < 30) warn(...);
//
// Layout written under DIR:
//   ca.pem, ca.key                         the federation CA (ca.key never leaves the central team)
//   coordinator/{ca.pem,cert.pem,key.pem}  what federa-coordinator --pki DIR reads
//   clients/NAME/{ca.pem,cert.pem,key.pem} what federa-client --kit DIR/clients/NAME reads
//   admins/NAME/{ca.pem,cert.pem,key.pem}  an administrator's kit for the admin listener
//   admin-tokens                           hashed bearer tokens (common/pki_admin.hpp)
#pragma once

#include <openssl/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "common/pki_admin.hpp"
#include "common/result.hpp"

namespace federa {

// Validity periods, in days.
inline constexpr int kCaValidityDays = 3650;
inline constexpr int kCoordinatorValidityDays = 730;
inline constexpr int kClientValidityDays = 365;
inline constexpr int kAdminValidityDays = 365;

// Creates the CA and the coordinator's certificate (serverAuth, CN "coordinator"). Each host
// becomes an IP SAN when it parses as an IPv4/IPv6 address, a DNS SAN otherwise; with no hosts,
// the SANs are 127.0.0.1 and localhost. Refuses when DIR/ca.pem or DIR/ca.key exists, or a host
// is not a valid IP address or DNS name. On failure, files this call created are removed.
// Returns the files written.
Result<std::vector<std::filesystem::path>> init_pki(
    const std::filesystem::path& dir, const std::vector<std::string>& coordinator_hosts);

// Issues a new coordinator certificate (new key, the given SANs, defaults as in init_pki) from the
// existing CA in DIR: for when the coordinator's names change. Refuses when DIR/coordinator
// exists; the operator moves the old one away first (renew_kit keeps the names and replaces it).
Result<std::vector<std::filesystem::path>> issue_coordinator(
    const std::filesystem::path& dir, const std::vector<std::string>& coordinator_hosts);

// Issues a client's kit DIR/clients/NAME/{ca.pem,cert.pem,key.pem} (clientAuth, CN = NAME),
// signed by DIR/ca.pem + DIR/ca.key. Refuses when that folder exists or NAME is invalid (see
// validate_client_name). On failure the partly written folder is removed. Returns the files.
Result<std::vector<std::filesystem::path>> issue_client(const std::filesystem::path& dir,
                                                        const std::string& name);

// Issues an administrator's kit DIR/admins/NAME/{ca.pem,cert.pem,key.pem}: CN = NAME, the role
// in its own extension, and the admin key purpose instead of clientAuth, so the federation
// listener refuses it and the admin listener refuses client certificates (pki_admin.hpp).
Result<std::vector<std::filesystem::path>> issue_admin(const std::filesystem::path& dir,
                                                       const std::string& name, AdminRole role);

enum class KitKind { coordinator, client, admin };

// A new key and certificate for an existing kit, from the same CA, with what the old
// certificate says kept: the name, an admin's role, the coordinator's SANs. The new kit is
// written beside the old one and swapped in with one rename, so a reader sees the whole old kit
// or the whole new one. Refuses a kit that does not exist (issue it instead), whose certificate
// names someone else or was signed by another CA. `name` is ignored for the coordinator.
// Not for a stolen key: the old certificate stays valid until it expires (certs/README.md).
Result<std::vector<std::filesystem::path>> renew_kit(const std::filesystem::path& dir, KitKind kind,
                                                     const std::string& name);

// NAME is a member's or an administrator's identity (its certificate CN, the entry in the
// coordinator's member list) and a folder name: 1-64 chars of [A-Za-z0-9._-], not starting with
// '.'.
Status validate_client_name(const std::string& name);

// Verifies the first certificate in `cert_pem` against the CA certificate(s) in `ca_pem` (chain,
// signatures, validity dates) and returns its subject CN. Any purpose is accepted, so this checks
// client, admin and coordinator certificates alike.
Result<std::string> verify_certificate(const std::filesystem::path& ca_pem,
                                       const std::filesystem::path& cert_pem);

// What a certificate is for, from its CA flag and extended key usage.
enum class CertificateKind { ca, coordinator, client, admin, other };
CertificateKind certificate_kind(const X509* cert);
std::string_view certificate_kind_name(CertificateKind kind);  // "ca", "client", ...

// What a certificate says, for `federa-pki verify`/`list` and tests.
struct CertificateInfo {
  std::string common_name;
  std::string issuer_common_name;
  std::string serial_hex;
  std::string not_before;  // "2026-11-23 09:00:00 UTC"
  std::string not_after;
  std::chrono::system_clock::time_point expiry;  // not_after as a time
  std::vector<std::string> dns_names;            // DNS SANs
  std::vector<std::string> ip_addresses;         // IP SANs, printed ("127.0.0.1", "::1")
  CertificateKind kind = CertificateKind::other;
  std::string admin_role;  // "viewer" / "operator" for admin certificates, else empty
  bool is_ca = false;
  bool server_auth = false;  // extendedKeyUsage serverAuth
  bool client_auth = false;  // extendedKeyUsage clientAuth
};
Result<CertificateInfo> read_certificate_info(const std::filesystem::path& cert_pem);

// When a certificate stops being valid (its notAfter): for the coordinator's warnings about its
// own and its members' certificates, and for `doctor`.
Result<std::chrono::system_clock::time_point> certificate_expiry(const X509* cert);
Result<std::chrono::system_clock::time_point> read_certificate_expiry(
    const std::filesystem::path& cert_pem);
// Whole days from `now` until `expiry`, rounded down: 0 on the last day, negative once past.
long days_until(std::chrono::system_clock::time_point expiry,
                std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

// Ok when the private key in `key_pem` belongs to the certificate in `cert_pem`; otherwise
// failed_precondition naming both files (or the error reading one of them).
Status check_key_matches_certificate(const std::filesystem::path& key_pem,
                                     const std::filesystem::path& cert_pem);

// One certificate found under a PKI folder by list_pki.
struct PkiEntry {
  std::filesystem::path cert_pem;
  std::string name;  // the kit's folder name ("coordinator" and the CA's CN for those two)
  CertificateKind kind = CertificateKind::other;
  std::string admin_role;
  std::string serial_hex;
  std::string not_after;
  long days_left = 0;
  std::string problem;  // non-empty when the file is unreadable or not signed by DIR/ca.pem
};

// The CA, the coordinator and every client and admin kit under DIR, in that order (kits by
// name). A kit that cannot be read is listed with its problem rather than failing the listing;
// a DIR without ca.pem is an error.
Result<std::vector<PkiEntry>> list_pki(
    const std::filesystem::path& dir,
    std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

}  // namespace federa
