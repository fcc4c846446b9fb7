#include "coordinator/server.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <deque>
#include <exception>
#include <list>
#include <map>
#include <mutex>
#include <thread>

#include "common/tls.hpp"
#include "common/wire.hpp"
#include "coordinator/buffer_pool.hpp"
#include "coordinator/event_text.hpp"
#include "coordinator/tls_stream.hpp"

namespace federa {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using net::ip::tcp;

namespace {

constexpr const char* kConnectPath = "/v1/connect";
constexpr std::size_t kKeptReadBuffer = 16 * 1024;  // larger read buffers go back to the pool
constexpr std::size_t kIdleReadBuffers = 8u << 20;  // what the pool keeps for the next reads

// Lines an unauthenticated peer can trigger at will are rate-limited (one per interval, with a
// count of what was left out): a flood must not become a disk-filling log.
LogLimiter& refusal_log() {
  static LogLimiter limiter(std::chrono::seconds(5));
  return limiter;
}

class Session;

// The listener's connection accounting, shared by the acceptor and every session.
struct Limits {
  struct Pending {
    std::string ip;
    std::weak_ptr<Session> session;
  };
  std::mutex mu;
  std::size_t open = 0;            // counted sessions (evicted ones are no longer counted)
  std::size_t refused = 0;         // turned away or evicted
  std::list<Pending> handshaking;  // oldest first
  // Message buffers, shared by the sessions (buffer_pool.hpp).
  std::shared_ptr<BufferPool> buffers = std::make_shared<BufferPool>(kIdleReadBuffers);
};

class Session : public ClientLink, public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, ssl::context& tls, TransportHandler& handler,
          const ServerOptions& opt, std::shared_ptr<Limits> limits,
          std::shared_ptr<std::atomic<std::uint64_t>> bytes_in)
      : ws_(std::move(socket), tls),
        handshake_timer_(ws_.get_executor()),
        handler_(handler),
        opt_(opt),
        limits_(std::move(limits)),
        bytes_in_(std::move(bytes_in)) {
    beast::error_code ec;
    auto ep = beast::get_lowest_layer(ws_).remote_endpoint(ec);
    ip_ = ec ? std::string("?") : ep.address().to_string();
    peer_ = ec ? std::string("?") : ip_ + ":" + std::to_string(ep.port());
    std::lock_guard lk(limits_->mu);
    ++limits_->open;
  }

  ~Session() override {
    std::lock_guard lk(limits_->mu);
    if (in_handshake_) limits_->handshaking.erase(pending_);
    if (counted_) --limits_->open;
  }

  // Joins the handshake queue (the acceptor calls this once, after construction).
  void register_handshake() {
    std::lock_guard lk(limits_->mu);
    pending_ = limits_->handshaking.insert(limits_->handshaking.end(),
                                           Limits::Pending{ip_, weak_from_this()});
    in_handshake_ = true;
  }

  // Under limits_->mu: leaves the queue and the count now; the socket closes on its strand.
  void evict_locked() {
    if (in_handshake_) limits_->handshaking.erase(pending_);
    in_handshake_ = false;
    if (counted_) --limits_->open;
    counted_ = false;
    ++limits_->refused;
    net::post(ws_.get_executor(), [self = shared_from_this()] {
      self->evicted_ = true;
      self->drop();
    });
  }

  const std::string& id() const override { return id_; }
  std::string address() const override { return peer_; }

  void start() {
    net::dispatch(ws_.get_executor(),
                  beast::bind_front_handler(&Session::on_start, shared_from_this()));
  }

  void send(std::shared_ptr<const std::string> bytes) override {
    net::post(ws_.get_executor(), [self = shared_from_this(), bytes = std::move(bytes)]() mutable {
      self->enqueue(std::move(bytes));
    });
  }

  // The stream's messages are pulled one at a time as the previous one is written.
  // A stream holds one message at a time, so the oldest one queued is not counted against
  // max_queued_bytes (a model larger than the cap still goes out); one queued behind it is,
  // as the chunks a lagging peer has yet to take may have to be kept for it.
  void send_stream(std::shared_ptr<MessageStream> stream) override {
    net::post(ws_.get_executor(), [self = shared_from_this(), stream = std::move(stream)] {
      const bool first = std::none_of(self->queue_.begin(), self->queue_.end(),
                                      [](const Outgoing& o) { return o.stream != nullptr; });
      self->enqueue(Outgoing{nullptr, stream, first ? 0 : stream->size_bytes()});
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
    // The TLS handshake and the upgrade request must arrive within the handshake timeout; after
    // the upgrade, the WebSocket's own timeouts take over.
    handshake_timer_.expires_after(opt_.handshake_timeout);
    handshake_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->close_socket();
    });
    ws_.next_layer().async_handshake(
        ssl::stream_base::server, beast::bind_front_handler(&Session::on_tls, shared_from_this()));
  }

  void end_handshake() {
    std::lock_guard lk(limits_->mu);
    if (in_handshake_) limits_->handshaking.erase(pending_);
    in_handshake_ = false;
  }

  // Closes the socket now: the pending handshake timer would otherwise keep the session (and the
  // refused peer waiting for our alert) until the handshake timeout.
  void drop() {
    end_handshake();
    handshake_timer_.cancel();
    close_socket();
  }

  void close_socket() {
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).close(ignored);
  }

  void refuse(const std::string& why) {
    if (auto n = refusal_log().allow())
      spdlog::warn("refused {}: {}{}", peer_, why,
                   *n ? fmt::format(" ({} more refusals not logged)", *n) : "");
    handler_.on_refused(peer_, why);
    drop();
  }

  void on_tls(beast::error_code ec) {
    if (evicted_) return;  // made room for a newer connection; already counted and closed
    if (ec) {
      // Impostors, plaintext peers, TLS <= 1.2 clients and idle connections all end here.
      refuse("TLS handshake failed: " + describe_tls_error(ec, ws_.next_layer().native_handle()));
      return;
    }
    auto cn = peer_common_name(ws_.next_layer().native_handle());
    if (!cn) return refuse("no verified client certificate");
    id_ = *cn;
    http::async_read(ws_.next_layer(), buffer_, request_,
                     beast::bind_front_handler(&Session::on_request, shared_from_this()));
  }

  void on_request(beast::error_code ec, std::size_t) {
    if (evicted_) return;
    if (ec) {
      spdlog::warn("client '{}' ({}): bad HTTP request: {}", id_, peer_, ec.message());
      return drop();
    }
    if (!websocket::is_upgrade(request_) || request_.target() != kConnectPath) {
      auto status = request_.target() == kConnectPath ? http::status::upgrade_required
                                                      : http::status::not_found;
      spdlog::info("client '{}' ({}): {} {} answered {}", id_, peer_,
                   std::string(request_.method_string()), std::string(request_.target()),
                   static_cast<unsigned>(status));
      auto res = std::make_shared<http::response<http::string_body>>(status, request_.version());
      res->set(http::field::server, "federa-coordinator");
      res->set(http::field::content_type, "text/plain");
      res->keep_alive(false);
      res->body() = status == http::status::not_found
                        ? "not found: clients connect with a WebSocket upgrade at /v1/connect\n"
                        : "upgrade required: use a WebSocket upgrade\n";
      res->prepare_payload();
      http::async_write(
          ws_.next_layer(), *res, [self = shared_from_this(), res](beast::error_code, std::size_t) {
            beast::error_code ignored;
            beast::get_lowest_layer(self->ws_).shutdown(tcp::socket::shutdown_both, ignored);
          });
      return;
    }
    handshake_timer_.cancel();
    websocket::stream_base::timeout t{};
    t.handshake_timeout = opt_.handshake_timeout;
    t.idle_timeout = opt_.idle_timeout;
    t.keep_alive_pings = true;
    ws_.set_option(t);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "federa-coordinator"); }));
    ws_.read_message_max(opt_.max_message_bytes ? opt_.max_message_bytes : kMaxMessageBytes);
    ws_.binary(true);
    ws_.async_accept(request_, beast::bind_front_handler(&Session::on_accept, shared_from_this()));
  }

  void on_accept(beast::error_code ec) {
    if (evicted_) return;
    end_handshake();
    // The upgrade request and its read buffer are done with: an idle member keeps neither.
    request_ = {};
    buffer_.clear();
    buffer_.shrink_to_fit();
    if (ec) {
      spdlog::warn("client '{}' ({}): WebSocket upgrade failed: {}", id_, peer_, ec.message());
      return drop();
    }
    open_ = true;
    if (Status s = handler_.on_connect(shared_from_this()); !s) {
      spdlog::warn("client '{}' ({}) refused: {}", id_, peer_, s.message());
      registered_ = false;
      // Only a refusal for good tells the client to give up; a coordinator on its way down
      // is retried (the client's service would otherwise stay stopped after a restart).
      close_with_error(s.code() == ErrorCode::unavailable ? wire::Error::SHUTTING_DOWN
                                                          : wire::Error::NOT_A_MEMBER,
                       s.message());
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
      std::string why =
          ec == websocket::error::closed ? "closed by the client"
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
    const auto data = read_buffer_.data();
    Status handled = deliver(handler_, shared_from_this(),
                             std::string_view(static_cast<const char*>(data.data()), bytes));
    read_buffer_.consume(bytes);
    // A chunk-sized buffer goes back to the pool once read: kept, it made every idle session
    // hold its largest message (1,000 members x 4 MiB = 3.9 GB after one upload each).
    if (read_buffer_.capacity() > kKeptReadBuffer) read_buffer_.shrink_to_fit();
    if (!handled) {
      fail_protocol(handled.message());
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

  // One queued item: a serialized message, or a stream whose messages are made as it drains.
  struct Outgoing {
    std::shared_ptr<const std::string> bytes;
    std::shared_ptr<MessageStream> stream;
    std::size_t size = 0;  // counted against max_queued_bytes until the item is sent
  };

  void enqueue(std::shared_ptr<const std::string> bytes) {
    const std::size_t size = bytes->size();
    enqueue(Outgoing{std::move(bytes), nullptr, size});
  }

  void enqueue(Outgoing item) {
    if (!open_ || closing_) return;
    queued_bytes_ += item.size;
    if (queued_bytes_ > opt_.max_queued_bytes) {
      spdlog::warn("client '{}': outbound queue over {} bytes; dropping the session", id_,
                   opt_.max_queued_bytes);
      closing_ = true;
      beast::error_code ignored;
      beast::get_lowest_layer(ws_).cancel(ignored);
      return;
    }
    queue_.push_back(std::move(item));
    if (queue_.size() == 1) do_write();  // else a write is in flight
  }

  // Writes the front item (the next message of a stream); an item stays queued while its write
  // is in flight, so an empty queue means nothing is being written.
  void do_write() {
    while (!queue_.empty()) {
      Outgoing& front = queue_.front();
      writing_ = front.stream ? front.stream->next() : front.bytes;
      if (writing_) {
        ws_.async_write(net::buffer(*writing_),
                        beast::bind_front_handler(&Session::on_write, shared_from_this()));
        return;
      }
      queued_bytes_ -= front.size;  // a stream that has ended
      queue_.pop_front();
    }
    maybe_close();
  }

  void on_write(beast::error_code ec, std::size_t) {
    if (ec) {
      finish("write failed: " + ec.message());
      return;
    }
    writing_.reset();
    if (!queue_.front().stream) {
      queued_bytes_ -= queue_.front().size;
      queue_.pop_front();
    }
    do_write();
  }

  void maybe_close() {
    if (!close_after_writes_ || !queue_.empty() || closing_ || !open_) return;
    closing_ = true;
    ws_.async_close(websocket::close_code::normal, [self = shared_from_this()](beast::error_code) {
      self->finish("closed by the coordinator");
    });
  }

  void finish(const std::string& why) {
    if (finished_) return;
    finished_ = true;
    open_ = false;
    if (registered_) handler_.on_disconnect(shared_from_this(), why);
  }

  websocket::stream<TlsStream> ws_;
  net::steady_timer handshake_timer_;  // the TLS handshake and the upgrade request
  TransportHandler& handler_;
  const ServerOptions& opt_;
  std::shared_ptr<Limits> limits_;
  std::shared_ptr<std::atomic<std::uint64_t>> bytes_in_;
  std::list<Limits::Pending>::iterator pending_;  // guarded by limits_->mu
  bool in_handshake_ = false;                     // guarded by limits_->mu
  bool counted_ = true;                           // guarded by limits_->mu
  bool evicted_ = false;                          // on the strand
  std::string ip_;
  beast::flat_buffer buffer_;
  beast::basic_flat_buffer<PooledAllocator<char>> read_buffer_{
      PooledAllocator<char>(limits_->buffers)};
  http::request<http::empty_body> request_;
  std::deque<Outgoing> queue_;
  std::shared_ptr<const std::string> writing_;  // the message being written
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
  Impl(net::io_context& io, std::shared_ptr<ssl::context> tls, TransportHandler& handler,
       ServerOptions opt)
      : io(io),
        acceptor(net::make_strand(io)),
        backoff_timer(acceptor.get_executor()),
        tls(std::move(tls)),
        handler(handler),
        opt(std::move(opt)) {}

  void do_accept() {
    acceptor.async_accept(net::make_strand(io),
                          [self = shared_from_this()](beast::error_code ec, tcp::socket s) {
                            if (ec) {
                              if (ec == net::error::operation_aborted || !self->acceptor.is_open())
                                return;
                              return self->back_off(ec);
                            }
                            self->backoff = std::chrono::milliseconds(0);
                            self->admit(std::move(s));
                            self->do_accept();
                          });
  }

  // Out of descriptors (EMFILE, ENFILE) or memory: accepting again at once would spin on the
  // same error (millions of log lines a minute). Wait, doubling up to a second, and log the
  // error at most every few seconds.
  void back_off(const beast::error_code& ec) {
    backoff =
        std::clamp(backoff * 2, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
    static LogLimiter accept_log(std::chrono::seconds(10));
    if (auto n = accept_log.allow())
      spdlog::warn("accept failed: {}; pausing new connections for {} ms{}", ec.message(),
                   backoff.count(), *n ? fmt::format(" ({} more failures not logged)", *n) : "");
    backoff_timer.expires_after(backoff);
    backoff_timer.async_wait([self = shared_from_this()](beast::error_code e) {
      if (!e && self->acceptor.is_open()) self->do_accept();
    });
  }

  // A new TCP connection within the limits, evicting the oldest handshake of the busiest address
  // when one is full; refused at once when only authenticated sessions fill them.
  void admit(tcp::socket s) {
    bool room = true;
    std::shared_ptr<Session> evicted;  // released after the lock: its destructor takes it
    {
      std::lock_guard lk(limits->mu);
      const bool full =
          limits->open >= opt.max_connections || limits->handshaking.size() >= opt.max_handshakes;
      if (full) {
        evicted = evict_one_locked();
        room = evicted != nullptr;
      }
      if (!room) ++limits->refused;
    }
    if (evicted) {
      if (auto n = refusal_log().allow())
        spdlog::warn(
            "connection limit reached ({} connections, {} handshakes at most): the oldest TLS "
            "handshake "
            "was dropped to make room{}",
            opt.max_connections, opt.max_handshakes,
            *n ? fmt::format(" ({} more drops and refusals not logged)", *n) : "");
    }
    if (!room) {
      if (auto n = refusal_log().allow())
        spdlog::warn("refused a connection: {} connections open (--max-connections){}",
                     opt.max_connections,
                     *n ? fmt::format(" ({} more refusals not logged)", *n) : "");
      beast::error_code ignored;
      s.close(ignored);
      return;
    }
    std::shared_ptr<Session> session;
    try {
      session = std::make_shared<Session>(std::move(s), *tls, handler, opt, limits, bytes_in);
    } catch (const std::exception& e) {  // out of memory for the TLS state: this peer only
      if (auto n = refusal_log().allow()) spdlog::warn("refused a connection: {}", e.what());
      std::lock_guard lk(limits->mu);
      ++limits->refused;
      return;
    }
    session->register_handshake();
    session->start();
  }

  // Entries whose session is already being destroyed stay: its destructor removes them.
  std::shared_ptr<Session> evict_one_locked() {
    std::map<std::string, std::size_t> per_ip;
    for (const auto& p : limits->handshaking)
      if (!p.session.expired()) ++per_ip[p.ip];
    if (per_ip.empty()) return nullptr;
    const auto busiest =
        std::max_element(per_ip.begin(), per_ip.end(),
                         [](const auto& a, const auto& b) { return a.second < b.second; });
    for (auto& p : limits->handshaking) {
      if (p.ip != busiest->first) continue;
      if (auto victim = p.session.lock()) {
        victim->evict_locked();
        return victim;
      }
    }
    return nullptr;
  }

  net::io_context& io;
  tcp::acceptor acceptor;
  net::steady_timer backoff_timer;
  std::chrono::milliseconds backoff{0};
  std::shared_ptr<ssl::context> tls;
  TransportHandler& handler;
  ServerOptions opt;
  std::shared_ptr<Limits> limits = std::make_shared<Limits>();
  std::shared_ptr<std::atomic<std::uint64_t>> bytes_in =
      std::make_shared<std::atomic<std::uint64_t>>(0);
};

WebSocketServer::WebSocketServer(net::io_context& io, std::shared_ptr<ssl::context> tls,
                                 TransportHandler& handler, ServerOptions options)
    : impl_(std::make_shared<Impl>(io, std::move(tls), handler, std::move(options))) {}

WebSocketServer::~WebSocketServer() {
  try {
    stop();
  } catch (...) {  // out of memory posting the close: the io_context's teardown closes it
  }
}

Status WebSocketServer::start() {
  beast::error_code ec;
  auto addr = net::ip::make_address(impl_->opt.listen.host, ec);
  if (ec)
    return make_error(ErrorCode::invalid_argument,
                      "--listen: '" + impl_->opt.listen.host + "' is not an IP address");
  tcp::endpoint ep(addr, impl_->opt.listen.port);
  auto& a = impl_->acceptor;
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (ec)
    return make_error(ErrorCode::unavailable, "cannot listen on " + impl_->opt.listen.host + ":" +
                                                  std::to_string(impl_->opt.listen.port) + ": " +
                                                  ec.message());
  a.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    return make_error(ErrorCode::unavailable, "cannot listen on " + impl_->opt.listen.host + ":" +
                                                  std::to_string(impl_->opt.listen.port) + ": " +
                                                  ec.message());
  port_ = a.local_endpoint().port();
  impl_->do_accept();
  return {};
}

void WebSocketServer::stop() {
  if (!impl_) return;
  net::post(impl_->acceptor.get_executor(), [impl = impl_] {
    beast::error_code ec;
    impl->acceptor.close(ec);
    impl->backoff_timer.cancel();
  });
}

std::uint64_t WebSocketServer::bytes_received() const {
  return impl_ ? impl_->bytes_in->load() : 0;
}

std::size_t WebSocketServer::open_sessions() const {
  if (!impl_) return 0;
  std::lock_guard lk(impl_->limits->mu);
  return impl_->limits->open;
}

std::size_t WebSocketServer::refused_connections() const {
  if (!impl_) return 0;
  std::lock_guard lk(impl_->limits->mu);
  return impl_->limits->refused;
}

void WebSocketServer::wait_for_sessions(std::chrono::milliseconds limit) const {
  auto until = std::chrono::steady_clock::now() + limit;
  while (open_sessions() > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

}  // namespace federa
