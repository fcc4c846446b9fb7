// What the client session's tests share (tests/client/test_session*.cpp): a recording
// ServerLink and TaskRunner, and the messages a coordinator sends, built as the orchestrator
// builds them.
//
//   Fixture f;                                   // a session over fakes
//   f.deliver(task_envelopes(2, model_values(0.1f)));
//   f.session.on_task_done(fit_result(f.runner.tasks[0], model_values(0.3f)));
//   CHECK(f.link.sent[0].has_update_header());
#pragma once

#include <doctest/doctest.h>
#include <spdlog/spdlog.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "client/session.hpp"
#include "common/nn.hpp"
#include "common/wire.hpp"

namespace federa::session_test {

struct FakeLink final : ServerLink {
  std::vector<wire::Envelope> sent;
  std::optional<SessionEnd> closed;
  void send(const wire::Envelope& e) override { sent.push_back(e); }
  void close(const SessionEnd& end) override {
    REQUIRE_FALSE(closed.has_value());  // at most once
    closed = end;
  }
  // Takes what was sent since the last call.
  std::vector<wire::Envelope> take() { return std::exchange(sent, {}); }
  std::size_t count(wire::Envelope::PayloadCase kind) const {
    std::size_t n = 0;
    for (const auto& e : sent) n += e.payload_case() == kind;
    return n;
  }
};

struct FakeRunner final : TaskRunner {
  std::vector<Task> tasks;
  void run(Task task) override { tasks.push_back(std::move(task)); }
};

// A session with its fakes.
struct Fixture {
  FakeLink link;
  FakeRunner runner;
  ClientSession session;
  explicit Fixture(std::uint64_t examples = 120) : session(options(examples), link, runner) {
    spdlog::set_level(spdlog::level::off);  // the failures below are logged by design
  }
  static SessionOptions options(std::uint64_t examples) {
    SessionOptions o;
    o.num_train_examples = examples;
    o.software = "test-client 1";
    return o;
  }
  void deliver(const std::vector<wire::Envelope>& envelopes) {
    for (const auto& e : envelopes) session.on_message(e);
  }
};

constexpr std::size_t kChunk = 7;  // elements per chunk: the softmax:4,3 model (15) needs three

inline ModelLayout layout() {
  auto net = make_network("softmax:4,3");
  REQUIRE(net.ok());
  return (*net)->layout();
}

inline std::vector<float> model_values(float base) {
  std::vector<float> v(layout().size());
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = base + 0.01f * float(i);
  return v;
}

// A FitTask and its chunks, as the orchestrator sends them.
inline std::vector<wire::Envelope> task_envelopes(std::uint64_t round,
                                                  const std::vector<float>& global,
                                                  const std::string& secure = "") {
  wire::Envelope t;
  auto* f = t.mutable_fit_task();
  f->set_round(round);
  TrainConfig cfg;
  cfg.model = "softmax:4,3";
  cfg.lr = 0.25f;
  cfg.seed = 1000 + round;
  *f->mutable_config() = to_wire(cfg);
  *f->mutable_layout() = to_wire(layout());
  f->set_total_elements(global.size());
  f->set_num_chunks(chunk_count(global.size(), kChunk));
  f->set_chunk_elements(kChunk);
  f->set_secure_aggregation(secure);
  std::vector<wire::Envelope> out{t};
  for (auto& c : make_chunks(round, global, kChunk)) out.push_back(std::move(c));
  return out;
}

inline TaskResult fit_result(const Task& task, std::vector<float> weights,
                             std::uint64_t examples = 50) {
  FitResult fit;
  fit.weights = std::move(weights);
  fit.num_examples = examples;
  fit.metrics["train_loss"] = 0.5;
  TaskResult r;
  r.kind = task.kind;
  r.round = task.round;
  r.output = TaskOutput(std::move(fit));
  return r;
}

inline wire::Envelope coordinator_error(wire::Error::Code code, const std::string& message) {
  return make_error_envelope(code, message);
}

inline wire::Envelope upload_ready(std::uint64_t round) {
  wire::Envelope e;
  e.mutable_upload_ready()->set_round(round);
  return e;
}

inline wire::Envelope bye(bool complete) {
  wire::Envelope e;
  e.mutable_bye()->set_reason("done");
  e.mutable_bye()->set_federation_complete(complete);
  return e;
}

inline bool has_error_containing(const std::vector<wire::Envelope>& sent, const std::string& text) {
  for (const auto& e : sent)
    if (e.has_error() && e.error().message().find(text) != std::string::npos) return true;
  return false;
}

}  // namespace federa::session_test
