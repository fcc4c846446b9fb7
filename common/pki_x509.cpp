#include "common/pki_x509.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <string_view>

#include "common/pki_files.hpp"

namespace federa::pki_detail {

namespace fs = std::filesystem;

namespace {

// Sites' clocks drift; a certificate that is "not yet valid" for a few minutes after issuing is
// a confusing first experience, so validity starts an hour back.
constexpr long kBackdateSeconds = 3600;

Error internal(const std::string& what) { return ossl::error(ErrorCode::internal, what); }

// 127 random bits (the top bit is cleared so the DER INTEGER stays positive): unique without a
// serial database, and unpredictable.
Status set_random_serial(X509* cert) {
  unsigned char buf[16];
  do {
    if (RAND_bytes(buf, sizeof buf) != 1) return internal("cannot draw a random serial number");
    buf[0] &= 0x7f;
  } while (std::all_of(std::begin(buf), std::end(buf), [](unsigned char c) { return c == 0; }));
  ossl::BignumPtr bn(BN_bin2bn(buf, sizeof buf, nullptr));
  if (!bn) return internal("cannot build a serial number");
  ossl::Asn1IntegerPtr serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  if (!serial || X509_set_serialNumber(cert, serial.get()) != 1)
    return internal("cannot set the serial number");
  return Status::success();
}

Status add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ossl::ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1)
    return internal(std::string("cannot add extension ") + OBJ_nid2sn(nid) + "=" + value);
  return Status::success();
}

// The role as a non-critical extension holding a DER UTF8String. Non-critical: a critical
// extension OpenSSL does not know would fail verification everywhere, the admin listener too.
Status add_role_extension(X509* cert, const std::string& role) {
  ossl::ObjectPtr oid(OBJ_txt2obj(kAdminRoleOid, 1));
  ossl::Utf8StringPtr text(ASN1_UTF8STRING_new());
  if (!oid || !text || ASN1_STRING_set(text.get(), role.data(), static_cast<int>(role.size())) != 1)
    return internal("cannot encode the admin role");
  unsigned char* der = nullptr;
  int der_len = i2d_ASN1_UTF8STRING(text.get(), &der);
  ossl::MemoryPtr<unsigned char> der_owned(der);
  ossl::OctetStringPtr value(ASN1_OCTET_STRING_new());
  if (der_len <= 0 || !value || ASN1_OCTET_STRING_set(value.get(), der, der_len) != 1)
    return internal("cannot encode the admin role");
  ossl::ExtensionPtr ext(X509_EXTENSION_create_by_OBJ(nullptr, oid.get(), 0, value.get()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1)
    return internal("cannot add the admin role extension");
  return Status::success();
}

bool parse_ip(const std::string& host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// RFC 1123 host names: dot-separated labels of letters, digits and '-', no leading/trailing '-'.
bool valid_dns_name(const std::string& host) {
  if (host.empty() || host.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t end = host.find('.', start);
    std::string_view label(host.data() + start,
                           (end == std::string::npos ? host.size() : end) - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
      return false;
    for (char c : label)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-')) return false;
    if (end == std::string::npos)
      // An all-digit last label is a mistyped IP address ("10.0.0.256"), not a name.
      return !std::all_of(label.begin(), label.end(),
                          [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    start = end + 1;
  }
}

std::string strip_brackets(const std::string& host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    return host.substr(1, host.size() - 2);
  return host;
}

// One SAN entry, built as a GENERAL_NAME rather than from a "DNS:a,IP:b" config string, so a
// host name can never inject another entry.
Result<ossl::GeneralNamePtr> make_general_name(const std::string& host_in) {
  const std::string host = strip_brackets(host_in);
  ossl::GeneralNamePtr gn(GENERAL_NAME_new());
  if (!gn) return internal("out of memory");
  if (parse_ip(host)) {
    ossl::OctetStringPtr ip(a2i_IPADDRESS(host.c_str()));
    if (!ip) return internal("cannot encode IP address '" + host + "'");
    GENERAL_NAME_set0_value(gn.get(), GEN_IPADD, ip.release());
  } else if (valid_dns_name(host)) {
    ossl::Ia5StringPtr dns(ASN1_IA5STRING_new());
    if (!dns || ASN1_STRING_set(dns.get(), host.data(), static_cast<int>(host.size())) != 1)
      return internal("cannot encode DNS name '" + host + "'");
    GENERAL_NAME_set0_value(gn.get(), GEN_DNS, dns.release());
  } else {
    return make_error(
        ErrorCode::invalid_argument,
        "coordinator host '" + host_in + "' is neither an IP address nor a valid DNS name");
  }
  return gn;
}

Status add_subject_alt_names(X509* cert, const std::vector<std::string>& hosts) {
  ossl::GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  if (!names) return internal("out of memory");
  for (const std::string& host : hosts) {
    auto gn = make_general_name(host);
    if (!gn) return gn.error();
    if (sk_GENERAL_NAME_push(names.get(), gn->get()) <= 0) return internal("out of memory");
    static_cast<void>(gn->release());  // the stack owns it now
  }
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) != 1)
    return internal("cannot add the subjectAltName extension");
  return Status::success();
}

Status set_validity(X509* c, int days, X509* issuer) {
  if (!X509_gmtime_adj(X509_getm_notBefore(c), -kBackdateSeconds) ||
      !X509_time_adj_ex(X509_getm_notAfter(c), days, 0, nullptr))
    return internal("cannot set the validity period");
  // A certificate cannot be trusted past its CA's own expiry, so do not claim it.
  if (issuer != nullptr && ASN1_TIME_compare(X509_get0_notAfter(c), X509_get0_notAfter(issuer)) > 0)
    if (X509_set1_notAfter(c, X509_get0_notAfter(issuer)) != 1)
      return internal("cannot set the validity period");
  return Status::success();
}

Status set_names(X509* c, const CertSpec& spec, EVP_PKEY* key, X509* issuer) {
  X509_NAME* subject = X509_get_subject_name(c);
  if (X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(spec.common_name.c_str()),
                                 -1, -1, 0) != 1)
    return internal("cannot set the subject name");
  if (X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : subject) != 1)
    return internal("cannot set the issuer name");
  if (X509_set_pubkey(c, key) != 1) return internal("cannot set the public key");
  return Status::success();
}

Status add_extensions(X509* c, const CertSpec& spec, X509* issuer) {
  X509* signer = issuer ? issuer : c;
  const char* constraints = spec.is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE";
  const char* usage = spec.is_ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature";
  if (Status s = add_extension(c, signer, NID_basic_constraints, constraints); !s) return s;
  if (Status s = add_extension(c, signer, NID_key_usage, usage); !s) return s;
  if (spec.extended_key_usage != nullptr)
    if (Status s = add_extension(c, signer, NID_ext_key_usage, spec.extended_key_usage); !s)
      return s;
  if (Status s = add_extension(c, signer, NID_subject_key_identifier, "hash"); !s) return s;
  if (issuer != nullptr)
    if (Status s = add_extension(c, signer, NID_authority_key_identifier, "keyid:always"); !s)
      return s;
  if (!spec.hosts.empty())
    if (Status s = add_subject_alt_names(c, spec.hosts); !s) return s;
  if (!spec.admin_role.empty())
    if (Status s = add_role_extension(c, spec.admin_role); !s) return s;
  return Status::success();
}

Result<std::string> bio_text(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  if (n < 0 || (n > 0 && data == nullptr)) return internal("cannot read a memory BIO");
  return std::string(data, static_cast<size_t>(n));
}

// Never prompt on the terminal for a pass phrase: an encrypted key is an error here.
int no_passphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) { return 0; }

Result<ossl::BioPtr> open_for_reading(const fs::path& path, const std::string& what) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    return make_error(ErrorCode::not_found, what + " " + quoted(path) + " does not exist");
  if (fs::is_directory(path, ec))
    return make_error(ErrorCode::invalid_argument, what + " " + quoted(path) + " is a folder");
  ossl::BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) {
    int err = errno;
    ERR_clear_error();
    return make_error(err == EACCES ? ErrorCode::permission_denied : ErrorCode::unavailable,
                      "cannot read " + what + " " + quoted(path) + ": " + std::strerror(err));
  }
  return bio;
}

}  // namespace

Result<ossl::PkeyPtr> generate_key() {
  ossl::PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return internal("cannot generate an EC P-256 key");
  return key;
}

Result<ossl::X509Ptr> make_certificate(const CertSpec& spec, EVP_PKEY* key, X509* issuer,
                                       EVP_PKEY* issuer_key) {
  ossl::X509Ptr cert(X509_new());
  if (!cert) return internal("out of memory");
  X509* c = cert.get();
  if (X509_set_version(c, X509_VERSION_3) != 1) return internal("cannot set version");
  if (Status s = set_random_serial(c); !s) return s.error();
  if (Status s = set_validity(c, spec.days, issuer); !s) return s.error();
  if (Status s = set_names(c, spec, key, issuer); !s) return s.error();
  if (Status s = add_extensions(c, spec, issuer); !s) return s.error();
  if (X509_sign(c, issuer_key ? issuer_key : key, EVP_sha256()) <= 0)
    return internal("cannot sign the certificate for '" + spec.common_name + "'");
  return cert;
}

Status check_hosts(const std::vector<std::string>& hosts) {
  for (const std::string& host : hosts)
    if (auto gn = make_general_name(host); !gn) return gn.error();
  return Status::success();
}

Result<std::string> cert_to_pem(X509* cert) {
  ossl::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1)
    return internal("cannot encode a certificate");
  return bio_text(bio.get());
}

// Unencrypted PKCS#8: the services read their keys unattended; the file mode protects them.
Result<std::string> key_to_pem(EVP_PKEY* key) {
  ossl::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return internal("cannot encode a private key");
  return bio_text(bio.get());
}

Result<ossl::X509StackPtr> load_certificates(const fs::path& path, const std::string& what) {
  auto bio = open_for_reading(path, what);
  if (!bio) return bio.error();
  ossl::X509StackPtr certs(sk_X509_new_null());
  if (!certs) return internal("out of memory");
  while (X509* c = PEM_read_bio_X509(bio->get(), nullptr, no_passphrase, nullptr)) {
    if (sk_X509_push(certs.get(), c) <= 0) {
      X509_free(c);
      return internal("out of memory");
    }
  }
  // The loop ends on "no start line" at end of file; that one is expected.
  unsigned long last = ERR_peek_last_error();
  if (sk_X509_num(certs.get()) > 0 && ERR_GET_REASON(last) == PEM_R_NO_START_LINE)
    ERR_clear_error();
  if (sk_X509_num(certs.get()) == 0) {
    ERR_clear_error();
    return make_error(ErrorCode::invalid_argument,
                      what + " " + quoted(path) + " holds no PEM certificate");
  }
  if (ERR_peek_error() != 0)
    return ossl::error(ErrorCode::invalid_argument, "cannot parse " + what + " " + quoted(path));
  return certs;
}

Result<ossl::X509Ptr> load_certificate(const fs::path& path, const std::string& what) {
  auto certs = load_certificates(path, what);
  if (!certs) return certs.error();
  return ossl::X509Ptr(sk_X509_shift(certs->get()));
}

Result<ossl::PkeyPtr> load_private_key(const fs::path& path, const std::string& what) {
  auto bio = open_for_reading(path, what);
  if (!bio) return bio.error();
  ossl::PkeyPtr key(PEM_read_bio_PrivateKey(bio->get(), nullptr, no_passphrase, nullptr));
  if (!key)
    return ossl::error(ErrorCode::invalid_argument,
                       what + " " + quoted(path) + " is not an unencrypted PEM private key");
  return key;
}

Result<LoadedCa> load_ca(const fs::path& dir) {
  const fs::path ca_pem = dir / "ca.pem", ca_key = dir / "ca.key";
  for (const fs::path& p : {ca_pem, ca_key}) {
    std::error_code ec;
    if (!fs::exists(p, ec))
      return make_error(ErrorCode::not_found, "no federation CA in " + quoted(dir) + ": " +
                                                  quoted(p) +
                                                  " does not exist (run `federa-pki init --dir " +
                                                  dir.string() + "` first)");
  }
  auto cert = load_certificate(ca_pem, "CA certificate");
  if (!cert) return cert.error();
  auto key = load_private_key(ca_key, "CA private key");
  if (!key) return key.error();
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    ERR_clear_error();
    return make_error(ErrorCode::failed_precondition,
                      "CA private key " + quoted(ca_key) + " does not match " + quoted(ca_pem));
  }
  if (X509_check_ca(cert->get()) == 0)
    return make_error(ErrorCode::failed_precondition, quoted(ca_pem) + " is not a CA certificate");
  return LoadedCa{std::move(*cert), std::move(*key)};
}

Result<KitPem> make_kit(const CertSpec& spec, const LoadedCa& ca) {
  auto key = generate_key();
  if (!key) return key.error();
  auto cert = make_certificate(spec, key->get(), ca.cert.get(), ca.key.get());
  if (!cert) return cert.error();
  auto key_text = key_to_pem(key->get());
  if (!key_text) return key_text.error();
  auto cert_text = cert_to_pem(cert->get());
  if (!cert_text) return cert_text.error();
  auto ca_text = cert_to_pem(ca.cert.get());
  if (!ca_text) return ca_text.error();
  return KitPem{std::move(*key_text), std::move(*cert_text), std::move(*ca_text)};
}

std::string time_string(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return "?";
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

Result<std::chrono::system_clock::time_point> to_time_point(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1)
    return ossl::error(ErrorCode::invalid_argument, "unreadable certificate time");
  const time_t seconds = ::timegm(&tm);
  return std::chrono::system_clock::from_time_t(seconds);
}

bool has_admin_purpose(const X509* cert) {
  ossl::ObjectPtr admin(OBJ_txt2obj(kAdminPurposeOid, 1));
  ossl::ExtendedKeyUsagePtr usages(static_cast<STACK_OF(ASN1_OBJECT)*>(
      X509_get_ext_d2i(cert, NID_ext_key_usage, nullptr, nullptr)));
  if (!admin || !usages) return false;
  for (int i = 0; i < sk_ASN1_OBJECT_num(usages.get()); ++i)
    if (OBJ_cmp(sk_ASN1_OBJECT_value(usages.get(), i), admin.get()) == 0) return true;
  return false;
}

Result<std::string> admin_role_text(const X509* cert) {
  ossl::ObjectPtr oid(OBJ_txt2obj(kAdminRoleOid, 1));
  if (!oid) return internal("cannot build the admin role OID");
  const int idx = X509_get_ext_by_OBJ(cert, oid.get(), -1);
  if (idx < 0) return make_error(ErrorCode::not_found, "the certificate has no admin role");
  if (X509_get_ext_by_OBJ(cert, oid.get(), idx) >= 0)
    return make_error(ErrorCode::invalid_argument, "the certificate has two admin roles");
  const ASN1_OCTET_STRING* value = X509_EXTENSION_get_data(X509_get_ext(cert, idx));
  const unsigned char* p = ASN1_STRING_get0_data(value);
  const long len = ASN1_STRING_length(value);
  ossl::Utf8StringPtr text(d2i_ASN1_UTF8STRING(nullptr, &p, len));
  if (!text || p != ASN1_STRING_get0_data(value) + len) {
    ERR_clear_error();
    return make_error(ErrorCode::invalid_argument, "the certificate's admin role is malformed");
  }
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(text.get())),
                     static_cast<size_t>(ASN1_STRING_length(text.get())));
}

}  // namespace federa::pki_detail
