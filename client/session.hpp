// One client's side of the federation protocol, for one connection: Hello/Welcome, tasks (fit and
// evaluate) and the reassembly of the global model, asking the host to run them, the update
// (header, UploadReady, chunks) or the evaluation's result, every SecAgg+ phase, the
// coordinator's errors, aborts and goodbyes. It holds every
// rule of the protocol and no transport: federa-client drives it over TLS (client/client.cpp),
// federa-sim in process, the tests over a fake ServerLink.
//
//   ClientSession session({.num_train_examples = trainer.num_train_examples()}, link, runner);
//   session.start();                        // Hello
//   session.on_message(envelope);           // each envelope from the coordinator, in order
//   session.on_task_done(run_task(t, task)); // when the host finished what runner.run asked
//   if (session.ended()) ...                // link.close() told why
//
// Not thread-safe: call it from one thread (or strand), the one that delivers the messages.
// Bad input from the coordinator is answered with an Error envelope and logged; it never throws.
#pragma once

#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "client/secure_round.hpp"
#include "client/server_link.hpp"
#include "client/tabular_data.hpp"
#include "client/task.hpp"
#include "common/model.hpp"
#include "common/wire.hpp"

namespace federa {

struct SessionOptions {
  std::string software = "federa-client 0.1.0";  // announced in Hello
  std::uint64_t num_train_examples = 0;          // announced in Hello
  std::uint64_t num_test_examples = 0;           // announced in Hello
  bool evaluates = false;                        // announced in Hello: takes evaluate tasks
  // Every evaluation result asks the coordinator to keep this client's own values out of its
  // logs and files (as a trainer may ask for one result).
  bool private_metrics = false;
  std::string name;  // prefixes log lines ("" for a lone client)
  // Level of the per-round progress lines (task received, trained, update sent); a simulator
  // of thousands of clients lowers it to debug.
  spdlog::level::level_enum progress_level = spdlog::level::info;
  // Called with each task's reassembled model; may return an identical model it already holds,
  // so that a simulator's many sessions keep one copy of a round's global model. Empty: each
  // task keeps its own.
  std::function<std::shared_ptr<const Model>(std::shared_ptr<const Model>)> share_model;
  // Set when the client's data is a table (Trainer::table()): what to report at join, given the
  // Welcome's table description (client/tabular_data.hpp). Announced in Hello.
  std::function<TabularData::Report(const std::string&)> table;
};

class ClientSession {
 public:
  ClientSession(SessionOptions options, ServerLink& link, TaskRunner& runner);

  // Sends Hello. Call once, when the connection is up.
  void start();
  // One envelope from the coordinator.
  void on_message(const wire::Envelope& msg);
  // The outcome of the task last handed to TaskRunner::run.
  void on_task_done(TaskResult result);

  // link.close() was called; everything after is ignored.
  bool ended() const { return ended_; }
  // A task is with the host (run() called, on_task_done not yet).
  bool task_running() const { return running_.has_value(); }
  // An update (or masked-input) header was sent and its UploadReady has not come (nor an error
  // about it).
  bool upload_pending() const { return upload_.has_value(); }
  // Training tasks whose result this session took (sent or masked), over its lifetime.
  std::uint64_t fits_completed() const { return fits_completed_; }
  // Evaluation results this session sent, over its lifetime.
  std::uint64_t evaluations_completed() const { return evaluations_completed_; }

 private:
  struct Incoming {  // a task whose model is still arriving, or complete and waiting
    Task task;
    std::shared_ptr<Model> model;
    ChunkAssembler assembler;
    bool secure = false;
    std::size_t chunk_elements = kDefaultChunkElements;
  };
  struct Running {  // a task with the host
    Task task;
    bool secure = false;
    std::size_t chunk_elements = kDefaultChunkElements;
  };
  struct Upload {  // an announced update (plain or masked) waiting for its slot
    std::uint64_t round = 0;
    std::vector<wire::Envelope> chunks;  // sent on UploadReady
    std::string what;                    // for the log
    // A plain update is chunked only when its slot is granted, one chunk at a time, so the
    // client never holds the weights and all their chunks at once (peak memory of a 400 MB
    // model: 2x, not 3x).
    std::vector<float> weights;
    std::size_t chunk_elements = 0;
    std::vector<DTypeRun> runs;  // the layout's float_runs(): each value travels in its dtype
  };

  Status handle(const wire::Envelope& msg);
  Status on_fit_task(const wire::FitTask& task);
  Status on_evaluate_task(const wire::EvaluateTask& task);
  // What fit and evaluate tasks share: the layout, the carried tensors, the chunks that follow.
  template <typename TaskMessage>
  Status begin_task(Task::Kind kind, const TaskMessage& t, const std::string& secure_mode);
  // Tabular federations (client/session_table.cpp): the join report, statistics tasks.
  Status on_welcome(const wire::Welcome& welcome);
  void note_table_admitted();
  Status on_statistics_task(const wire::StatisticsTask& task);
  void statistics_done(const Running& task, StatisticsOutput output, double seconds);
  Status on_chunk(const wire::TensorChunk& chunk);
  Status on_upload_ready(const wire::UploadReady& ready);
  void on_error(const wire::Error& error);
  void on_bye(const wire::Bye& bye);
  void on_secure(const wire::Envelope& msg);

  // The incoming task's model is complete: it waits for the host (replacing an older one).
  void promote_incoming();
  // Hands the newest complete task to the host when it is free.
  void start_next_task();
  void fit_done(const Running& task, FitResult fit, double seconds);
  void evaluate_done(const Running& task, EvaluateResult result, double seconds);
  void send_update_header(const Running& task, FitResult fit);
  // Secure-round output: a masked-input header waits for its slot like an update header.
  void send_secure(const std::vector<wire::Envelope>& envelopes);
  // Leaves the secure round (telling the coordinator why, so it need not wait for a deadline).
  void leave_secure_round(const std::string& why);
  void send_all(const std::vector<wire::Envelope>& envelopes);
  void end(SessionEnd::Kind kind, std::string reason);
  template <typename... Args>
  void log(spdlog::level::level_enum level, fmt::format_string<Args...> format, Args&&... args);

  SessionOptions opt_;
  ServerLink& link_;
  TaskRunner& runner_;
  // On the heap: a simulator holds thousands of idle sessions.
  std::unique_ptr<Incoming> incoming_;
  std::unique_ptr<Incoming> ready_;  // complete, waiting for the host to be free
  std::optional<Running> running_;
  std::optional<Upload> upload_;
  std::unique_ptr<SecureRound> secure_;
  // The last secure round that is over for this client (finished, left or aborted): late
  // messages for it are dropped quietly.
  std::optional<std::uint64_t> past_secure_;
  std::uint64_t fits_completed_ = 0;
  std::uint64_t evaluations_completed_ = 0;
  bool ended_ = false;
  bool table_checked_ = false;  // welcomed as a table site, not yet sent a task
};

// Defined here for session.cpp and session_table.cpp alike.
template <typename... Args>
void ClientSession::log(spdlog::level::level_enum level, fmt::format_string<Args...> format,
                        Args&&... args) {
  if (!spdlog::should_log(level)) return;
  std::string text = fmt::format(format, std::forward<Args>(args)...);
  if (opt_.name.empty()) {
    spdlog::log(level, "{}", text);
  } else {
    spdlog::log(level, "'{}': {}", opt_.name, text);
  }
}

}  // namespace federa
