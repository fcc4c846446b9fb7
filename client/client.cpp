#include "client/client.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <deque>
#include <random>
#include <thread>

#include "client/session.hpp"
#include "common/tls.hpp"
#include "common/wire.hpp"

namespace federa {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using Tcp = net::ip::tcp;

namespace {

enum class Outcome { retry, complete, refused, fatal, stopped };

// TLS alerts the coordinator sends when it will not accept this client's certificate or
// protocol version: retrying cannot help, so the client stops and says why.
bool peer_refused_us(const beast::error_code& ec) {
  if (ec.category() != net::error::get_ssl_category()) return false;
  int reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
  return reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256;
}
bool we_refused_peer(const beast::error_code& ec) {
  if (ec.category() != net::error::get_ssl_category()) return false;
  return ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_CERTIFICATE_VERIFY_FAILED;
}

SessionOptions session_options(Trainer& trainer, const ClientOptions& opt) {
  SessionOptions o;
  o.num_train_examples = trainer.num_train_examples();
  o.num_test_examples = trainer.num_test_examples();
  o.evaluates = trainer.can_evaluate();
  o.private_metrics = opt.private_metrics;
  if (TabularData* table = trainer.table())
    o.table = [table](const std::string& federation) { return table->report(federation); };
  return o;
}

}  // namespace

struct FederatedClient::Connection final
    : std::enable_shared_from_this<FederatedClient::Connection>,
      ServerLink,
      TaskRunner {
  Connection(net::io_context& io, ssl::context& tls, const ClientOptions& opt, Trainer& trainer,
             std::atomic<std::uint64_t>& rounds_trained)
      : io(io),
        resolver(io),
        ws(io, tls),
        opt(opt),
        trainer(trainer),
        rounds_trained(rounds_trained),
        session(session_options(trainer, opt), *this, *this) {}

  ~Connection() override {
    if (worker.joinable()) worker.join();
  }

  void start() {
    resolver.async_resolve(opt.coordinator.host, std::to_string(opt.coordinator.port),
                           beast::bind_front_handler(&Connection::on_resolve, shared_from_this()));
  }

  void end(Outcome o, std::string why) {
    if (ended) return;
    ended = true;
    outcome = o;
    reason = std::move(why);
    beast::error_code ignored;
    beast::get_lowest_layer(ws).socket().close(ignored);
    // The session is over: stop the loop now rather than waiting for the WebSocket's own
    // timers, which closing the socket does not cancel.
    io.stop();
  }

  // Ends the session with a WebSocket close handshake (and TLS close_notify) instead of a reset.
  void close_then_end(Outcome o, std::string why) {
    if (ended || closing) return;
    if (!connected) return end(o, std::move(why));
    closing = true;
    closing_outcome = o;
    closing_reason = std::move(why);
    ws.async_close(websocket::close_code::normal, [self = shared_from_this()](beast::error_code) {
      self->end(self->closing_outcome, self->closing_reason);
    });
  }

  void on_resolve(beast::error_code ec, Tcp::resolver::results_type results) {
    if (ec)
      return end(Outcome::retry, "cannot resolve " + opt.coordinator.host + ": " + ec.message());
    beast::get_lowest_layer(ws).expires_after(opt.handshake_timeout);
    beast::get_lowest_layer(ws).async_connect(
        results, beast::bind_front_handler(&Connection::on_connect, shared_from_this()));
  }

  void on_connect(beast::error_code ec, Tcp::endpoint) {
    if (ec) return end(Outcome::retry, "cannot connect: " + ec.message());
    if (Status s = set_client_tls_hostname(ws.next_layer().native_handle(), opt.coordinator.host);
        !s)
      return end(Outcome::fatal, s.message());
    ws.next_layer().async_handshake(
        ssl::stream_base::client,
        beast::bind_front_handler(&Connection::on_tls, shared_from_this()));
  }

  void on_tls(beast::error_code ec) {
    if (ec) return tls_failure(ec);
    beast::get_lowest_layer(ws).expires_never();
    websocket::stream_base::timeout t{};
    t.handshake_timeout = opt.handshake_timeout;
    t.idle_timeout = opt.idle_timeout;
    t.keep_alive_pings = true;
    ws.set_option(t);
    ws.set_option(websocket::stream_base::decorator([](websocket::request_type& req) {
      req.set(beast::http::field::user_agent, "federa-client/0.1");
    }));
    ws.read_message_max(kMaxMessageBytes);
    ws.binary(true);
    std::string host = opt.coordinator.host + ":" + std::to_string(opt.coordinator.port);
    ws.async_handshake(host, "/v1/connect",
                       beast::bind_front_handler(&Connection::on_upgrade, shared_from_this()));
  }

  void tls_failure(const beast::error_code& ec) {
    if (peer_refused_us(ec))
      return end(Outcome::refused, "the coordinator refused this client's certificate (" +
                                       describe_tls_error(ec, ws.next_layer().native_handle()) +
                                       "): check that the kit was issued by this federation's CA");
    if (we_refused_peer(ec))
      return end(Outcome::refused,
                 "the coordinator's certificate is not signed by the CA in this kit, or does "
                 "not name " +
                     opt.coordinator.host + " (" +
                     describe_tls_error(ec, ws.next_layer().native_handle()) + ")");
    end(Outcome::retry,
        "TLS handshake failed: " + describe_tls_error(ec, ws.next_layer().native_handle()));
  }

  void on_upgrade(beast::error_code ec) {
    if (ec) {
      // In TLS 1.3 the server checks the client certificate after the client's handshake has
      // finished, so a refusal surfaces on this first read.
      if (peer_refused_us(ec) || we_refused_peer(ec)) return tls_failure(ec);
      return end(Outcome::retry, "WebSocket upgrade failed: " + ec.message());
    }
    connected = true;
    if (stop_requested) return close_then_end(Outcome::stopped, "stopped");
    session.start();
    do_read();
  }

  void do_read() {
    ws.async_read(buffer, beast::bind_front_handler(&Connection::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t bytes) {
    if (ec) {
      if (ended) return;
      if (closing) return end(closing_outcome, closing_reason);
      if (peer_refused_us(ec)) return tls_failure(ec);
      return end(Outcome::retry, ec == websocket::error::closed
                                     ? "the coordinator closed the connection"
                                     : "connection lost: " + ec.message());
    }
    wire::Envelope msg;
    auto data = buffer.data();
    bool ok = msg.ParseFromArray(data.data(), static_cast<int>(data.size()));
    buffer.consume(bytes);
    if (!ok) return end(Outcome::retry, "the coordinator sent a message that is not an Envelope");
    session.on_message(msg);
    if (!ended && !closing) do_read();
  }

  // Thread-safe: the signal handler's thread asks, the connection's thread closes.
  void request_stop() {
    net::post(ws.get_executor(), [self = shared_from_this()] {
      self->stop_requested = true;
      self->close_then_end(Outcome::stopped, "stopped");
    });
  }

  // ServerLink
  void send(const wire::Envelope& e) override {
    auto bytes = std::make_shared<std::string>();
    e.SerializeToString(bytes.get());
    if (opt.on_send) opt.on_send(*bytes);
    queue.push_back(std::move(bytes));
    if (queue.size() == 1) do_write();
  }

  void close(const SessionEnd& e) override {
    switch (e.kind) {
      case SessionEnd::Kind::retry:
        return close_then_end(Outcome::retry, e.reason);
      case SessionEnd::Kind::complete:
        return close_then_end(Outcome::complete, e.reason);
      case SessionEnd::Kind::refused:
        return close_then_end(Outcome::refused, e.reason);
      case SessionEnd::Kind::fatal:
        return close_then_end(Outcome::fatal, e.reason);
    }
  }

  // TaskRunner: training runs on a worker thread; the result comes back on the connection's.
  void run(Task task) override {
    if (worker.joinable()) worker.join();  // the previous task is done: its result came back
    worker = std::thread([self = shared_from_this(), task = std::move(task)] {
      TaskResult r = run_task(self->trainer, task);
      net::post(self->ws.get_executor(), [self, r = std::move(r)]() mutable {
        if (self->ended) return;
        self->session.on_task_done(std::move(r));
        self->rounds_trained.fetch_add(self->session.fits_completed() - self->fits_counted);
        self->fits_counted = self->session.fits_completed();
      });
    });
  }

  void do_write() {
    ws.async_write(net::buffer(*queue.front()), [self = shared_from_this()](beast::error_code ec,
                                                                            std::size_t) {
      if (ec)
        return self->end(self->closing ? self->closing_outcome : Outcome::retry,
                         self->closing ? self->closing_reason : "write failed: " + ec.message());
      self->queue.pop_front();
      if (!self->queue.empty()) self->do_write();
    });
  }

  net::io_context& io;
  Tcp::resolver resolver;
  websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws;
  const ClientOptions& opt;
  Trainer& trainer;
  std::atomic<std::uint64_t>& rounds_trained;
  ClientSession session;
  std::uint64_t fits_counted = 0;
  beast::flat_buffer buffer;
  std::deque<std::shared_ptr<std::string>> queue;
  std::thread worker;
  bool connected = false;
  bool ended = false;
  bool closing = false;
  bool stop_requested = false;
  Outcome closing_outcome = Outcome::retry;
  std::string closing_reason;
  Outcome outcome = Outcome::retry;
  std::string reason;
};

FederatedClient::FederatedClient(ClientOptions options, Trainer& trainer)
    : opt_(std::move(options)), trainer_(trainer) {}

FederatedClient::~FederatedClient() = default;

void FederatedClient::stop() {
  std::lock_guard lk(mu_);
  stopping_ = true;
  if (current_) current_->request_stop();
  stop_cv_.notify_all();
}

void FederatedClient::pause(std::chrono::milliseconds wait) {
  std::unique_lock lk(mu_);
  stop_cv_.wait_for(lk, wait, [&] { return stopping_.load(); });
}

int FederatedClient::run() {
  auto tls = make_client_tls_context(opt_.ca_pem, opt_.cert_pem, opt_.key_pem);
  if (!tls) {
    spdlog::error("{}", tls.error().message);
    return exit_error;
  }
  std::mt19937_64 rng(opt_.seed ^ static_cast<std::uint64_t>(
                                      std::chrono::steady_clock::now().time_since_epoch().count()));
  auto backoff = opt_.backoff_initial;
  auto last_success = std::chrono::steady_clock::now();
  while (!stopping_) {
    net::io_context io;
    auto conn = std::make_shared<Connection>(io, **tls, opt_, trainer_, rounds_trained_);
    {
      std::lock_guard lk(mu_);
      if (stopping_) break;
      current_ = conn;
    }
    conn->start();
    io.run();
    {
      std::lock_guard lk(mu_);
      current_.reset();
    }
    if (conn->worker.joinable()) conn->worker.join();
    switch (conn->outcome) {
      case Outcome::complete:
        ++federations_completed_;
        spdlog::info("federation complete: {}", conn->reason);
        if (!opt_.stay_connected) return exit_complete;
        break;
      case Outcome::refused:
        spdlog::error("{}", conn->reason);
        return exit_refused;
      case Outcome::fatal:
        spdlog::error("{}", conn->reason);
        return exit_error;
      case Outcome::stopped:
        spdlog::info("stopped; connection closed");
        return exit_complete;
      case Outcome::retry:
        break;
    }
    if (conn->connected) {
      backoff = opt_.backoff_initial;
      last_success = std::chrono::steady_clock::now();
    }
    if (opt_.give_up_after.count() > 0 &&
        std::chrono::steady_clock::now() - last_success > opt_.give_up_after) {
      spdlog::error("giving up: no connection to the coordinator for {} s ({})",
                    std::chrono::duration<double>(opt_.give_up_after).count(), conn->reason);
      return exit_error;
    }
    // Full jitter: spreads a thousand clients reconnecting after a coordinator restart.
    std::uniform_int_distribution<long long> jitter(backoff.count() / 2, backoff.count());
    auto wait = std::chrono::milliseconds(jitter(rng));
    if (conn->outcome == Outcome::complete)
      spdlog::info("waiting for the next job; reconnecting in {:.1f} s", wait.count() / 1000.0);
    else
      spdlog::warn("{}; retrying in {:.1f} s", conn->reason, wait.count() / 1000.0);
    pause(wait);
    backoff = std::min(opt_.backoff_max, backoff * 2);
  }
  spdlog::info("stopped");
  return exit_complete;
}

}  // namespace federa
