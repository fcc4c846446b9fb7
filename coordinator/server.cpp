#include "coordinator/server.hpp"

#include <atomic>
#include <deque>
#include <thread>

#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <spdlog/spdlog.h>

#include "common/tls.hpp"
#include "common/wire.hpp"

namespace federa {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;

namespace {

constexpr const char* kConnectPath = "/v1/connect";

class Session : public ClientLink, public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, ssl::context& tls, TransportHandler& handler, const ServerOptions& opt,
          std::shared_ptr<std::atomic<std::size_t>> live, std::shared_ptr<std::atomic<std::uint64_t>> bytes_in)
      : ws_(std::move(socket), tls), handler_(handler), opt_(opt), live_(std::move(live)), bytes_in_(std::move(bytes_in)) {
    ++*live_;
    beast::error_code ec;
    auto ep = beast::get_lowest_layer(ws_).socket().remote_endpoint(ec);
    peer_ = ec ? std::string("?") : ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  ~Session() override { --*live_; }

  const std::string& id() const override { return id_; }
  std::string address() const override { return peer_; }

  void start() {
    net::dispatch(ws_.get_executor(), beast::bind_front_handler(&Session::on_start, shared_from_this()));
  }

  void send(std::shared_ptr<const std::string> bytes) override {
    net::post(ws_.get_executor(), [self = shared_from_this(), bytes = std::move(bytes)] {
      self->enqueue(std::move(bytes));
    });
  }

  void close_with_error(wire::Error::Code code, const std::string& reason) override {
    auto bytes = serialize_shared(make_error_envelope(code, reason));
    net::post(ws_.get_executor(), [self = shared_from_this(), bytes] {
      self->enqueue(bytes);
      self->close_after_writes_ = true;
      self->maybe_close();
    });
  }

  void close() override {
    net::post(ws_.get_executor(), [self = shared_from_this()] {
      self->close_after_writes_ = true;
      self->maybe_close();
    });
  }

 private:
  void on_start() {
    beast::get_lowest_layer(ws_).expires_after(opt_.handshake_timeout);
    ws_.next_layer().async_handshake(ssl::stream_base::server,
                                     beast::bind_front_handler(&Session::on_tls, shared_from_this()));
  }

  // Closes the socket now: the stream's pending timer would otherwise keep it open (and the
  // refused peer waiting for our alert) until the handshake timeout.
  void drop() {
    beast::get_lowest_layer(ws_).expires_never();
    beast::get_lowest_layer(ws_).close();
  }

  void on_tls(beast::error_code ec) {
    if (ec) {
      // Impostors, plaintext peers and TLS <= 1.2 clients all end here.
      std::string why = "TLS handshake failed: " + describe_tls_error(ec, ws_.next_layer().native_handle());
      spdlog::warn("refused {}: {}", peer_, why);
      handler_.on_refused(peer_, why);
      return drop();
    }
    auto cn = peer_common_name(ws_.next_layer().native_handle());
    if (!cn) {
      spdlog::warn("refused {}: no verified client certificate", peer_);
      handler_.on_refused(peer_, "no verified client certificate");
      return drop();
    }
    id_ = *cn;
    http::async_read(ws_.next_layer(), buffer_, request_,
                     beast::bind_front_handler(&Session::on_request, shared_from_this()));
  }

  void on_request(beast::error_code ec, std::size_t) {
    if (ec) {
      spdlog::warn("client '{}' ({}): bad HTTP request: {}", id_, peer_, ec.message());
      return drop();
    }
    if (!websocket::is_upgrade(request_) || request_.target() != kConnectPath) {
      auto status = request_.target() == kConnectPath ? http::status::upgrade_required : http::status::not_found;
      spdlog::info("client '{}' ({}): {} {} answered {}", id_, peer_, std::string(request_.method_string()),
                   std::string(request_.target()), static_cast<unsigned>(status));
      auto res = std::make_shared<http::response<http::string_body>>(status, request_.version());
      res->set(http::field::server, "federa-coordinator");
      res->set(http::field::content_type, "text/plain");
      res->keep_alive(false);
      res->body() = status == http::status::not_found
                        ? "not found: clients connect with a WebSocket upgrade at /v1/connect\n"
                        : "upgrade required: use a WebSocket upgrade\n";
      res->prepare_payload();
      http::async_write(ws_.next_layer(), *res, [self = shared_from_this(), res](beast::error_code, std::size_t) {
        beast::error_code ignored;
        beast::get_lowest_layer(self->ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
      });
      return;
    }
    beast::get_lowest_layer(ws_).expires_never();
    websocket::stream_base::timeout t{};
    t.handshake_timeout = opt_.handshake_timeout;
    t.idle_timeout = opt_.idle_timeout;
    t.keep_alive_pings = true;
    ws_.set_option(t);
    ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
      res.set(http::field::server, "federa-coordinator");
    }));
    ws_.read_message_max(opt_.max_message_bytes ? opt_.max_message_bytes : kMaxMessageBytes);
    ws_.binary(true);
    ws_.async_accept(request_, beast::bind_front_handler(&Session::on_accept, shared_from_this()));
  }

  void on_accept(beast::error_code ec) {
    if (ec) {
      spdlog::warn("client '{}' ({}): WebSocket upgrade failed: {}", id_, peer_, ec.message());
      return drop();
    }
    open_ = true;
    if (Status s = handler_.on_connect(shared_from_this()); !s) {
      spdlog::warn("client '{}' ({}) refused: {}", id_, peer_, s.message());
      registered_ = false;
      close_with_error(wire::Error::NOT_A_MEMBER, s.message());
      return;
    }
    registered_ = true;
    do_read();
  }

  void do_read() {
    ws_.async_read(read_buffer_, beast::bind_front_handler(&Session::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t bytes) {
    if (ec) {
      std::string why = ec == websocket::error::closed ? "closed by the client"
                        : ec == websocket::error::message_too_big
                            ? "message larger than the " + std::to_string(ws_.read_message_max()) + "-byte limit"
                            : ec.message();
      if (ec == websocket::error::message_too_big) spdlog::warn("client '{}': {}", id_, why);
      finish(why);
      return;
    }
    if (!ws_.got_binary()) {
      fail_protocol("text frame received; the protocol is binary protobuf");
      return;
    }
    bytes_in_->fetch_add(bytes, std::memory_order_relaxed);
    wire::Envelope msg;
    auto data = read_buffer_.data();
    bool parsed = msg.ParseFromArray(data.data(), static_cast<int>(data.size()));
    read_buffer_.consume(bytes);
    if (!parsed) {
      fail_protocol("message is not a valid Envelope");
      return;
    }
    if (Status s = handler_.on_message(shared_from_this(), msg); !s) {
      fail_protocol(s.message());
      return;
    }
    if (!closing_) do_read();
  }

  void fail_protocol(const std::string& why) {
    spdlog::warn("client '{}' ({}): {}; closing the session", id_, peer_, why);
    enqueue(serialize_shared(make_error_envelope(wire::Error::BAD_MESSAGE, why)));
    close_after_writes_ = true;
    maybe_close();
  }

  void enqueue(std::shared_ptr<const std::string> bytes) {
    if (!open_ || closing_) return;
    queued_bytes_ += bytes->size();
    if (queued_bytes_ > opt_.max_queued_bytes) {
      spdlog::warn("client '{}': outbound queue over {} bytes; dropping the session", id_, opt_.max_queued_bytes);
      closing_ = true;
      beast::get_lowest_layer(ws_).cancel();
      return;
    }
    queue_.push_back(std::move(bytes));
    if (queue_.size() == 1) do_write();
  }

  void do_write() {
    ws_.async_write(net::buffer(*queue_.front()),
                    beast::bind_front_handler(&Session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    if (ec) {
      finish("write failed: " + ec.message());
      return;
    }
    queued_bytes_ -= queue_.front()->size();
    queue_.pop_front();
    if (!queue_.empty()) {
      do_write();
      return;
    }
    maybe_close();
  }

  void maybe_close() {
    if (!close_after_writes_ || !queue_.empty() || closing_ || !open_) return;
    closing_ = true;
    ws_.async_close(websocket::close_code::normal,
                    [self = shared_from_this()](beast::error_code) { self->finish("closed by the coordinator"); });
  }

  void finish(const std::string& why) {
    if (finished_) return;
    finished_ = true;
    open_ = false;
    if (registered_) handler_.on_disconnect(shared_from_this(), why);
  }

  websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws_;
  TransportHandler& handler_;
  const ServerOptions& opt_;
  std::shared_ptr<std::atomic<std::size_t>> live_;
  std::shared_ptr<std::atomic<std::uint64_t>> bytes_in_;
  beast::flat_buffer buffer_;
  beast::flat_buffer read_buffer_;
  http::request<http::empty_body> request_;
  std::deque<std::shared_ptr<const std::string>> queue_;
  std::size_t queued_bytes_ = 0;
  std::string id_;
  std::string peer_;
  bool open_ = false;
  bool registered_ = false;
  bool close_after_writes_ = false;
  bool closing_ = false;
  bool finished_ = false;
};

}  // namespace

struct WebSocketServer::Impl : std::enable_shared_from_this<WebSocketServer::Impl> {
  Impl(net::io_context& io, std::shared_ptr<ssl::context> tls, TransportHandler& handler, ServerOptions opt)
      : io(io), acceptor(net::make_strand(io)), tls(std::move(tls)), handler(handler), opt(std::move(opt)) {}

  void do_accept() {
    acceptor.async_accept(net::make_strand(io), [self = shared_from_this()](beast::error_code ec, tcp::socket s) {
      if (ec) {
        if (ec == net::error::operation_aborted || !self->acceptor.is_open()) return;
        spdlog::warn("accept failed: {}", ec.message());
      } else {
        std::make_shared<Session>(std::move(s), *self->tls, self->handler, self->opt, self->live, self->bytes_in)
            ->start();
      }
      self->do_accept();
    });
  }

  net::io_context& io;
  tcp::acceptor acceptor;
  std::shared_ptr<ssl::context> tls;
  TransportHandler& handler;
  ServerOptions opt;
  std::shared_ptr<std::atomic<std::size_t>> live = std::make_shared<std::atomic<std::size_t>>(0);
  std::shared_ptr<std::atomic<std::uint64_t>> bytes_in = std::make_shared<std::atomic<std::uint64_t>>(0);
};

WebSocketServer::WebSocketServer(net::io_context& io, std::shared_ptr<ssl::context> tls,
                                 TransportHandler& handler, ServerOptions options)
    : impl_(std::make_shared<Impl>(io, std::move(tls), handler, std::move(options))) {}

WebSocketServer::~WebSocketServer() { stop(); }

Status WebSocketServer::start() {
  beast::error_code ec;
  auto addr = net::ip::make_address(impl_->opt.listen.host, ec);
  if (ec) return make_error(ErrorCode::invalid_argument, "--listen: '" + impl_->opt.listen.host + "' is not an IP address");
  tcp::endpoint ep(addr, impl_->opt.listen.port);
  auto& a = impl_->acceptor;
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (ec) return make_error(ErrorCode::unavailable, "cannot listen on " + impl_->opt.listen.host + ":" +
                            std::to_string(impl_->opt.listen.port) + ": " + ec.message());
  a.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return make_error(ErrorCode::unavailable, "cannot listen on " + impl_->opt.listen.host + ":" +
                            std::to_string(impl_->opt.listen.port) + ": " + ec.message());
  port_ = a.local_endpoint().port();
  impl_->do_accept();
  return {};
}

void WebSocketServer::stop() {
  if (!impl_) return;
  net::post(impl_->acceptor.get_executor(), [impl = impl_] {
    beast::error_code ec;
    impl->acceptor.close(ec);
  });
}

std::uint64_t WebSocketServer::bytes_received() const { return impl_ ? impl_->bytes_in->load() : 0; }

std::size_t WebSocketServer::open_sessions() const { return impl_ ? impl_->live->load() : 0; }

void WebSocketServer::wait_for_sessions(std::chrono::milliseconds limit) const {
  auto until = std::chrono::steady_clock::now() + limit;
  while (open_sessions() > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

}  // namespace federa
