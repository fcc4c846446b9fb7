// Federated evaluation. After a round's aggregate (and the centralised evaluation, if any) the new
// global model goes, in an EvaluateTask and its chunks, to a share of the clients that said they
// evaluate; each answers with an EvaluateResult (its held-out loss, accuracy and other figures).
// The answers are combined (coordinator/evaluation.hpp) and join the round's report before it is
// committed, so the metrics line of a round holds the evaluation of that round's model. A failed
// or thin evaluation never fails the round: its figures are then missing.
//
// --evaluate-only evaluates the starting model once (retried like a round) and trains nothing;
// --keep-best keeps the committed model with the best value of a metrics key as
// STATE_DIR/best.safetensors (its round and value in the file's metadata).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "common/safetensors.hpp"
#include "common/seeds.hpp"
#include "coordinator/orchestrator.hpp"
#include "coordinator/orchestrator_internal.hpp"

namespace federa {

namespace {

constexpr std::uint64_t kEvaluateSalt = 0x6576616c;  // "eval": a draw apart from the fit cohort's
constexpr std::size_t kMaxMetrics = 64;
constexpr double kMaxExamples = 9007199254740992.0;  // 2^53: still exact as a weight

bool plain_key(const std::string& k) {
  return !k.empty() && k.size() <= 64 && std::all_of(k.begin(), k.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

// Why an answer cannot count, or "" when it can. Never quotes the values (a private client's
// reasons reach the log too).
std::string check_answer(const wire::EvaluateResult& r) {
  if (double(r.num_examples()) > kMaxExamples) return "num_examples is absurd";
  if (r.num_examples() == 0) return "";
  if (!std::isfinite(r.loss())) return "loss is not finite";
  if (r.has_accuracy() && !(r.accuracy() >= 0 && r.accuracy() <= 1))
    return "accuracy is not a fraction in [0, 1]";
  return "";
}

std::string seconds(std::chrono::milliseconds ms) {
  return fmt::format("{:g} s", double(ms.count()) / 1000.0);
}

std::string figure(const std::optional<double>& v) {
  return v ? fmt::format("{:.4f}", *v) : std::string("n/a");
}

}  // namespace

std::optional<FederatedEvaluation> Orchestrator::evaluate_if_due(std::uint64_t round) {
  const std::uint64_t every = opt_.evaluation.every;
  if (every == 0 || (round % every != 0 && round != opt_.rounds)) return std::nullopt;
  auto fed = evaluate_federated(round, 1);
  if (fed) return std::move(*fed);
  if (fed.error().code == ErrorCode::failed_precondition) {
    if (!told_no_evaluators_)
      spdlog::info(
          "round {}: {}; no federated evaluation (a built-in client evaluates with "
          "--test-fraction)",
          round, fed.error().message);
    told_no_evaluators_ = true;
  } else if (fed.error().code != ErrorCode::cancelled) {
    spdlog::warn("round {}: no federated evaluation: {}", round, fed.error().message);
  }
  return std::nullopt;
}

Result<FederatedEvaluation> Orchestrator::evaluate_federated(std::uint64_t round,
                                                             std::uint32_t attempt) {
  const auto timeout =
      opt_.evaluation.timeout.count() > 0 ? opt_.evaluation.timeout : opt_.round_timeout;
  const auto deadline = Clock::now() + timeout;
  {
    FlushOnExit flush(events_);
    std::lock_guard lk(mu_);
    if (stopping_) return make_error(ErrorCode::cancelled, "stopped");
    if (Status s = open_evaluation(round, attempt, deadline); !s) return s.error();
  }
  FederatedEvaluation fed;
  {
    std::unique_lock lk(mu_);
    while (!stopping_ && !evaluation_->pending.empty())
      if (cv_.wait_until(lk, deadline) == std::cv_status::timeout && Clock::now() >= deadline)
        break;
    if (!evaluation_->pending.empty() && !stopping_)
      spdlog::warn("round {}: {} client(s) missed the {} evaluation deadline", round,
                   evaluation_->pending.size(), seconds(timeout));
    for (const auto& id : evaluation_->pending)
      evaluation_->answers[id].reason = "missed the " + seconds(timeout) + " evaluation deadline";
    fed = close_evaluation();
    if (stopping_) return make_error(ErrorCode::cancelled, "stopped");
  }
  spdlog::info("round {}: federated evaluation on {} of {} clients: loss {}, accuracy {}", round,
               fed.clients, fed.selected, figure(fed.loss), figure(fed.accuracy));
  return fed;
}

Status Orchestrator::open_evaluation(std::uint64_t round, std::uint32_t attempt,
                                     Clock::time_point deadline) {
  std::vector<std::string> cohort;
  for (const auto& [id, c] : clients_)
    if (c.ready && c.evaluates) cohort.push_back(id);
  const std::size_t need = opt_.evaluation.min_clients;
  if (cohort.empty())
    return make_error(ErrorCode::failed_precondition, "no connected client evaluates");
  if (cohort.size() < need)
    return make_error(ErrorCode::unavailable,
                      "only " + std::to_string(cohort.size()) +
                          " connected client(s) evaluate, --min-evaluate-clients is " +
                          std::to_string(need));
  std::size_t want =
      std::max(need, std::size_t(std::ceil(opt_.evaluation.fraction * double(cohort.size()))));
  std::mt19937_64 rng(mix_seeds(mix_seeds(opt_.seed, round), kEvaluateSalt + attempt));
  std::shuffle(cohort.begin(), cohort.end(), rng);
  cohort.resize(std::min(want, cohort.size()));
  std::sort(cohort.begin(), cohort.end());

  evaluation_.emplace();
  evaluation_->round = round;
  evaluation_->attempt = attempt;
  wire::Envelope task;
  auto* t = task.mutable_evaluate_task();
  t->set_round(round);
  t->set_attempt(attempt);
  t->set_model_version(completed_);
  TrainConfig cfg = opt_.train;
  fill_table_config(cfg);  // a table site reads its held-out rows through the schema
  *t->mutable_config() = to_wire(cfg);
  describe_model(*t, global_, opt_.chunk_elements);
  const auto broadcast = model_broadcast(round, task);
  for (const auto& id : cohort) {
    evaluation_->answers[id] = ClientEvaluation{id, UpdateOutcome::dropped, "no answer"};
    evaluation_->pending.insert(id);
    clients_[id].link->send_stream(broadcast->reader());
  }
  const auto wall_deadline =
      std::chrono::system_clock::now() +
      std::chrono::duration_cast<std::chrono::system_clock::duration>(deadline - Clock::now());
  events_.queue(RoundStarted{round, attempt, TaskKind::evaluate, cohort, ready_count(), false,
                             wall_deadline});
  spdlog::info("round {}: evaluating on {} of {} clients", round, cohort.size(), ready_count());
  return {};
}

FederatedEvaluation Orchestrator::close_evaluation() {
  EvaluationRound e = std::move(*evaluation_);
  evaluation_.reset();
  std::vector<ClientEvaluation> answers;
  answers.reserve(e.answers.size());
  for (auto& [id, a] : e.answers) answers.push_back(std::move(a));
  const std::size_t selected = answers.size();
  return combine_evaluations(e.round, selected, std::move(answers), opt_.evaluation.min_clients);
}

Status Orchestrator::handle_evaluate_result(Client& c, const wire::EvaluateResult& r) {
  const std::string& id = c.link->id();
  if (!evaluation_ || r.round() != evaluation_->round) {
    spdlog::debug(
        "client '{}': evaluation result for round {} after its evaluation closed; ignored", id,
        r.round());
    return {};
  }
  auto it = evaluation_->answers.find(id);
  if (it == evaluation_->answers.end())
    return make_error(ErrorCode::failed_precondition,
                      "evaluation result from a client not asked to evaluate");
  if (evaluation_->pending.erase(id) == 0)
    return make_error(ErrorCode::invalid_argument,
                      "second evaluation result in round " + std::to_string(r.round()));
  ClientEvaluation& a = it->second;
  a.keep_private = r.private_();
  if (std::string why = check_answer(r); !why.empty()) {
    a.outcome = UpdateOutcome::rejected;
    a.reason = why;
    spdlog::warn("client '{}': evaluation result left out: {}", id, why);
    cv_.notify_all();
    return {};
  }
  a.outcome = UpdateOutcome::accepted;
  a.reason.clear();
  a.num_examples = r.num_examples();
  if (a.num_examples > 0) {
    a.loss = r.loss();
    if (r.has_accuracy()) a.accuracy = r.accuracy();
    for (const auto& [k, v] : r.metrics())
      if (a.metrics.size() < kMaxMetrics && plain_key(k) && std::isfinite(v)) a.metrics[k] = v;
  }
  if (a.keep_private)
    spdlog::debug("client '{}': evaluated (private)", id);
  else
    spdlog::debug("client '{}': evaluated on {} examples: loss {}, accuracy {}", id, a.num_examples,
                  figure(a.loss), figure(a.accuracy));
  cv_.notify_all();
  return {};
}

void Orchestrator::drop_evaluation(const std::string& id, const std::string& why) {
  if (!evaluation_ || evaluation_->pending.erase(id) == 0) return;
  ClientEvaluation& a = evaluation_->answers[id];
  a.outcome = UpdateOutcome::dropped;
  a.reason = why;
  cv_.notify_all();
}

void Orchestrator::attach_evaluation(RoundReport& report,
                                     std::optional<FederatedEvaluation> evaluation) const {
  if (!evaluation) return;
  report.evaluation = std::move(evaluation);
  report.metrics_line = format_metrics_line(report);
}

// ---------------------------------------------------------------------------------------------
// --evaluate-only

Status Orchestrator::wait_for_evaluators() {
  std::unique_lock lk(mu_);
  const std::size_t needed = std::max<std::size_t>(1, opt_.evaluation.min_clients);
  auto evaluators = [&] {
    return std::size_t(std::count_if(clients_.begin(), clients_.end(), [](const auto& kv) {
      return kv.second.ready && kv.second.evaluates;
    }));
  };
  auto last_note = Clock::now();
  while (!stopping_ && (paused_ || evaluators() < needed)) {
    cv_.wait_for(lk, std::chrono::seconds(1));
    if (Clock::now() - last_note > std::chrono::seconds(10)) {
      spdlog::info("evaluation: waiting for clients that evaluate ({} of {} needed connected)",
                   evaluators(), needed);
      last_note = Clock::now();
    }
  }
  if (stopping_) return make_error(ErrorCode::cancelled, "stopped");
  return {};
}

Status Orchestrator::run_evaluate_only() {
  const std::uint64_t round = completed_rounds();
  Status result;
  for (std::uint32_t attempt = 1;; ++attempt) {
    if (Status s = wait_for_evaluators(); !s) {
      result = s;
      break;
    }
    const auto started = Clock::now();
    auto fed = evaluate_federated(round, attempt);
    if (fed && fed->loss) {
      RoundReport report;
      report.round = round;
      report.attempt = attempt;
      report.duration_ms =
          std::chrono::duration<double, std::milli>(Clock::now() - started).count();
      report.strategy = "evaluate-only";
      attach_evaluation(report, std::move(*fed));
      events_.queue(std::move(report));
      events_.flush();
      break;
    }
    Error why =
        fed ? Error{ErrorCode::unavailable,
                    fed->clients >= opt_.evaluation.min_clients
                        ? std::string("the only answer asked for privacy, and a mean of "
                                      "one is its value")
                        : std::to_string(fed->clients) + " of " + std::to_string(fed->selected) +
                              " clients answered with held-out data, " +
                              std::to_string(opt_.evaluation.min_clients) +
                              " needed (--min-evaluate-clients)"}
            : fed.error();
    if (why.code == ErrorCode::cancelled) {
      result = why;
      break;
    }
    const bool retry = attempt <= std::uint32_t(std::max(0, opt_.round_retries));
    const std::size_t selected = fed ? fed->selected : 0, answered = fed ? fed->clients : 0;
    events_.queue(
        RoundFailed{round, attempt, why, retry, selected, answered, 0, selected - answered});
    events_.flush();
    if (!retry) {
      result = make_error(
          why.code, "the evaluation failed " + std::to_string(attempt) + " times: " + why.message);
      break;
    }
    spdlog::warn("evaluation: {}; retrying ({} of {})", why.message, attempt, opt_.round_retries);
  }
  if (result) say_goodbye();
  events_.queue(result);
  events_.flush();
  return result;
}

// ---------------------------------------------------------------------------------------------
// --keep-best

void Orchestrator::prepare_best() {
  if (opt_.evaluation.keep_best.empty() || !store_) return;
  auto rule = parse_keep_best(opt_.evaluation.keep_best);
  if (!rule) return;  // the command line checked it
  const auto path = store_->dir() / "best.safetensors";
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    auto file = load_safetensors(path);
    const Metadata empty;
    const Metadata& meta = file ? file->metadata : empty;
    auto metric = meta.find("federa.best_metric");
    auto value = meta.find("federa.best_value");
    if (metric != meta.end() && value != meta.end() && metric->second == rule->key) {
      try {
        best_value_ = std::stod(value->second);
      } catch (const std::exception&) {
        spdlog::warn("{}: unreadable federa.best_value; the next round's model replaces it",
                     path.string());
      }
    }
  }
  // The run before may have died between a commit and its copy: the last commit can be better.
  std::uint64_t round;
  std::string line;
  {
    std::lock_guard lk(mu_);
    round = completed_;
    line = last_metrics_line_;
  }
  if (round > 0) keep_best(round, RoundReport{.round = round, .metrics_line = line});
}

void Orchestrator::keep_best(std::uint64_t round, const RoundReport& report) {
  if (opt_.evaluation.keep_best.empty() || !store_) return;
  auto rule = parse_keep_best(opt_.evaluation.keep_best);
  if (!rule) return;
  auto value = metrics_line_value(report.metrics_line, rule->key);
  if (!value || !rule->better(*value, best_value_)) return;
  const Metadata meta{{"federa.round", std::to_string(round)},
                      {"federa.model", opt_.train.model},
                      {"federa.best_metric", rule->key},
                      {"federa.best_value", fmt::format("{}", *value)}};
  if (Status s = save_safetensors_atomic(store_->dir() / "best.safetensors", global_, meta); !s) {
    spdlog::error("--keep-best: cannot write best.safetensors: {}", s.message());
    return;
  }
  best_value_ = *value;
  spdlog::info("round {}: best {} so far ({}); kept in {}", round, rule->key, *value,
               (store_->dir() / "best.safetensors").string());
}

}  // namespace federa
