// federa-bench load: the fleet of load clients. Each is a real member as the coordinator sees
// it (mutual TLS with its own certificate, WebSocket at /v1/connect, Envelopes), but it trains
// nothing: it answers every FitTask with the same fixed update, serialized once per round and
// shared by every client. All sessions run on the caller's io_context (a few threads), each on
// its own strand; a session keeps a 32 KiB read buffer and skips the global model's chunks
// without storing them, so a thousand of them fit in a small process.
#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <condition_variable>
#include <deque>

#include "common/tls.hpp"
#include "common/wire.hpp"
#include "tools/bench_load.hpp"

namespace federa::bench {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using net::ip::tcp;

namespace {
constexpr std::size_t kReadBuffer = 32 * 1024;
constexpr std::size_t kSmallMessage = 64 * 1024;  // larger messages are chunks: counted, not kept
constexpr std::size_t kFailureSamples = 8;
using Message = std::shared_ptr<const std::string>;
Message serialize_shared(const wire::Envelope& e) {
  return std::make_shared<const std::string>(e.SerializeAsString());
}
}  // namespace

struct LoadFleet::Shared : std::enable_shared_from_this<LoadFleet::Shared> {
  net::io_context& io;
  std::shared_ptr<net::ssl::context> tls;
  std::vector<LoadKit> kits;
  FleetOptions opt;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::size_t next_kit = 0, connecting = 0, ended = 0;
  FleetStats stats;
  LoadClock::time_point started;
  // The fixed update's chunks for each round (the round number is inside every chunk).
  std::map<std::uint64_t, std::vector<Message>> chunks;

  Shared(net::io_context& i, std::shared_ptr<net::ssl::context> t, std::vector<LoadKit> k,
         FleetOptions o)
      : io(i), tls(std::move(t)), kits(std::move(k)), opt(std::move(o)) {}

  void launch_more();
  void fail(const std::string& who, const std::string& why) {
    std::lock_guard lk(mu);
    ++stats.failures;
    if (stats.failure_samples.size() < kFailureSamples)
      stats.failure_samples.push_back(who + ": " + why);
  }
  void session_ended() {
    {
      std::lock_guard lk(mu);
      ++ended;
    }
    cv.notify_all();
  }
  const std::vector<Message>& round_chunks(std::uint64_t round, std::uint64_t elements,
                                           std::size_t chunk_elements) {
    std::lock_guard lk(mu);
    auto& c = chunks[round];
    if (c.empty()) {
      std::vector<float> update(elements);
      for (std::size_t i = 0; i < update.size(); ++i) update[i] = 0.001f * float(i % 97);
      for (const auto& e : make_chunks(round, update, chunk_elements))
        c.push_back(serialize_shared(e));
      chunks.erase(chunks.begin(), chunks.find(round));  // earlier rounds are done
    }
    return c;
  }
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<LoadFleet::Shared> fleet, const LoadKit& kit)
      : fleet_(std::move(fleet)), kit_(kit), ws_(net::make_strand(fleet_->io), *fleet_->tls) {}

  auto executor() { return ws_.get_executor(); }

  void start() {
    SSL* ssl = ws_.next_layer().native_handle();
    if (SSL_use_certificate(ssl, kit_.cert.get()) != 1 ||
        SSL_use_PrivateKey(ssl, kit_.key.get()) != 1)
      return end("cannot use the kit's certificate");
    if (Status s = set_client_tls_hostname(ssl, fleet_->opt.host); !s) return end(s.message());
    tcp::endpoint ep(net::ip::make_address(fleet_->opt.host), fleet_->opt.port);
    beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(60));
    beast::get_lowest_layer(ws_).async_connect(
        ep, beast::bind_front_handler(&Session::on_connect, shared_from_this()));
  }

 private:
  void on_connect(beast::error_code ec) {
    if (ec) return end("connect: " + ec.message());
    ws_.next_layer().async_handshake(
        net::ssl::stream_base::client,
        beast::bind_front_handler(&Session::on_tls, shared_from_this()));
  }

  void on_tls(beast::error_code ec) {
    if (ec)
      return end("TLS handshake: " + describe_tls_error(ec, ws_.next_layer().native_handle()));
    beast::get_lowest_layer(ws_).expires_never();
    websocket::stream_base::timeout t{};
    t.handshake_timeout = std::chrono::seconds(60);
    t.idle_timeout = websocket::stream_base::none();
    ws_.set_option(t);
    ws_.read_message_max(kMaxMessageBytes);
    ws_.binary(true);
    ws_.auto_fragment(false);
    const std::string host = fleet_->opt.host + ":" + std::to_string(fleet_->opt.port);
    ws_.async_handshake(host, "/v1/connect",
                        beast::bind_front_handler(&Session::on_upgrade, shared_from_this()));
  }

  void on_upgrade(beast::error_code ec) {
    handshaking_done();
    if (ec) return end("WebSocket upgrade: " + ec.message());
    wire::Envelope hello;
    hello.mutable_hello()->set_protocol_version(kProtocolVersion);
    hello.mutable_hello()->set_software("federa-bench load");
    hello.mutable_hello()->set_num_train_examples(fleet_->opt.num_examples);
    send(serialize_shared(hello));
    read();
  }

  // One connect slot frees up: the fleet starts the next session.
  void handshaking_done() {
    if (std::exchange(counted_, true)) return;
    {
      std::lock_guard lk(fleet_->mu);
      --fleet_->connecting;
    }
    fleet_->launch_more();
  }

  void read() {
    ws_.async_read_some(net::buffer(buf_.data(), buf_.size()),
                        beast::bind_front_handler(&Session::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t n) {
    if (ec)
      return end(ec == websocket::error::closed ? "closed by the coordinator"
                                                : "read: " + ec.message());
    if (!large_ && message_.size() + n <= kSmallMessage) {
      message_.append(buf_.data(), n);
    } else {
      large_ = true;
      message_.clear();
    }
    if (ws_.is_message_done()) {
      Status s = large_ ? on_chunk() : on_message();
      message_.clear();
      large_ = false;
      if (!s) return end(s.message());
      if (done_) return close();
    }
    read();
  }

  Status on_message() {
    wire::Envelope e;
    if (!e.ParseFromString(message_))
      return make_error("the coordinator sent a message that is not an Envelope");
    switch (e.payload_case()) {
      case wire::Envelope::kWelcome: {
        std::lock_guard lk(fleet_->mu);
        ++fleet_->stats.connected;
        fleet_->stats.connect_ms =
            std::chrono::duration<double, std::milli>(LoadClock::now() - fleet_->started).count();
        return {};
      }
      case wire::Envelope::kFitTask: {
        const auto& t = e.fit_task();
        auto layout = from_wire(t.layout());
        if (!layout) return make_error("bad layout in FitTask: " + layout.error().message);
        round_ = t.round();
        elements_ = t.total_elements();
        chunk_elements_ = t.chunk_elements();
        layout_hash_ = layout->hash();
        chunks_left_ = t.num_chunks();
        return chunks_left_ == 0 ? announce() : Status{};
      }
      case wire::Envelope::kChunk:
        return on_chunk();
      case wire::Envelope::kUploadReady:
        if (e.upload_ready().round() != round_) return make_error("UploadReady for another round");
        return upload();
      case wire::Envelope::kBye: {
        done_ = true;
        std::lock_guard lk(fleet_->mu);
        if (e.bye().federation_complete()) ++fleet_->stats.finished;
        return {};
      }
      case wire::Envelope::kError:
        return make_error("Error from the coordinator: " + e.error().message());
      default:
        return {};
    }
  }

  Status on_chunk() {
    if (chunks_left_ == 0) return make_error("a chunk without a task");
    return --chunks_left_ == 0 ? announce() : Status{};
  }

  // The global model arrived: announce the update (the flow control answers with UploadReady).
  Status announce() {
    wire::Envelope h;
    auto* u = h.mutable_update_header();
    u->set_round(round_);
    u->set_num_examples(fleet_->opt.num_examples);
    u->set_layout_hash(layout_hash_);
    u->set_total_elements(elements_);
    u->set_num_chunks(chunk_count(elements_, chunk_elements_));
    (*u->mutable_metrics())["train_loss"] = 1.0;
    {
      std::lock_guard lk(fleet_->mu);
      auto& r = fleet_->stats.rounds[round_];
      if (r.headers++ == 0) {
        r.first_header = LoadClock::now();
        if (fleet_->opt.coordinator > 0)
          r.coordinator_cpu_first = process_cpu_s(fleet_->opt.coordinator);
      }
    }
    send(serialize_shared(h));
    return {};
  }

  Status upload() {
    const auto& chunks = fleet_->round_chunks(round_, elements_, chunk_elements_);
    upload_pending_ = chunks.size();
    for (const auto& c : chunks) send(c, true);
    return {};
  }

  void send(Message m, bool chunk = false) {
    queue_.emplace_back(std::move(m), chunk);
    if (queue_.size() == 1) write_next();
  }

  void write_next() {
    ws_.async_write(net::buffer(*queue_.front().first),
                    beast::bind_front_handler(&Session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t n) {
    if (ec) return end("write: " + ec.message());
    const bool chunk = queue_.front().second;
    queue_.pop_front();
    if (chunk && --upload_pending_ == 0) {
      const double cpu =
          fleet_->opt.coordinator > 0 ? process_cpu_s(fleet_->opt.coordinator) : -1.0;
      std::lock_guard lk(fleet_->mu);
      auto& r = fleet_->stats.rounds[round_];
      ++r.uploads;
      r.bytes += elements_ * sizeof(float);
      r.last_write = LoadClock::now();
      r.coordinator_cpu_last = std::max(r.coordinator_cpu_last, cpu);
    }
    if (!queue_.empty()) write_next();
  }

  void close() {
    if (closing_) return;
    closing_ = true;
    ws_.async_close(websocket::close_code::normal,
                    [self = shared_from_this()](beast::error_code) { self->end(""); });
  }

  void end(const std::string& why) {
    if (ended_) return;
    ended_ = true;
    handshaking_done();
    if (!why.empty() && !done_) fleet_->fail(kit_.name, why);
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
    fleet_->session_ended();
  }

  std::shared_ptr<LoadFleet::Shared> fleet_;
  const LoadKit& kit_;
  websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws_;
  std::array<char, kReadBuffer> buf_{};
  std::string message_;
  bool large_ = false;
  std::deque<std::pair<Message, bool>> queue_;  // message, is a chunk of the update
  std::size_t upload_pending_ = 0;
  std::uint64_t round_ = 0, elements_ = 0, layout_hash_ = 0;
  std::size_t chunk_elements_ = kDefaultChunkElements;
  std::uint32_t chunks_left_ = 0;
  bool counted_ = false, done_ = false, closing_ = false, ended_ = false;
};

}  // namespace

void LoadFleet::Shared::launch_more() {
  std::vector<const LoadKit*> start;
  {
    std::lock_guard lk(mu);
    while (connecting < opt.connect_concurrency && next_kit < kits.size()) {
      ++connecting;
      start.push_back(&kits[next_kit++]);
    }
  }
  for (const LoadKit* kit : start) {
    auto s = std::make_shared<Session>(shared_from_this(), *kit);
    net::dispatch(s->executor(), [s] { s->start(); });
  }
}

LoadFleet::LoadFleet(net::io_context& io, std::shared_ptr<net::ssl::context> tls,
                     std::vector<LoadKit> kits, FleetOptions options)
    : shared_(std::make_shared<Shared>(io, std::move(tls), std::move(kits), std::move(options))) {}

LoadFleet::~LoadFleet() = default;

void LoadFleet::start() {
  shared_->started = LoadClock::now();
  shared_->launch_more();
}

bool LoadFleet::wait_done(LoadClock::time_point deadline) {
  std::unique_lock lk(shared_->mu);
  return shared_->cv.wait_until(lk, deadline,
                                [&] { return shared_->ended == shared_->kits.size(); });
}

FleetStats LoadFleet::stats() const {
  std::lock_guard lk(shared_->mu);
  return shared_->stats;
}

}  // namespace federa::bench
