#include "common/pki_admin.hpp"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>

#include "common/pki.hpp"
#include "common/pki_files.hpp"
#include "common/pki_x509.hpp"
#include "common/tls.hpp"

namespace federa {

using namespace pki_detail;
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kTokenPrefix = "fdt_";
constexpr std::string_view kDigestPrefix = "sha256:";

std::string to_hex(crypto::ByteView bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (std::uint8_t b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

bool from_hex(std::string_view hex, crypto::Key32& out) {
  if (hex.size() != out.size() * 2) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return true;
}

std::string token_file_line(const crypto::Key32& digest, AdminRole role, const std::string& name) {
  return std::string(kDigestPrefix) + to_hex(digest) + " " + std::string(admin_role_name(role)) +
         " " + name;
}

// "sha256:HEX ROLE NAME": exactly three fields separated by single spaces.
Result<AdminTokens::Entry> parse_token_line(const std::string& line) {
  const size_t a = line.find(' ');
  const size_t b = a == std::string::npos ? a : line.find(' ', a + 1);
  if (b == std::string::npos || line.find(' ', b + 1) != std::string::npos)
    return make_error(ErrorCode::invalid_argument, "expected 'sha256:HEX ROLE NAME'");
  const std::string_view digest = std::string_view(line).substr(0, a);
  AdminTokens::Entry e;
  if (digest.substr(0, kDigestPrefix.size()) != kDigestPrefix ||
      !from_hex(digest.substr(kDigestPrefix.size()), e.digest))
    return make_error(ErrorCode::invalid_argument,
                      "the first field must be 'sha256:' and 64 lowercase hex digits");
  auto role = parse_admin_role(std::string_view(line).substr(a + 1, b - a - 1));
  if (!role) return role.error();
  e.role = *role;
  e.name = line.substr(b + 1);
  if (Status s = validate_client_name(e.name); !s) return s.error();
  return e;
}

}  // namespace

std::string_view admin_role_name(AdminRole role) {
  return role == AdminRole::operate ? "operator" : "viewer";
}

Result<AdminRole> parse_admin_role(std::string_view text) {
  if (text == "viewer") return AdminRole::view;
  if (text == "operator") return AdminRole::operate;
  return make_error(ErrorCode::invalid_argument,
                    "unknown admin role '" + std::string(text) + "' (viewer or operator)");
}

bool role_allows(AdminRole have, AdminRole need) {
  return have == AdminRole::operate || need == AdminRole::view;
}

Result<AdminIdentity> admin_identity(const X509* cert) {
  if (cert == nullptr) return make_error(ErrorCode::not_found, "no certificate");
  const CertificateKind kind = certificate_kind(cert);
  if (kind != CertificateKind::admin)
    return make_error(ErrorCode::permission_denied,
                      "a " + std::string(certificate_kind_name(kind)) +
                          " certificate is not an admin certificate (federa-pki issue --admin "
                          "NAME --role ROLE makes one)");
  std::optional<std::string> name = certificate_common_name(cert);
  if (!name)
    return make_error(ErrorCode::invalid_argument,
                      "the admin certificate has no single, valid common name");
  auto role_text = admin_role_text(cert);
  if (!role_text) return make_error(ErrorCode::invalid_argument, role_text.error().message);
  auto role = parse_admin_role(*role_text);
  if (!role) return role.error();
  return AdminIdentity{std::move(*name), *role};
}

Result<AdminIdentity> peer_admin_identity(const SSL* ssl) {
  if (ssl == nullptr) return make_error(ErrorCode::invalid_argument, "no TLS connection");
  const X509* peer = SSL_get0_peer_certificate(ssl);
  if (peer == nullptr) return make_error(ErrorCode::not_found, "no client certificate offered");
  const long verified = SSL_get_verify_result(ssl);
  if (verified != X509_V_OK)
    return make_error(ErrorCode::unauthenticated,
                      "the client certificate was rejected: " +
                          std::string(X509_verify_cert_error_string(verified)));
  return admin_identity(peer);
}

Result<std::string> create_admin_token(const fs::path& dir, const std::string& name,
                                       AdminRole role) {
  if (Status s = validate_client_name(name); !s) return s.error();
  std::error_code ec;
  if (!fs::exists(dir / "ca.pem", ec))
    return make_error(ErrorCode::not_found,
                      quoted(dir) + " holds no federation PKI (run `federa-pki init` first)");
  crypto::Key32 secret{};
  if (Status s = crypto::random_bytes(secret); !s) return s.error();
  std::string token = std::string(kTokenPrefix) + to_hex(secret);
  OPENSSL_cleanse(secret.data(), secret.size());
  const crypto::Key32 digest = crypto::sha256(crypto::as_bytes(token));
  if (Status s = append_line_private(dir / "admin-tokens", token_file_line(digest, role, name)); !s)
    return s.error();
  return token;
}

Result<AdminTokens> AdminTokens::load(const fs::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0)
    return make_error(ErrorCode::not_found, "admin token file " + quoted(file) + " does not exist");
  if ((st.st_mode & 022) != 0)
    return make_error(ErrorCode::failed_precondition,
                      "admin token file " + quoted(file) +
                          " may be written by others, who could add tokens (chmod 600 it)");
  std::ifstream in(file);
  if (!in)
    return make_error(ErrorCode::permission_denied, "cannot read admin token file " + quoted(file));
  AdminTokens tokens;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.front() == '#') continue;
    auto entry = parse_token_line(line);
    if (!entry)
      return make_error(
          ErrorCode::invalid_argument,
          quoted(file) + " line " + std::to_string(number) + ": " + entry.error().message);
    tokens.entries_.push_back(std::move(*entry));
  }
  return tokens;
}

Result<AdminIdentity> AdminTokens::verify(std::string_view presented) const {
  const crypto::Key32 digest = crypto::sha256(crypto::as_bytes(presented));
  const Entry* found = nullptr;
  for (const Entry& e : entries_) {
    const bool same = CRYPTO_memcmp(e.digest.data(), digest.data(), digest.size()) == 0;
    if (same && found == nullptr) found = &e;
  }
  if (found == nullptr) return make_error(ErrorCode::unauthenticated, "unknown bearer token");
  return AdminIdentity{found->name, found->role};
}

}  // namespace federa
