#include "common/tls.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <boost/asio/error.hpp>
#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>

#include "common/ossl.hpp"

namespace federa {
namespace {

namespace ssl = boost::asio::ssl;
using ContextPtr = std::shared_ptr<ssl::context>;

std::string with_detail(std::string what, const boost::system::error_code& ec) {
  std::string detail = ossl::drain_errors();
  if (detail.empty() && ec) detail = ec.message();
  if (!detail.empty()) what += " (" + detail + ")";
  return what;
}

// Checked up front so the message says "does not exist" or "permission denied" with the path,
// rather than OpenSSL's "system lib" error.
Status check_readable(const std::string& path, const char* what) {
  if (path.empty())
    return make_error(ErrorCode::invalid_argument, std::string(what) + ": no file given");
  std::error_code fec;
  if (!std::filesystem::exists(path, fec))
    return make_error(ErrorCode::not_found, std::string(what) + " '" + path + "' does not exist");
  if (std::filesystem::is_directory(path, fec))
    return make_error(ErrorCode::invalid_argument,
                      std::string(what) + " '" + path + "' is a directory, not a PEM file");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return make_error(
        err == EACCES ? ErrorCode::permission_denied : ErrorCode::unavailable,
        "cannot read " + std::string(what) + " '" + path + "': " + std::strerror(err));
  }
  ::close(fd);
  return Status::success();
}

// Who the context is for; it decides the method, the verify mode and the server settings.
enum class Role { federation_server, client, admin_server };

// The trust anchor, our certificate and its key. OpenSSL checks the pair while loading the
// key, so a mismatch is reported as such, naming both files.
Status load_credentials(ssl::context& ctx, const std::string& ca_pem, const std::string& cert_pem,
                        const std::string& key_pem) {
  boost::system::error_code ec;
  // The federation CA is the only trust anchor: load_verify_file, never set_default_verify_paths.
  ctx.load_verify_file(ca_pem, ec);
  if (ec)
    return make_error(
        ErrorCode::invalid_argument,
        with_detail("cannot load CA certificate file '" + ca_pem + "' (expected PEM certificates)",
                    ec));
  ctx.use_certificate_chain_file(cert_pem, ec);
  if (ec)
    return make_error(
        ErrorCode::invalid_argument,
        with_detail("cannot load certificate file '" + cert_pem + "' (expected PEM)", ec));
  const std::string mismatch =
      "private key '" + key_pem + "' does not match certificate '" + cert_pem + "'";
  ctx.use_private_key_file(key_pem, ssl::context::pem, ec);
  // Asio has already taken the OpenSSL error off the queue into `ec`.
  if (ec && ec.category() == boost::asio::error::get_ssl_category() &&
      ERR_GET_REASON(static_cast<unsigned long>(static_cast<unsigned int>(ec.value()))) ==
          X509_R_KEY_VALUES_MISMATCH)
    return make_error(ErrorCode::invalid_argument, with_detail(mismatch, {}));
  if (ec)
    return make_error(ErrorCode::invalid_argument,
                      with_detail("cannot load private key file '" + key_pem +
                                      "' (expected an unencrypted PEM key)",
                                  ec));
  if (SSL_CTX_check_private_key(ctx.native_handle()) != 1)
    return make_error(ErrorCode::invalid_argument, with_detail(mismatch, {}));
  return Status::success();
}

// The admin listener accepts any client certificate at the TLS layer and leaves the judgement
// to peer_admin_identity, so a wrong or expired certificate gets an HTTP answer with a reason
// instead of a bare TLS alert. OpenSSL still stores the verification result of the chain,
// which is what peer_admin_identity reads.
int accept_and_record(int /*preverify_ok*/, X509_STORE_CTX* /*ctx*/) { return 1; }

Status configure_server(SSL_CTX* native, Role role, const std::string& ca_pem) {
  // Tell clients which CA we accept, so one holding several kits picks the right certificate.
  if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca_pem.c_str()))
    SSL_CTX_set_client_CA_list(native, names);
  // No resumption: every connection proves its certificate again, and a member removed from
  // the list cannot ride on an old ticket. The id context is still set because OpenSSL fails
  // verify_peer servers that get a resumption attempt without one.
  SSL_CTX_set_num_tickets(native, 0);
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
  static const unsigned char sid_ctx[] = "federa";
  SSL_CTX_set_session_id_context(native, sid_ctx, sizeof sid_ctx - 1);
  if (role == Role::admin_server) {
    // An admin certificate carries the admin key purpose only (never clientAuth, so the
    // federation listener refuses it); its purpose is checked by peer_admin_identity.
    if (X509_VERIFY_PARAM_set_purpose(SSL_CTX_get0_param(native), X509_PURPOSE_ANY) != 1)
      return make_error(ErrorCode::internal, with_detail("cannot set the verify purpose", {}));
    SSL_CTX_set_verify(native, SSL_VERIFY_PEER, accept_and_record);
  }
  return Status::success();
}

Result<ContextPtr> make_context(Role role, const std::string& ca_pem, const std::string& cert_pem,
                                const std::string& key_pem) {
  if (Status s = check_readable(ca_pem, "CA certificate file"); !s) return s.error();
  if (Status s = check_readable(cert_pem, "certificate file"); !s) return s.error();
  if (Status s = check_readable(key_pem, "private key file"); !s) return s.error();

  ERR_clear_error();
  ContextPtr ctx;
  try {
    ctx = std::make_shared<ssl::context>(role == Role::client ? ssl::context::tls_client
                                                              : ssl::context::tls_server);
  } catch (const std::exception& e) {
    return make_error(ErrorCode::internal, std::string("cannot create a TLS context: ") + e.what());
  }
  SSL_CTX* native = ctx->native_handle();
  if (SSL_CTX_set_min_proto_version(native, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(native, TLS1_3_VERSION) != 1)
    return make_error(ErrorCode::internal,
                      with_detail("this OpenSSL cannot be limited to TLS 1.3", {}));
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression);
  if (Status s = load_credentials(*ctx, ca_pem, cert_pem, key_pem); !s) return s.error();

  boost::system::error_code ec;
  ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert, ec);
  if (ec) return make_error(ErrorCode::internal, with_detail("cannot set the TLS verify mode", ec));
  if (role != Role::client)
    if (Status s = configure_server(native, role, ca_pem); !s) return s.error();
  ERR_clear_error();
  return ctx;
}

std::string strip_brackets(const std::string& host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    return host.substr(1, host.size() - 2);
  return host;
}

bool is_ip_literal(const std::string& host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

std::string verify_sentence(long result, const std::string& peer) {
  switch (result) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      return peer + "'s certificate is not signed by this federation's CA";
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return peer + "'s certificate has expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return peer + "'s certificate is not valid yet (check the clocks)";
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return peer +
             "'s certificate does not name the address we connected to (see its names "
             "with federa-pki verify; federa-pki issue-coordinator --coordinator-host "
             "adds names)";
    case X509_V_ERR_INVALID_PURPOSE:
      return peer +
             "'s certificate is not meant for this role (a client certificate used by a "
             "coordinator, or the reverse)";
    default:
      return peer + "'s certificate was rejected: " + X509_verify_cert_error_string(result);
  }
}

}  // namespace

Result<std::shared_ptr<boost::asio::ssl::context>> make_server_tls_context(
    const std::string& ca_pem, const std::string& cert_pem, const std::string& key_pem) {
  return make_context(Role::federation_server, ca_pem, cert_pem, key_pem);
}

Result<std::shared_ptr<boost::asio::ssl::context>> make_client_tls_context(
    const std::string& ca_pem, const std::string& cert_pem, const std::string& key_pem) {
  return make_context(Role::client, ca_pem, cert_pem, key_pem);
}

Result<std::shared_ptr<boost::asio::ssl::context>> make_admin_server_tls_context(
    const std::string& ca_pem, const std::string& cert_pem, const std::string& key_pem) {
  return make_context(Role::admin_server, ca_pem, cert_pem, key_pem);
}

Status set_client_tls_hostname(SSL* ssl, const std::string& host_in) {
  if (ssl == nullptr)
    return make_error(ErrorCode::invalid_argument, "set_client_tls_hostname: no TLS stream");
  std::string host = strip_brackets(host_in);
  if (host.empty())
    return make_error(ErrorCode::invalid_argument, "the coordinator host name is empty");
  ERR_clear_error();
  if (is_ip_literal(host)) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) != 1)
      return make_error(ErrorCode::invalid_argument,
                        with_detail("cannot require the coordinator address '" + host + "'", {}));
    return Status::success();
  }
  if (SSL_set_tlsext_host_name(ssl, host.c_str()) != 1 || SSL_set1_host(ssl, host.c_str()) != 1)
    return make_error(ErrorCode::invalid_argument,
                      with_detail("cannot require the coordinator name '" + host + "'", {}));
  // Partial wildcards ("w*.example.com") never match. A whole-label wildcard ("*.example.com")
  // still matches one label, as OpenSSL's default and RFC 6125 allow; `federa-pki` issues exact
  // names only, so a wildcard certificate can come only from another CA the client trusts.
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  return Status::success();
}

std::optional<std::string> certificate_common_name(const X509* cert) {
  if (cert == nullptr) return std::nullopt;
  const X509_NAME* subject = X509_get_subject_name(cert);
  if (subject == nullptr) return std::nullopt;
  int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (idx < 0) return std::nullopt;
  // Two CNs would make identity depend on which one a reader picks.
  if (X509_NAME_get_index_by_NID(subject, NID_commonName, idx) >= 0) return std::nullopt;
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
  unsigned char* utf8 = nullptr;
  int len = ASN1_STRING_to_UTF8(&utf8, data);
  if (len < 0) return std::nullopt;
  ossl::MemoryPtr<unsigned char> owned(utf8);
  std::string cn(reinterpret_cast<const char*>(utf8), static_cast<size_t>(len));
  if (cn.empty() || cn.find('\0') != std::string::npos) return std::nullopt;
  return cn;
}

std::optional<std::string> peer_common_name(const SSL* ssl) {
  if (ssl == nullptr) return std::nullopt;
  const X509* peer = SSL_get0_peer_certificate(ssl);
  if (peer == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return std::nullopt;
  return certificate_common_name(peer);
}

std::string describe_tls_error(const boost::system::error_code& ec, const SSL* ssl) {
  if (!ec) return "no error";
  const bool we_are_server = ssl != nullptr && SSL_is_server(ssl) == 1;
  const std::string peer =
      ssl == nullptr ? "the peer" : (we_are_server ? "the client" : "the coordinator");
  std::string detail = ec.message();
  auto sentence = [&](const std::string& s) { return s + " [" + detail + "]"; };

  if (ec == ssl::error::stream_truncated)
    return sentence(peer +
                    " closed the connection without a TLS close (it may have refused our "
                    "certificate, or it crashed)");
  if (ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset)
    return sentence(peer + " closed the connection (it may have refused our certificate)");
  if (ec == boost::asio::error::connection_refused)
    return sentence("nothing is listening at that address (is the coordinator running?)");
  if (ec == boost::asio::error::timed_out || ec == boost::asio::error::operation_aborted)
    return sentence("the TLS handshake timed out");
  if (ec.category() != boost::asio::error::get_ssl_category()) return detail;

  const unsigned long code = static_cast<unsigned long>(static_cast<unsigned int>(ec.value()));
  switch (ERR_GET_REASON(code)) {
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
      if (ssl != nullptr) return sentence(verify_sentence(SSL_get_verify_result(ssl), peer));
      return sentence(peer + "'s certificate could not be verified against this federation's CA");
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
      return sentence(peer + " offered no certificate");
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
      return sentence(peer + " requires a certificate and we offered none");
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
      if (we_are_server)
        return sentence(peer +
                        " refused our certificate (its ca.pem is not this federation's "
                        "CA, or it connected by a name our certificate does not list)");
      return sentence(peer + " refused our certificate (is this kit from this federation's CA?)");
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
      return sentence(peer + " refused our certificate: it has expired");
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
      return sentence(peer + " refused our certificate: it is revoked");
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_VERSION_TOO_LOW:
      return sentence("protocol version not supported (TLS 1.3 required)");
    case SSL_R_WRONG_VERSION_NUMBER:
      return sentence(peer + " does not speak TLS 1.3 (wrong port, plain TCP, or an old TLS)");
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
      return sentence(peer + " sent plain HTTP to the TLS port (use https/wss)");
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
    case SSL_R_NO_SHARED_CIPHER:
      return sentence("no common TLS 1.3 parameters with " + peer);
    default:
      return sentence("TLS failure with " + peer);
  }
}

}  // namespace federa
