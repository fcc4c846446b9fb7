#include "sim/simulation.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "client/builtin_trainer.hpp"
#include "client/secagg_client.hpp"
#include "common/dataset.hpp"
#include "common/nn.hpp"
#include "common/secagg_wire.hpp"
#include "common/seeds.hpp"
#include "common/wire.hpp"
#include "coordinator/aggregation_backend.hpp"
#include "coordinator/orchestrator.hpp"
#include "coordinator/round_log.hpp"
#include "sim/progress.hpp"

namespace federa {

namespace {

using wall_clock = std::chrono::steady_clock;

// [0, 1) from 53 random bits: the same on every standard library, unlike <random>'s
// distributions, so a seed means the same draws wherever the binary was built.
double uniform01(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1.0p-53; }

double standard_normal(std::mt19937_64& rng) {
  double u1 = uniform01(rng), u2 = uniform01(rng);
  return std::sqrt(-2.0 * std::log1p(-u1)) * std::cos(2.0 * M_PI * u2);
}

std::string client_name(std::size_t index, std::size_t count) {
  std::string digits = std::to_string(count > 0 ? count - 1 : 0);
  std::string n = std::to_string(index);
  return "sim-" + std::string(digits.size() > n.size() ? digits.size() - n.size() : 0, '0') + n;
}

// ---------------------------------------------------------------------------------------------
// Byte streams for the messages between ranks.

class Writer {
 public:
  void u64(std::uint64_t v) { raw(&v, sizeof v); }
  void f64(double v) { raw(&v, sizeof v); }
  void str(const std::string& s) {
    u64(s.size());
    raw(s.data(), s.size());
  }
  void floats(const std::vector<float>& v) {
    u64(v.size());
    raw(v.data(), v.size() * sizeof(float));
  }
  std::string take() { return std::move(out_); }

 private:
  void raw(const void* p, std::size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string out_;
};

class Reader {
 public:
  explicit Reader(const std::string& s) : s_(s) {}
  bool ok() const { return ok_; }
  std::uint64_t u64() {
    std::uint64_t v = 0;
    raw(&v, sizeof v);
    return v;
  }
  double f64() {
    double v = 0;
    raw(&v, sizeof v);
    return v;
  }
  std::string str() {
    std::uint64_t n = u64();
    if (!ok_ || n > s_.size() - at_) return fail(), std::string();
    std::string v = s_.substr(at_, n);
    at_ += n;
    return v;
  }
  std::vector<float> floats() {
    std::uint64_t n = u64();
    if (!ok_ || n > (s_.size() - at_) / sizeof(float)) return fail(), std::vector<float>();
    std::vector<float> v(n);
    raw(v.data(), n * sizeof(float));
    return v;
  }

 private:
  void fail() { ok_ = false; }
  void raw(void* p, std::size_t n) {
    if (!ok_ || n > s_.size() - at_) return fail();
    std::memcpy(p, s_.data() + at_, n);
    at_ += n;
  }
  const std::string& s_;
  std::size_t at_ = 0;
  bool ok_ = true;
};

// ---------------------------------------------------------------------------------------------
// Client training, shared by every rank.

struct TrainOutcome {
  std::size_t client = 0;
  bool ok = false;
  std::string error;
  std::uint64_t num_examples = 0;
  std::map<std::string, double> metrics;
  std::vector<float> weights;
};

struct ClientData {
  std::shared_ptr<const Dataset> data;
  Partitions parts;
  std::uint64_t seed = 1;
};

// Trains `clients` from `global` on up to `threads` threads. A trainer is built for each client
// when it trains and dropped afterwards, so only the selected clients cost memory.
std::vector<TrainOutcome> train_clients(const ClientData& cd,
                                        const std::vector<std::size_t>& clients,
                                        const Model& global, const TrainConfig& config,
                                        unsigned threads, std::atomic<std::size_t>* done) {
  std::vector<TrainOutcome> out(clients.size());
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t k; (k = next.fetch_add(1)) < clients.size();) {
      const std::size_t c = clients[k];
      TrainOutcome& o = out[k];
      o.client = c;
      auto trainer = make_builtin_trainer(cd.data, cd.parts[c], {}, mix_seeds(cd.seed, c + 1));
      Result<FitResult> r = trainer->fit(global, config);
      if (r) {
        o.ok = true;
        o.num_examples = r->num_examples;
        o.metrics = std::move(r->metrics);
        o.weights = std::move(r->weights);
      } else {
        o.error = r.error().message;
      }
      if (done) done->fetch_add(1);
    }
  };
  const unsigned n =
      static_cast<unsigned>(std::min<std::size_t>(std::max(1u, threads), clients.size()));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < n; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  return out;
}

std::string encode_outcomes(const std::vector<TrainOutcome>& v) {
  Writer w;
  w.u64(v.size());
  for (const auto& o : v) {
    w.u64(o.client);
    w.u64(o.ok ? 1 : 0);
    w.str(o.error);
    w.u64(o.num_examples);
    w.u64(o.metrics.size());
    for (const auto& [k, x] : o.metrics) {
      w.str(k);
      w.f64(x);
    }
    w.floats(o.weights);
  }
  return w.take();
}

Result<std::vector<TrainOutcome>> decode_outcomes(const std::string& s) {
  Reader r(s);
  std::vector<TrainOutcome> v(r.u64());
  for (auto& o : v) {
    o.client = r.u64();
    o.ok = r.u64() != 0;
    o.error = r.str();
    o.num_examples = r.u64();
    for (std::uint64_t m = r.u64(); r.ok() && m > 0; --m) {
      std::string k = r.str();
      o.metrics[k] = r.f64();
    }
    o.weights = r.floats();
    if (!r.ok()) return make_error("a rank sent a truncated training result");
  }
  return v;
}

// One round's work order from rank 0: stop, or train these clients from this model.
struct WorkOrder {
  bool stop = false;
  std::uint64_t round = 0;
  TrainConfig config;
  std::vector<float> global;
  std::vector<std::size_t> clients;  // all ranks' clients, in client order
};

std::string encode_order(const WorkOrder& o) {
  Writer w;
  w.u64(o.stop ? 1 : 0);
  if (o.stop) return w.take();
  w.u64(o.round);
  w.str(to_wire(o.config).SerializeAsString());
  w.floats(o.global);
  w.u64(o.clients.size());
  for (std::size_t c : o.clients) w.u64(c);
  return w.take();
}

Result<WorkOrder> decode_order(const std::string& s) {
  Reader r(s);
  WorkOrder o;
  o.stop = r.u64() != 0;
  if (o.stop) return o;
  o.round = r.u64();
  wire::TrainConfig wc;
  if (!wc.ParseFromString(r.str())) return make_error("rank 0 sent an unreadable train config");
  o.config = from_wire(wc);
  o.global = r.floats();
  o.clients.resize(r.u64());
  for (auto& c : o.clients) c = r.u64();
  if (!r.ok()) return make_error("rank 0 sent a truncated work order");
  return o;
}

// This rank's share: positions k with k mod size == rank (fixed by client order, so the split
// does not change which client trains where in a way that matters: training depends on the
// client, never on the rank).
std::vector<std::size_t> share_of(const std::vector<std::size_t>& clients, int rank, int size) {
  std::vector<std::size_t> mine;
  for (std::size_t k = static_cast<std::size_t>(rank); k < clients.size();
       k += static_cast<std::size_t>(size))
    mine.push_back(clients[k]);
  return mine;
}

// Every rank: train our share of `order`, then send the results to rank 0 (whose own share is
// returned directly). Rank 0 gets all outcomes, sorted by client.
Result<std::vector<TrainOutcome>> train_distributed(RankGroup& group, const ClientData& cd,
                                                    const ModelLayout& layout,
                                                    const WorkOrder& order, unsigned threads,
                                                    std::atomic<std::size_t>* done) {
  Model global(layout);
  if (order.global.size() != global.data.size())
    return make_error("work order: the model size differs from the layout");
  global.data = order.global;
  auto mine = train_clients(cd, share_of(order.clients, group.rank(), group.size()), global,
                            order.config, threads, done);
  std::vector<std::string> at_root;
  if (Status s = group.gather(group.rank() == 0 ? std::string() : encode_outcomes(mine), at_root);
      !s)
    return s.error();
  if (group.rank() != 0) return std::vector<TrainOutcome>{};
  for (std::size_t r = 1; r < at_root.size(); ++r) {
    auto theirs = decode_outcomes(at_root[r]);
    if (!theirs) return theirs.error();
    for (auto& o : *theirs) mine.push_back(std::move(o));
  }
  std::sort(mine.begin(), mine.end(),
            [](const auto& a, const auto& b) { return a.client < b.client; });
  return mine;
}

// ---------------------------------------------------------------------------------------------
// The in-process transport: links queue what the orchestrator sends; rank 0's dispatcher thread
// delivers it. send() never calls back into the orchestrator (it holds its lock while sending).

struct Delivery {
  enum class Kind { message, close, done };
  Kind kind = Kind::message;
  std::size_t client = 0;
  std::shared_ptr<const std::string> bytes;
  std::string reason;
};

class Inbox {
 public:
  void push(Delivery d) {
    {
      std::lock_guard lk(mu_);
      q_.push_back(std::move(d));
    }
    cv_.notify_one();
  }
  Delivery pop() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return !q_.empty(); });
    Delivery d = std::move(q_.front());
    q_.pop_front();
    return d;
  }
  bool try_pop(Delivery& d) {
    std::lock_guard lk(mu_);
    if (q_.empty()) return false;
    d = std::move(q_.front());
    q_.pop_front();
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Delivery> q_;
};

class SimLink final : public ClientLink {
 public:
  SimLink(std::string id, std::size_t index, Inbox& inbox)
      : id_(std::move(id)), index_(index), inbox_(inbox) {}
  const std::string& id() const override { return id_; }
  void send(std::shared_ptr<const std::string> bytes) override {
    inbox_.push({Delivery::Kind::message, index_, std::move(bytes), {}});
  }
  void close_with_error(wire::Error::Code code, const std::string& reason) override {
    inbox_.push({Delivery::Kind::close, index_, nullptr, reason});
  }
  void close() override {
    inbox_.push({Delivery::Kind::close, index_, nullptr, "closed by the coordinator"});
  }

 private:
  std::string id_;
  std::size_t index_;
  Inbox& inbox_;
};

// ---------------------------------------------------------------------------------------------
// Simulated-clock accounting, reported through the strategy's RoundStats so the orchestrator's
// own metrics line carries it.

struct RoundAccounting {
  std::mutex mu;
  double dropped_out = 0, missed_deadline = 0, failed = 0, round_s = 0, clock_s = 0;
};

class AccountingStrategy final : public Strategy {
 public:
  AccountingStrategy(std::unique_ptr<Strategy> inner, std::shared_ptr<RoundAccounting> acc)
      : inner_(std::move(inner)), acc_(std::move(acc)) {}
  std::string name() const override { return inner_->name(); }
  void configure_fit(TrainConfig& config) const override { inner_->configure_fit(config); }
  bool needs_all_updates() const override { return inner_->needs_all_updates(); }
  void begin_round(std::span<const float> global, std::uint64_t round) override {
    inner_->begin_round(global, round);
  }
  Status add_update(const ClientUpdate& update) override { return inner_->add_update(update); }
  bool supports_secure_aggregation() const override {
    return inner_->supports_secure_aggregation();
  }
  Status add_cohort_mean(const ClientUpdate& mean, std::size_t clients) override {
    return inner_->add_cohort_mean(mean, clients);
  }
  Result<RoundStats> finish_round(std::span<float> global) override {
    auto stats = inner_->finish_round(global);
    if (!stats) return stats;
    std::lock_guard lk(acc_->mu);
    (*stats)["dropped_out"] = acc_->dropped_out;
    (*stats)["missed_deadline"] = acc_->missed_deadline;
    (*stats)["train_failed"] = acc_->failed;
    (*stats)["sim_round_s"] = acc_->round_s;
    (*stats)["sim_clock_s"] = acc_->clock_s;
    return stats;
  }
  StrategyState save_state() const override { return inner_->save_state(); }
  Status load_state(const StrategyState& state) override { return inner_->load_state(state); }

 private:
  std::unique_ptr<Strategy> inner_;
  std::shared_ptr<RoundAccounting> acc_;
};

wire::Envelope client_error(const std::string& message) {
  return make_error_envelope(wire::Error::UNKNOWN, message);
}

std::vector<std::string> read_lines(const std::filesystem::path& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

// What rank 0 remembers of each round for --baseline.
struct RoundRecord {
  TrainConfig config;
  std::vector<std::size_t> trained;
};

// ---------------------------------------------------------------------------------------------
// Rank 0.

class Driver {
 public:
  Driver(const SimOptions& o, RankGroup& group, const ClientData& cd, Orchestrator& orch,
         std::shared_ptr<RoundAccounting> acc, Progress& progress)
      : o_(o), group_(group), cd_(cd), orch_(orch), acc_(std::move(acc)), progress_(progress) {}

  // Connects every virtual client (Hello -> Welcome) before the orchestrator starts.
  Status connect_all() {
    links_.reserve(o_.clients);
    closed_.assign(o_.clients, false);
    for (std::size_t i = 0; i < o_.clients; ++i) {
      auto link = std::make_shared<SimLink>(client_name(i, o_.clients), i, inbox_);
      links_.push_back(link);
      if (Status s = orch_.on_connect(links_.back()); !s)
        return make_error("connecting " + link->id() + ": " + s.message());
      wire::Envelope hello;
      hello.mutable_hello()->set_protocol_version(kProtocolVersion);
      hello.mutable_hello()->set_software("federa-sim 0.1.0");
      hello.mutable_hello()->set_num_train_examples(cd_.parts[i].size());
      if (Status s = orch_.on_message(links_.back(), hello); !s)
        return make_error(link->id() + ": " + s.message());
    }
    Delivery d;
    while (inbox_.try_pop(d)) {
      if (Status s = handle_other(d); !s) return s;
    }
    return {};
  }

  // Runs the orchestrator on its own thread and serves it until it returns.
  Status run(double& wall_s) {
    Status result;
    auto started = wall_clock::now();
    std::thread orch_thread([&] {
      result = orch_.run();
      inbox_.push({Delivery::Kind::done, 0, nullptr, {}});
    });
    Status served = serve();
    if (!served) orch_.stop();
    orch_thread.join();
    wall_s = std::chrono::duration<double>(wall_clock::now() - started).count();
    if (!served) return served;
    return result;
  }

  const std::map<std::uint64_t, RoundRecord>& records() const { return records_; }

 private:
  Status serve() {
    for (;;) {
      Delivery d = next();
      if (d.kind == Delivery::Kind::done) return {};
      if (d.kind == Delivery::Kind::message) {
        wire::Envelope e;
        if (!e.ParseFromString(*d.bytes))
          return make_error("the orchestrator sent an unreadable envelope");
        if (e.payload_case() == wire::Envelope::kFitTask) {
          if (Status s = round_from(d, e); !s) return s;
          continue;
        }
      }
      if (Status s = handle_other(d); !s) return s;
    }
  }

  // Items set aside while serving a round come first.
  Delivery next() {
    if (!pending_.empty()) {
      Delivery d = std::move(pending_.front());
      pending_.pop_front();
      return d;
    }
    return inbox_.pop();
  }
  bool try_next(Delivery& d) {
    if (!pending_.empty()) {
      d = std::move(pending_.front());
      pending_.pop_front();
      return true;
    }
    return inbox_.try_pop(d);
  }

  // While uploads are delivered, the orchestrator may already broadcast the next round (it
  // aggregates as soon as the last update is in): those items wait for serve(), in order.
  // With `upload_ready`, blocks until the orchestrator grants this client's upload (it may do so
  // later, from its aggregation worker, once a slot is free) or closes the client.
  Status drain_during_upload(std::size_t client, bool* upload_ready) {
    Delivery d;
    for (;;) {
      if (upload_ready && !*upload_ready && !closed_[client]) {
        d = inbox_.pop();
      } else if (!inbox_.try_pop(d)) {
        return {};
      }
      if (d.kind == Delivery::Kind::message) {
        wire::Envelope e;
        if (!e.ParseFromString(*d.bytes))
          return make_error("the orchestrator sent an unreadable envelope");
        if (upload_ready && d.client == client &&
            e.payload_case() == wire::Envelope::kUploadReady) {
          *upload_ready = true;
          continue;
        }
        if (e.payload_case() == wire::Envelope::kFitTask ||
            e.payload_case() == wire::Envelope::kChunk || !pending_.empty()) {
          pending_.push_back(std::move(d));
          continue;
        }
      } else if (!pending_.empty() || d.kind == Delivery::Kind::done) {
        pending_.push_back(std::move(d));
        continue;
      }
      if (Status s = handle_other(d); !s) return s;
    }
  }

  // Anything outside a round's task: welcomes, goodbyes, closes, errors for a client.
  Status handle_other(const Delivery& d) {
    if (d.kind == Delivery::Kind::close) {
      disconnect(d.client, d.reason);
      return {};
    }
    if (d.kind != Delivery::Kind::message) return {};
    wire::Envelope e;
    if (!e.ParseFromString(*d.bytes))
      return make_error("the orchestrator sent an unreadable envelope");
    switch (e.payload_case()) {
      case wire::Envelope::kWelcome:
      case wire::Envelope::kBye:
      case wire::Envelope::kUploadReady:  // a masked input's grant; its chunks went with it
        return {};
      case wire::Envelope::kError:
        spdlog::debug("coordinator to '{}': {}", links_[d.client]->id(), e.error().message());
        return {};
      case wire::Envelope::kSecaggSetup:
      case wire::Envelope::kSecaggKeysBroadcast:
      case wire::Envelope::kSecaggSharesForward:
      case wire::Envelope::kSecaggUnmaskRequest:
      case wire::Envelope::kSecaggAbort:
        handle_secure(d.client, e);
        return {};
      default:
        return make_error(std::string("unexpected '") + payload_name(e) + "' for " +
                          links_[d.client]->id());
    }
  }

  // SecAgg+, client side, as client/client.cpp runs it: a failure drops the client out of the
  // round (an Error envelope, so the orchestrator need not wait for its phase timeout).
  struct SecureClient {
    std::uint64_t round = 0;
    std::uint32_t num_clients = 0;
    double max_weight = 1;
    std::optional<secagg::Client> client;
    std::optional<secagg::SharesForward> shares;
    std::optional<std::vector<float>> delta;
    double weight = 1;
  };

  void secure_fail(std::size_t c, const std::string& why) {
    spdlog::warn("'{}': secure aggregation: {}; leaving the round", links_[c]->id(), why);
    secure_.erase(c);
    deliver(c, client_error("secure aggregation: " + why));
  }

  void handle_secure(std::size_t c, const wire::Envelope& msg) {
    if (msg.has_secagg_abort()) {
      secure_.erase(c);
      return;
    }
    auto it = secure_.find(c);
    if (it == secure_.end()) return;  // dropped out or failed already
    SecureClient& sc = it->second;
    switch (msg.payload_case()) {
      case wire::Envelope::kSecaggSetup: {
        auto setup = secagg::from_wire(msg.secagg_setup());
        if (!setup) return secure_fail(c, setup.error().message);
        if (setup->config.round != sc.round) return secure_fail(c, "setup for another round");
        auto client = secagg::Client::create(setup->config, setup->client_index);
        if (!client) return secure_fail(c, client.error().message);
        sc.num_clients = setup->config.num_clients;
        sc.max_weight = setup->config.quant.max_weight;
        sc.client.emplace(std::move(client.value()));
        auto adv = sc.client->advertise_keys();
        if (!adv) return secure_fail(c, adv.error().message);
        wire::Envelope e;
        secagg::to_wire(*adv, e.mutable_secagg_advertise_keys());
        return deliver(c, e);
      }
      case wire::Envelope::kSecaggKeysBroadcast: {
        if (!sc.client) return secure_fail(c, "keys before setup");
        auto m = secagg::from_wire(msg.secagg_keys_broadcast(), sc.num_clients);
        if (!m) return secure_fail(c, m.error().message);
        auto sk = sc.client->share_keys(*m);
        if (!sk) return secure_fail(c, sk.error().message);
        wire::Envelope e;
        secagg::to_wire(*sk, e.mutable_secagg_share_keys());
        return deliver(c, e);
      }
      case wire::Envelope::kSecaggSharesForward: {
        if (!sc.client) return secure_fail(c, "shares before setup");
        auto m = secagg::from_wire(msg.secagg_shares_forward(), sc.num_clients);
        if (!m) return secure_fail(c, m.error().message);
        sc.shares.emplace(std::move(m.value()));
        return send_masked_input(c);
      }
      case wire::Envelope::kSecaggUnmaskRequest: {
        if (!sc.client) return secure_fail(c, "unmask request before setup");
        auto m = secagg::from_wire(msg.secagg_unmask_request(), sc.num_clients);
        if (!m) return secure_fail(c, m.error().message);
        auto r = sc.client->unmask(*m);
        if (!r) return secure_fail(c, r.error().message);
        wire::Envelope e;
        secagg::to_wire(*r, e.mutable_secagg_unmask_response());
        secure_.erase(it);
        return deliver(c, e);
      }
      default:
        return;
    }
  }

  // Sends the masked update once both the training result and the neighbours' shares are here.
  void send_masked_input(std::size_t c) {
    auto it = secure_.find(c);
    if (it == secure_.end()) return;
    SecureClient& sc = it->second;
    if (!sc.client || !sc.shares || !sc.delta) return;
    auto mi = sc.client->masked_input(*sc.shares, *sc.delta, std::min(sc.weight, sc.max_weight));
    sc.delta.reset();
    if (!mi) return secure_fail(c, mi.error().message);
    for (const auto& e : secagg::masked_input_envelopes(*mi, chunk_elements_)) deliver(c, e);
  }

  void disconnect(std::size_t client, const std::string& why) {
    if (closed_[client]) return;
    closed_[client] = true;
    orch_.on_disconnect(links_[client], why);
  }

  // Feeds one client message to the orchestrator as a transport would: an Error return means
  // the transport sends it and closes the connection.
  void deliver(std::size_t client, const wire::Envelope& e) {
    if (closed_[client]) return;
    if (Status s = orch_.on_message(links_[client], e); !s) {
      spdlog::warn("'{}': {}", links_[client]->id(), s.message());
      disconnect(client, s.message());
    }
  }

  // A FitTask arrived: gather the whole broadcast, train, and answer for every selected client.
  Status round_from(const Delivery& first, const wire::Envelope& task_env) {
    const auto& task = task_env.fit_task();
    const std::uint64_t round = task.round();
    auto layout = from_wire(task.layout());
    if (!layout) return make_error("fit task: " + layout.error().message);
    Model global(std::move(layout.value()));
    ChunkAssembler assembler;
    if (Status s = assembler.begin(round, task.total_elements(), task.num_chunks(),
                                   task.chunk_elements(), global.data);
        !s)
      return make_error("fit task: " + s.message());

    // The orchestrator broadcasts the whole round under its lock: once we can take it, every
    // selected client's task and chunks are in the inbox.
    (void)orch_.completed_rounds();
    std::vector<std::size_t> selected{first.client};
    Delivery d;
    std::vector<Delivery> other;
    while (try_next(d)) {
      if (d.kind != Delivery::Kind::message) {
        other.push_back(std::move(d));
        continue;
      }
      wire::Envelope e;
      if (!e.ParseFromString(*d.bytes))
        return make_error("the orchestrator sent an unreadable envelope");
      if (e.payload_case() == wire::Envelope::kFitTask) {
        selected.push_back(d.client);
      } else if (e.payload_case() == wire::Envelope::kChunk) {
        // The chunks are the same shared bytes for every client: assemble them once.
        if (d.client == first.client && !assembler.complete()) {
          if (Status s = assembler.add(e.chunk()); !s)
            return make_error("global model: " + s.message());
        }
      } else {
        other.push_back(std::move(d));
      }
    }
    if (!assembler.complete())
      return make_error("round " + std::to_string(round) + ": the global model arrived incomplete");
    std::sort(selected.begin(), selected.end());

    // Dropout and latency on the simulated clock, per (seed, round, attempt, client).
    const std::uint64_t attempt = ++attempts_[round];
    enum class Fate { train, dropped_out, missed };
    std::vector<Fate> fate(selected.size(), Fate::train);
    std::vector<std::size_t> to_train;
    double slowest = 0;
    std::size_t n_dropped = 0, n_missed = 0;
    for (std::size_t k = 0; k < selected.size(); ++k) {
      std::mt19937_64 rng(mix_seeds(mix_seeds(mix_seeds(o_.seed, round), attempt), selected[k] + 1));
      const double u = uniform01(rng);
      const double latency = o_.latency.sample(rng);
      if (u < o_.dropout) {
        fate[k] = Fate::dropped_out;
        ++n_dropped;
      } else if (o_.round_timeout_s > 0 && latency > o_.round_timeout_s) {
        fate[k] = Fate::missed;
        ++n_missed;
      } else {
        slowest = std::max(slowest, latency);
        to_train.push_back(selected[k]);
      }
    }
    const double round_s = n_missed > 0 ? o_.round_timeout_s : slowest;

    // Secure rounds: clients that drop out say so now; the others answer SecaggSetup (in
    // `other`) with their keys at once and exchange shares while they train, as a real client.
    const bool secure = task.secure_aggregation() == "secagg+";
    secure_.clear();
    chunk_elements_ = task.chunk_elements() ? task.chunk_elements() : kDefaultChunkElements;
    if (secure) {
      for (std::size_t k = 0; k < selected.size(); ++k)
        if (fate[k] != Fate::train)
          deliver(selected[k], client_error(fate[k] == Fate::dropped_out
                                                ? "dropped out (simulated)"
                                                : "missed the deadline on the simulated clock"));
      for (std::size_t c : to_train) secure_[c].round = round;
      global_ = global.data;
    }
    for (auto& od : other) {
      if (od.kind == Delivery::Kind::done) {
        pending_.push_back(std::move(od));
        continue;
      }
      if (Status s = handle_other(od); !s) return s;
    }

    TrainConfig config = from_wire(task.config());
    records_[round] = RoundRecord{config, to_train};
    WorkOrder order;
    order.round = round;
    order.config = config;
    order.global = global.data;
    order.clients = to_train;
    std::string bytes = encode_order(order);
    if (Status s = group_.broadcast(bytes); !s) return s;

    std::atomic<std::size_t> done{0};
    Result<std::vector<TrainOutcome>> outcomes = make_error("not run");
    if (progress_.enabled()) {
      // Rank 0 draws its own share's progress while its threads train.
      const std::size_t local = share_of(to_train, 0, group_.size()).size();
      progress_.begin_round(round, local);
      std::thread trainer([&] {
        outcomes = train_distributed(group_, cd_, global.layout, order, o_.threads, &done);
      });
      progress_.track(done, local);
      trainer.join();
      progress_.end_round();
    } else {
      outcomes = train_distributed(group_, cd_, global.layout, order, o_.threads, &done);
    }
    if (!outcomes) return outcomes.error();

    std::size_t n_failed = 0;
    for (const auto& o : *outcomes) n_failed += o.ok ? 0 : 1;
    {
      std::lock_guard lk(acc_->mu);
      acc_->dropped_out = double(n_dropped);
      acc_->missed_deadline = double(n_missed);
      acc_->failed = double(n_failed);
      acc_->round_s = round_s;
      acc_->clock_s += round_s;
    }

    auto& outs = *outcomes;
    if (secure) {
      // The masked update is the delta from the global model; the rest of the protocol runs as
      // the orchestrator's messages arrive (handle_secure).
      for (auto& out : outs) {
        auto it = secure_.find(out.client);
        if (!out.ok) {
          secure_.erase(out.client);
          deliver(out.client, client_error("training failed: " + out.error));
          continue;
        }
        if (it == secure_.end()) continue;
        std::vector<float> delta(out.weights.size());
        for (std::size_t i = 0; i < delta.size(); ++i) delta[i] = out.weights[i] - global_[i];
        it->second.delta.emplace(std::move(delta));
        it->second.weight = double(out.num_examples);
        std::vector<float>().swap(out.weights);
        send_masked_input(out.client);
      }
      return {};
    }

    // Answer for every selected client in client order, one upload at a time, so the strategy
    // sees the updates in the same order whatever trained them.
    std::size_t next = 0;
    for (std::size_t k = 0; k < selected.size(); ++k) {
      const std::size_t c = selected[k];
      if (fate[k] == Fate::dropped_out) {
        deliver(c, client_error("dropped out (simulated)"));
        continue;
      }
      if (fate[k] == Fate::missed) {
        deliver(c, client_error("missed the " + std::to_string(o_.round_timeout_s) +
                                " s deadline on the simulated clock"));
        continue;
      }
      if (next >= outs.size() || outs[next].client != c)
        return make_error("internal: training results out of order");
      TrainOutcome& out = outs[next++];
      if (!out.ok) {
        deliver(c, client_error("training failed: " + out.error));
        continue;
      }
      if (Status s = upload(c, round, global.layout.hash(), task.chunk_elements(), out); !s)
        return s;
      std::vector<float>().swap(out.weights);
    }
    return {};
  }

  Status upload(std::size_t c, std::uint64_t round, std::uint64_t layout_hash,
                std::size_t chunk_elements, const TrainOutcome& out) {
    wire::Envelope h;
    auto* uh = h.mutable_update_header();
    uh->set_round(round);
    uh->set_num_examples(out.num_examples);
    uh->set_layout_hash(layout_hash);
    for (const auto& [k, v] : out.metrics) (*uh->mutable_metrics())[k] = v;
    uh->set_total_elements(out.weights.size());
    if (chunk_elements == 0) chunk_elements = kDefaultChunkElements;
    uh->set_num_chunks(chunk_count(out.weights.size(), chunk_elements));
    deliver(c, h);
    // The orchestrator answers a header with upload_ready synchronously when a slot is free, and
    // one always is: uploads go one at a time.
    bool ready = false;
    if (Status s = drain_during_upload(c, &ready); !s) return s;
    if (!ready) return {};  // rejected on its header (logged) or disconnected
    for (const auto& e : make_chunks(round, out.weights, chunk_elements)) deliver(c, e);
    // A late rejection (e.g. a norm bound) comes back as an Error envelope; take it now.
    return drain_during_upload(c, nullptr);
  }

  const SimOptions& o_;
  RankGroup& group_;
  const ClientData& cd_;
  Orchestrator& orch_;
  std::shared_ptr<RoundAccounting> acc_;
  Progress& progress_;
  Inbox inbox_;
  std::deque<Delivery> pending_;
  std::map<std::size_t, SecureClient> secure_;
  std::vector<float> global_;  // this round's global model, for secure deltas
  std::size_t chunk_elements_ = kDefaultChunkElements;
  std::vector<std::shared_ptr<ClientLink>> links_;
  std::vector<bool> closed_;
  std::map<std::uint64_t, std::uint64_t> attempts_;
  std::map<std::uint64_t, RoundRecord> records_;
};

// The same local training in a plain loop: no orchestrator, no transport, no strategy object;
// a weighted average in a loop, the same threads. Timed against the simulation.
double run_baseline(const SimOptions& o, const ClientData& cd, Network& net, const Evaluator* eval,
                    const std::map<std::uint64_t, RoundRecord>& records) {
  auto started = wall_clock::now();
  Model global(net.layout());
  net.init(global.data, o.seed);
  std::vector<double> acc(global.data.size());
  for (const auto& [round, rec] : records) {
    if (rec.trained.empty()) continue;
    auto outs = train_clients(cd, rec.trained, global, rec.config, o.threads, nullptr);
    std::fill(acc.begin(), acc.end(), 0.0);
    double total = 0;
    for (const auto& out : outs) {
      if (!out.ok) continue;
      const double w = double(out.num_examples);
      for (std::size_t i = 0; i < acc.size(); ++i) acc[i] += w * out.weights[i];
      total += w;
    }
    if (total > 0)
      for (std::size_t i = 0; i < acc.size(); ++i) global.data[i] = float(acc[i] / total);
    if (eval) (void)eval->network->evaluate(global.data, eval->data);
  }
  return std::chrono::duration<double>(wall_clock::now() - started).count();
}

Status limit_rows(Dataset& d, std::size_t limit) {
  if (limit == 0 || limit >= d.rows) return {};
  d.rows = limit;
  d.x.resize(limit * d.features);
  d.labels.resize(limit);
  return {};
}

}  // namespace

// ---------------------------------------------------------------------------------------------

double LatencyModel::sample(std::mt19937_64& rng) const {
  switch (kind) {
    case Kind::none:
      return 0.0;
    case Kind::constant:
      return a;
    case Kind::uniform:
      return a + (b - a) * uniform01(rng);
    case Kind::exponential:
      return -a * std::log1p(-uniform01(rng));
    case Kind::lognormal: {
      const double mu = std::log(a) - 0.5 * b * b;  // so that the mean is a
      return std::exp(mu + b * standard_normal(rng));
    }
  }
  return 0.0;
}

Result<LatencyModel> parse_latency(std::string_view spec) {
  LatencyModel m;
  const std::string s(spec);
  auto colon = s.find(':');
  const std::string kind = s.substr(0, colon);
  std::vector<double> args;
  if (colon != std::string::npos) {
    std::string rest = s.substr(colon + 1);
    std::size_t at = 0;
    while (at <= rest.size()) {
      auto comma = rest.find(',', at);
      std::string item =
          rest.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
      char* end = nullptr;
      double v = std::strtod(item.c_str(), &end);
      if (item.empty() || *end != '\0' || !std::isfinite(v) || v < 0)
        return make_error("--straggler '" + s + "': '" + item + "' is not a non-negative number");
      args.push_back(v);
      if (comma == std::string::npos) break;
      at = comma + 1;
    }
  }
  auto want = [&](std::size_t n, const char* form) -> Status {
    if (args.size() != n) return make_error("--straggler '" + s + "': expected " + form);
    return {};
  };
  Status ok;
  if (kind == "none") {
    ok = want(0, "none");
  } else if (kind == "constant") {
    m.kind = LatencyModel::Kind::constant;
    ok = want(1, "constant:SECONDS");
  } else if (kind == "uniform") {
    m.kind = LatencyModel::Kind::uniform;
    ok = want(2, "uniform:LO,HI");
    if (ok && args[1] < args[0]) ok = make_error("--straggler uniform:LO,HI needs LO <= HI");
  } else if (kind == "exponential") {
    m.kind = LatencyModel::Kind::exponential;
    ok = want(1, "exponential:MEAN");
  } else if (kind == "lognormal") {
    m.kind = LatencyModel::Kind::lognormal;
    ok = want(2, "lognormal:MEAN,SIGMA");
    if (ok && !(args[0] > 0)) ok = make_error("--straggler lognormal:MEAN,SIGMA needs MEAN > 0");
  } else {
    return make_error(
        "--straggler '" + s +
        "': expected none, constant:S, uniform:LO,HI, exponential:MEAN or lognormal:MEAN,SIGMA");
  }
  if (!ok) return ok.error();
  if (!args.empty()) m.a = args[0];
  if (args.size() > 1) m.b = args[1];
  return m;
}

Result<SimReport> run_simulation(const SimOptions& o, RankGroup& group) {
  if (o.clients == 0) return make_error("--clients must be at least 1");
  if (o.per_round == 0 || o.per_round > o.clients)
    return make_error("--per-round must be in [1, --clients]");
  if (o.min_clients == 0 || o.min_clients > o.per_round)
    return make_error("--min-clients must be in [1, --per-round]");
  if (!(o.dropout >= 0 && o.dropout <= 1)) return make_error("--dropout must be in [0, 1]");
  if (!(o.round_timeout_s >= 0)) return make_error("--round-timeout must be >= 0");
  if (o.rounds == 0) return make_error("--rounds must be at least 1");

  SimReport report;
  report.is_root = group.rank() == 0;
  report.group = group.description();
  const unsigned threads =
      o.threads ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  SimOptions opt = o;
  opt.threads = threads;

  // Every rank loads and partitions the same data (deterministic in the seed); trainers are
  // index views into it.
  auto load_started = wall_clock::now();
  auto train = load_dataset(o.data, Split::train);
  if (!train) return make_error("--data: " + train.error().message);
  (void)limit_rows(*train, o.train_limit);
  ClientData cd;
  cd.seed = o.seed;
  auto parts = partition_dataset(train->labels, train->num_classes, o.partition, o.clients, o.seed);
  if (!parts) return make_error("--partition: " + parts.error().message);
  cd.parts = std::move(*parts);
  cd.data = std::make_shared<const Dataset>(std::move(*train));

  auto net = make_network(o.train.model);
  if (!net) return make_error("--model: " + net.error().message);
  if (cd.data->features != (*net)->input_features())
    return make_error("--data has " + std::to_string(cd.data->features) + " features; --model " +
                      o.train.model + " expects " + std::to_string((*net)->input_features()));
  const ModelLayout layout = (*net)->layout();

  if (group.rank() != 0) {
    // Workers: train what rank 0 orders until it says stop.
    for (;;) {
      std::string bytes;
      if (Status s = group.broadcast(bytes); !s) return s.error();
      auto order = decode_order(bytes);
      if (!order) return order.error();
      if (order->stop) return report;
      auto r = train_distributed(group, cd, layout, *order, threads, nullptr);
      if (!r) return r.error();
    }
  }

  // Rank 0: whatever happens, release the workers at the end.
  struct StopWorkers {
    RankGroup& g;
    ~StopWorkers() {
      WorkOrder stop;
      stop.stop = true;
      std::string bytes = encode_order(stop);
      (void)g.broadcast(bytes);
    }
  } stop_workers{group};

  std::optional<Evaluator> evaluator;
  if (!o.eval_data.empty()) {
    auto data = load_dataset(o.eval_data, Split::test);
    if (!data) return make_error("--eval-data: " + data.error().message);
    (void)limit_rows(*data, o.eval_limit);
    if (data->features != (*net)->input_features())
      return make_error("--eval-data has " + std::to_string(data->features) +
                        " features; the model expects " + std::to_string((*net)->input_features()));
    auto eval_net = make_network(o.train.model);
    if (!eval_net) return eval_net.error();
    evaluator = Evaluator{std::move(*eval_net), std::move(*data)};
  }
  report.load_s = std::chrono::duration<double>(wall_clock::now() - load_started).count();

  auto backend = make_backend(o.device, std::max(1u, o.agg_threads));
  if (!backend) return make_error("--device: " + backend.error().message);
  auto strategy = make_strategy(o.strategy, **backend);
  if (!strategy) return make_error(strategy.error().message);
  if (o.secure_aggregation && !(*strategy)->supports_secure_aggregation())
    return make_error("--secure-aggregation: strategy " + (*strategy)->name() +
                      " needs each client's update, which secure aggregation hides; use a "
                      "FedAvg-family strategy");
  auto acc = std::make_shared<RoundAccounting>();
  auto wrapped = std::make_unique<AccountingStrategy>(std::move(*strategy), acc);

  // The metrics file is how the summary learns the accuracy; without --metrics-out a
  // temporary one is used.
  std::filesystem::path metrics = o.metrics_out;
  bool temporary = false;
  if (metrics.empty()) {
    metrics = std::filesystem::temp_directory_path() / ("federa-sim-" + std::to_string(::getpid()) +
                                                        "-" + std::to_string(o.seed) + ".jsonl");
    temporary = true;
  }

  OrchestratorOptions oo;
  oo.rounds = o.rounds;
  oo.min_clients = o.min_clients;
  // ceil(fraction x clients) must be exactly per_round: aim half a client below it.
  oo.fraction_fit = (double(o.per_round) - 0.5) / double(o.clients);
  oo.round_timeout = std::chrono::hours(24 * 7);  // every client answers; the deadline is simulated
  oo.round_retries = o.round_retries;
  oo.seed = o.seed;
  oo.train = o.train;
  oo.federation = "federa-sim";
  oo.backend = backend->get();
  if (o.secure_aggregation) {
    oo.secure_aggregation = "secagg+";
    oo.secagg_threads = std::max(1u, o.agg_threads);
    // Clients answer at once on the simulated clock, but the dispatcher trains before it reads
    // the next phase's messages: no real phase timeout may cut that short.
    oo.secagg_phase_timeout = std::chrono::hours(24 * 7);
    if (o.dropout > 0.1) oo.secagg_dropout = std::min(0.45, o.dropout);
  }

  Model global(layout);
  (*net)->init(global.data, o.seed);
  report.parameters = global.data.size();
  MetricsWriter metrics_writer;
  if (Status s = metrics_writer.open(metrics, 0, ""); !s) return make_error("--metrics-out: " + s.message());
  ConsolePrinter console(o.rounds);
  Orchestrator orch(oo, std::move(wrapped), std::move(global), std::nullopt, std::move(evaluator));
  orch.add_observer(&metrics_writer);
  if (o.print_rounds) orch.add_observer(&console);

  Progress progress(o.progress, o.rounds, metrics);
  Driver driver(opt, group, cd, orch, acc, progress);
  if (Status s = driver.connect_all(); !s) return s.error();
  Status run = driver.run(report.wall_s);
  progress.finish();
  report.metrics_lines = read_lines(metrics);
  if (temporary) {
    std::error_code ec;
    std::filesystem::remove(metrics, ec);
  }
  report.rounds_completed = orch.completed_rounds();
  for (const auto& line : report.metrics_lines) {
    auto at = line.find("\"clients\":");
    if (at != std::string::npos)
      report.client_updates += std::strtoull(line.c_str() + at + 10, nullptr, 10);
  }
  if (!run) return make_error(run.message());

  if (o.baseline) {
    if (group.size() > 1)
      return make_error("--baseline runs in one process; run it without mpirun");
    const Evaluator* ev = nullptr;
    std::optional<Evaluator> baseline_eval;
    if (!o.eval_data.empty()) {
      auto data = load_dataset(o.eval_data, Split::test);
      auto eval_net = make_network(o.train.model);
      if (data && eval_net) {
        (void)limit_rows(*data, o.eval_limit);
        baseline_eval = Evaluator{std::move(*eval_net), std::move(*data)};
        ev = &*baseline_eval;
      }
    }
    report.baseline_wall_s = run_baseline(opt, cd, **net, ev, driver.records());
  }
  return report;
}

}  // namespace federa
