// Fuzz target: what one connected member can send the coordinator. The input is a sequence of
// records (fuzz_util.hpp), each the bytes of one WebSocket binary message. They are decoded as
// the transport does (coordinator/transport.hpp, deliver: a chunk read in place, checked here
// against protobuf's parse of the same bytes; a frame that does not parse ends the session) and
// handed to a real Orchestrator through a fake ClientLink (tests/coordinator/fake_clients.hpp):
// Hello, update headers, chunk reassembly into the upload pool, aggregation on the worker,
// commits of the rounds an accepted update completes. The orchestrator must never crash,
// whatever the member sends, and must still stop cleanly afterwards.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <thread>

#include "common/nn.hpp"
#include "coordinator/aggregation_backend.hpp"
#include "coordinator/orchestrator.hpp"
#include "coordinator/strategies.hpp"
#include "tests/coordinator/fake_clients.hpp"
#include "tests/fuzz/fuzz_util.hpp"

namespace {

using namespace federa;

// The model the fuzzing federation trains: 15 parameters in two chunks of 8 elements, so the
// reassembly of more than one chunk is reachable from small inputs.
constexpr const char* kModel = "softmax:4,3";
constexpr std::size_t kChunkElements = 8;

struct Fixture {
  std::unique_ptr<AggregationBackend> backend;
  ModelLayout layout;
};

const Fixture& fixture() {
  static const Fixture f = [] {
    Fixture x;
    auto backend = make_backend("cpu", 1);
    auto net = make_network(kModel);
    if (!backend || !net) std::abort();
    x.backend = std::move(*backend);
    x.layout = (*net)->layout();
    return x;
  }();
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);  // the orchestrator logs every rejection
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const Fixture& fx = fixture();
  OrchestratorOptions o;
  o.rounds = 2;
  o.min_clients = 1;
  o.round_retries = 0;
  o.round_timeout = std::chrono::seconds(60);
  o.chunk_elements = kChunkElements;
  o.max_inflight_uploads = 1;
  o.train.model = kModel;
  o.backend = fx.backend.get();
  auto strategy = make_strategy(StrategyOptions{}, *fx.backend);
  if (!strategy) std::abort();
  Orchestrator orch(o, std::move(*strategy), Model(fx.layout), std::nullopt, std::nullopt);
  std::thread runner([&] { (void)orch.run(); });

  auto link = std::make_shared<testing::FakeLink>("fuzz-member");
  bool open = static_cast<bool>(orch.on_connect(link));
  fuzz::Records records(data, size);
  std::string_view bytes;
  bool task_seen = false;
  while (open && records.next(bytes)) {
    wire::Envelope e;
    const bool parsed = e.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
    // The transport's in-place chunk reader must read what protobuf reads, or decline.
    if (auto chunk = parse_chunk_envelope(bytes)) {
      const ChunkView p = parsed && e.has_chunk() ? view_of(e.chunk()) : ChunkView{};
      if (!parsed || !e.has_chunk() || p.round != chunk->round || p.index != chunk->index ||
          p.offset != chunk->offset || p.data != chunk->data)
        std::abort();
    }
    if (!deliver(orch, link, bytes)) break;  // the transport sends the Error and closes
    if (link->closed()) break;
    // After the member's Hello the round opens (it is the only client needed): wait for its task
    // so that what follows meets an open round, as it would over the network.
    if (e.has_hello() && !task_seen)
      task_seen = link->wait_for(wire::Envelope::kFitTask, std::chrono::seconds(5)).has_value();
  }
  orch.on_disconnect(link, "fuzz input ended");
  orch.stop();
  runner.join();
  orch.release_links();
  return 0;
}
