// The admin listener's network side: HTTPS (TLS 1.3) with Boost.Beast on its own io_context and
// thread, so nothing an admin client does can hold up the federation's I/O threads. It
// identifies each caller (admin certificate, else bearer token), hands requests to AdminApi and
// streams server-sent events from an EventHub. Everything is bounded: connections, request
// header and body sizes, event streams and their queues, and every read and write has a timeout.
//
//   AdminServer server(api, tls_context, {.listen = {"127.0.0.1", 8444}}, "pki/admin-tokens");
//   if (Status s = server.start(); !s) fail(s);    // binds, loads the tokens, starts its thread
//   state_publisher = [&](auto event, auto json) { server.publish(event, std::move(json)); };
//   ...
//   server.stop();                                 // closes streams, joins the thread
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "common/options.hpp"
#include "common/result.hpp"
#include "coordinator/admin/admin_api.hpp"

namespace federa::admin {

struct AdminServerOptions {
  HostPort listen{"127.0.0.1", 0};
  std::size_t max_connections = 256;              // beyond: the connection is closed at once
  std::size_t max_event_streams = 64;             // beyond: 503 with the reason
  std::size_t max_header_bytes = 16 * 1024;       // beyond: 431
  std::size_t max_body_bytes = 64 * 1024;         // beyond: 413
  std::size_t max_stream_queue_bytes = 1u << 20;  // an event stream further behind is closed
  std::chrono::seconds handshake_timeout{10};
  std::chrono::seconds idle_timeout{30};       // reading a request, or waiting for the next one
  std::chrono::seconds write_timeout{30};      // writing an answer (or an event frame)
  std::chrono::seconds download_timeout{600};  // writing a model file
  std::chrono::seconds heartbeat{15};          // keep-alive comment on event streams
};

class AdminServer {
 public:
  // `token_file` empty: certificates only.
  AdminServer(AdminApi& api, std::shared_ptr<boost::asio::ssl::context> tls,
              AdminServerOptions options, std::filesystem::path token_file);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Loads the token file, binds, and starts the listener's thread. SIGHUP re-reads the token file.
  Status start();
  void stop();
  unsigned short bound_port() const;
  // Thread-safe: queues an event for every open stream.
  void publish(std::string_view event, std::string json);
  // Re-reads the token file; on error the tokens in force stay.
  Status reload_tokens();

  struct Core;

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace federa::admin
