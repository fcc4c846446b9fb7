// Helpers shared by the PKI suites (test_pki*.cpp): a throw-away federation on disk and one TLS
// connection over 127.0.0.1 between two real contexts.
//
//   Federation f;                                    // CA, coordinator, client "hospital-a"
//   Outcome out = connect_once(*server_context(f), *client_context(f.ca(), f.kit()));
//   CHECK(out.server_saw_cn == std::optional<std::string>("hospital-a"));
#pragma once

#include <doctest/doctest.h>
#include <openssl/ssl.h>
#include <sys/stat.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/pki.hpp"
#include "common/tls.hpp"

namespace federa::test {

namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using asio::ip::tcp;

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "federa-pki-test-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

inline unsigned file_mode(const fs::path& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

inline std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline std::string message_of(const Status& s) { return s.ok() ? "" : s.message(); }
template <typename T>
std::string message_of(const Result<T>& r) {
  return r.ok() ? "" : r.error().message;
}

// A federation on disk: the CA, the coordinator, and one client called "hospital-a".
struct Federation {
  TempDir tmp;
  fs::path pki;
  explicit Federation(const std::vector<std::string>& hosts = {}) : pki(tmp.path / "pki") {
    auto init = init_pki(pki, hosts);
    REQUIRE_MESSAGE(init.ok(), message_of(init));
    auto issued = issue_client(pki, "hospital-a");
    REQUIRE_MESSAGE(issued.ok(), message_of(issued));
  }
  fs::path ca() const { return pki / "ca.pem"; }
  fs::path kit(const std::string& name = "hospital-a") const { return pki / "clients" / name; }
  fs::path admin_kit(const std::string& name) const { return pki / "admins" / name; }
  fs::path coordinator() const { return pki / "coordinator"; }
};

inline std::shared_ptr<ssl::context> server_context(const Federation& f) {
  auto ctx = make_server_tls_context(f.ca().string(), (f.coordinator() / "cert.pem").string(),
                                     (f.coordinator() / "key.pem").string());
  REQUIRE_MESSAGE(ctx.ok(), message_of(ctx));
  return *ctx;
}

inline std::shared_ptr<ssl::context> client_context(const fs::path& ca, const fs::path& kit) {
  auto ctx =
      make_client_tls_context(ca.string(), (kit / "cert.pem").string(), (kit / "key.pem").string());
  REQUIRE_MESSAGE(ctx.ok(), message_of(ctx));
  return *ctx;
}

struct Outcome {
  bool server_done = false, client_done = false;
  boost::system::error_code server_ec, client_ec;
  std::optional<std::string> server_saw_cn;  // the client's CN, as the coordinator reads it
  std::optional<std::string> client_saw_cn;  // the coordinator's CN, as the client reads it
  std::string server_said, client_said;      // describe_tls_error
  bool client_got_byte = false;
};

// One connection over 127.0.0.1: the server handshakes and, if that worked, runs
// `after_server_handshake` on its SSL and sends one byte; the client handshakes and reads it. In
// TLS 1.3 a client's handshake can finish before the server has judged the client's
// certificate, so the read is what shows a refused client its refusal.
inline Outcome connect_once(ssl::context& server_ctx, ssl::context& client_ctx,
                            const std::string& host = "127.0.0.1",
                            const std::function<void(SSL*)>& after_server_handshake = {}) {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  ssl::stream<tcp::socket> server(io, server_ctx);
  ssl::stream<tcp::socket> client(io, client_ctx);
  REQUIRE(set_client_tls_hostname(client.native_handle(), host).ok());
  Outcome out;
  char server_byte = 'k', client_byte = 0;

  acceptor.async_accept(server.next_layer(), [&](boost::system::error_code ec) {
    if (ec) {
      out.server_ec = ec;
      out.server_done = true;
      return;
    }
    server.async_handshake(ssl::stream_base::server, [&](boost::system::error_code ec) {
      out.server_ec = ec;
      out.server_done = true;
      if (ec) {
        out.server_said = describe_tls_error(ec, server.native_handle());
        server.next_layer().close();
        return;
      }
      out.server_saw_cn = peer_common_name(server.native_handle());
      if (after_server_handshake) after_server_handshake(server.native_handle());
      asio::async_write(server, asio::buffer(&server_byte, 1),
                        [](boost::system::error_code, std::size_t) {});
    });
  });
  client.next_layer().async_connect(acceptor.local_endpoint(), [&](boost::system::error_code ec) {
    if (ec) {
      out.client_ec = ec;
      out.client_done = true;
      return;
    }
    client.async_handshake(ssl::stream_base::client, [&](boost::system::error_code ec) {
      if (ec) {
        out.client_ec = ec;
        out.client_done = true;
        out.client_said = describe_tls_error(ec, client.native_handle());
        return;
      }
      out.client_saw_cn = peer_common_name(client.native_handle());
      asio::async_read(client, asio::buffer(&client_byte, 1),
                       [&](boost::system::error_code ec, std::size_t n) {
                         out.client_ec = ec;
                         out.client_done = true;
                         out.client_got_byte = !ec && n == 1 && client_byte == 'k';
                         if (ec) out.client_said = describe_tls_error(ec, client.native_handle());
                       });
    });
  });
  io.run_for(std::chrono::seconds(5));
  REQUIRE_MESSAGE(out.server_done, "server side did not finish within 5 s");
  REQUIRE_MESSAGE(out.client_done, "client side did not finish within 5 s");
  return out;
}

}  // namespace federa::test
