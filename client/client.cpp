#include "client/client.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <deque>
#include <optional>
#include <random>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <spdlog/spdlog.h>

#include "client/secagg_client.hpp"
#include "common/secagg_wire.hpp"
#include "common/tls.hpp"
#include "common/wire.hpp"

namespace federa {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;

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

}  // namespace

struct FederatedClient::Connection : std::enable_shared_from_this<FederatedClient::Connection> {
  Connection(net::io_context& io, ssl::context& tls, const ClientOptions& opt, Trainer& trainer,
             std::atomic<std::uint64_t>& rounds_trained)
      : io(io), resolver(io), ws(io, tls), opt(opt), trainer(trainer),
        rounds_trained(rounds_trained) {}

  ~Connection() {
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
    closing = true;
    closing_outcome = o;
    closing_reason = std::move(why);
    ws.async_close(websocket::close_code::normal, [self = shared_from_this()](beast::error_code) {
      self->end(self->closing_outcome, self->closing_reason);
    });
  }

  void on_resolve(beast::error_code ec, tcp::resolver::results_type results) {
    if (ec) return end(Outcome::retry, "cannot resolve " + opt.coordinator.host + ": " + ec.message());
    beast::get_lowest_layer(ws).expires_after(opt.handshake_timeout);
    beast::get_lowest_layer(ws).async_connect(results,
                                              beast::bind_front_handler(&Connection::on_connect, shared_from_this()));
  }

  void on_connect(beast::error_code ec, tcp::endpoint) {
    if (ec) return end(Outcome::retry, "cannot connect: " + ec.message());
    if (Status s = set_client_tls_hostname(ws.next_layer().native_handle(), opt.coordinator.host); !s)
      return end(Outcome::fatal, s.message());
    ws.next_layer().async_handshake(ssl::stream_base::client,
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
    ws.async_handshake(host, "/v1/connect", beast::bind_front_handler(&Connection::on_upgrade, shared_from_this()));
  }

  void tls_failure(const beast::error_code& ec) {
    if (peer_refused_us(ec))
      return end(Outcome::refused, "the coordinator refused this client's certificate (" + describe_tls_error(ec, ws.next_layer().native_handle()) +
                                       "): check that the kit was issued by this federation's CA");
    if (we_refused_peer(ec))
      return end(Outcome::refused, "the coordinator's certificate is not signed by the CA in this kit, or does "
                                   "not name " + opt.coordinator.host + " (" + describe_tls_error(ec, ws.next_layer().native_handle()) + ")");
    end(Outcome::retry, "TLS handshake failed: " + describe_tls_error(ec, ws.next_layer().native_handle()));
  }

  void on_upgrade(beast::error_code ec) {
    if (ec) {
      // In TLS 1.3 the server checks the client certificate after the client's handshake has
      // finished, so a refusal surfaces on this first read.
      if (peer_refused_us(ec) || we_refused_peer(ec)) return tls_failure(ec);
      return end(Outcome::retry, "WebSocket upgrade failed: " + ec.message());
    }
    connected = true;
    wire::Envelope hello;
    hello.mutable_hello()->set_protocol_version(kProtocolVersion);
    hello.mutable_hello()->set_software("federa-client 0.1.0");
    hello.mutable_hello()->set_num_train_examples(trainer.num_train_examples());
    send(hello);
    do_read();
  }

  void do_read() { ws.async_read(buffer, beast::bind_front_handler(&Connection::on_read, shared_from_this())); }

  void on_read(beast::error_code ec, std::size_t bytes) {
    if (ec) {
      if (ended) return;
      if (closing) return end(closing_outcome, closing_reason);
      if (peer_refused_us(ec)) return tls_failure(ec);
      return end(Outcome::retry, ec == websocket::error::closed ? "the coordinator closed the connection"
                                                                : "connection lost: " + ec.message());
    }
    wire::Envelope msg;
    auto data = buffer.data();
    bool ok = msg.ParseFromArray(data.data(), static_cast<int>(data.size()));
    buffer.consume(bytes);
    if (!ok) return end(Outcome::retry, "the coordinator sent a message that is not an Envelope");
    if (Status s = handle(msg); !s) {
      send(make_error_envelope(wire::Error::BAD_MESSAGE, s.message()));
      spdlog::warn("{}", s.message());
    }
    if (!ended && !closing) do_read();
  }

  Status handle(const wire::Envelope& msg) {
    switch (msg.payload_case()) {
      case wire::Envelope::kWelcome:
        spdlog::info("joined federation '{}' as '{}'", msg.welcome().federation(), msg.welcome().client_id());
        return {};
      case wire::Envelope::kFitTask: {
        const auto& t = msg.fit_task();
        auto layout = from_wire(t.layout());
        if (!layout) return make_error("round " + std::to_string(t.round()) + ": bad layout: " + layout.error().message);
        if (t.total_elements() != layout->size()) return make_error("fit task size does not match its layout");
        incoming.emplace(Incoming{t.round(), from_wire(t.config()), Model(std::move(layout.value())), {}});
        Status s = incoming->assembler.begin(t.round(), t.total_elements(), t.num_chunks(), t.chunk_elements(),
                                             incoming->model.data);
        if (!s) {
          incoming.reset();
          return make_error("round " + std::to_string(t.round()) + ": " + s.message());
        }
        last_chunk_elements = t.chunk_elements();
        secure.reset();
        if (t.secure_aggregation() == "secagg+") {
          secure.emplace();
          secure->round = t.round();
        } else if (!t.secure_aggregation().empty()) {
          incoming.reset();
          return make_error("unknown secure aggregation mode '" + t.secure_aggregation() + "' (upgrade federa-client)");
        }
        spdlog::info("round {}: task received ({} parameters)", t.round(), t.total_elements());
        return maybe_start_training();
      }
      case wire::Envelope::kChunk: {
        if (!incoming) return make_error("chunk without a task");
        if (Status s = incoming->assembler.add(msg.chunk()); !s) {
          incoming.reset();
          return make_error("global model: " + s.message());
        }
        return maybe_start_training();
      }
      case wire::Envelope::kUploadReady:
        if (!result || result->round != msg.upload_ready().round()) {
          // A masked input's grant (its chunks were sent with the header).
          spdlog::debug("upload_ready for round {} with no plain update pending", msg.upload_ready().round());
          return {};
        }
        for (const auto& e : make_chunks(result->round, result->weights, result->chunk_elements)) send(e);
        spdlog::info("round {}: update sent ({} examples)", result->round, result->num_examples);
        result.reset();
        return {};
      case wire::Envelope::kError: {
        const auto& e = msg.error();
        if (e.code() == wire::Error::NOT_A_MEMBER) {
          end(Outcome::refused, "the coordinator refused this client: " + e.message());
          return {};
        }
        if (e.code() == wire::Error::PROTOCOL_VERSION) {
          end(Outcome::fatal, "protocol version mismatch: " + e.message() + " (upgrade federa-client)");
          return {};
        }
        spdlog::warn("coordinator: {}", e.message());
        return {};
      }
      case wire::Envelope::kSecaggSetup:
      case wire::Envelope::kSecaggKeysBroadcast:
      case wire::Envelope::kSecaggSharesForward:
      case wire::Envelope::kSecaggUnmaskRequest:
      case wire::Envelope::kSecaggAbort:
        handle_secure(msg);
        return {};
      case wire::Envelope::kBye:
        if (msg.bye().federation_complete()) {
          close_then_end(Outcome::complete, msg.bye().reason());
        } else {
          close_then_end(Outcome::retry, "coordinator said goodbye: " + msg.bye().reason());
        }
        return {};
      default:
        return make_error(std::string("unexpected message '") + payload_name(msg) + "' from the coordinator");
    }
  }

  // SecAgg+, client side: keys are exchanged while the model trains; the masked update leaves
  // once both the training result and the neighbours' shares are here. Any failure drops this
  // client out of the round, having revealed nothing it should not.
  void handle_secure(const wire::Envelope& msg) {
    if (msg.has_secagg_abort()) {
      spdlog::warn("round {}: the coordinator abandoned secure aggregation: {}", msg.secagg_abort().round(),
                   msg.secagg_abort().reason());
      secure.reset();
      return;
    }
    if (!secure) return secure_fail("secure-aggregation message outside a secure round");
    auto& sr = *secure;
    switch (msg.payload_case()) {
      case wire::Envelope::kSecaggSetup: {
        auto setup = secagg::from_wire(msg.secagg_setup());
        if (!setup) return secure_fail(setup.error().message);
        if (setup->config.round != sr.round) return secure_fail("setup for another round");
        auto c = secagg::Client::create(setup->config, setup->client_index);
        if (!c) return secure_fail(c.error().message);
        sr.num_clients = setup->config.num_clients;
        sr.max_weight = setup->config.quant.max_weight;
        sr.client.emplace(std::move(c.value()));
        auto adv = sr.client->advertise_keys();
        if (!adv) return secure_fail(adv.error().message);
        wire::Envelope e;
        secagg::to_wire(*adv, e.mutable_secagg_advertise_keys());
        send(e);
        return;
      }
      case wire::Envelope::kSecaggKeysBroadcast: {
        if (!sr.client) return secure_fail("keys before setup");
        auto m = secagg::from_wire(msg.secagg_keys_broadcast(), sr.num_clients);
        if (!m) return secure_fail(m.error().message);
        auto sk = sr.client->share_keys(*m);
        if (!sk) return secure_fail(sk.error().message);
        wire::Envelope e;
        secagg::to_wire(*sk, e.mutable_secagg_share_keys());
        send(e);
        return;
      }
      case wire::Envelope::kSecaggSharesForward: {
        if (!sr.client) return secure_fail("shares before setup");
        auto m = secagg::from_wire(msg.secagg_shares_forward(), sr.num_clients);
        if (!m) return secure_fail(m.error().message);
        sr.shares.emplace(std::move(m.value()));
        return send_masked_input();
      }
      case wire::Envelope::kSecaggUnmaskRequest: {
        if (!sr.client) return secure_fail("unmask request before setup");
        auto m = secagg::from_wire(msg.secagg_unmask_request(), sr.num_clients);
        if (!m) return secure_fail(m.error().message);
        auto r = sr.client->unmask(*m);
        if (!r) return secure_fail(r.error().message);
        wire::Envelope e;
        secagg::to_wire(*r, e.mutable_secagg_unmask_response());
        send(e);
        spdlog::info("round {}: secure aggregation done on this side", sr.round);
        secure.reset();
        return;
      }
      default:
        return;
    }
  }

  void secure_fail(const std::string& why) {
    spdlog::warn("secure aggregation{}: {}; leaving this round",
                 secure ? fmt::format(", round {}", secure->round) : std::string(), why);
    secure.reset();
  }

  void send_masked_input() {
    if (!secure || !secure->client || !secure->shares || !secure->delta) return;
    auto& sr = *secure;
    double weight = std::min(sr.weight, sr.max_weight);
    auto mi = sr.client->masked_input(*sr.shares, *sr.delta, weight);
    sr.delta.reset();
    if (!mi) return secure_fail(mi.error().message);
    std::size_t chunk = last_chunk_elements ? last_chunk_elements : kDefaultChunkElements;
    for (const auto& e : secagg::masked_input_envelopes(*mi, chunk)) send(e);
    spdlog::info("round {}: masked update sent", sr.round);
  }

  Status maybe_start_training() {
    if (!incoming || !incoming->assembler.complete() || training) return {};
    Incoming task = std::move(*incoming);
    incoming.reset();
    training = true;
    if (secure && secure->round == task.round) secure->global = task.model.data;
    if (worker.joinable()) worker.join();
    auto self = shared_from_this();
    worker = std::thread([self, task = std::move(task)]() mutable {
      auto started = std::chrono::steady_clock::now();
      Result<FitResult> r = self->trainer.fit(task.model, task.config);
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      net::post(self->ws.get_executor(), [self, round = task.round, r = std::move(r), secs,
                                          layout_hash = task.model.layout.hash()]() mutable {
        self->on_trained(round, std::move(r), secs, layout_hash);
      });
    });
    return {};
  }

  void on_trained(std::uint64_t round, Result<FitResult> r, double secs, std::uint64_t layout_hash) {
    training = false;
    if (ended) return;
    if (incoming && incoming->round > round) {
      spdlog::info("round {}: a newer task arrived while training; dropping this update", round);
      (void)maybe_start_training();
      return;
    }
    if (!r) {
      spdlog::error("round {}: training failed: {}", round, r.error().message);
      send(make_error_envelope(wire::Error::UNKNOWN, "training failed: " + r.error().message));
      return;
    }
    rounds_trained.fetch_add(1);
    auto loss = r->metrics.find("train_loss");
    spdlog::info("round {}: trained in {:.2f} s{}", round, secs,
                 loss != r->metrics.end() ? fmt::format(", train loss {:.4f}", loss->second) : std::string());
    if (secure && secure->round == round) {
      // Under secure aggregation the update is the delta from the global model, quantized and
      // masked; nothing else about this round leaves the site.
      auto& sr = *secure;
      if (sr.global.size() != r->weights.size()) return secure_fail("trained model has the wrong size");
      std::vector<float> delta(r->weights.size());
      for (std::size_t i = 0; i < delta.size(); ++i) delta[i] = r->weights[i] - sr.global[i];
      sr.delta.emplace(std::move(delta));
      sr.weight = double(r->num_examples);
      return send_masked_input();
    }
    wire::Envelope h;
    auto* uh = h.mutable_update_header();
    uh->set_round(round);
    uh->set_num_examples(r->num_examples);
    uh->set_layout_hash(layout_hash);
    for (const auto& [k, v] : r->metrics) (*uh->mutable_metrics())[k] = v;
    uh->set_total_elements(r->weights.size());
    std::size_t chunk_elements = last_chunk_elements ? last_chunk_elements : kDefaultChunkElements;
    uh->set_num_chunks(chunk_count(r->weights.size(), chunk_elements));
    send(h);
    result = Pending{round, std::move(r->weights), r->num_examples, chunk_elements};
  }

  void send(const wire::Envelope& e) {
    auto bytes = std::make_shared<std::string>();
    e.SerializeToString(bytes.get());
    if (opt.on_send) opt.on_send(*bytes);
    queue.push_back(std::move(bytes));
    if (queue.size() == 1) do_write();
  }

  void do_write() {
    ws.async_write(net::buffer(*queue.front()), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return self->end(Outcome::retry, "write failed: " + ec.message());
      self->queue.pop_front();
      if (!self->queue.empty()) self->do_write();
    });
  }

  struct SecureRound {
    std::uint64_t round = 0;
    std::uint32_t num_clients = 0;
    double max_weight = 1;
    std::vector<float> global;
    std::optional<secagg::Client> client;
    std::optional<secagg::SharesForward> shares;
    std::optional<std::vector<float>> delta;
    double weight = 1;
  };
  std::optional<SecureRound> secure;

  struct Incoming {
    std::uint64_t round;
    TrainConfig config;
    Model model;
    ChunkAssembler assembler;
  };
  struct Pending {
    std::uint64_t round;
    std::vector<float> weights;
    std::uint64_t num_examples;
    std::size_t chunk_elements;
  };

  net::io_context& io;
  tcp::resolver resolver;
  websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws;
  const ClientOptions& opt;
  Trainer& trainer;
  std::atomic<std::uint64_t>& rounds_trained;
  beast::flat_buffer buffer;
  std::deque<std::shared_ptr<std::string>> queue;
  std::optional<Incoming> incoming;
  std::optional<Pending> result;
  std::size_t last_chunk_elements = 0;
  std::thread worker;
  bool training = false;
  bool connected = false;
  bool ended = false;
  bool closing = false;
  Outcome closing_outcome = Outcome::retry;
  std::string closing_reason;
  Outcome outcome = Outcome::retry;
  std::string reason;
};

FederatedClient::FederatedClient(ClientOptions options, Trainer& trainer)
    : opt_(std::move(options)), trainer_(trainer) {}

FederatedClient::~FederatedClient() = default;

void FederatedClient::stop() {
  stopping_ = true;
  std::lock_guard lk(mu_);
  if (current_) {
    auto c = current_;
    net::post(c->ws.get_executor(), [c] { c->end(Outcome::stopped, "stopped"); });
  }
}

int FederatedClient::run() {
  auto tls = make_client_tls_context(opt_.ca_pem, opt_.cert_pem, opt_.key_pem);
  if (!tls) {
    spdlog::error("{}", tls.error().message);
    return exit_error;
  }
  std::mt19937_64 rng(opt_.seed ^ static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  auto backoff = opt_.backoff_initial;
  auto last_success = std::chrono::steady_clock::now();
  for (int attempt = 1; !stopping_; ++attempt) {
    net::io_context io;
    auto conn = std::make_shared<Connection>(io, **tls, opt_, trainer_, rounds_trained_);
    {
      std::lock_guard lk(mu_);
      current_ = conn;
    }
    if (stopping_) break;
    conn->start();
    io.run();
    {
      std::lock_guard lk(mu_);
      current_.reset();
    }
    if (conn->worker.joinable()) conn->worker.join();
    switch (conn->outcome) {
      case Outcome::complete:
        spdlog::info("federation complete: {}", conn->reason);
        return exit_complete;
      case Outcome::refused:
        spdlog::error("{}", conn->reason);
        return exit_refused;
      case Outcome::fatal:
        spdlog::error("{}", conn->reason);
        return exit_error;
      case Outcome::stopped:
        return exit_stopped;
      case Outcome::retry:
        break;
    }
    if (conn->connected) {
      backoff = opt_.backoff_initial;
      last_success = std::chrono::steady_clock::now();
    }
    if (opt_.give_up_after.count() > 0 && std::chrono::steady_clock::now() - last_success > opt_.give_up_after) {
      spdlog::error("giving up: no connection to the coordinator for {} s ({})", opt_.give_up_after.count(),
                    conn->reason);
      return exit_error;
    }
    // Full jitter: spreads a thousand clients reconnecting after a coordinator restart.
    std::uniform_int_distribution<long long> jitter(backoff.count() / 2, backoff.count());
    auto wait = std::chrono::milliseconds(jitter(rng));
    spdlog::warn("{}; retrying in {:.1f} s", conn->reason, wait.count() / 1000.0);
    auto until = std::chrono::steady_clock::now() + wait;
    while (!stopping_ && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    backoff = std::min(opt_.backoff_max, backoff * 2);
  }
  return exit_stopped;
}

}  // namespace federa
