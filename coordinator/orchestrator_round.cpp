// Rounds: wait for clients -> select -> broadcast -> collect -> close -> aggregate (on the
// worker) -> evaluate -> commit (outside the lock) -> report.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "common/seeds.hpp"
#include "coordinator/orchestrator.hpp"
#include "coordinator/orchestrator_internal.hpp"

namespace federa {

namespace {

struct CommitExtras {
  StrategyState strategy;
  std::vector<double> update_norms;
  std::string table;  // the fixed schema and statistics of a tabular federation
};

bool retryable(ErrorCode code) {
  return code == ErrorCode::unavailable || code == ErrorCode::aborted ||
         code == ErrorCode::deadline_exceeded || code == ErrorCode::resource_exhausted;
}

std::string seconds(std::chrono::milliseconds ms) {
  return fmt::format("{:g} s", double(ms.count()) / 1000.0);
}

}  // namespace

Status Orchestrator::run() {
  if (opt_.evaluation.only) return run_evaluate_only();
  prepare_best();
  const std::uint64_t start = completed_rounds();
  if (start >= opt_.rounds) spdlog::info("all {} rounds already committed", opt_.rounds);
  Status result = prepare_table();
  for (std::uint64_t r = start + 1; r <= opt_.rounds && result; ++r) {
    for (std::uint32_t attempt = 1;; ++attempt) {
      Status s = run_round(r, attempt);
      if (s) break;
      if (s.code() == ErrorCode::cancelled) {
        result = s;
        break;
      }
      const bool retry =
          retryable(s.code()) && attempt <= std::uint32_t(std::max(0, opt_.round_retries));
      worker_.call([&] { screen_.end_round(false); });
      {
        std::lock_guard lk(mu_);
        events_.queue(RoundFailed{r, attempt, s.error(), retry, round_.selected.size(),
                                  round_.accepted, round_.rejected, round_.dropped});
        if (retry) exclude_culprits(r);
      }
      events_.flush();
      if (!retry) {
        result = make_error(
            s.code(), "round " + std::to_string(r) + " failed" +
                          (retryable(s.code()) ? " " + std::to_string(attempt) + " times" : "") +
                          ": " + s.message());
        break;
      }
      spdlog::warn("round {}: {}; retrying ({} of {})", r, s.message(), attempt,
                   opt_.round_retries);
    }
  }
  if (result) say_goodbye();
  events_.queue(result);
  events_.flush();
  return result;
}

void Orchestrator::say_goodbye() {
  std::lock_guard lk(mu_);
  wire::Envelope bye;
  bye.mutable_bye()->set_reason("federation complete after " + std::to_string(opt_.rounds) +
                                " rounds");
  bye.mutable_bye()->set_federation_complete(true);
  auto bytes = serialize_shared(bye);
  for (auto& [id, c] : clients_) {
    c.link->send(bytes);
    c.link->close();
  }
}

Status Orchestrator::run_round(std::uint64_t round, std::uint32_t attempt) {
  if (Status s = wait_for_clients(round); !s) return s;
  // Asked for while this round waited (paused, say): the sites there now count in it.
  if (Status s = refresh_statistics_if_requested(); !s) return s;
  const auto started = Clock::now();
  TrainConfig cfg = opt_.train;
  cfg.seed = mix_seeds(opt_.seed, round);
  Status began = worker_.call([&] {
    strategy_->configure_fit(cfg);
    Status s = strategy_->begin_round(global_.data, round);
    screen_.begin_round(global_.data);
    round_norms_.clear();
    suspect_.clear();
    return s;
  });
  // Before any client is asked: nothing to undo (device memory may come back for a retry).
  if (!began)
    return make_error(began.code(), "the strategy cannot begin the round: " + began.message());
  Clock::time_point deadline;
  {
    FlushOnExit flush(events_);
    std::lock_guard lk(mu_);
    if (stopping_) return make_error(ErrorCode::cancelled, "stopped");
    fill_table_config(cfg);
    auto cohort = select_cohort(round, attempt);
    if (Status s = open_round(round, attempt, cohort); !s) return s;
    broadcast_task(round, attempt, cfg, cohort);
    deadline = started + opt_.round_timeout;
    spdlog::info("round {}/{}: training on {} of {} clients", round, opt_.rounds, cohort.size(),
                 ready_count());
    RoundStarted e{round,
                   attempt,
                   TaskKind::fit,
                   cohort,
                   ready_count(),
                   round_.secure != nullptr,
                   std::chrono::system_clock::now() + opt_.round_timeout};
    std::sort(e.selected.begin(), e.selected.end());
    events_.queue(std::move(e));
  }
  Status collected = round_.secure ? collect_secure(deadline) : collect_plain(deadline);
  close_round();
  if (!collected) return collected;
  {
    std::lock_guard lk(mu_);
    if (stopping_) return make_error(ErrorCode::cancelled, "stopped");
    const std::size_t needed = std::min(opt_.min_clients, round_.selected.size());
    if (round_.accepted < needed || round_.accepted == 0)
      return make_error(ErrorCode::unavailable, shortfall_reason(needed));
  }
  return aggregate_and_commit(round, attempt, started);
}

Status Orchestrator::wait_for_clients(std::uint64_t round) {
  std::unique_lock lk(mu_);
  const std::size_t needed = std::max(opt_.min_clients, opt_.min_available);
  auto last_note = Clock::now();
  while (!stopping_ && (paused_ || ready_count() < needed)) {
    cv_.wait_for(lk, std::chrono::seconds(1));
    if (Clock::now() - last_note > std::chrono::seconds(10)) {
      if (paused_)
        spdlog::info("round {}: paused", round);
      else
        spdlog::info("round {}: waiting for clients ({} of {} needed connected)", round,
                     ready_count(), needed);
      last_note = Clock::now();
    }
  }
  if (stopping_) return make_error(ErrorCode::cancelled, "stopped");
  return {};
}

// After a failed attempt, the clients whose updates were rejected (and, in a secure round, the
// ones the protocol blamed) sit out the round's retries, so the retry is not spoiled again by the
// same member. They are back for the next round.
void Orchestrator::exclude_culprits(std::uint64_t round) {
  if (excluded_round_ != round) {
    excluded_.clear();
    excluded_round_ = round;
  }
  for (const auto& [id, s] : round_.selected)
    if (s.stage == Stage::rejected) excluded_.emplace(id, s.reason);
  for (const auto& [id, why] : blamed_) excluded_.emplace(id, why);
  for (const auto& [id, why] : excluded_)
    spdlog::warn("round {}: '{}' sits out the retries of this round: {}", round, id, why);
}

std::vector<std::string> Orchestrator::select_cohort(std::uint64_t round,
                                                     std::uint32_t attempt) const {
  std::vector<std::string> ready;
  std::size_t left_out = 0;
  const bool excluding = excluded_round_ == round && !excluded_.empty();
  for (const auto& [id, c] : clients_) {
    if (!c.ready) continue;
    if (excluding && excluded_.count(id)) {
      ++left_out;
      continue;
    }
    ready.push_back(id);
  }
  if (left_out > 0 && ready.size() < opt_.min_clients) {
    // Without them the round cannot complete at all: try everyone again rather than fail.
    for (const auto& [id, c] : clients_)
      if (c.ready && excluded_.count(id)) ready.push_back(id);
    std::sort(ready.begin(), ready.end());
  }
  std::size_t want =
      opt_.clients_per_round
          ? opt_.clients_per_round
          : std::max<std::size_t>(opt_.min_clients,
                                  std::size_t(std::ceil(opt_.fraction_fit * double(ready.size()))));
  want = std::min(want, ready.size());
  // The first attempt's draw depends on (seed, round) only; a retry draws afresh, so a cohort
  // that failed (a member that spoils secure rounds, say) is not simply tried again.
  std::uint64_t seed = mix_seeds(opt_.seed, round);
  if (attempt > 1) seed = mix_seeds(seed, attempt);
  std::mt19937_64 rng(seed);
  std::shuffle(ready.begin(), ready.end(), rng);
  ready.resize(want);
  return ready;
}

Status Orchestrator::open_round(std::uint64_t round, std::uint32_t attempt,
                                std::vector<std::string>& cohort) {
  round_ = RoundState{};
  round_.round = round;
  round_.attempt = attempt;
  round_.generation = ++generation_;
  blamed_.clear();
  for (const auto& id : cohort) round_.selected[id] = Selected{};
  if (!opt_.secure_aggregation.empty()) {
    std::sort(cohort.begin(), cohort.end());  // cohort index = position; any fixed order works
    if (Status s = setup_secure_round(round, cohort); !s) return s;
  }
  round_.open = true;
  return {};
}

void Orchestrator::broadcast_task(std::uint64_t round, std::uint32_t attempt,
                                  const TrainConfig& cfg, const std::vector<std::string>& cohort) {
  wire::Envelope task;
  auto* t = task.mutable_fit_task();
  t->set_round(round);
  t->set_attempt(attempt);
  t->set_model_version(completed_);
  *t->mutable_config() = to_wire(cfg);
  describe_model(*t, global_, opt_.chunk_elements);
  t->set_secure_aggregation(opt_.secure_aggregation);
  const auto broadcast = model_broadcast(round, task);
  for (const auto& id : cohort) {
    auto& link = clients_[id].link;
    link->send_stream(broadcast->reader());
    if (round_.secure) {
      wire::Envelope setup;
      secagg::to_wire(round_.secure->config, round_.secure->index[id],
                      setup.mutable_secagg_setup());
      link->send(serialize_shared(setup));
    }
  }
}

std::shared_ptr<ModelBroadcast> Orchestrator::model_broadcast(std::uint64_t round,
                                                              const wire::Envelope& task) {
  auto b = std::make_shared<ModelBroadcast>(serialize_shared(task), round, global_.data,
                                            opt_.chunk_elements, global_.layout.float_runs());
  std::lock_guard lk(broadcasts_mu_);
  std::erase_if(broadcasts_, [](const auto& w) { return w.expired(); });
  broadcasts_.push_back(b);
  return b;
}

void Orchestrator::freeze_broadcasts() {
  std::vector<std::shared_ptr<ModelBroadcast>> live;
  {
    std::lock_guard lk(broadcasts_mu_);
    for (const auto& w : broadcasts_)
      if (auto b = w.lock()) live.push_back(std::move(b));
    broadcasts_.clear();
  }
  for (const auto& b : live) b->freeze();
}

Status Orchestrator::collect_plain(Clock::time_point deadline) {
  std::unique_lock lk(mu_);
  auto all_answered = [&] {
    return round_.accepted + round_.rejected + round_.dropped == round_.selected.size();
  };
  while (!stopping_ && !all_answered()) {
    const auto wake = std::min(deadline, reap_stalled_uploads());
    lk.unlock();
    events_.flush();  // drops the reaper settled
    lk.lock();
    if (stopping_ || all_answered()) break;
    if (cv_.wait_until(lk, wake) == std::cv_status::timeout && Clock::now() >= deadline) break;
  }
  if (stopping_) return make_error(ErrorCode::cancelled, "stopped");
  return {};
}

// Closes the round: clients that have not answered are dropped, unfinished uploads cancelled,
// and updates already handed to the worker are waited for, so the strategy holds exactly the
// accepted ones when it finishes the round.
void Orchestrator::close_round() {
  FlushOnExit flush(events_);
  std::unique_lock lk(mu_);
  round_.open = false;
  round_.uploads.clear();
  round_.waiting.clear();
  const std::string why = "missed the " + seconds(opt_.round_timeout) + " deadline";
  std::size_t late = 0;
  for (auto& [id, s] : round_.selected) {
    if (s.stage == Stage::waiting || s.stage == Stage::uploading) {
      settle(id, Stage::dropped, round_.secure ? "left the secure protocol" : why);
      ++late;
    }
  }
  cv_.wait(lk, [&] { return round_.in_flight == 0 && round_.copying == 0; });
  round_.secure.reset();  // nothing on the worker refers to it any more
  if (late > 0 && !round_.secure && !stopping_)
    spdlog::warn("round {}: {} client(s) missed the {} deadline", round_.round, late,
                 seconds(opt_.round_timeout));
}

std::string Orchestrator::shortfall_reason(std::size_t needed) const {
  std::string out = "only " + std::to_string(round_.accepted) + " of " +
                    std::to_string(round_.selected.size()) +
                    " selected clients' updates were accepted, " + std::to_string(needed) +
                    " needed (--min-clients)";
  for (Stage stage : {Stage::rejected, Stage::dropped}) {
    std::vector<std::string> who;
    for (const auto& [id, s] : round_.selected)
      if (s.stage == stage) who.push_back("'" + id + "': " + s.reason);
    if (who.empty()) continue;
    out += fmt::format("; {} {}", who.size(), stage == Stage::rejected ? "rejected" : "dropped");
    for (std::size_t i = 0; i < who.size() && i < 3; ++i) out += (i ? ", " : " (") + who[i];
    out += who.size() > 3 ? ", ...)" : ")";
  }
  return out;
}

// On the worker. The last line of defence: whatever got past the checks, a model with a NaN or
// an Inf is never committed (nor sent to anyone). The round's attempt fails, the global model and
// the strategy's state go back to the last commit, and the round is retried.
Result<RoundStats> Orchestrator::aggregate_finite() {
  freeze_broadcasts();
  // The model before finish_round, for a rollback. Every upload of the attempt is over, so an
  // upload slot is free to hold it: a rollback needs no model-sized memory of its own.
  std::unique_ptr<UploadBuffer> slot = pool_.acquire();
  std::vector<float> own;
  std::span<float> previous;
  if (auto f = slot ? slot->floats(global_.data.size(), pool_.backend())
                    : Result<std::span<float>>(make_error("no free upload slot"));
      f) {
    previous = *f;
  } else {
    own.resize(global_.data.size());
    previous = own;
  }
  struct Release {
    UploadPool& pool;
    std::unique_ptr<UploadBuffer>& slot;
    ~Release() { pool.release(std::move(slot)); }
  } release{pool_, slot};
  std::copy(global_.data.begin(), global_.data.end(), previous.begin());
  auto stats = strategy_->finish_round(global_.data);
  if (!stats) return stats;
  // A BF16 or F16 tensor holds what its file and the wire will hold (F16 may overflow to Inf
  // here, which the check below then refuses like any other non-finite aggregate).
  round_to_dtypes(global_);
  const auto bad = std::find_if(global_.data.begin(), global_.data.end(),
                                [](float v) { return !std::isfinite(v); });
  Result<StrategyState> saved =
      bad == global_.data.end() ? strategy_->save_state() : Result<StrategyState>(StrategyState{});
  if (bad == global_.data.end() && saved) {
    committed_strategy_ = std::move(*saved);
    screen_.end_round(true);
    return stats;
  }
  if (!saved) {  // the model is fine, but --resume could not continue from it: commit nothing
    std::copy(previous.begin(), previous.end(), global_.data.begin());
    if (Status s = strategy_->load_state(committed_strategy_); !s)
      return make_error(ErrorCode::internal, "the strategy cannot be restored: " + s.message());
    return make_error(ErrorCode::aborted,
                      "the strategy's state cannot be saved: " + saved.error().message);
  }
  const std::size_t at = std::size_t(bad - global_.data.begin());
  std::copy(previous.begin(), previous.end(), global_.data.begin());
  // Finite inputs overflowed the sum: the largest change is the likeliest culprit.
  auto largest = std::max_element(round_norms_.begin(), round_norms_.end(),
                                  [](const auto& a, const auto& b) { return a.second < b.second; });
  if (largest != round_norms_.end()) {
    suspect_ =
        fmt::format("sent the largest change (norm {:.4g}) into an aggregate that was not finite",
                    largest->second);
    suspect_id_ = largest->first;
  }
  if (Status s = strategy_->load_state(committed_strategy_); !s)
    return make_error(
        ErrorCode::internal,
        "the aggregate is not finite and the strategy cannot be restored: " + s.message());
  return make_error(ErrorCode::aborted, "the aggregate is not finite (element " +
                                            std::to_string(at) +
                                            "); nothing of this attempt is committed");
}

Status Orchestrator::aggregate_and_commit(std::uint64_t round, std::uint32_t attempt,
                                          Clock::time_point started) {
  auto stats = worker_.call([&] { return aggregate_finite(); });
  if (!stats && !suspect_.empty()) {
    std::lock_guard lk(mu_);
    blamed_.emplace(suspect_id_, suspect_);
  }
  if (!stats)
    return make_error(
        stats.error().code == ErrorCode::unknown ? ErrorCode::aborted : stats.error().code,
        "aggregation failed: " + stats.error().message);
  std::optional<EvalResult> eval;
  if (evaluator_) eval = evaluator_->network->evaluate(global_.data, evaluator_->data);
  std::optional<FederatedEvaluation> fed = evaluate_if_due(round);
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  RoundReport report;
  {
    std::lock_guard lk(mu_);
    report = make_report(round, attempt, ms, *stats, eval ? &*eval : nullptr);
    attach_evaluation(report, std::move(fed));
  }
  if (store_) {
    CommitExtras extras;
    worker_.call([&] {
      extras.strategy = committed_strategy_;
      extras.update_norms = screen_.history();
    });
    {
      std::lock_guard lk(mu_);
      if (table_ && table_->fixed()) extras.table = table_->to_json();
    }
    if (Status s = store_->commit(round, global_, extras.strategy, report.metrics_line,
                                  opt_.train.model, extras.update_norms, extras.table);
        !s)
      return make_error(ErrorCode::data_loss,
                        "cannot commit round " + std::to_string(round) + ": " + s.message());
    keep_best(round, report);
  }
  {
    std::lock_guard lk(mu_);
    completed_ = round;
    last_metrics_line_ = report.metrics_line;
    events_.queue(std::move(report));
  }
  events_.flush();
  return {};
}

RoundReport Orchestrator::make_report(std::uint64_t round, std::uint32_t attempt,
                                      double duration_ms, const RoundStats& stats,
                                      const EvalResult* eval) const {
  RoundReport r;
  r.round = round;
  r.attempt = attempt;
  r.selected = round_.selected.size();
  r.accepted = round_.accepted;
  r.rejected = round_.rejected;
  r.dropped = round_.dropped;
  if (round_.train_weight > 0) r.train_loss = round_.train_loss_sum / round_.train_weight;
  if (eval) {
    r.loss = eval->loss;
    r.accuracy = eval->accuracy;
    if (evaluator_->network->regression()) {  // no accuracy: rmse, mae, r2 instead
      r.accuracy.reset();
      r.rmse = eval->rmse;
      r.mae = eval->mae;
      r.r2 = eval->r2;
    }
  } else {
    r.loss = r.train_loss;
  }
  r.duration_ms = duration_ms;
  r.strategy = strategy_->name();
  r.stats = stats;
  for (const auto& [id, s] : round_.selected) {
    UpdateOutcome o = s.stage == Stage::accepted   ? UpdateOutcome::accepted
                      : s.stage == Stage::rejected ? UpdateOutcome::rejected
                                                   : UpdateOutcome::dropped;
    r.clients.push_back(ClientOutcome{id, o, s.reason, s.num_examples, s.metrics});
  }
  r.metrics_line = format_metrics_line(r);
  return r;
}

}  // namespace federa
