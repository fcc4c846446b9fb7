// An orchestrator for tests over fake links (tests/coordinator/fake_clients.hpp), started from any
// model: FedAvg on the CPU backend, run() on its own thread, every event recorded.
//
//   OrchestratorHarness h(options, model, StateStore(dir));
//   FakeClient a(*h.orch, "a");  a.join(10);  h.start();
//   auto task = wait_for_typed_task(a, h.orch->global().layout);   // chunks in their dtypes
//   upload_typed(a, task->task.round(), weights, 10, layout, 3);
//   REQUIRE(h.finish());
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/aggregation_backend.hpp"
#include "coordinator/orchestrator.hpp"
#include "coordinator/strategies.hpp"
#include "tests/coordinator/fake_clients.hpp"

namespace federa::testing {

struct OrchestratorHarness {
  std::unique_ptr<AggregationBackend> backend;
  EventLog events;
  std::unique_ptr<Orchestrator> orch;
  std::thread runner;
  Status result;

  OrchestratorHarness(OrchestratorOptions o, Model global,
                      std::optional<StateStore> store = std::nullopt) {
    auto b = make_backend("cpu", 1);
    REQUIRE(b);
    backend = std::move(*b);
    auto s = make_strategy(StrategyOptions{}, *backend);
    REQUIRE(s);
    if (o.train.model.empty()) o.train.model = "test";
    o.backend = backend.get();
    orch = std::make_unique<Orchestrator>(o, std::move(*s), std::move(global), std::move(store),
                                          std::nullopt);
    orch->add_observer(&events);
  }
  void start() {
    runner = std::thread([this] { result = orch->run(); });
  }
  Status finish() {
    if (runner.joinable()) runner.join();
    return result;
  }
  ~OrchestratorHarness() {
    orch->stop();
    if (runner.joinable()) runner.join();
  }
};

inline std::filesystem::path fresh_test_dir(const std::string& stem) {
  auto d = std::filesystem::temp_directory_path() / (stem + std::to_string(std::random_device{}()));
  std::filesystem::remove_all(d);
  return d;
}

// The next FitTask and its model, reassembled with the layout's dtypes; bytes = the chunks' size.
struct TypedTask {
  wire::FitTask task;
  Model model;
  std::uint64_t chunk_bytes = 0;
};

inline std::optional<TypedTask> wait_for_typed_task(FakeClient& c) {
  auto t = c.link().wait_for(wire::Envelope::kFitTask);
  if (!t) return std::nullopt;
  auto layout = from_wire(t->fit_task().layout());
  if (!layout) return std::nullopt;
  TypedTask out{t->fit_task(), Model(std::move(*layout)), 0};
  if (out.task.carried().size() != out.model.carried.size()) return std::nullopt;
  std::copy(out.task.carried().begin(), out.task.carried().end(), out.model.carried.begin());
  ChunkAssembler in;
  if (!in.begin(out.task.round(), out.task.total_elements(), out.task.num_chunks(),
                out.task.chunk_elements(), out.model.data, true, {}, out.model.layout.float_runs()))
    return std::nullopt;
  while (!in.complete()) {
    auto chunk = c.link().wait_for(wire::Envelope::kChunk);
    if (!chunk || !in.add(chunk->chunk())) return std::nullopt;
    out.chunk_bytes += chunk->chunk().data().size();
  }
  return out;
}

// Header, UploadReady, then the chunks in the layout's dtypes.
inline Status upload_typed(FakeClient& c, std::uint64_t round, const std::vector<float>& weights,
                           std::uint64_t num_examples, const ModelLayout& layout,
                           std::size_t chunk_elements) {
  wire::Envelope h;
  auto* uh = h.mutable_update_header();
  uh->set_round(round);
  uh->set_num_examples(num_examples);
  uh->set_layout_hash(layout.hash());
  uh->set_total_elements(weights.size());
  uh->set_num_chunks(chunk_count(weights.size(), chunk_elements));
  if (Status s = c.send(h); !s) return s;
  if (!c.link().wait_for(wire::Envelope::kUploadReady))
    return make_error(ErrorCode::deadline_exceeded, "no upload_ready");
  for (const auto& e : make_chunks(round, weights, chunk_elements, layout.float_runs()))
    if (Status s = c.send(e); !s) return s;
  return {};
}

}  // namespace federa::testing
