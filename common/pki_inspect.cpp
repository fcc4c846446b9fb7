// Reading: verification, what a certificate says, expiry, key/certificate pairs, the listing.
#include <arpa/inet.h>
#include <openssl/err.h>

#include <algorithm>

#include "common/pki.hpp"
#include "common/pki_files.hpp"
#include "common/pki_x509.hpp"
#include "common/tls.hpp"

namespace federa {

using namespace pki_detail;
namespace fs = std::filesystem;

namespace {

std::string issuer_common_name(const X509* c) {
  const X509_NAME* issuer = X509_get_issuer_name(c);
  const int idx = X509_NAME_get_index_by_NID(issuer, NID_commonName, -1);
  if (idx < 0) return {};
  unsigned char* utf8 = nullptr;
  const int len =
      ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(issuer, idx)));
  ossl::MemoryPtr<unsigned char> owned(utf8);
  if (len < 0) return {};
  return std::string(reinterpret_cast<const char*>(utf8), static_cast<size_t>(len));
}

std::string serial_hex(const X509* c) {
  ossl::BignumPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(c), nullptr));
  if (!bn) return {};
  ossl::MemoryPtr<char> hex(BN_bn2hex(bn.get()));
  return hex ? std::string(hex.get()) : std::string();
}

void read_subject_alt_names(const X509* c, CertificateInfo& info) {
  ossl::GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(c, NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type == GEN_DNS) {
      const ASN1_STRING* s = gn->d.dNSName;
      info.dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                  static_cast<size_t>(ASN1_STRING_length(s)));
    } else if (gn->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = gn->d.iPAddress;
      char buf[INET6_ADDRSTRLEN] = {};
      const int len = ASN1_STRING_length(ip);
      const int family = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;
      if (family != 0 && inet_ntop(family, ASN1_STRING_get0_data(ip), buf, sizeof buf))
        info.ip_addresses.emplace_back(buf);
    }
  }
}

Result<CertificateInfo> describe(X509* c) {
  CertificateInfo info;
  info.common_name = certificate_common_name(c).value_or("");
  info.issuer_common_name = issuer_common_name(c);
  info.serial_hex = serial_hex(c);
  info.not_before = time_string(X509_get0_notBefore(c));
  info.not_after = time_string(X509_get0_notAfter(c));
  auto expiry = to_time_point(X509_get0_notAfter(c));
  if (!expiry) return expiry.error();
  info.expiry = *expiry;
  info.kind = certificate_kind(c);
  if (info.kind == CertificateKind::admin)
    if (auto role = admin_role_text(c); role) info.admin_role = *role;
  info.is_ca = X509_check_ca(c) != 0;
  if (X509_get_extension_flags(c) & EXFLAG_XKUSAGE) {
    const uint32_t xku = X509_get_extended_key_usage(c);
    info.server_auth = (xku & XKU_SSL_SERVER) != 0;
    info.client_auth = (xku & XKU_SSL_CLIENT) != 0;
  }
  read_subject_alt_names(c, info);
  return info;
}

// One entry of the listing; a certificate that cannot be read or is not from `ca` keeps its
// place with the reason.
PkiEntry list_entry(const fs::path& cert_pem, std::string name, const X509* ca,
                    std::chrono::system_clock::time_point now) {
  PkiEntry e;
  e.cert_pem = cert_pem;
  e.name = std::move(name);
  auto cert = load_certificate(cert_pem, "certificate");
  if (!cert) {
    e.problem = cert.error().message;
    return e;
  }
  auto info = describe(cert->get());
  if (!info) {
    e.problem = info.error().message;
    return e;
  }
  e.kind = info->kind;
  e.admin_role = info->admin_role;
  e.serial_hex = info->serial_hex;
  e.not_after = info->not_after;
  e.days_left = days_until(info->expiry, now);
  EVP_PKEY* ca_key = X509_get0_pubkey(ca);
  if (ca_key == nullptr || X509_verify(cert->get(), ca_key) != 1) {
    ERR_clear_error();
    e.problem = "not signed by this folder's CA";
  } else if (e.days_left < 0) {
    e.problem = "expired";
  }
  return e;
}

// The kits under DIR/SUBDIR, by folder name; staging folders (".NAME.tmp-…") are skipped.
void list_kits(const fs::path& dir, const char* subdir, const X509* ca,
               std::chrono::system_clock::time_point now, std::vector<PkiEntry>& out) {
  std::error_code ec;
  std::vector<std::string> names;
  for (const auto& d : fs::directory_iterator(dir / subdir, ec))
    if (d.is_directory(ec) && validate_client_name(d.path().filename().string()).ok())
      names.push_back(d.path().filename().string());
  std::sort(names.begin(), names.end());
  for (const std::string& name : names)
    out.push_back(list_entry(dir / subdir / name / "cert.pem", name, ca, now));
}

}  // namespace

Result<std::string> verify_certificate(const fs::path& ca_pem, const fs::path& cert_pem) {
  ERR_clear_error();
  auto anchors = load_certificates(ca_pem, "CA certificate file");
  if (!anchors) return anchors.error();
  auto chain = load_certificates(cert_pem, "certificate file");
  if (!chain) return chain.error();
  ossl::X509Ptr leaf(sk_X509_shift(chain->get()));

  ossl::X509StorePtr store(X509_STORE_new());
  if (!store) return ossl::error(ErrorCode::internal, "out of memory");
  for (int i = 0; i < sk_X509_num(anchors->get()); ++i)
    if (X509_STORE_add_cert(store.get(), sk_X509_value(anchors->get(), i)) != 1)
      return ossl::error(ErrorCode::invalid_argument,
                         "cannot use " + quoted(ca_pem) + " as a trust anchor");

  ossl::X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), chain->get()) != 1)
    return ossl::error(ErrorCode::internal, "cannot set up certificate verification");
  if (X509_verify_cert(ctx.get()) != 1) {
    const int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    std::string reason = X509_verify_cert_error_string(err);
    if (err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
        err == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT || err == X509_V_ERR_CERT_SIGNATURE_FAILURE)
      reason = "it is not signed by the CA in " + quoted(ca_pem) + " (" + reason + ")";
    return make_error(ErrorCode::failed_precondition,
                      quoted(cert_pem) + " does not verify: " + reason);
  }
  std::optional<std::string> cn = certificate_common_name(leaf.get());
  if (!cn)
    return make_error(ErrorCode::invalid_argument,
                      quoted(cert_pem) + " verifies but has no single, valid common name");
  return *cn;
}

CertificateKind certificate_kind(const X509* cert) {
  if (cert == nullptr) return CertificateKind::other;
  X509* c = const_cast<X509*>(cert);  // OpenSSL caches the decoded extensions in the object
  if (X509_check_ca(c) != 0) return CertificateKind::ca;
  if (has_admin_purpose(cert)) return CertificateKind::admin;
  if ((X509_get_extension_flags(c) & EXFLAG_XKUSAGE) == 0) return CertificateKind::other;
  const uint32_t xku = X509_get_extended_key_usage(c);
  const bool server = (xku & XKU_SSL_SERVER) != 0, client = (xku & XKU_SSL_CLIENT) != 0;
  if (server && !client) return CertificateKind::coordinator;
  if (client && !server) return CertificateKind::client;
  return CertificateKind::other;
}

std::string_view certificate_kind_name(CertificateKind kind) {
  switch (kind) {
    case CertificateKind::ca:
      return "ca";
    case CertificateKind::coordinator:
      return "coordinator";
    case CertificateKind::client:
      return "client";
    case CertificateKind::admin:
      return "admin";
    case CertificateKind::other:
      break;
  }
  return "other";
}

Result<CertificateInfo> read_certificate_info(const fs::path& cert_pem) {
  ERR_clear_error();
  auto cert = load_certificate(cert_pem, "certificate file");
  if (!cert) return cert.error();
  auto info = describe(cert->get());
  ERR_clear_error();
  return info;
}

Result<std::chrono::system_clock::time_point> certificate_expiry(const X509* cert) {
  if (cert == nullptr) return make_error(ErrorCode::invalid_argument, "no certificate");
  return to_time_point(X509_get0_notAfter(cert));
}

Result<std::chrono::system_clock::time_point> read_certificate_expiry(const fs::path& cert_pem) {
  ERR_clear_error();
  auto cert = load_certificate(cert_pem, "certificate file");
  if (!cert) return cert.error();
  return certificate_expiry(cert->get());
}

long days_until(std::chrono::system_clock::time_point expiry,
                std::chrono::system_clock::time_point now) {
  using Days = std::chrono::duration<long, std::ratio<86400>>;
  return std::chrono::floor<Days>(expiry - now).count();
}

Status check_key_matches_certificate(const fs::path& key_pem, const fs::path& cert_pem) {
  ERR_clear_error();
  auto cert = load_certificate(cert_pem, "certificate file");
  if (!cert) return cert.error();
  auto key = load_private_key(key_pem, "private key file");
  if (!key) return key.error();
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    ERR_clear_error();
    return make_error(ErrorCode::failed_precondition,
                      "private key " + quoted(key_pem) + " does not match certificate " +
                          quoted(cert_pem) + " (they come from different kits)");
  }
  return Status::success();
}

Result<std::vector<PkiEntry>> list_pki(const fs::path& dir,
                                       std::chrono::system_clock::time_point now) {
  ERR_clear_error();
  const fs::path ca_pem = dir / "ca.pem";
  auto ca = load_certificate(ca_pem, "CA certificate");
  if (!ca) return ca.error();
  std::vector<PkiEntry> out;
  out.push_back(
      list_entry(ca_pem, certificate_common_name(ca->get()).value_or(""), ca->get(), now));
  std::error_code ec;
  if (fs::exists(dir / "coordinator" / "cert.pem", ec))
    out.push_back(
        list_entry(dir / "coordinator" / "cert.pem", kCoordinatorCommonName, ca->get(), now));
  list_kits(dir, "clients", ca->get(), now, out);
  list_kits(dir, "admins", ca->get(), now, out);
  return out;
}

}  // namespace federa
