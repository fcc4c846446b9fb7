// The coordinator's TLS stream (coordinator/tls_stream.hpp) against Asio's ssl::stream, the client
// side every member runs: bulk data both ways at once (partial writes, reads of many records),
// refused certificates, and a peer that vanishes while the coordinator writes.
#include <doctest/doctest.h>
#include <signal.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "coordinator/tls_stream.hpp"
#include "tests/common/test_pki_util.hpp"

using namespace federa;
using namespace federa::test;

namespace {

std::vector<char> pattern(std::size_t n, std::uint32_t seed) {
  std::vector<char> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    v[i] = static_cast<char>(seed >> 24);
  }
  return v;
}

// A TlsStream server and an Asio ssl::stream client, connected over 127.0.0.1 (not handshaken).
struct Pair {
  asio::io_context io;
  tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::optional<TlsStream> server;
  ssl::stream<tcp::socket> client;
  Pair(ssl::context& server_ctx, ssl::context& client_ctx) : client(io, client_ctx) {
    REQUIRE(set_client_tls_hostname(client.native_handle(), "127.0.0.1").ok());
    client.next_layer().connect(acceptor.local_endpoint());
    server.emplace(acceptor.accept(), server_ctx);
  }
  // Both handshakes; returns the server's error.
  boost::system::error_code handshake() {
    boost::system::error_code server_ec = asio::error::would_block;
    server->async_handshake(ssl::stream_base::server,
                            [&](boost::system::error_code ec) { server_ec = ec; });
    client.async_handshake(ssl::stream_base::client, [](boost::system::error_code) {});
    io.run_for(std::chrono::seconds(10));
    io.restart();
    return server_ec;
  }
};

}  // namespace

TEST_CASE("TLS stream: 8 MiB each way at the same time, byte for byte") {
  Federation f;
  auto sctx = server_context(f);
  auto cctx = client_context(f.ca(), f.kit());
  Pair p(*sctx, *cctx);
  REQUIRE_FALSE(p.handshake());
  CHECK(peer_common_name(p.server->native_handle()) == std::optional<std::string>("hospital-a"));

  const auto up = pattern(8 << 20, 1), down = pattern(8 << 20, 2);
  std::vector<char> got_up(up.size()), got_down(down.size());
  boost::system::error_code e1 = asio::error::would_block, e2 = e1, e3 = e1, e4 = e1;
  // The server writes with async_write (many partial writes) while it reads, as the WebSocket
  // does when a broadcast and an upload cross.
  asio::async_write(*p.server, asio::buffer(down), [&](auto ec, std::size_t) { e1 = ec; });
  asio::async_read(*p.server, asio::buffer(got_up), [&](auto ec, std::size_t) { e2 = ec; });
  asio::async_write(p.client, asio::buffer(up), [&](auto ec, std::size_t) { e3 = ec; });
  asio::async_read(p.client, asio::buffer(got_down), [&](auto ec, std::size_t) { e4 = ec; });
  p.io.run_for(std::chrono::seconds(30));
  CHECK_FALSE(e1);
  CHECK_FALSE(e2);
  CHECK_FALSE(e3);
  CHECK_FALSE(e4);
  CHECK(got_up == up);
  CHECK(got_down == down);

  // A gathered write (a small header, then the payload) arrives as one byte stream.
  const std::string header = "hdr:";
  const auto payload = pattern(100000, 3);
  std::vector<char> got(header.size() + payload.size());
  std::vector<asio::const_buffer> seq{asio::buffer(header), asio::buffer(payload)};
  p.io.restart();
  asio::async_write(*p.server, seq, [&](auto ec, std::size_t) { e1 = ec; });
  asio::async_read(p.client, asio::buffer(got), [&](auto ec, std::size_t) { e4 = ec; });
  p.io.run_for(std::chrono::seconds(10));
  CHECK_FALSE(e1);
  CHECK_FALSE(e4);
  CHECK(std::string(got.data(), header.size()) == header);
  CHECK(std::equal(payload.begin(), payload.end(), got.begin() + header.size()));
}

TEST_CASE("TLS stream: a certificate from another CA fails the handshake with the reason") {
  Federation f, other;
  auto sctx = server_context(f);
  auto cctx = client_context(other.ca(), other.kit());  // trusts and presents the wrong CA
  Pair p(*sctx, *cctx);
  const auto ec = p.handshake();
  REQUIRE(ec);
  CHECK(ec != asio::error::would_block);
  const std::string said = describe_tls_error(ec, p.server->native_handle());
  CAPTURE(said);
  CHECK((contains(said, "certificate") || contains(said, "closed the connection")));
}

TEST_CASE("TLS stream: a member that vanishes mid-write ends the write with an error, no signal") {
  // With SIGPIPE at its default action, a write to the closed socket without MSG_NOSIGNAL would
  // kill this test program (it did, with OpenSSL's own socket BIO).
  struct sigaction old {};
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGPIPE, &dfl, &old);
  Federation f;
  auto sctx = server_context(f);
  auto cctx = client_context(f.ca(), f.kit());
  Pair p(*sctx, *cctx);
  REQUIRE_FALSE(p.handshake());
  boost::system::error_code ignored;
  p.client.next_layer().close(ignored);
  const auto big = pattern(32 << 20, 4);
  boost::system::error_code ec = asio::error::would_block;
  std::size_t sent = 0;
  asio::async_write(*p.server, asio::buffer(big), [&](auto e, std::size_t n) {
    ec = e;
    sent = n;
  });
  p.io.run_for(std::chrono::seconds(10));
  sigaction(SIGPIPE, &old, nullptr);
  CHECK(ec);
  CHECK(ec != asio::error::would_block);
  CHECK(sent < big.size());
}
