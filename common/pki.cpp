#include "common/pki.hpp"

#include "common/crypto.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <string_view>

#include "common/tls.hpp"

namespace federa {
namespace {

namespace fs = std::filesystem;

template <auto F>
struct ossl_deleter {
  template <typename T>
  void operator()(T* p) const {
    F(p);
  }
};
using x509_ptr = std::unique_ptr<X509, ossl_deleter<X509_free>>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, ossl_deleter<EVP_PKEY_free>>;
using bio_ptr = std::unique_ptr<BIO, ossl_deleter<BIO_free_all>>;
using bn_ptr = std::unique_ptr<BIGNUM, ossl_deleter<BN_free>>;
using asn1_integer_ptr = std::unique_ptr<ASN1_INTEGER, ossl_deleter<ASN1_INTEGER_free>>;
using extension_ptr = std::unique_ptr<X509_EXTENSION, ossl_deleter<X509_EXTENSION_free>>;
using general_names_ptr = std::unique_ptr<GENERAL_NAMES, ossl_deleter<GENERAL_NAMES_free>>;
using general_name_ptr = std::unique_ptr<GENERAL_NAME, ossl_deleter<GENERAL_NAME_free>>;
using store_ptr = std::unique_ptr<X509_STORE, ossl_deleter<X509_STORE_free>>;
using store_ctx_ptr = std::unique_ptr<X509_STORE_CTX, ossl_deleter<X509_STORE_CTX_free>>;
using ia5_ptr = std::unique_ptr<ASN1_IA5STRING, ossl_deleter<ASN1_IA5STRING_free>>;
using octet_ptr = std::unique_ptr<ASN1_OCTET_STRING, ossl_deleter<ASN1_OCTET_STRING_free>>;

void free_x509_stack(STACK_OF(X509) * s) { sk_X509_pop_free(s, X509_free); }
using x509_stack_ptr = std::unique_ptr<STACK_OF(X509), ossl_deleter<free_x509_stack>>;

struct openssl_free_fn {
  void operator()(char* p) const { OPENSSL_free(p); }
};

constexpr const char* ca_common_name = "federa federation CA";
constexpr const char* coordinator_common_name = "coordinator";
// Sites' clocks drift; a certificate that is "not yet valid" for a few minutes after issuing is
// a confusing first experience, so validity starts an hour back.
constexpr long backdate_seconds = 3600;


Error ossl_error(std::string what) {
  std::string detail = crypto::drain_openssl_errors();
  if (!detail.empty()) what += " (" + detail + ")";
  return make_error(std::move(what));
}

std::string quoted(const fs::path& p) { return "'" + p.string() + "'"; }

// Files and folders this call created, removed again unless the call succeeds, so a failed
// init or issue can simply be retried.
class rollback {
 public:
  rollback() = default;
  rollback(const rollback&) = delete;
  rollback& operator=(const rollback&) = delete;
  ~rollback() {
    if (committed_) return;
    for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
      std::error_code ec;
      fs::remove(*it, ec);
    }
  }
  void add(fs::path p) { created_.push_back(std::move(p)); }
  void commit() { committed_ = true; }

 private:
  std::vector<fs::path> created_;
  bool committed_ = false;
};

// O_EXCL makes "never overwrite" atomic, and the mode is set at creation, so a private key is
// never readable by others, not even for an instant between create and chmod.
Status write_new_file(const fs::path& path, std::string_view data, mode_t mode, rollback& rb) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) {
    int err = errno;
    if (err == EEXIST)
      return make_error(quoted(path) + " already exists; refusing to overwrite it");
    return make_error("cannot create " + quoted(path) + ": " + std::strerror(err));
  }
  rb.add(path);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      return make_error("cannot write " + quoted(path) + ": " + std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    return make_error("cannot write " + quoted(path) + ": " + std::strerror(err));
  }
  return Status::success();
}

// Creates `dir` with `mode` unless it exists. `must_be_new` turns an existing folder into an error.
Status make_dir(const fs::path& dir, mode_t mode, bool must_be_new, rollback& rb) {
  if (::mkdir(dir.c_str(), mode) == 0) {
    rb.add(dir);
    return Status::success();
  }
  int err = errno;
  if (err == EEXIST) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return make_error(quoted(dir) + " exists and is not a folder");
    if (must_be_new) return make_error(quoted(dir) + " already exists; refusing to overwrite it");
    return Status::success();
  }
  return make_error("cannot create folder " + quoted(dir) + ": " + std::strerror(err));
}

Result<pkey_ptr> generate_key() {
  pkey_ptr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return ossl_error("cannot generate an EC P-256 key");
  return key;
}

// 127 random bits (the top bit is cleared so the DER INTEGER stays positive): unique without a
// serial database, and unpredictable.
Status set_random_serial(X509* cert) {
  unsigned char buf[16];
  do {
    if (RAND_bytes(buf, sizeof buf) != 1) return ossl_error("cannot draw a random serial number");
    buf[0] &= 0x7f;
  } while (std::all_of(std::begin(buf), std::end(buf), [](unsigned char c) { return c == 0; }));
  bn_ptr bn(BN_bin2bn(buf, sizeof buf, nullptr));
  if (!bn) return ossl_error("cannot build a serial number");
  asn1_integer_ptr serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  if (!serial || X509_set_serialNumber(cert, serial.get()) != 1)
    return ossl_error("cannot set the serial number");
  return Status::success();
}

Status add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  extension_ptr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1)
    return ossl_error(std::string("cannot add extension ") + OBJ_nid2sn(nid) + "=" + value);
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

// SANs are built as GENERAL_NAMEs rather than a "DNS:a,IP:b" config string, so a host name can
// never inject another entry.
Status add_subject_alt_names(X509* cert, const std::vector<std::string>& hosts) {
  general_names_ptr names(sk_GENERAL_NAME_new_null());
  if (!names) return ossl_error("out of memory");
  for (const std::string& host_in : hosts) {
    std::string host = host_in;
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    general_name_ptr gn(GENERAL_NAME_new());
    if (!gn) return ossl_error("out of memory");
    if (parse_ip(host)) {
      octet_ptr ip(a2i_IPADDRESS(host.c_str()));
      if (!ip) return ossl_error("cannot encode IP address '" + host + "'");
      GENERAL_NAME_set0_value(gn.get(), GEN_IPADD, ip.release());
    } else if (valid_dns_name(host)) {
      ia5_ptr dns(ASN1_IA5STRING_new());
      if (!dns || ASN1_STRING_set(dns.get(), host.data(), static_cast<int>(host.size())) != 1)
        return ossl_error("cannot encode DNS name '" + host + "'");
      GENERAL_NAME_set0_value(gn.get(), GEN_DNS, dns.release());
    } else {
      return make_error("coordinator host '" + host_in +
                        "' is neither an IP address nor a valid DNS name");
    }
    if (sk_GENERAL_NAME_push(names.get(), gn.get()) <= 0) return ossl_error("out of memory");
    gn.release();
  }
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) != 1)
    return ossl_error("cannot add the subjectAltName extension");
  return Status::success();
}

struct cert_spec {
  std::string common_name;
  int days = 0;
  bool is_ca = false;
  const char* extended_key_usage = nullptr;  // "serverAuth" / "clientAuth"
  std::vector<std::string> hosts;            // SANs
};

// Builds and signs a certificate for `key`. With issuer == nullptr it is self-signed by `key`.
Result<x509_ptr> make_certificate(const cert_spec& spec, EVP_PKEY* key, X509* issuer,
                                  EVP_PKEY* issuer_key) {
  x509_ptr cert(X509_new());
  if (!cert) return ossl_error("out of memory");
  X509* c = cert.get();
  if (X509_set_version(c, X509_VERSION_3) != 1) return ossl_error("cannot set version");
  if (Status s = set_random_serial(c); !s) return s.error();

  if (!X509_gmtime_adj(X509_getm_notBefore(c), -backdate_seconds) ||
      !X509_time_adj_ex(X509_getm_notAfter(c), spec.days, 0, nullptr))
    return ossl_error("cannot set the validity period");
  // A certificate cannot be trusted past its CA's own expiry, so do not claim it.
  if (issuer != nullptr && ASN1_TIME_compare(X509_get0_notAfter(c), X509_get0_notAfter(issuer)) > 0)
    if (X509_set1_notAfter(c, X509_get0_notAfter(issuer)) != 1)
      return ossl_error("cannot set the validity period");

  X509_NAME* subject = X509_get_subject_name(c);
  if (X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(spec.common_name.c_str()),
                                 -1, -1, 0) != 1)
    return ossl_error("cannot set the subject name");
  if (X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : subject) != 1)
    return ossl_error("cannot set the issuer name");
  if (X509_set_pubkey(c, key) != 1) return ossl_error("cannot set the public key");

  X509* signer = issuer ? issuer : c;
  if (spec.is_ca) {
    if (Status s = add_extension(c, signer, NID_basic_constraints, "critical,CA:TRUE"); !s)
      return s.error();
    if (Status s = add_extension(c, signer, NID_key_usage, "critical,keyCertSign,cRLSign"); !s)
      return s.error();
  } else {
    if (Status s = add_extension(c, signer, NID_basic_constraints, "critical,CA:FALSE"); !s)
      return s.error();
    if (Status s = add_extension(c, signer, NID_key_usage, "critical,digitalSignature"); !s)
      return s.error();
  }
  if (spec.extended_key_usage != nullptr)
    if (Status s = add_extension(c, signer, NID_ext_key_usage, spec.extended_key_usage); !s)
      return s.error();
  if (Status s = add_extension(c, signer, NID_subject_key_identifier, "hash"); !s) return s.error();
  if (issuer != nullptr)
    if (Status s = add_extension(c, signer, NID_authority_key_identifier, "keyid:always"); !s)
      return s.error();
  if (!spec.hosts.empty())
    if (Status s = add_subject_alt_names(c, spec.hosts); !s) return s.error();

  if (X509_sign(c, issuer_key ? issuer_key : key, EVP_sha256()) <= 0)
    return ossl_error("cannot sign the certificate for '" + spec.common_name + "'");
  return cert;
}

Result<std::string> cert_to_pem(X509* cert) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1)
    return ossl_error("cannot encode a certificate");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

// Unencrypted PKCS#8: the services read their keys unattended; the file mode protects them.
Result<std::string> key_to_pem(EVP_PKEY* key) {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return ossl_error("cannot encode a private key");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

// Never prompt on the terminal for a pass phrase: an encrypted key is an error here.
int no_passphrase(char*, int, int, void*) { return 0; }

Status check_file_exists(const fs::path& path, const std::string& what) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return make_error(what + " " + quoted(path) + " does not exist");
  if (fs::is_directory(path, ec)) return make_error(what + " " + quoted(path) + " is a folder");
  return Status::success();
}

Result<bio_ptr> open_for_reading(const fs::path& path, const std::string& what) {
  if (Status s = check_file_exists(path, what); !s) return s.error();
  bio_ptr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) {
    int err = errno;
    ERR_clear_error();
    return make_error("cannot read " + what + " " + quoted(path) + ": " + std::strerror(err));
  }
  return bio;
}

Result<x509_stack_ptr> load_certificates(const fs::path& path, const std::string& what) {
  auto bio = open_for_reading(path, what);
  if (!bio) return bio.error();
  x509_stack_ptr certs(sk_X509_new_null());
  if (!certs) return ossl_error("out of memory");
  while (X509* c = PEM_read_bio_X509(bio->get(), nullptr, no_passphrase, nullptr)) {
    if (sk_X509_push(certs.get(), c) <= 0) {
      X509_free(c);
      return ossl_error("out of memory");
    }
  }
  // The loop ends on "no start line" at end of file; that one is expected.
  unsigned long last = ERR_peek_last_error();
  if (sk_X509_num(certs.get()) > 0 && ERR_GET_REASON(last) == PEM_R_NO_START_LINE)
    ERR_clear_error();
  if (sk_X509_num(certs.get()) == 0) {
    ERR_clear_error();
    return make_error(what + " " + quoted(path) + " holds no PEM certificate");
  }
  if (ERR_peek_error() != 0) return ossl_error("cannot parse " + what + " " + quoted(path));
  return certs;
}

Result<x509_ptr> load_certificate(const fs::path& path, const std::string& what) {
  auto certs = load_certificates(path, what);
  if (!certs) return certs.error();
  return x509_ptr(sk_X509_shift(certs->get()));
}

Result<pkey_ptr> load_private_key(const fs::path& path, const std::string& what) {
  auto bio = open_for_reading(path, what);
  if (!bio) return bio.error();
  pkey_ptr key(PEM_read_bio_PrivateKey(bio->get(), nullptr, no_passphrase, nullptr));
  if (!key) return ossl_error(what + " " + quoted(path) + " is not an unencrypted PEM private key");
  return key;
}

std::string time_string(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return "?";
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::vector<std::string> default_hosts() { return {"127.0.0.1", "localhost"}; }

struct loaded_ca {
  x509_ptr cert;
  pkey_ptr key;
};

Result<loaded_ca> load_ca(const fs::path& dir) {
  const fs::path ca_pem = dir / "ca.pem", ca_key = dir / "ca.key";
  for (const fs::path& p : {ca_pem, ca_key}) {
    std::error_code ec;
    if (!fs::exists(p, ec))
      return make_error("no federation CA in " + quoted(dir) + ": " + quoted(p) +
                        " does not exist (run `federa-pki init --dir " + dir.string() + "` first)");
  }
  auto cert = load_certificate(ca_pem, "CA certificate");
  if (!cert) return cert.error();
  auto key = load_private_key(ca_key, "CA private key");
  if (!key) return key.error();
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    ERR_clear_error();
    return make_error("CA private key " + quoted(ca_key) + " does not match " + quoted(ca_pem));
  }
  if (X509_check_ca(cert->get()) == 0)
    return make_error(quoted(ca_pem) + " is not a CA certificate");
  return loaded_ca{std::move(*cert), std::move(*key)};
}

std::vector<fs::path> coordinator_outputs(const fs::path& dir) {
  const fs::path d = dir / "coordinator";
  return {d / "key.pem", d / "cert.pem", d / "ca.pem"};
}

Result<std::vector<std::string>> coordinator_sans(const std::vector<std::string>& requested) {
  std::vector<std::string> hosts;
  for (const std::string& h : requested.empty() ? default_hosts() : requested)
    if (std::find(hosts.begin(), hosts.end(), h) == hosts.end()) hosts.push_back(h);
  return hosts;
}

// Generates the coordinator's key and certificate and writes DIR/coordinator/, which the caller
// has checked does not hold any of those files.
Status write_coordinator(const fs::path& dir, const std::vector<std::string>& hosts,
                         const loaded_ca& ca, rollback& rb) {
  auto key = generate_key();
  if (!key) return key.error();
  cert_spec spec{coordinator_common_name, coordinator_validity_days, false, "serverAuth", hosts};
  auto cert = make_certificate(spec, key->get(), ca.cert.get(), ca.key.get());
  if (!cert) return cert.error();
  auto cert_text = cert_to_pem(cert->get());
  if (!cert_text) return cert_text.error();
  auto key_text = key_to_pem(key->get());
  if (!key_text) return key_text.error();
  auto ca_text = cert_to_pem(ca.cert.get());
  if (!ca_text) return ca_text.error();

  const std::vector<fs::path> out = coordinator_outputs(dir);
  if (Status s = make_dir(dir / "coordinator", 0700, false, rb); !s) return s;
  if (Status s = write_new_file(out[0], *key_text, 0600, rb); !s) return s;
  if (Status s = write_new_file(out[1], *cert_text, 0644, rb); !s) return s;
  return write_new_file(out[2], *ca_text, 0644, rb);
}

Status refuse_existing(const std::vector<fs::path>& paths, const std::string& why) {
  for (const fs::path& p : paths) {
    std::error_code ec;
    if (fs::exists(fs::symlink_status(p, ec)))
      return make_error(quoted(p) + " already exists" + why + "; refusing to overwrite it");
  }
  return Status::success();
}

}  // namespace

Status validate_client_name(const std::string& name) {
  if (name.empty()) return make_error("client name is empty");
  if (name.size() > 64)
    return make_error("client name '" + name + "' is longer than 64 characters");
  if (name.front() == '.') return make_error("client name '" + name + "' must not start with '.'");
  for (char c : name) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok)
      return make_error("client name '" + name +
                        "' may only contain letters, digits, '.', '_' and '-'");
  }
  return Status::success();
}

Result<std::vector<fs::path>> init_pki(const fs::path& dir_in,
                                       const std::vector<std::string>& coordinator_hosts) {
  if (dir_in.empty()) return make_error("no PKI folder given");
  // "pki/" names the folder "pki": without this its parent would be "pki", created with 0755.
  const fs::path dir = dir_in.has_filename() ? dir_in : dir_in.parent_path();
  const fs::path ca_pem = dir / "ca.pem", ca_key = dir / "ca.key";
  // All checks before any write: a refusal leaves the folder exactly as it was.
  if (Status s = refuse_existing({ca_pem, ca_key}, ": " + quoted(dir) +
                                                       " already holds a federation CA (choose "
                                                       "another --dir, or move the old PKI away "
                                                       "yourself)");
      !s)
    return s.error();
  if (Status s = refuse_existing(coordinator_outputs(dir), ""); !s) return s.error();
  auto hosts = coordinator_sans(coordinator_hosts);
  if (!hosts) return hosts.error();
  // Host names are validated while building the SANs; do that before creating anything.
  {
    x509_ptr probe(X509_new());
    if (Status s = add_subject_alt_names(probe.get(), *hosts); !s) return s.error();
  }

  ERR_clear_error();
  auto ca_private = generate_key();
  if (!ca_private) return ca_private.error();
  cert_spec ca_spec{ca_common_name, ca_validity_days, true, nullptr, {}};
  auto ca_cert = make_certificate(ca_spec, ca_private->get(), nullptr, nullptr);
  if (!ca_cert) return ca_cert.error();
  auto ca_pem_text = cert_to_pem(ca_cert->get());
  if (!ca_pem_text) return ca_pem_text.error();
  auto ca_key_text = key_to_pem(ca_private->get());
  if (!ca_key_text) return ca_key_text.error();
  loaded_ca ca{std::move(*ca_cert), std::move(*ca_private)};

  rollback rb;
  std::error_code ec;
  if (!fs::exists(dir, ec) && dir.has_parent_path()) {
    fs::create_directories(dir.parent_path(), ec);
    if (ec)
      return make_error("cannot create folder " + quoted(dir.parent_path()) + ": " + ec.message());
  }
  if (Status s = make_dir(dir, 0700, false, rb); !s) return s.error();
  // ca.key first: its O_EXCL create is what makes two concurrent inits exclude each other.
  if (Status s = write_new_file(ca_key, *ca_key_text, 0600, rb); !s) return s.error();
  if (Status s = write_new_file(ca_pem, *ca_pem_text, 0644, rb); !s) return s.error();
  if (Status s = write_coordinator(dir, *hosts, ca, rb); !s) return s.error();
  rb.commit();
  std::vector<fs::path> written = {ca_key, ca_pem};
  for (const fs::path& p : coordinator_outputs(dir)) written.push_back(p);
  return written;
}

Result<std::vector<fs::path>> issue_coordinator(const fs::path& dir,
                                                const std::vector<std::string>& coordinator_hosts) {
  if (dir.empty()) return make_error("no PKI folder given");
  if (Status s = refuse_existing({dir / "coordinator"},
                                 " (move it away first to replace the coordinator certificate)");
      !s)
    return s.error();
  auto hosts = coordinator_sans(coordinator_hosts);
  if (!hosts) return hosts.error();
  ERR_clear_error();
  auto ca = load_ca(dir);
  if (!ca) return ca.error();
  rollback rb;
  if (Status s = write_coordinator(dir, *hosts, *ca, rb); !s) return s.error();
  rb.commit();
  return coordinator_outputs(dir);
}

Result<std::vector<fs::path>> issue_client(const fs::path& dir, const std::string& name) {
  if (Status s = validate_client_name(name); !s) return s.error();
  const fs::path clients = dir / "clients";
  const fs::path kit = clients / name;
  {
    std::error_code ec;
    if (fs::exists(fs::symlink_status(kit, ec)))
      return make_error("client '" + name + "' already has a kit at " + quoted(kit) +
                        "; refusing to overwrite it");
  }

  ERR_clear_error();
  auto ca = load_ca(dir);
  if (!ca) return ca.error();
  auto client_private = generate_key();
  if (!client_private) return client_private.error();
  cert_spec spec{name, client_validity_days, false, "clientAuth", {}};
  auto cert = make_certificate(spec, client_private->get(), ca->cert.get(), ca->key.get());
  if (!cert) return cert.error();
  auto ca_text = cert_to_pem(ca->cert.get());
  if (!ca_text) return ca_text.error();
  auto cert_text = cert_to_pem(cert->get());
  if (!cert_text) return cert_text.error();
  auto key_text = key_to_pem(client_private->get());
  if (!key_text) return key_text.error();

  rollback rb;
  if (Status s = make_dir(clients, 0755, false, rb); !s) return s.error();
  // must_be_new: mkdir's EEXIST is the atomic "this client already has a kit" check.
  if (Status s = make_dir(kit, 0700, true, rb); !s)
    return make_error("client '" + name + "': " + s.message());
  const std::vector<fs::path> outputs = {kit / "key.pem", kit / "cert.pem", kit / "ca.pem"};
  if (Status s = write_new_file(outputs[0], *key_text, 0600, rb); !s) return s.error();
  if (Status s = write_new_file(outputs[1], *cert_text, 0644, rb); !s) return s.error();
  if (Status s = write_new_file(outputs[2], *ca_text, 0644, rb); !s) return s.error();
  rb.commit();
  return outputs;
}

Result<std::string> verify_certificate(const fs::path& ca_pem, const fs::path& cert_pem) {
  ERR_clear_error();
  auto anchors = load_certificates(ca_pem, "CA certificate file");
  if (!anchors) return anchors.error();
  auto chain = load_certificates(cert_pem, "certificate file");
  if (!chain) return chain.error();
  x509_ptr leaf(sk_X509_shift(chain->get()));

  store_ptr store(X509_STORE_new());
  if (!store) return ossl_error("out of memory");
  for (int i = 0; i < sk_X509_num(anchors->get()); ++i)
    if (X509_STORE_add_cert(store.get(), sk_X509_value(anchors->get(), i)) != 1)
      return ossl_error("cannot use " + quoted(ca_pem) + " as a trust anchor");

  store_ctx_ptr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), chain->get()) != 1)
    return ossl_error("cannot set up certificate verification");
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    std::string reason = X509_verify_cert_error_string(err);
    if (err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
        err == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT || err == X509_V_ERR_CERT_SIGNATURE_FAILURE)
      reason = "it is not signed by the CA in " + quoted(ca_pem) + " (" + reason + ")";
    return make_error(quoted(cert_pem) + " does not verify: " + reason);
  }
  std::optional<std::string> cn = certificate_common_name(leaf.get());
  if (!cn) return make_error(quoted(cert_pem) + " verifies but has no single, valid common name");
  return *cn;
}

Result<certificate_info> read_certificate_info(const fs::path& cert_pem) {
  ERR_clear_error();
  auto cert = load_certificate(cert_pem, "certificate file");
  if (!cert) return cert.error();
  X509* c = cert->get();
  certificate_info info;
  info.common_name = certificate_common_name(c).value_or("");
  {
    const X509_NAME* issuer = X509_get_issuer_name(c);
    int idx = X509_NAME_get_index_by_NID(issuer, NID_commonName, -1);
    if (idx >= 0) {
      unsigned char* utf8 = nullptr;
      int len =
          ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(issuer, idx)));
      if (len >= 0) {
        info.issuer_common_name.assign(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
        OPENSSL_free(utf8);
      }
    }
  }
  if (bn_ptr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(c), nullptr)); bn) {
    std::unique_ptr<char, openssl_free_fn> hex(BN_bn2hex(bn.get()));
    if (hex) info.serial_hex = hex.get();
  }
  info.not_before = time_string(X509_get0_notBefore(c));
  info.not_after = time_string(X509_get0_notAfter(c));
  info.is_ca = X509_check_ca(c) != 0;
  if (X509_get_extension_flags(c) & EXFLAG_XKUSAGE) {
    uint32_t xku = X509_get_extended_key_usage(c);
    info.server_auth = (xku & XKU_SSL_SERVER) != 0;
    info.client_auth = (xku & XKU_SSL_CLIENT) != 0;
  }
  general_names_ptr names(
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
      int len = ASN1_STRING_length(ip);
      int family = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;
      if (family != 0 && inet_ntop(family, ASN1_STRING_get0_data(ip), buf, sizeof buf))
        info.ip_addresses.emplace_back(buf);
    }
  }
  ERR_clear_error();
  return info;
}

}  // namespace federa
