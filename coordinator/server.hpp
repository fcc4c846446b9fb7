// The coordinator's network transport: a TLS 1.3 listener with mutual authentication whose
// sessions upgrade to WebSocket at /v1/connect and carry one Envelope per binary message.
//
//   boost::asio::io_context io;
//   auto tls = make_server_tls_context(ca, cert, key);        // common/tls.hpp
//   WebSocketServer server(io, *tls, handler, {.listen = {"127.0.0.1", 8443}});
//   if (Status s = server.start(); !s) fail(s.message());
//   io.run();                                                 // on as many threads as wanted
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "common/options.hpp"
#include "common/result.hpp"
#include "coordinator/transport.hpp"

namespace federa {

struct ServerOptions {
  HostPort listen{"127.0.0.1", 8443};
  // From TCP accept to a WebSocket session: TLS handshake, HTTP upgrade request, WebSocket
  // handshake. An idle unauthenticated connection holds a descriptor no longer than this.
  std::chrono::seconds handshake_timeout{5};
  // Open connections (handshakes included) and, of those, connections still in the handshake.
  // When either is full a new connection evicts the oldest handshake of the address with the
  // most of them (an idle flood cannot lock members out); with no handshake to evict it is
  // closed at once. The program caps max_connections by its file-descriptor limit.
  std::size_t max_connections = 10000;
  std::size_t max_handshakes = 256;
  // A peer that answers no WebSocket ping for this long is dropped (heartbeat).
  std::chrono::seconds idle_timeout{60};
  std::size_t max_message_bytes = 0;          // 0 = kMaxMessageBytes
  std::size_t max_queued_bytes = 512u << 20;  // per session outbound cap
};

class WebSocketServer {
 public:
  WebSocketServer(boost::asio::io_context& io, std::shared_ptr<boost::asio::ssl::context> tls,
                  TransportHandler& handler, ServerOptions options);
  ~WebSocketServer();
  // Binds and starts accepting. Fails with a clear reason (address in use, bad address).
  Status start();
  // Stops accepting; existing sessions end when the io_context stops.
  void stop();
  // Sessions still open (a TLS handshake under way counts). Thread-safe.
  std::size_t open_sessions() const;
  // Connections turned away or evicted because a limit was full, since start. Thread-safe.
  std::size_t refused_connections() const;
  // Waits up to `limit` for every session to finish (after the orchestrator closed them).
  void wait_for_sessions(std::chrono::milliseconds limit) const;
  unsigned short bound_port() const { return port_; }
  // Bytes of WebSocket messages received from clients since start (for /metrics). Thread-safe.
  std::uint64_t bytes_received() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
  unsigned short port_ = 0;
};

}  // namespace federa
