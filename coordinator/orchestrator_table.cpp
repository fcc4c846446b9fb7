// Tabular federations (issue 11; docs/tabular.md): a table site is welcomed with the schema (or
// only the task while it is derived) and counts as joined once its TableReport fits; before
// round 1 the schema is fixed (the sorted union of the connected sites' reports) and a
// statistics task asks every table site for its training rows' figures, whose sum gives the
// global means and standard deviations every task then carries (FederationTable::fill).
//
// Under --secure-aggregation secagg+ the statistics are a SecAgg+ round of their own: each site
// masks its figures as 128-bit fixed-point numbers in limbs (common/statistics.hpp) whose sum
// cannot wrap, and the coordinator learns only the cohort's totals (no min or max).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "common/csv.hpp"
#include "common/statistics.hpp"
#include "coordinator/orchestrator.hpp"
#include "coordinator/orchestrator_internal.hpp"

namespace federa {

Status Orchestrator::check_table_hello(Client& c, const wire::Hello& hello) {
  if (!table_) return {};
  if (hello.table()) {
    tabular_ = true;
    return table_->check_rows(hello.num_train_examples());
  }
  if (tabular_)
    return make_error(ErrorCode::failed_precondition,
                      "this federation trains on tables and '" + c.link->id() +
                          "' has none (federa-client --data csv:FILE:label=COLUMN)");
  return {};
}

Status Orchestrator::handle_table_report(Client& c, const wire::TableReport& report) {
  if (!c.table_pending)
    return make_error(ErrorCode::failed_precondition, "a table report outside the join");
  c.table_pending = false;
  if (Status s = table_->admit(c.link->id(), report.schema(), report.refusal()); !s) {
    refuse(c, make_error(ErrorCode::failed_precondition,
                         "its table does not fit the federation: " + s.message()));
    return {};
  }
  join(c);
  return {};
}

Status Orchestrator::handle_statistics_result(Client& c, const wire::StatisticsResult& result) {
  const std::string& id = c.link->id();
  if (!table_ || result.request() != statistics_request_ || !statistics_waiting_.count(id)) {
    spdlog::debug("client '{}': statistics for request {} ignored (not asked or late)", id,
                  result.request());
    return {};
  }
  statistics_waiting_.erase(id);
  if (Status s = table_->add_statistics(id, result.statistics()); !s) {
    spdlog::warn("statistics of client '{}' refused: {}", id, printable(s.message()));
  } else {
    ++statistics_received_;
  }
  cv_.notify_all();
  return {};
}

void Orchestrator::forget_statistics(const std::string& id) {
  if (statistics_waiting_.erase(id)) cv_.notify_all();
}

void Orchestrator::fill_table_config(TrainConfig& cfg) const {
  if (table_ && tabular_) table_->fill(cfg);
}

// Before round 1 (also on --resume: the sites' data may have changed; the model's width is
// checked against the schema again).
Status Orchestrator::prepare_table() {
  if (!table_ || completed_rounds() >= opt_.rounds) return {};
  for (std::uint32_t attempt = 1;; ++attempt) {
    if (Status s = wait_for_clients(completed_rounds() + 1); !s) return s;
    std::vector<std::string> sites;
    {
      FlushOnExit flush(events_);
      std::lock_guard lk(mu_);
      if (!tabular_) return {};  // no --schema and no site with a table: not a tabular federation
      for (auto& [id, c] : clients_) {
        if (!c.ready) continue;
        if (c.table) {
          sites.push_back(id);
        } else {  // joined before the first table site did
          c.ready = false;
          refuse(c, make_error(ErrorCode::failed_precondition,
                               "this federation trains on tables and '" + id +
                                   "' has none (federa-client --data csv:FILE:label=COLUMN)"));
          events_.queue(ClientLeft{id, "no table"});
        }
      }
      if (sites.size() < std::max(opt_.min_clients, opt_.min_available)) continue;
      const bool derived = !table_->fixed();
      auto schema = table_->fix(sites);
      if (!schema)
        return make_error(ErrorCode::failed_precondition,
                          "the federation's schema: " + schema.error().message);
      spdlog::info("table: {} schema, {} features ({} inputs), label '{}'{}",
                   derived ? "derived" : "given", schema->features.size(), schema->input_width(),
                   schema->label,
                   schema->task == TaskType::classification
                       ? fmt::format(", {} classes [{}]", schema->classes.size(),
                                     fmt::join(schema->classes, ", "))
                       : std::string(", regression"));
    }
    Status s = run_statistics(sites, false);
    if (s) {
      scale_screen();
      return prepare_evaluator();
    }
    if (s.code() == ErrorCode::cancelled ||
        attempt > std::uint32_t(std::max(0, opt_.round_retries)))
      return s;
    spdlog::warn("table statistics: {}; retrying ({} of {})", s.message(), attempt,
                 opt_.round_retries);
  }
}

Status Orchestrator::run_statistics(const std::vector<std::string>& sites, bool requested) {
  const bool secure = !opt_.secure_aggregation.empty();
  if (secure) {
    if (Status s = run_secure_statistics(sites); !s) return s;
  } else if (Status s = collect_plain_statistics(sites); !s) {
    return s;
  }
  FlushOnExit flush(events_);
  std::lock_guard lk(mu_);
  if (Status s = table_->finish_statistics(); !s) return s;
  spdlog::info(
      "table statistics: global means and standard deviations from {} sites ({} training rows{})",
      statistics_received_, table_->statistics()->rows, secure ? ", summed with SecAgg+" : "");
  events_.queue(StatisticsComputed{completed_ + 1, statistics_received_,
                                   static_cast<std::uint64_t>(table_->statistics()->rows), secure,
                                   requested});
  return {};
}

Status Orchestrator::request_statistics() {
  std::lock_guard lk(mu_);
  if (!table_ || !tabular_)
    return make_error(ErrorCode::failed_precondition,
                      "this federation trains on no table: it has no statistics to compute");
  if (!table_->fixed())
    return make_error(ErrorCode::failed_precondition,
                      "the federation's schema is not fixed yet; the statistics are computed "
                      "before round 1 anyway");
  if (!statistics_requested_)
    spdlog::info("table statistics: requested again; computed before the next round");
  statistics_requested_ = true;
  return {};
}

// Before a round, when an operator asked (request_statistics): the statistics of the table sites
// connected now. A run that fails keeps the figures in force; it is not retried.
Status Orchestrator::refresh_statistics_if_requested() {
  std::vector<std::string> sites;
  {
    std::lock_guard lk(mu_);
    if (!statistics_requested_) return {};
    statistics_requested_ = false;
    for (const auto& [id, c] : clients_)
      if (c.ready && c.table) sites.push_back(id);
  }
  Status s = run_statistics(sites, true);
  if (s.code() == ErrorCode::cancelled) return s;
  if (!s) {  // FederationTable keeps the figures in force until a phase finishes
    spdlog::warn("table statistics (requested): {}; the figures in force stay", s.message());
    return {};
  }
  // Every site's inputs moved: the changes accepted so far say nothing about the next ones (the
  // screen would reject every honest update as an outlier), so it starts afresh.
  worker_.call([&] { screen_.set_history({}); });
  scale_screen();
  return prepare_evaluator();
}

Status Orchestrator::collect_plain_statistics(const std::vector<std::string>& sites) {
  const auto deadline = Clock::now() + opt_.round_timeout;
  std::unique_lock lk(mu_);
  table_->begin_statistics();
  TrainConfig cfg = opt_.train;
  table_->fill(cfg);
  wire::Envelope task;
  task.mutable_statistics_task()->set_request(++statistics_request_);
  *task.mutable_statistics_task()->mutable_config() = to_wire(cfg);
  auto bytes = serialize_shared(task);
  statistics_waiting_.clear();
  statistics_received_ = 0;
  for (const auto& id : sites) {
    auto it = clients_.find(id);
    if (it == clients_.end() || !it->second.ready) continue;
    statistics_waiting_.insert(id);
    it->second.link->send(bytes);
  }
  spdlog::info("table statistics: asked {} sites", statistics_waiting_.size());
  cv_.wait_until(lk, deadline, [&] { return stopping_ || statistics_waiting_.empty(); });
  if (stopping_) return make_error(ErrorCode::cancelled, "stopped");
  const std::size_t missing = statistics_waiting_.size();
  statistics_waiting_.clear();
  const std::size_t needed = std::min(opt_.min_clients, sites.size());
  if (statistics_received_ < needed)
    return make_error(
        ErrorCode::unavailable,
        fmt::format(
            "{} of {} sites sent usable statistics ({} did not answer), {} needed (--min-clients)",
            statistics_received_, sites.size(), missing, needed));
  return {};
}

// A SecAgg+ round over the statistics' limbs, with the round machinery of model updates
// (orchestrator_secure.cpp) shaped by shape_statistics_round and ended by
// apply_secure_statistics while statistics_limb_bits_ is set.
Status Orchestrator::run_secure_statistics(const std::vector<std::string>& sites) {
  const auto started = Clock::now();
  {
    FlushOnExit flush(events_);
    std::lock_guard lk(mu_);
    std::vector<std::string> cohort;
    for (const auto& id : sites)
      if (auto it = clients_.find(id); it != clients_.end() && it->second.ready)
        cohort.push_back(id);
    table_->begin_statistics();
    statistics_received_ = 0;
    statistics_limb_bits_ = secure_limb_bits(static_cast<std::uint32_t>(cohort.size()));
    const std::uint64_t request = ++statistics_request_;
    if (Status s = open_round(request, 1, cohort); !s) {
      statistics_limb_bits_ = 0;
      round_ = RoundState{};
      return make_error(ErrorCode::unavailable, "table statistics: " + s.message());
    }
    TrainConfig cfg = opt_.train;
    table_->fill(cfg);
    wire::Envelope task;
    auto* t = task.mutable_statistics_task();
    t->set_request(request);
    *t->mutable_config() = to_wire(cfg);
    t->set_secure_aggregation("secagg+");
    t->set_limb_bits(static_cast<std::uint32_t>(statistics_limb_bits_));
    auto bytes = serialize_shared(task);
    for (const auto& id : cohort) {
      auto& link = clients_[id].link;
      link->send(bytes);
      wire::Envelope setup;
      secagg::to_wire(round_.secure->config, round_.secure->index[id],
                      setup.mutable_secagg_setup());
      link->send(serialize_shared(setup));
    }
    spdlog::info("table statistics: asked {} sites, summed with SecAgg+ ({}-bit limbs)",
                 cohort.size(), statistics_limb_bits_);
  }
  Status collected = collect_secure(started + opt_.round_timeout);
  close_round();
  std::lock_guard lk(mu_);
  statistics_limb_bits_ = 0;
  round_ = RoundState{};
  return collected;
}

void Orchestrator::shape_statistics_round(secagg::RoundOptions& ro) const {
  // Integer limbs below 2^bits, weight 1 per site, scale 1: quantisation adds no rounding.
  ro.vector_length = secure_sum_length(*table_->schema(), statistics_limb_bits_);
  ro.clip = std::ldexp(1.0, statistics_limb_bits_) - 1;
  ro.max_weight = 1.0;
  ro.scale = 1.0;
}

// The round thread, at the end of collect_secure: the sum of the included sites' limbs.
Status Orchestrator::apply_secure_statistics(const secagg::AggregateResult& result) {
  std::lock_guard lk(mu_);
  const std::size_t needed = std::min(opt_.min_clients, round_.selected.size());
  if (result.included.size() < std::max<std::size_t>(1, needed))
    return make_error(
        ErrorCode::unavailable,
        fmt::format("table statistics: the secure sum holds {} sites, {} needed (--min-clients)",
                    result.included.size(), needed));
  if (Status s = table_->set_secure_sum(result.decoded.weighted_sum, statistics_limb_bits_); !s)
    return make_error(ErrorCode::aborted, "table statistics: the secure sum: " + s.message());
  statistics_received_ = result.included.size();
  // Settled here, so close_round finds no one late (settle() queues no update events for it).
  std::set<std::string> included;
  for (auto i : result.included) included.insert(round_.secure->ids[i]);
  for (auto& [id, sel] : round_.selected)
    if (sel.stage == Stage::waiting || sel.stage == Stage::uploading)
      settle(id, included.count(id) ? Stage::accepted : Stage::dropped, "");
  return {};
}

// A regression's weights move on the scale of its target: the outlier screen's first bound
// (before it has seen honest updates) follows the label's global mean and spread.
void Orchestrator::scale_screen() {
  double scale = 1.0;
  {
    std::lock_guard lk(mu_);
    const auto& total = table_->statistics();
    if (table_->task() != TaskType::regression || !total || !(total->label.count > 0)) return;
    const double mean = total->label.sum / total->label.count;
    const double var = std::max(0.0, total->label.sum_sq / total->label.count - mean * mean);
    scale = std::abs(mean) + std::sqrt(var);
  }
  if (!std::isfinite(scale)) return;
  worker_.call([&] { screen_.set_output_scale(scale); });
}

// A CSV evaluation set is read through the federation's schema and standardised like the sites'.
Status Orchestrator::prepare_evaluator() {
  if (!evaluator_ || evaluator_->table_spec.empty()) return {};
  std::optional<Schema> schema;
  std::optional<Standardization> z;
  {
    std::lock_guard lk(mu_);
    schema = table_->schema();
    z = table_->standardization();
  }
  auto source = parse_csv_spec(evaluator_->table_spec);
  if (!source)
    return make_error(ErrorCode::invalid_argument, "--eval-data: " + source.error().message);
  auto data = load_csv(*source, *schema, CsvLoadOptions{.impute = true});
  if (!data)
    return make_error(ErrorCode::failed_precondition, "--eval-data: " + data.error().message);
  if (z) {
    if (Status s = standardize(*data, *schema, *z); !s)
      return make_error(ErrorCode::failed_precondition, "--eval-data: " + s.message());
  }
  spdlog::info("centralised evaluation on {} through the federation's schema ({} examples)",
               source->path, data->rows);
  evaluator_->data = std::move(*data);
  return {};
}

}  // namespace federa
