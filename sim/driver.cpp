#include "sim/driver.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "coordinator/round_log.hpp"

namespace federa {

namespace {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

TaskResult to_result(const Task& task, TrainOutcome& out) {
  if (!out.ok) return failed_task(task, Error{ErrorCode::internal, out.error});
  FitResult fit;
  fit.weights = std::move(out.weights);
  fit.num_examples = out.num_examples;
  fit.metrics = std::move(out.metrics);
  TaskResult r;
  r.kind = task.kind;
  r.round = task.round;
  r.output = TaskOutput(std::move(fit));
  return r;
}

}  // namespace

Driver::Driver(const SimOptions& o, RankGroup& group, const ClientData& cd, Orchestrator& orch,
               Progress& progress, MetricsLog& metrics)
    : o_(o), group_(group), cd_(cd), orch_(orch), progress_(progress), metrics_(metrics) {
  clock_.seed = o.seed;
  clock_.dropout = o.dropout;
  clock_.latency = o.latency;
  clock_.round_timeout_s = o.round_timeout_s;
}

Status Driver::connect_all() {
  clients_.reserve(o_.clients);
  links_.reserve(o_.clients);
  closed_.assign(o_.clients, false);
  for (std::size_t i = 0; i < o_.clients; ++i) {
    std::string name = client_name(i, o_.clients);
    index_[name] = i;
    links_.push_back(std::make_shared<SimLink>(name, i, inbox_));
    const std::size_t held_out = i < cd_.tests.size() ? cd_.tests[i].size() : 0;
    clients_.push_back(
        std::make_unique<VirtualClient>(i, name, cd_.parts[i].size(), held_out, *this));
    if (Status s = orch_.on_connect(links_.back()); !s)
      return Error{s.code(), "connecting " + name + ": " + s.message()};
    clients_.back()->session().start();  // Hello
    if (closed_[i]) return Error{ErrorCode::internal, name + " was refused"};
  }
  for (Delivery d; inbox_.try_pop(d);)
    if (Status s = step(std::move(d)); !s) return s;
  return {};
}

Status Driver::run(double& wall_s) {
  const auto started = std::chrono::steady_clock::now();
  std::thread orchestrator([&] { inbox_.push(JobDone{orch_.run()}); });
  Status served = serve();
  if (!served) orch_.stop();
  orchestrator.join();
  wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (!served) return served;
  return job_;
}

Status Driver::serve() {
  while (!finished_)
    if (Status s = step(inbox_.pop()); !s) return s;
  return {};
}

Status Driver::step(Delivery d) {
  Status s = std::visit(Overloaded{
                            [&](const MessageDelivery& m) { return deliver(m); },
                            [&](const CloseDelivery& c) {
                              close_link(c.client, c.reason);
                              return Status{};
                            },
                            [&](const RoundStarted& e) { return on_round_started(e); },
                            [&](const RoundFailed&) { return Status{}; },
                            [&](const RoundReport& r) { return on_round_committed(r); },
                            [&](const JobDone& j) {
                              finished_ = true;
                              job_ = j.status;
                              return Status{};
                            },
                        },
                        d);
  settle_failures();
  return s;
}

Status Driver::deliver(const MessageDelivery& m) {
  if (closed_[m.client]) return {};
  wire::Envelope e;
  if (!e.ParseFromString(*m.bytes))
    return Error{ErrorCode::internal, "the orchestrator sent an unreadable envelope"};
  clients_[m.client]->session().on_message(e);
  return {};
}

void Driver::to_coordinator(std::size_t c, const wire::Envelope& e) {
  if (closed_[c]) return;
  // As a transport does: an Error answer closes the connection.
  if (Status s = orch_.on_message(links_[c], e); !s) {
    spdlog::warn("'{}': {}", links_[c]->id(), s.message());
    close_link(c, s.message());
  }
}

void Driver::session_ended(std::size_t c, const SessionEnd& end) { close_link(c, end.reason); }

void Driver::close_link(std::size_t c, const std::string& why) {
  if (closed_[c]) return;
  closed_[c] = true;
  orch_.on_disconnect(links_[c], why);
}

void Driver::task_requested(std::size_t c, Task task) {
  if (task.kind == TaskKind::evaluate) {
    batch_.push_back(Request{c, std::move(task)});
    return;
  }
  const ClientFate fate = draw_fate(clock_, task.round, task.attempt, c);
  if (fate.outcome != ClientFate::Outcome::train) {
    // It never trains; it says so at once, as a real client that went away would not (the
    // orchestrator would wait for its deadline), so nothing waits on the real clock.
    failures_.emplace_back(c,
                           failed_task(task, Error{ErrorCode::unavailable, fate.reason(clock_)}));
    return;
  }
  batch_.push_back(Request{c, std::move(task)});
}

std::shared_ptr<const Model> Driver::share_model(std::shared_ptr<const Model> model) {
  // Every selected client reassembled the same bytes: keep one copy of the model.
  if (round_model_ && round_model_->layout == model->layout && round_model_->data == model->data &&
      round_model_->carried == model->carried)
    return round_model_;
  round_model_ = std::move(model);
  return round_model_;
}

void Driver::settle_failures() {
  while (!failures_.empty()) {
    auto [c, result] = std::move(failures_.front());
    failures_.erase(failures_.begin());
    if (!closed_[c]) clients_[c]->session().on_task_done(std::move(result));
  }
}

// ---------------------------------------------------------------------------------------------
// Rounds

Status Driver::on_round_started(const RoundStarted& e) {
  if (in_round_) return Error{ErrorCode::internal, "a round started while another was served"};
  std::vector<Request> batch = std::exchange(batch_, {});
  round_model_.reset();
  for (const auto& r : batch)
    if (r.task.round != e.round || r.task.attempt != e.attempt)
      return Error{ErrorCode::internal, "a task of another round attempt was left over"};
  std::sort(batch.begin(), batch.end(),
            [](const Request& a, const Request& b) { return a.client < b.client; });
  if (e.kind == TaskKind::evaluate) return evaluate_batch(batch);

  AttemptFigures fig = figures_for(e);
  in_round_ = true;
  auto outcomes = train(e.round, batch);
  if (!outcomes) return outcomes.error();
  for (const auto& out : *outcomes) fig.train_failed += out.ok ? 0 : 1;
  clock_s_ += fig.round_s;
  fig.clock_s = clock_s_;
  figures_[{e.round, e.attempt}] = fig;
  Status s = hand_back(batch, *outcomes, e.secure);
  in_round_ = false;
  return s;
}

Status Driver::evaluate_batch(const std::vector<Request>& batch) {
  if (batch.empty()) return {};
  std::vector<std::size_t> clients;
  for (const auto& r : batch) {
    if (r.task.model != batch.front().task.model)
      return Error{ErrorCode::internal, "the clients of one evaluation received different models"};
    clients.push_back(r.client);
  }
  auto results = evaluate_clients(cd_, clients, *batch.front().task.model,
                                  batch.front().task.config, o_.threads);
  for (std::size_t k = 0; k < batch.size(); ++k) {
    const std::size_t c = batch[k].client;
    if (closed_[c]) continue;
    if (!results[k]) {
      clients_[c]->session().on_task_done(failed_task(batch[k].task, results[k].error()));
      continue;
    }
    TaskResult r;
    r.kind = batch[k].task.kind;
    r.round = batch[k].task.round;
    r.output = TaskOutput(std::move(results[k].value()));
    clients_[c]->session().on_task_done(std::move(r));
  }
  return {};
}

AttemptFigures Driver::figures_for(const RoundStarted& e) const {
  AttemptFigures fig;
  for (const auto& id : e.selected) {
    auto it = index_.find(id);
    if (it != index_.end()) fig.count(draw_fate(clock_, e.round, e.attempt, it->second), clock_);
  }
  return fig;
}

Result<std::vector<TrainOutcome>> Driver::train(std::uint64_t round,
                                                const std::vector<Request>& batch) {
  WorkOrder order;
  order.round = round;
  if (!batch.empty()) {
    order.config = batch.front().task.config;
    order.global = batch.front().task.model->data;
  }
  for (const auto& r : batch) {
    if (r.task.model != batch.front().task.model)
      return Error{ErrorCode::internal, "the clients of one round received different models"};
    order.clients.push_back(r.client);
  }
  records_[round] = RoundRecord{order.config, order.clients};
  std::string bytes = encode_order(order);
  if (Status s = group_.broadcast(bytes); !s) return s.error();
  const ModelLayout layout = batch.empty() ? ModelLayout{} : batch.front().task.model->layout;
  std::atomic<std::size_t> done{0};
  if (!progress_.enabled()) return train_distributed(group_, cd_, layout, order, o_.threads, &done);
  // Rank 0 draws its own share's progress while its threads train.
  const std::size_t local = share_of(order.clients, 0, group_.size()).size();
  progress_.begin_round(round, local);
  Result<std::vector<TrainOutcome>> outcomes = Error{ErrorCode::internal, "not run"};
  std::thread trainer(
      [&] { outcomes = train_distributed(group_, cd_, layout, order, o_.threads, &done); });
  progress_.track(done, local);
  trainer.join();
  progress_.end_round();
  return outcomes;
}

Status Driver::hand_back(std::vector<Request>& batch, std::vector<TrainOutcome>& outcomes,
                         bool secure) {
  if (outcomes.size() != batch.size())
    return Error{ErrorCode::internal, "training results do not match the batch"};
  for (std::size_t k = 0; k < batch.size(); ++k) {
    const std::size_t c = batch[k].client;
    if (outcomes[k].client != c) return Error{ErrorCode::internal, "training results out of order"};
    if (closed_[c]) continue;
    clients_[c]->session().on_task_done(to_result(batch[k].task, outcomes[k]));
    std::vector<float>().swap(outcomes[k].weights);
    // A plain update is uploaded before the next client's starts: the order of the sum is the
    // client order. Masked inputs are summed in the ring, where order does not matter.
    if (!secure)
      if (Status s = wait_for_upload(c); !s) return s;
  }
  return {};
}

Status Driver::wait_for_upload(std::size_t c) {
  while (!finished_ && !closed_[c] && clients_[c]->session().upload_pending())
    if (Status s = step(inbox_.pop()); !s) return s;
  return {};
}

Status Driver::on_round_committed(const RoundReport& report) {
  auto fig = figures_.find({report.round, report.attempt});
  const std::string line = format_metrics_line(
      report, fig != figures_.end() ? fig->second.metrics() : std::map<std::string, double>{});
  if (Status s = metrics_.append(line); !s) return Error{s.code(), "--metrics-out: " + s.message()};
  lines_.push_back(line);
  ++rounds_completed_;
  client_updates_ += report.accepted;
  progress_.set_accuracy(report.accuracy);
  if (o_.print_rounds) ConsolePrinter(o_.rounds).on_round_committed(report);
  return {};
}

}  // namespace federa
