// federa-bench latency: how long a client's Hello waits for its Welcome while the coordinator
// aggregates a large update. The orchestrator runs alone over in-process links (no TLS), so the
// figure is the orchestrator's own: with aggregation off the state lock it stays at
// microseconds; with aggregation under the lock it is the length of one O(model) pass.
//
//   federa-bench latency --params 100000000 --repeats 5 --json
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <thread>

#include "common/options.hpp"
#include "common/wire.hpp"
#include "coordinator/aggregation_backend.hpp"
#include "coordinator/orchestrator.hpp"
#include "coordinator/strategies.hpp"

namespace federa::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Records when a Welcome or an UploadReady arrives.
class TimedLink : public ClientLink {
 public:
  explicit TimedLink(std::string id) : id_(std::move(id)) {}
  const std::string& id() const override { return id_; }
  void send(std::shared_ptr<const std::string> bytes) override {
    wire::Envelope e;
    if (!e.ParseFromString(*bytes)) return;
    std::lock_guard lk(mu_);
    if (e.has_welcome()) welcome_ = Clock::now();
    if (e.has_upload_ready()) ready_ = true;
    if (e.has_fit_task()) task_round_ = e.fit_task().round();
    cv_.notify_all();
  }
  void close_with_error(wire::Error::Code, const std::string&) override {}
  void close() override {}
  Clock::time_point wait_welcome() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return welcome_ != Clock::time_point{}; });
    return welcome_;
  }
  void wait_ready() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return ready_; });
    ready_ = false;
  }
  std::uint64_t wait_task() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return task_round_ != 0; });
    return std::exchange(task_round_, 0);
  }

 private:
  std::string id_;
  std::mutex mu_;
  std::condition_variable cv_;
  Clock::time_point welcome_{};
  bool ready_ = false;
  std::uint64_t task_round_ = 0;
};

wire::Envelope hello() {
  wire::Envelope h;
  h.mutable_hello()->set_protocol_version(kProtocolVersion);
  h.mutable_hello()->set_num_train_examples(10);
  return h;
}

// One round: the uploader's last chunk is handed over, then a newcomer says Hello at once.
double one_round(Orchestrator& orch, TimedLink& up_link, const std::shared_ptr<TimedLink>& uploader,
                 const std::vector<wire::Envelope>& chunks, std::uint64_t round,
                 const ModelLayout& layout, int repeat) {
  up_link.wait_task();
  wire::Envelope h;
  auto* uh = h.mutable_update_header();
  uh->set_round(round);
  uh->set_num_examples(10);
  uh->set_layout_hash(layout.hash());
  uh->set_total_elements(layout.size());
  uh->set_num_chunks(static_cast<std::uint32_t>(chunks.size()));
  (void)orch.on_message(uploader, h);
  up_link.wait_ready();
  for (std::size_t i = 0; i + 1 < chunks.size(); ++i) (void)orch.on_message(uploader, chunks[i]);
  auto newcomer = std::make_shared<TimedLink>("newcomer-" + std::to_string(repeat));
  (void)orch.on_connect(newcomer);
  std::thread last([&] { (void)orch.on_message(uploader, chunks.back()); });  // aggregation starts
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto sent = Clock::now();
  (void)orch.on_message(newcomer, hello());
  double ms = std::chrono::duration<double, std::milli>(newcomer->wait_welcome() - sent).count();
  last.join();
  orch.on_disconnect(newcomer, "done");
  return ms;
}

}  // namespace

int latency_main(int argc, char** argv) {
  po::options_description desc(
      "federa-bench latency: Hello -> Welcome while a large update is aggregated\n\nflags", 100);
  desc.add_options()("params", po::value<std::size_t>()->default_value(100'000'000),
                     "model parameters (float32)")("repeats", po::value<int>()->default_value(5),
                                                   "rounds, one Hello measured in each")(
      "threads", po::value<unsigned>()->default_value(2), "aggregation backend threads")(
      "json", po::bool_switch(), "print one JSON object as the last line");
  auto vm = parse_options(argc, argv, desc);
  if (!vm) {
    std::cout << desc << "\n";
    return 0;
  }
  setup_logging((*vm)["log-level"].as<std::string>() == "info"
                    ? "warn"
                    : (*vm)["log-level"].as<std::string>(),
                "bench");
  const std::size_t params = (*vm)["params"].as<std::size_t>();
  const int repeats = std::max(1, (*vm)["repeats"].as<int>());
  auto backend = make_backend("cpu", (*vm)["threads"].as<unsigned>());
  if (!backend) throw OptionsError(backend.error().message);
  auto strategy = make_strategy(StrategyOptions{}, **backend);
  if (!strategy) throw OptionsError(strategy.error().message);
  ModelLayout layout({{"w", {params}}});
  OrchestratorOptions o;
  o.rounds = std::uint64_t(repeats);
  o.min_clients = 1;
  o.round_timeout = std::chrono::minutes(10);
  o.train.model = "bench";
  o.backend = backend->get();
  Orchestrator orch(o, std::move(*strategy), Model(layout), std::nullopt, std::nullopt);
  auto uploader = std::make_shared<TimedLink>("uploader");
  (void)orch.on_connect(uploader);
  (void)orch.on_message(uploader, hello());
  std::vector<float> update(params, 0.5f);
  auto chunks = make_chunks(0, update, kDefaultChunkElements);
  std::thread runner([&] { (void)orch.run(); });
  std::vector<double> ms;
  for (int r = 1; r <= repeats; ++r) {
    for (auto& c : chunks) c.mutable_chunk()->set_round(std::uint64_t(r));
    ms.push_back(one_round(orch, *uploader, uploader, chunks, std::uint64_t(r), layout, r));
    std::cerr << fmt::format("round {}: hello answered in {:.3f} ms\n", r, ms.back());
  }
  runner.join();
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  std::cerr << fmt::format("median {:.3f} ms, max {:.3f} ms over {} rounds at {} parameters\n",
                           median, ms.back(), ms.size(), params);
  if ((*vm)["json"].as<bool>())
    std::cout << fmt::format(
                     "{{\"params\":{},\"repeats\":{},\"hello_ms_median\":{:.3f},\"hello_ms_max\":{:"
                     ".3f}}}",
                     params, ms.size(), median, ms.back())
              << std::endl;
  return 0;
}

}  // namespace federa::bench
