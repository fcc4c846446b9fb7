// TLS 1.3 contexts for the federation's mutual authentication: both sides present a certificate
// signed by the federation CA, and trust that CA only (never the system trust store).
//
//   // coordinator
//   auto ctx = make_server_tls_context(pki + "/ca.pem", pki + "/coordinator/cert.pem",
//                                      pki + "/coordinator/key.pem");
//   if (!ctx) return ctx.error();                       // names the bad file
//   boost::asio::ssl::stream<boost::asio::ip::tcp::socket> s(std::move(sock), **ctx);
//   s.handshake(boost::asio::ssl::stream_base::server, ec);
//   if (ec) log(describe_tls_error(ec, s.native_handle()));
//   std::optional<std::string> who = peer_common_name(s.native_handle());  // the member's name
//
//   // client
//   auto ctx = make_client_tls_context(kit + "/ca.pem", kit + "/cert.pem", kit + "/key.pem");
//   boost::asio::ssl::stream<boost::asio::ip::tcp::socket> s(ioc, **ctx);
//   if (Status st = set_client_tls_hostname(s.native_handle(), host); !st) return st.error();
//   connect, then s.handshake(boost::asio::ssl::stream_base::client, ec);
//
// TLS 1.3 note for clients: the client's handshake completes before the coordinator has checked
// the client's certificate, so a refused client usually sees its handshake succeed and then its
// first read fail (alert "unknown ca" or "certificate required"). Pass that read error to
// describe_tls_error as well; it says "the coordinator refused our certificate".
#pragma once

#include <boost/asio/ssl.hpp>
#include <boost/system/error_code.hpp>
#include <memory>
#include <optional>
#include <string>

#include "common/result.hpp"

namespace federa {

// Server side (the coordinator): TLS 1.3 only, requires a client certificate signed by `ca_pem`
// (verify_peer | verify_fail_if_no_peer_cert), presents `cert_pem` with `key_pem`. No session
// tickets, so every connection re-authenticates with a full handshake. The OpenSSL default
// verification purpose applies: the client's certificate must allow clientAuth.
// Errors name the file that is missing, unreadable, not PEM, or whose key does not match.
Result<std::shared_ptr<boost::asio::ssl::context>> make_server_tls_context(
    const std::string& ca_pem, const std::string& cert_pem, const std::string& key_pem);

// Client side (an agency): TLS 1.3 only, verifies the coordinator against `ca_pem` (its
// certificate must allow serverAuth), presents `cert_pem` with `key_pem`. Call
// set_client_tls_hostname on each connection so the coordinator's SAN must match the address.
Result<std::shared_ptr<boost::asio::ssl::context>> make_client_tls_context(
    const std::string& ca_pem, const std::string& cert_pem, const std::string& key_pem);

// The admin listener (HTTPS, separate port): TLS 1.3, presents `cert_pem` with `key_pem` (the
// coordinator's), and asks for a client certificate without requiring one, so a browser or
// Prometheus with a bearer token gets in too. Any certificate is accepted at the TLS layer; the
// chain's verification result is kept, and peer_admin_identity (common/pki_admin.hpp) is what
// admits an admin: per request, no certificate means "try the bearer token", a federation
// client certificate or an expired one means 401/403 with the reason it gives.
Result<std::shared_ptr<boost::asio::ssl::context>> make_admin_server_tls_context(
    const std::string& ca_pem, const std::string& cert_pem, const std::string& key_pem);

// Per connection, before the client handshake: the coordinator's certificate must name `host`.
// An IP address (v4, v6, or v6 in [brackets]) must be one of its IP SANs and is not sent as SNI
// (RFC 6066); a name is sent as SNI and must match a DNS SAN.
Status set_client_tls_hostname(SSL* ssl, const std::string& host);

// The CN of the peer's certificate once the handshake has verified it; nullopt when there is no
// peer certificate, verification did not succeed, or the subject has zero or several CNs.
std::optional<std::string> peer_common_name(const SSL* ssl);

// The subject CN of any certificate, same rules (exactly one CN, valid UTF-8, no NUL).
std::optional<std::string> certificate_common_name(const X509* cert);

// One human sentence for a handshake / first-read failure, e.g. "the coordinator's certificate
// is not signed by this federation's CA". With `ssl`, the certificate verification result and our
// role (server or client) make the sentence precise. Ends with the OpenSSL detail in brackets.
std::string describe_tls_error(const boost::system::error_code& ec, const SSL* ssl = nullptr);

}  // namespace federa
