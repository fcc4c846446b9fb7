// The federation's PKI: one CA held by the central team, a coordinator certificate, and one
// certificate per member agency (its "startup kit"). All keys are EC P-256; private keys are
// created with mode 0600 and nothing is ever overwritten.
//
//   Result<std::vector<std::filesystem::path>> w = init_pki("pki", {"fl.example.org", "10.0.0.5"});
//   if (!w) return w.error();             // e.g. "pki/ca.key already exists ..."
//   auto kit = issue_client("pki", "hospital-a");   // pki/clients/hospital-a/{ca,cert,key}.pem
//   Result<std::string> cn = verify_certificate("pki/ca.pem", "pki/clients/hospital-a/cert.pem");
//
// Layout written under DIR:
//   ca.pem, ca.key                         the federation CA (ca.key never leaves the central team)
//   coordinator/{ca.pem,cert.pem,key.pem}  what federa-coordinator --pki DIR reads
//   clients/NAME/{ca.pem,cert.pem,key.pem} what federa-client --kit DIR/clients/NAME reads
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace federa {

// Validity periods, in days.
inline constexpr int ca_validity_days = 3650;
inline constexpr int coordinator_validity_days = 730;
inline constexpr int client_validity_days = 365;

// Creates the CA and the coordinator's certificate (serverAuth, CN "coordinator"). Each host
// becomes an IP SAN when it parses as an IPv4/IPv6 address, a DNS SAN otherwise; with no hosts,
// the SANs are 127.0.0.1 and localhost. Refuses when DIR/ca.pem or DIR/ca.key exists, or a host
// is not a valid IP address or DNS name. On failure, files this call created are removed.
// Returns the files written.
Result<std::vector<std::filesystem::path>> init_pki(
    const std::filesystem::path& dir, const std::vector<std::string>& coordinator_hosts);

// Issues a new coordinator certificate (new key, the given SANs, defaults as in init_pki) from the
// existing CA in DIR: for when it nears expiry or the coordinator's names change. Refuses when
// DIR/coordinator exists; the operator moves the old one away first. Returns the files written.
Result<std::vector<std::filesystem::path>> issue_coordinator(
    const std::filesystem::path& dir, const std::vector<std::string>& coordinator_hosts);

// Issues a client's kit DIR/clients/NAME/{ca.pem,cert.pem,key.pem} (clientAuth, CN = NAME),
// signed by DIR/ca.pem + DIR/ca.key. Refuses when that folder exists or NAME is invalid (see
// validate_client_name). On failure the partly written folder is removed. Returns the files.
Result<std::vector<std::filesystem::path>> issue_client(const std::filesystem::path& dir,
                                                        const std::string& name);

// NAME is a member's identity (its certificate CN, the entry in the coordinator's member list)
// and a folder name: 1-64 chars of [A-Za-z0-9._-], not starting with '.'.
Status validate_client_name(const std::string& name);

// Verifies the first certificate in `cert_pem` against the CA certificate(s) in `ca_pem` (chain,
// signatures, validity dates) and returns its subject CN. Any purpose is accepted, so this checks
// client and coordinator certificates alike.
Result<std::string> verify_certificate(const std::filesystem::path& ca_pem,
                                       const std::filesystem::path& cert_pem);

// What a certificate says, for `federa-pki verify` and tests.
struct certificate_info {
  std::string common_name;
  std::string issuer_common_name;
  std::string serial_hex;
  std::string not_before;  // "2026-11-23 09:00:00 UTC"
  std::string not_after;
  std::vector<std::string> dns_names;     // DNS SANs
  std::vector<std::string> ip_addresses;  // IP SANs, printed ("127.0.0.1", "::1")
  bool is_ca = false;
  bool server_auth = false;  // extendedKeyUsage serverAuth
  bool client_auth = false;  // extendedKeyUsage clientAuth
};
Result<certificate_info> read_certificate_info(const std::filesystem::path& cert_pem);

}  // namespace federa
