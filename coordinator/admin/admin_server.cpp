#include "coordinator/admin/admin_server.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "coordinator/admin/event_hub.hpp"
#include "coordinator/admin/http_util.hpp"

namespace federa::admin {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using Tcp = net::ip::tcp;

// Shared by the listener and its sessions. Members are declared so that the io_context is
// destroyed (and with it every session still queued) before the hub and counters they use.
struct AdminServer::Core {
  Core(AdminApi& api, std::shared_ptr<ssl::context> tls, AdminServerOptions opt,
       std::filesystem::path token_file)
      : api(api), tls(std::move(tls)), opt(std::move(opt)), token_file(std::move(token_file)) {
    hub.emplace(io.get_executor());
  }

  std::shared_ptr<const AdminTokens> current_tokens() {
    std::lock_guard lk(mu);
    return tokens;
  }
  void count(unsigned status) {
    std::lock_guard lk(mu);
    ++responses[status];
  }

  AdminApi& api;
  std::shared_ptr<ssl::context> tls;
  AdminServerOptions opt;
  std::filesystem::path token_file;
  std::atomic<std::size_t> connections{0};
  std::mutex mu;  // guards tokens and responses
  std::shared_ptr<const AdminTokens> tokens;
  std::map<unsigned, std::uint64_t> responses;
  std::optional<EventHub> hub;
  net::io_context io{1};
  Tcp::acceptor acceptor{io};
  net::steady_timer ticker{io};
  net::signal_set signals{io};
  std::thread thread;
  unsigned short port = 0;
  std::chrono::steady_clock::time_point last_heartbeat = std::chrono::steady_clock::now();
};

namespace {

using Core = AdminServer::Core;

constexpr std::size_t kMaxDrainBytes = 4u << 20;

void set_common_headers(http::fields& h, const ApiResponse& r) {
  h.set(http::field::server, "federa-coordinator");
  h.set(http::field::content_type, r.content_type);
  h.set(http::field::cache_control, "no-store");
  h.set("X-Content-Type-Options", "nosniff");
  h.set("X-Frame-Options", "DENY");
  h.set("Referrer-Policy", "no-referrer");
  h.set("Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
  for (const auto& [k, v] : r.headers) h.set(k, v);
}

class Session : public EventSink, public std::enable_shared_from_this<Session> {
 public:
  Session(Tcp::socket socket, Core& core) : stream_(std::move(socket), *core.tls), core_(core) {
    ++core_.connections;
    beast::error_code ec;
    auto ep = beast::get_lowest_layer(stream_).socket().remote_endpoint(ec);
    peer_ = ec ? std::string("?") : ep.address().to_string() + ":" + std::to_string(ep.port());
  }
  ~Session() override { --core_.connections; }

  void start() {
    beast::get_lowest_layer(stream_).expires_after(core_.opt.handshake_timeout);
    stream_.async_handshake(
        ssl::stream_base::server, [self = shared_from_this()](beast::error_code ec) {
          if (ec) {
            spdlog::debug("admin: TLS handshake with {} failed: {}", self->peer_, ec.message());
            return self->close_now();
          }
          self->cert_ = peer_admin_identity(self->stream_.native_handle());
          self->read_request();
        });
  }

  // EventSink
  void push(std::shared_ptr<const std::string> frame) override {
    if (closed_) return;
    if (stuck()) {
      spdlog::warn("admin: event stream to {} has not taken a frame for {} s; closing it", peer_,
                   core_.opt.write_timeout.count());
      return close();
    }
    queued_ += frame->size();
    if (queued_ > core_.opt.max_stream_queue_bytes) {
      spdlog::warn("admin: event stream to {} is over {} bytes behind; closing it", peer_,
                   core_.opt.max_stream_queue_bytes);
      return close();
    }
    queue_.push_back(std::move(frame));
    if (queue_.size() == 1) write_frame();
  }

  void close() override {
    if (closed_) return;
    closed_ = true;
    if (streaming_) core_.hub->unsubscribe(this);
    close_now();
  }

  // A stream whose oldest frame has waited longer than the write timeout is stuck.
  bool stuck() const {
    return !queue_.empty() &&
           std::chrono::steady_clock::now() - write_started_ > core_.opt.write_timeout;
  }

 private:
  void close_now() {
    beast::error_code ec;
    beast::get_lowest_layer(stream_).socket().shutdown(Tcp::socket::shutdown_both, ec);
    beast::get_lowest_layer(stream_).close();
  }

  void read_request() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(core_.opt.max_header_bytes));
    parser_->body_limit(core_.opt.max_body_bytes);
    beast::get_lowest_layer(stream_).expires_after(core_.opt.idle_timeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::eof ||
        ec == ssl::error::stream_truncated || ec == net::error::operation_aborted ||
        ec == net::error::connection_reset)
      return close_now();
    if (ec == http::error::body_limit)
      return refuse(413, "the request body is larger than " +
                             std::to_string(core_.opt.max_body_bytes) + " bytes");
    if (ec == http::error::header_limit)
      return refuse(431, "the request header is larger than " +
                             std::to_string(core_.opt.max_header_bytes) + " bytes");
    if (ec) return refuse(400, "malformed HTTP request: " + ec.message());
    handle(parser_->release());
  }

  // The answer goes out at once; then what the client is still sending (the rest of a huge
  // body) is read and dropped, up to a bound, so the client gets to read the reason instead of a
  // reset connection.
  void refuse(unsigned status, const std::string& why) {
    ApiResponse r;
    r.status = status;
    r.body = error_json(make_error(ErrorCode::invalid_argument, why)) + "\n";
    linger_ = true;
    send_body(std::move(r), false);
  }

  void drain(std::size_t left) {
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(2));
    stream_.async_read_some(net::buffer(discard_),
                            [self = shared_from_this(), left](beast::error_code ec, std::size_t n) {
                              if (ec || n >= left) return self->close_now();
                              self->drain(left - n);
                            });
  }

  void handle(http::request<http::string_body> req) {
    ApiRequest ar;
    ar.method = req.method();
    ar.target = std::string(req.target());
    ar.content_type = std::string(req[http::field::content_type]);
    ar.body = std::move(req.body());
    auto tokens = core_.current_tokens();
    Result<Caller> caller =
        authenticate(cert_, req[http::field::authorization], tokens.get(), peer_);
    ApiResponse r = core_.api.handle(ar, caller);
    const bool keep = req.keep_alive();
    if (r.kind == ApiResponse::Kind::events) {
      std::optional<std::uint64_t> last;
      if (auto id = req.find("Last-Event-ID"); id != req.end()) last = parse_uint(id->value());
      return start_stream(std::move(r), last);
    }
    if (r.kind == ApiResponse::Kind::file) return send_file(std::move(r), keep);
    send_body(std::move(r), keep);
  }

  void send_body(ApiResponse r, bool keep) {
    core_.count(r.status);
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(r.status), 11);
    set_common_headers(*res, r);
    res->body() = std::move(r.body);
    res->keep_alive(keep);
    res->prepare_payload();
    write(res, keep, core_.opt.write_timeout);
  }

  void send_file(ApiResponse r, bool keep) {
    core_.count(r.status);
    auto res =
        std::make_shared<http::response<http::file_body>>(static_cast<http::status>(r.status), 11);
    set_common_headers(*res, r);
    beast::error_code ec;
    res->body().reset(std::move(r.file), ec);
    if (ec) {
      ApiResponse e;
      e.status = 500;
      e.body = error_json(
                   make_error(ErrorCode::internal, "cannot read the model file: " + ec.message())) +
               "\n";
      return send_body(std::move(e), false);
    }
    res->keep_alive(keep);
    res->prepare_payload();
    write(res, keep, core_.opt.download_timeout);
  }

  template <class Message>
  void write(std::shared_ptr<Message> res, bool keep, std::chrono::seconds timeout) {
    beast::get_lowest_layer(stream_).expires_after(timeout);
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res, keep](beast::error_code ec, std::size_t) {
                        if (!ec && self->linger_) return self->drain(kMaxDrainBytes);
                        if (ec || !keep) return self->close_now();
                        self->read_request();
                      });
  }

  void start_stream(ApiResponse r, std::optional<std::uint64_t> last) {
    if (core_.hub->subscribers() >= core_.opt.max_event_streams) {
      ApiResponse busy = error_response(
          make_error(ErrorCode::unavailable, "too many event streams open (" +
                                                 std::to_string(core_.opt.max_event_streams) +
                                                 "); close one and retry"));
      busy.headers.emplace_back("Retry-After", "5");
      return send_body(std::move(busy), false);
    }
    core_.count(200);
    streaming_ = true;
    beast::get_lowest_layer(stream_).expires_never();
    std::string head = "HTTP/1.1 200 OK\r\n";
    http::fields fields;
    set_common_headers(fields, r);
    for (const auto& f : fields)
      head += std::string(f.name_string()) + ": " + std::string(f.value()) + "\r\n";
    head += "Connection: keep-alive\r\nX-Accel-Buffering: no\r\n\r\nretry: 3000\n\n";
    push(std::make_shared<const std::string>(std::move(head)));
    core_.hub->subscribe(shared_from_this(), last);
    // Any byte from the client, or its closing the connection, ends the stream.
    stream_.async_read_some(
        net::buffer(discard_),
        [self = shared_from_this()](beast::error_code, std::size_t) { self->close(); });
  }

  void write_frame() {
    write_started_ = std::chrono::steady_clock::now();
    net::async_write(stream_, net::buffer(*queue_.front()),
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       if (ec) return self->close();
                       self->queued_ -= self->queue_.front()->size();
                       self->queue_.pop_front();
                       if (!self->queue_.empty() && !self->closed_) self->write_frame();
                     });
  }

  beast::ssl_stream<beast::tcp_stream> stream_;
  Core& core_;
  std::string peer_;
  Result<AdminIdentity> cert_ = make_error(ErrorCode::not_found, "no certificate");
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool streaming_ = false, closed_ = false;
  std::deque<std::shared_ptr<const std::string>> queue_;
  std::size_t queued_ = 0;
  std::chrono::steady_clock::time_point write_started_;
  bool linger_ = false;
  char discard_[16 * 1024];
};

void do_accept(Core& core) {
  core.acceptor.async_accept([&core](beast::error_code ec, Tcp::socket socket) {
    if (ec == net::error::operation_aborted || !core.acceptor.is_open()) return;
    if (!ec) {
      if (core.connections >= core.opt.max_connections) {
        spdlog::debug("admin: {} connections open; refusing one more", core.connections.load());
        beast::error_code ignored;
        socket.close(ignored);
      } else {
        std::make_shared<Session>(std::move(socket), core)->start();
      }
    }
    do_accept(core);
  });
}

void tick(Core& core) {
  core.ticker.expires_after(std::chrono::seconds(1));
  core.ticker.async_wait([&core](beast::error_code ec) {
    if (ec) return;
    core.api.tick();
    if (std::chrono::steady_clock::now() - core.last_heartbeat >= core.opt.heartbeat) {
      core.last_heartbeat = std::chrono::steady_clock::now();
      core.hub->heartbeat();
    }
    tick(core);
  });
}

void watch_hup(AdminServer& server, Core& core) {
  core.signals.async_wait([&server, &core](beast::error_code ec, int) {
    if (ec) return;
    if (Status s = server.reload_tokens(); !s)
      spdlog::error("SIGHUP: {}; keeping the admin tokens in force", s.message());
    watch_hup(server, core);
  });
}

}  // namespace

AdminServer::AdminServer(AdminApi& api, std::shared_ptr<ssl::context> tls,
                         AdminServerOptions options, std::filesystem::path token_file)
    : core_(
          std::make_shared<Core>(api, std::move(tls), std::move(options), std::move(token_file))) {
  core_->api.add_facts([core = core_.get()](LiveFacts& f) {
    f.sse_subscribers = core->hub->subscribers();
    f.admin_connections = core->connections.load();
    std::lock_guard lk(core->mu);
    f.admin_responses = core->responses;
  });
}

AdminServer::~AdminServer() {
  try {
    stop();
  } catch (const std::exception& e) {  // joining the thread can throw; a destructor must not
    spdlog::error("admin: stopping the listener: {}", e.what());
  }
}

Status AdminServer::reload_tokens() {
  if (core_->token_file.empty()) return {};
  auto t = AdminTokens::load(core_->token_file);
  if (!t) return t.error();
  spdlog::info("admin: {} bearer token(s) loaded from {}", t->entries().size(),
               core_->token_file.string());
  std::lock_guard lk(core_->mu);
  core_->tokens = std::make_shared<const AdminTokens>(std::move(*t));
  return {};
}

Status AdminServer::start() {
  if (Status s = reload_tokens(); !s)
    return make_error(s.code(), "--admin-token-file: " + s.message());
  Core& c = *core_;
  beast::error_code ec;
  auto addr = net::ip::make_address(c.opt.listen.host, ec);
  if (ec)
    return make_error(ErrorCode::invalid_argument,
                      "'" + c.opt.listen.host + "' is not an IP address");
  Tcp::endpoint ep(addr, c.opt.listen.port);
  const std::string where = c.opt.listen.host + ":" + std::to_string(c.opt.listen.port);
  c.acceptor.open(ep.protocol(), ec);
  if (!ec) c.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) c.acceptor.bind(ep, ec);
  if (!ec) c.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    return make_error(ErrorCode::unavailable, "cannot listen on " + where + ": " + ec.message());
  c.port = c.acceptor.local_endpoint().port();
  c.signals.add(SIGHUP, ec);
  if (!ec) watch_hup(*this, c);
  do_accept(c);
  tick(c);
  c.thread = std::thread([&c] { c.io.run(); });
  return {};
}

void AdminServer::stop() {
  Core& c = *core_;
  if (!c.thread.joinable()) return;
  net::post(c.io, [&c] {
    beast::error_code ec;
    c.acceptor.close(ec);
    c.ticker.cancel();
    c.signals.cancel(ec);
    c.hub->close_all();
    c.io.stop();
  });
  c.thread.join();
}

unsigned short AdminServer::bound_port() const { return core_->port; }

void AdminServer::publish(std::string_view event, std::string json) {
  core_->hub->publish(event, std::move(json));
}

}  // namespace federa::admin
