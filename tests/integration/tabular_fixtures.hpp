// Fixtures of the tabular federation tests (issue 11): synthetic rows on very different scales,
// CSV files, a coordinator over TLS 1.3 on 127.0.0.1 recording its events, and sites running the
// built-in tabular trainer on their own files, each on its own thread.
#pragma once

#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "client/builtin_trainer.hpp"
#include "client/client.hpp"
#include "common/csv.hpp"
#include "common/nn.hpp"
#include "common/pki.hpp"
#include "common/statistics.hpp"
#include "coordinator/orchestrator.hpp"
#include "tests/integration/tls_coordinator.hpp"

namespace federa::testing::tabular {

namespace fs = std::filesystem;

inline fs::path temp_dir(const std::string& stem) {
  auto d = fs::temp_directory_path() / (stem + std::to_string(std::random_device{}()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// One synthetic row: features on very different scales (area ~ 1000 +- 300, ratio ~ 0.05 +-
// 0.01), a category, and a score that is linear in the standardised features.
struct Row {
  double area = 0, ratio = 0;
  std::string kind;
  double score = 0;
  double target = 0;  // regression
};

inline std::vector<Row> rows(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> area(1000, 300), ratio(0.05, 0.01);
  std::vector<Row> out(n);
  for (auto& r : out) {
    r.area = area(rng);
    r.ratio = ratio(rng);
    r.kind = rng() % 2 ? "b" : "a";
    r.score =
        1.5 * (r.area - 1000) / 300 - 2.0 * (r.ratio - 0.05) / 0.01 + (r.kind == "b" ? 0.8 : -0.8);
  }
  return out;
}

// Three classes along the score; rows near a boundary are left out so the classes separate.
inline std::string animal(double score) {
  return score < -1.2 ? "cat" : score < 1.2 ? "dog" : "emu";
}
inline bool near_boundary(double score) {
  return std::abs(score + 1.2) < 0.4 || std::abs(score - 1.2) < 0.4;
}

inline std::string write_csv(const fs::path& path, const std::vector<Row>& rs,
                             const std::function<std::string(const Row&)>& label,
                             const std::string& eol = "\n", bool bom = false) {
  std::ofstream out(path, std::ios::binary);
  out.precision(12);
  if (bom) out << "\xEF\xBB\xBF";
  out << "area,ratio,kind,y" << eol;
  for (const auto& r : rs)
    out << r.area << ',' << r.ratio << ',' << r.kind << ',' << label(r) << eol;
  return path.string();
}

// Records each committed round's report and every refusal at join.
struct Recorder : OrchestratorObserver {
  std::mutex mu;
  std::vector<RoundReport> rounds;
  std::vector<ClientRefused> refused;
  std::vector<StatisticsComputed> statistics;
  void on_round_committed(const RoundReport& r) override {
    std::lock_guard lk(mu);
    rounds.push_back(r);
  }
  void on_statistics(const StatisticsComputed& s) override {
    std::lock_guard lk(mu);
    statistics.push_back(s);
  }
  std::size_t committed() {
    std::lock_guard lk(mu);
    return rounds.size();
  }
  void on_client_refused(const ClientRefused& r) override {
    std::lock_guard lk(mu);
    refused.push_back(r);
  }
  std::string refusal_of(const std::string& client) {
    std::lock_guard lk(mu);
    for (const auto& r : refused)
      if (r.client == client) return r.reason.message;
    return {};
  }
  std::size_t refusals() {
    std::lock_guard lk(mu);
    return refused.size();
  }
};

struct Recorders {
  Recorder recorder;
};

// A running coordinator over TLS (tls_coordinator.hpp) with a tabular federation and a CSV
// evaluation set, read through the federation's schema once it is fixed.
struct TableCoordinator : Recorders, testing::TlsCoordinator {
  TableCoordinator(const fs::path& pki, const OrchestratorOptions& o, const std::string& eval_spec,
                   std::optional<StateStore> store = std::nullopt)
      : TlsCoordinator(pki, o, evaluator(o.train.model, eval_spec), {&recorder}, std::move(store)) {
  }
  static Evaluator evaluator(const std::string& model, const std::string& eval_spec) {
    auto network = make_network(model);
    REQUIRE(network.ok());
    return Evaluator{std::move(*network), Dataset{}, eval_spec};
  }
};

// The built-in tabular trainer, keeping the config of the first fit task it was sent.
class RecordingTrainer final : public Trainer {
 public:
  explicit RecordingTrainer(std::unique_ptr<Trainer> inner) : inner_(std::move(inner)) {}
  Result<FitResult> fit(const Model& global, const TrainConfig& config) override {
    {
      std::lock_guard lk(mu_);
      if (!first_) first_ = config;
      last_ = config;
    }
    return inner_->fit(global, config);
  }
  Result<EvaluateResult> evaluate(const Model& model, const TrainConfig& config) override {
    return inner_->evaluate(model, config);
  }
  std::uint64_t num_train_examples() const override { return inner_->num_train_examples(); }
  TabularData* table() override { return inner_->table(); }
  std::optional<TrainConfig> first_task() {
    std::lock_guard lk(mu_);
    return first_;
  }
  std::optional<TrainConfig> last_task() {
    std::lock_guard lk(mu_);
    return last_;
  }

 private:
  std::unique_ptr<Trainer> inner_;
  std::mutex mu_;
  std::optional<TrainConfig> first_, last_;
};

inline std::unique_ptr<RecordingTrainer> table_trainer(const std::string& path, std::size_t n,
                                                       std::size_t train, char sep = ',') {
  std::vector<std::size_t> idx(n);
  for (std::size_t i = 0; i < n; ++i) idx[i] = i;
  auto t = TabularData::open(CsvSource{path, "y", sep}, idx, train, {});
  REQUIRE_MESSAGE(t.ok(), (t.ok() ? "" : t.error().message));
  return std::make_unique<RecordingTrainer>(make_tabular_trainer(std::move(*t), n));
}

// The sites: federa clients with their own kit, each on its own thread.
struct Sites {
  fs::path pki;
  unsigned short port;
  std::vector<std::unique_ptr<Trainer>> trainers{};
  std::vector<std::unique_ptr<FederatedClient>> clients{};
  std::vector<std::thread> threads{};
  std::vector<std::string> names{};
  std::unique_ptr<std::atomic<int>[]> codes { new std::atomic<int>[ 16 ] };

  void start(const std::string& name, std::unique_ptr<Trainer> trainer) {
    REQUIRE(issue_client(pki, name).ok());
    const fs::path kit = pki / "clients" / name;
    const ClientOptions o = client_options(kit, port);
    const std::size_t i = clients.size();
    REQUIRE(i < 16);
    codes[i] = -1;
    names.push_back(name);
    trainers.push_back(std::move(trainer));
    clients.push_back(std::make_unique<FederatedClient>(o, *trainers.back()));
    threads.emplace_back([this, i] { codes[i] = clients[i]->run(); });
  }
  // The site's exit code, waiting up to `limit` for its client to end (-1: still running; a
  // site ends a moment after the coordinator's run() returns, once the Bye reached it).
  int code(const std::string& name,
           std::chrono::milliseconds limit = std::chrono::seconds(20)) const {
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (names[i] != name) continue;
      const auto until = std::chrono::steady_clock::now() + limit;
      while (codes[i].load() == -1 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      return codes[i].load();
    }
    return -2;
  }
  ~Sites() {
    for (auto& c : clients) c->stop();
    for (auto& t : threads) t.join();
  }
};

inline OrchestratorOptions table_options(const std::string& model, std::optional<Schema> schema,
                                         std::uint64_t rounds) {
  OrchestratorOptions o;
  o.rounds = rounds;
  o.min_clients = 3;
  o.round_timeout = std::chrono::seconds(120);
  o.train.model = model;
  o.train.lr = 0.05f;
  o.train.momentum = 0.0f;
  o.train.local_epochs = 1;
  o.train.batch_size = 16;
  FederationTable::Options t;
  t.model = model;
  t.task = schema ? schema->task : FederationTable::task_of_model(model);
  t.schema = std::move(schema);
  t.min_examples = 10;
  o.table = std::move(t);
  return o;
}

inline fs::path make_pki() {
  auto dir = temp_dir("federa_tab_pki_");
  fs::remove_all(dir);
  REQUIRE(init_pki(dir, {"127.0.0.1"}).ok());
  return dir;
}

}  // namespace federa::testing::tabular
