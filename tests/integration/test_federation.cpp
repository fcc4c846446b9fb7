// Coordinator and clients over real TLS 1.3 WebSockets on 127.0.0.1, in one process.
#include <doctest/doctest.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "client/builtin_trainer.hpp"
#include "client/client.hpp"
#include "common/nn.hpp"
#include "common/pki.hpp"
#include "common/tls.hpp"
#include "common/wire.hpp"
#include "coordinator/aggregation_backend.hpp"
#include "coordinator/evaluation.hpp"
#include "coordinator/orchestrator.hpp"
#include "coordinator/round_log.hpp"
#include "coordinator/server.hpp"
#include "coordinator/strategies.hpp"
#include "tests/integration/tls_coordinator.hpp"

using namespace federa;
using testing::client_options;
namespace fs = std::filesystem;
namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;

namespace {

const std::string model_spec = "mlp:784,32,10";

fs::path temp_dir(const std::string& stem) {
  auto d = fs::temp_directory_path() / (stem + std::to_string(std::random_device{}()));
  fs::remove_all(d);
  return d;
}

std::shared_ptr<const Dataset> train_data() {
  static std::shared_ptr<const Dataset> d = [] {
    auto r = load_dataset("fashion-mnist", Split::train);
    REQUIRE_MESSAGE(r.ok(), "Fashion-MNIST is needed (scripts/setup-debian.sh installs it): ",
                    r.error().message);
    return std::make_shared<const Dataset>(std::move(r.value()));
  }();
  return d;
}

Dataset test_subset(std::size_t n) {
  auto r = load_dataset("fashion-mnist", Split::test);
  REQUIRE(r.ok());
  Dataset d = std::move(r.value());
  d.rows = std::min(n, d.rows);
  d.x.resize(d.rows * d.features);
  d.labels.resize(d.rows);
  return d;
}

// The metrics writers are constructed before, and outlive, the coordinator that reports to them.
struct Writers {
  MetricsWriter metrics;
  ClientMetricsWriter per_client;
  Writers(const fs::path& metrics_out, const fs::path& client_metrics_out) {
    REQUIRE(metrics.open(metrics_out, 0, "").ok());
    REQUIRE(per_client.open(client_metrics_out, 0).ok());
  }
};

std::optional<Evaluator> fashion_evaluator(bool evaluate, const std::string& model) {
  if (!evaluate) return std::nullopt;
  auto net = make_network(model);
  REQUIRE(net.ok());
  return Evaluator{std::move(net.value()), test_subset(2000)};
}

// A running coordinator: orchestrator + TLS server + io threads (tls_coordinator.hpp).
struct Coordinator : Writers, testing::TlsCoordinator {
  Coordinator(const fs::path& pki_dir, const OrchestratorOptions& o, bool evaluate,
              const fs::path& metrics_out = {}, const fs::path& client_metrics_out = {},
              const ServerOptions& server = {})
      : Writers(metrics_out, client_metrics_out),
        TlsCoordinator(pki_dir, o, fashion_evaluator(evaluate, o.train.model),
                       {&metrics, &per_client}, std::nullopt, server) {}
};

fs::path make_pki(const std::vector<std::string>& clients) {
  auto dir = temp_dir("federa_it_pki_");
  REQUIRE(init_pki(dir, {"127.0.0.1"}).ok());
  for (const auto& c : clients) REQUIRE(issue_client(dir, c).ok());
  return dir;
}

// A hand-driven client for sending what a well-behaved client never would.
struct RawClient {
  net::io_context io;
  std::shared_ptr<net::ssl::context> tls;
  std::unique_ptr<websocket::stream<beast::ssl_stream<beast::tcp_stream>>> ws;
  beast::flat_buffer buffer;

  RawClient(const fs::path& kit, unsigned short port) {
    auto t = make_client_tls_context((kit / "ca.pem").string(), (kit / "cert.pem").string(),
                                     (kit / "key.pem").string());
    REQUIRE(t.ok());
    tls = *t;
    ws = std::make_unique<websocket::stream<beast::ssl_stream<beast::tcp_stream>>>(io, *tls);
    beast::get_lowest_layer(*ws).connect(
        net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    REQUIRE(set_client_tls_hostname(ws->next_layer().native_handle(), "127.0.0.1").ok());
    ws->next_layer().handshake(net::ssl::stream_base::client);
    ws->handshake("127.0.0.1", "/v1/connect");
    ws->binary(true);
    ws->read_message_max(kMaxMessageBytes);
  }
  void send_bytes(const std::string& bytes) {
    beast::error_code ec;
    ws->write(net::buffer(bytes), ec);
  }
  void send(const wire::Envelope& e) { send_bytes(e.SerializeAsString()); }
  // Next envelope, or nullopt once the connection is closed (or nothing came for `timeout`).
  std::optional<wire::Envelope> read(std::chrono::seconds timeout = std::chrono::seconds(20)) {
    std::optional<wire::Envelope> out;
    bool done = false;
    ws->async_read(buffer, [&](beast::error_code ec, std::size_t n) {
      done = true;
      if (ec) return;
      wire::Envelope e;
      auto d = buffer.data();
      if (e.ParseFromArray(d.data(), static_cast<int>(d.size()))) out = std::move(e);
      buffer.consume(n);
    });
    io.restart();
    io.run_for(timeout);
    if (!done) {
      beast::get_lowest_layer(*ws).cancel();
      io.restart();
      io.run_for(std::chrono::seconds(2));
    }
    return out;
  }
  // Reads until an Error arrives; returns it, or nullopt when the stream ended without one.
  std::optional<wire::Error> read_until_error() {
    for (int i = 0; i < 50; ++i) {
      auto e = read();
      if (!e) return std::nullopt;
      if (e->has_error()) return e->error();
    }
    return std::nullopt;
  }
  bool closed() { return !read(std::chrono::seconds(10)).has_value(); }
  // Hello, Welcome, FitTask and the model's chunks; returns the task.
  wire::FitTask join_and_get_task() {
    wire::Envelope h;
    h.mutable_hello()->set_protocol_version(kProtocolVersion);
    send(h);
    auto w = read();
    REQUIRE(w);
    REQUIRE(w->has_welcome());
    auto t = read(std::chrono::seconds(60));
    REQUIRE(t);
    REQUIRE(t->has_fit_task());
    for (std::uint32_t i = 0; i < t->fit_task().num_chunks(); ++i) {
      auto c = read();
      REQUIRE(c);
      REQUIRE(c->has_chunk());
    }
    return t->fit_task();
  }
  void send_header(const wire::FitTask& t, std::uint64_t round, std::uint64_t hash) {
    wire::Envelope e;
    auto* h = e.mutable_update_header();
    h->set_round(round);
    h->set_num_examples(100);
    h->set_layout_hash(hash);
    h->set_total_elements(t.total_elements());
    h->set_num_chunks(t.num_chunks());
    send(e);
  }
  void send_update(const wire::FitTask& t, std::vector<float> weights) {
    auto layout = from_wire(t.layout());
    REQUIRE(layout.ok());
    send_header(t, t.round(), layout->hash());
    auto ready = read();
    REQUIRE(ready);
    REQUIRE(ready->has_upload_ready());
    for (const auto& c : make_chunks(t.round(), weights, t.chunk_elements())) send(c);
  }
};

}  // namespace

TEST_CASE(
    "coordinator and 3 clients over TLS: 3 rounds, accuracy rises, no training data on the wire") {
  auto pki = make_pki({"site-a", "site-b", "site-c"});
  OrchestratorOptions o;
  o.rounds = 3;
  o.min_clients = 3;
  o.round_timeout = std::chrono::seconds(120);
  o.train.model = model_spec;
  o.train.lr = 0.1f;
  const fs::path metrics_out = pki / "metrics.jsonl";
  Coordinator coord(pki, o, /*evaluate=*/true, metrics_out);

  auto data = train_data();
  auto parts = partition_dataset(data->labels, data->num_classes, "iid", 30, 7);
  REQUIRE(parts.ok());
  const char* names[] = {"site-a", "site-b", "site-c"};
  std::vector<std::vector<std::string>> sent(3);
  std::vector<std::unique_ptr<Trainer>> trainers;
  std::vector<std::unique_ptr<FederatedClient>> clients;
  std::vector<int> codes(3, -1);
  std::vector<std::thread> threads;
  std::mutex sent_mu;
  for (int i = 0; i < 3; ++i) {
    trainers.push_back(make_builtin_trainer(data, (*parts)[i], {}, i));
    auto opt = client_options(pki / "clients" / names[i], coord.port());
    opt.on_send = [&sent, &sent_mu, i](std::string_view bytes) {
      std::lock_guard lk(sent_mu);
      sent[i].emplace_back(bytes);
    };
    clients.push_back(std::make_unique<FederatedClient>(opt, *trainers.back()));
  }
  for (int i = 0; i < 3; ++i) threads.emplace_back([&, i] { codes[i] = clients[i]->run(); });
  for (auto& t : threads) t.join();
  REQUIRE(coord.wait_finished());
  CHECK(coord.result.ok());
  CHECK(coord.orch->completed_rounds() == 3);
  for (int i = 0; i < 3; ++i) {
    CHECK(codes[i] == exit_complete);
    CHECK(clients[i]->rounds_trained() == 3);
  }

  // Accuracy on the held-out set rises from round 1 to round 3.
  std::ifstream in(metrics_out);
  std::vector<double> acc;
  std::string line;
  while (std::getline(in, line)) {
    auto p = line.find("\"accuracy\":");
    REQUIRE(p != std::string::npos);
    acc.push_back(std::stod(line.substr(p + 11)));
  }
  REQUIRE(acc.size() == 3);
  CHECK(acc[2] > acc[0]);
  CHECK(acc[2] > 0.6);

  // What left each site: model-sized updates and small control messages, never a training row.
  std::size_t model_bytes = coord.orch->global().data.size() * sizeof(float);
  for (int i = 0; i < 3; ++i) {
    std::size_t total = 0;
    for (const auto& m : sent[i]) total += m.size();
    CHECK(total < 3 * (model_bytes + 64 * 1024));
    CHECK(total > 3 * model_bytes);
    const auto& idx = (*parts)[i];
    for (std::size_t k = 0; k < idx.size(); k += idx.size() / 25) {
      // Use a row's first 64 features (256 bytes), skipping all-zero rows' borders by taking the
      // middle of the image where Fashion-MNIST pixels are rarely zero.
      const float* row = data->row(idx[k]) + 392;
      std::string needle(reinterpret_cast<const char*>(row), 64 * sizeof(float));
      for (const auto& m : sent[i]) CHECK(m.find(needle) == std::string::npos);
      // Labels never travel either: the label vector of this client's examples is not in any
      // message.
    }
  }
  fs::remove_all(pki);
}

// Found in review: the whole broadcast counted against the session's outbound cap (512 MiB by
// default), so a model larger than the cap dropped every member at its first broadcast.
TEST_CASE("a model larger than the outbound queue cap still reaches a member that reads it") {
  auto pki = make_pki({"site-a"});
  OrchestratorOptions o;
  o.rounds = 1;
  o.min_clients = 1;
  o.round_timeout = std::chrono::seconds(60);
  o.train.model = model_spec;  // ~100 KB
  o.chunk_elements = 4096;
  ServerOptions server;
  server.max_queued_bytes = 16 * 1024;
  Coordinator coord(pki, o, false, {}, {}, server);
  RawClient c(pki / "clients" / "site-a", coord.port());
  const wire::FitTask task = c.join_and_get_task();  // every chunk arrives
  CHECK(task.num_chunks() == 7);
  c.send_update(task, std::vector<float>(task.total_elements(), 0.01f));
  REQUIRE(coord.wait_finished());
  CHECK(coord.result.ok());
  CHECK(coord.orch->completed_rounds() == 1);
  fs::remove_all(pki);
}

TEST_CASE("an impostor with a certificate from another CA is refused and told so") {
  auto pki = make_pki({"site-a"});
  auto other = make_pki({"site-a"});  // same name, different CA
  OrchestratorOptions o;
  o.rounds = 1;
  o.min_clients = 1;
  o.train.model = model_spec;
  Coordinator coord(pki, o, false);
  auto data = train_data();
  auto trainer = make_builtin_trainer(data, {0, 1, 2, 3}, {}, 0);
  // The impostor trusts the real coordinator's CA (it got ca.pem somehow) but its own
  // certificate was signed by another CA.
  fs::copy_file(pki / "ca.pem", other / "clients/site-a/ca.pem",
                fs::copy_options::overwrite_existing);
  FederatedClient impostor(client_options(other / "clients/site-a", coord.port()), *trainer);
  CHECK(impostor.run() == exit_refused);
  CHECK(coord.orch->connected_clients() == 0);
  fs::remove_all(pki);
  fs::remove_all(other);
}

TEST_CASE("bad input ends that session with an error; the coordinator serves the others") {
  std::vector<std::string> names = {"garbage", "layout",   "nan", "wrong-round",
                                    "twice",   "oversize", "good"};
  auto pki = make_pki(names);
  OrchestratorOptions o;
  o.rounds = 1;
  o.min_clients = 1;
  o.min_available = names.size();
  o.round_timeout = std::chrono::seconds(60);
  o.train.model = model_spec;
  Coordinator coord(pki, o, false);

  std::vector<std::unique_ptr<RawClient>> raw;
  for (const auto& n : names)
    raw.push_back(std::make_unique<RawClient>(pki / "clients" / n, coord.port()));
  std::vector<wire::FitTask> tasks;
  // Everyone joins; the round starts when all 7 are there and every one is selected.
  std::vector<std::thread> joins;
  tasks.resize(names.size());
  for (std::size_t i = 0; i < names.size(); ++i)
    joins.emplace_back([&, i] { tasks[i] = raw[i]->join_and_get_task(); });
  for (auto& t : joins) t.join();
  auto layout = from_wire(tasks[0].layout());
  REQUIRE(layout.ok());
  std::vector<float> good(tasks[0].total_elements(), 0.01f);

  // garbage bytes
  raw[0]->send_bytes("\x01\x02 this is not a protobuf \xff\xff\xff");
  auto e0 = raw[0]->read_until_error();
  REQUIRE(e0);
  CHECK(e0->code() == wire::Error::BAD_MESSAGE);
  CHECK(raw[0]->closed());
  // wrong layout hash
  raw[1]->send_header(tasks[1], tasks[1].round(), layout->hash() ^ 1);
  auto e1 = raw[1]->read_until_error();
  REQUIRE(e1);
  CHECK(e1->message().find("layout") != std::string::npos);
  CHECK(raw[1]->closed());
  // NaN values
  std::vector<float> bad = good;
  bad[bad.size() / 2] = std::nanf("");
  raw[2]->send_update(tasks[2], bad);
  auto e2 = raw[2]->read_until_error();
  REQUIRE(e2);
  CHECK(e2->message().find("non-finite") != std::string::npos);
  CHECK(raw[2]->closed());
  // an update for a round that is not open
  raw[3]->send_header(tasks[3], tasks[3].round() + 5, layout->hash());
  auto e3 = raw[3]->read_until_error();
  REQUIRE(e3);
  CHECK(e3->code() == wire::Error::WRONG_ROUND);
  CHECK(raw[3]->closed());
  // a second update in the same round
  raw[4]->send_update(tasks[4], good);
  raw[4]->send_header(tasks[4], tasks[4].round(), layout->hash());
  auto e4 = raw[4]->read_until_error();
  REQUIRE(e4);
  CHECK(e4->code() == wire::Error::DUPLICATE_UPDATE);
  CHECK(raw[4]->closed());
  // a message over the size limit: the connection is dropped before it is buffered whole
  raw[5]->send_bytes(std::string(kMaxMessageBytes + 1024, 'x'));
  CHECK(raw[5]->closed());
  // the well-behaved client is still served and its update completes the round
  raw[6]->send_update(tasks[6], good);
  bool bye = false;
  for (int i = 0; i < 5 && !bye; ++i) {
    auto m = raw[6]->read(std::chrono::seconds(30));
    if (!m) break;
    bye = m->has_bye() && m->bye().federation_complete();
  }
  CHECK(bye);
  REQUIRE(coord.wait_finished());
  CHECK(coord.result.ok());
  CHECK(coord.orch->completed_rounds() == 1);
  fs::remove_all(pki);
}

namespace {
// Runs a small federation and returns the final global model.
std::vector<float> run_federation(const std::string& secure, std::uint64_t rounds,
                                  std::vector<int>* codes_out) {
  std::vector<std::string> names = {"h-a", "h-b", "h-c", "h-d"};
  auto pki = make_pki(names);
  OrchestratorOptions o;
  o.rounds = rounds;
  o.min_clients = names.size();
  o.round_timeout = std::chrono::seconds(120);
  o.secagg_phase_timeout = std::chrono::seconds(30);
  o.train.model = model_spec;
  o.train.lr = 0.1f;
  o.secure_aggregation = secure;
  std::vector<float> out;
  {
    Coordinator coord(pki, o, false);
    auto data = train_data();
    auto parts = partition_dataset(data->labels, data->num_classes, "iid", 60, 3);
    REQUIRE(parts.ok());
    std::vector<std::unique_ptr<Trainer>> trainers;
    std::vector<std::unique_ptr<FederatedClient>> clients;
    std::vector<int> codes(names.size(), -1);
    for (std::size_t i = 0; i < names.size(); ++i) {
      trainers.push_back(make_builtin_trainer(data, (*parts)[i], {}, i));
      clients.push_back(std::make_unique<FederatedClient>(
          client_options(pki / "clients" / names[i], coord.port()), *trainers.back()));
    }
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < names.size(); ++i)
      threads.emplace_back([&, i] { codes[i] = clients[i]->run(); });
    for (auto& t : threads) t.join();
    REQUIRE(coord.wait_finished());
    CHECK(coord.result.ok());
    CHECK(coord.orch->completed_rounds() == rounds);
    out = coord.orch->global().data;
    if (codes_out) *codes_out = codes;
  }
  fs::remove_all(pki);
  return out;
}
}  // namespace

TEST_CASE("secure aggregation over TLS gives FedAvg's model within the quantization error") {
  std::vector<int> codes;
  auto plain = run_federation("", 2, nullptr);
  auto secure = run_federation("secagg+", 2, &codes);
  for (int c : codes) CHECK(c == exit_complete);
  REQUIRE(plain.size() == secure.size());
  double max_diff = 0, max_abs = 0;
  for (std::size_t i = 0; i < plain.size(); ++i) {
    max_diff = std::max(max_diff, double(std::fabs(plain[i] - secure[i])));
    max_abs = std::max(max_abs, double(std::fabs(plain[i])));
  }
  MESSAGE("max |plain - secure| = " << max_diff << " (max |w| = " << max_abs << ")");
  CHECK(max_diff < 1e-3);
  CHECK(max_diff > 0);  // the secure path really went through quantization, not the plain one
}

TEST_CASE(
    "federated evaluation over TLS: each client scores the committed model on its held-out rows") {
  auto pki = make_pki({"site-a", "site-b", "site-c"});
  OrchestratorOptions o;
  o.rounds = 2;
  o.min_clients = 3;
  o.round_timeout = std::chrono::seconds(120);
  o.train.model = model_spec;
  o.train.lr = 0.1f;
  o.evaluation.min_clients = 3;
  const fs::path metrics_out = pki / "metrics.jsonl", per_client_out = pki / "clients.jsonl";
  Coordinator coord(pki, o, /*evaluate=*/false, metrics_out, per_client_out);

  auto data = train_data();
  auto parts = partition_dataset(data->labels, data->num_classes, "iid", 30, 11);
  REQUIRE(parts.ok());
  const char* names[] = {"site-a", "site-b", "site-c"};
  std::vector<std::unique_ptr<Trainer>> trainers;
  std::vector<std::unique_ptr<FederatedClient>> clients;
  for (int i = 0; i < 3; ++i) {
    // Held-out rows: the last (i + 1) * 100 of the client's share, so the weights differ.
    std::vector<std::size_t> train((*parts)[i]), test;
    test.assign(train.end() - (i + 1) * 100, train.end());
    train.resize(train.size() - test.size());
    trainers.push_back(make_builtin_trainer(data, train, test, i));
    auto opt = client_options(pki / "clients" / names[i], coord.port());
    opt.private_metrics = i == 2;  // site-c keeps its own figures to itself
    clients.push_back(std::make_unique<FederatedClient>(opt, *trainers.back()));
  }
  std::vector<std::thread> threads;
  std::vector<int> codes(3, -1);
  for (int i = 0; i < 3; ++i) threads.emplace_back([&, i] { codes[i] = clients[i]->run(); });
  for (auto& t : threads) t.join();
  REQUIRE(coord.wait_finished());
  REQUIRE(coord.result.ok());

  // The last line: the final model's evaluation, weighted by each client's held-out rows.
  std::ifstream in(metrics_out);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  REQUIRE(lines.size() == 2);
  Model final_model(coord.orch->global().layout);
  final_model.data = coord.orch->global().data;
  TrainConfig cfg = o.train;
  double loss = 0, accuracy = 0, n = 0;
  std::vector<EvaluateResult> own;
  for (auto& t : trainers) {
    auto r = t->evaluate(final_model, cfg);
    REQUIRE(r.ok());
    own.push_back(*r);
    loss += double(r->num_examples) * r->loss;
    REQUIRE(r->accuracy);  // a classifier
    accuracy += double(r->num_examples) * *r->accuracy;
    n += double(r->num_examples);
  }
  CHECK(n == 600);
  CHECK(*metrics_line_value(lines[1], "fed_clients") == 3);
  CHECK(*metrics_line_value(lines[1], "fed_loss") == doctest::Approx(loss / n));
  CHECK(*metrics_line_value(lines[1], "fed_accuracy") == doctest::Approx(accuracy / n));
  CHECK(*metrics_line_value(lines[1], "fed_accuracy") > 0.5);
  // Per-client lines for site-a and site-b, each round; none for site-c.
  std::ifstream pin(per_client_out);
  std::vector<std::string> per;
  for (std::string line; std::getline(pin, line);) per.push_back(line);
  REQUIRE(per.size() == 4);
  for (const auto& line : per) CHECK(line.find("site-c") == std::string::npos);
  CHECK(per[2].find("\"round\":2,\"client\":\"site-a\"") != std::string::npos);
  CHECK(*metrics_line_value(per[2], "accuracy") == doctest::Approx(*own[0].accuracy));
  CHECK(*metrics_line_value(per[3], "num_examples") == 200);
  fs::remove_all(pki);
}
