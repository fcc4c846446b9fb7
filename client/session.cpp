#include "client/session.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

namespace federa {

ClientSession::ClientSession(SessionOptions options, ServerLink& link, TaskRunner& runner)
    : opt_(std::move(options)), link_(link), runner_(runner) {}

void ClientSession::start() {
  wire::Envelope hello;
  hello.mutable_hello()->set_protocol_version(kProtocolVersion);
  hello.mutable_hello()->set_software(opt_.software);
  hello.mutable_hello()->set_num_train_examples(opt_.num_train_examples);
  hello.mutable_hello()->set_num_test_examples(opt_.num_test_examples);
  hello.mutable_hello()->set_evaluates(opt_.evaluates);
  hello.mutable_hello()->set_table(static_cast<bool>(opt_.table));
  link_.send(hello);
}

void ClientSession::on_message(const wire::Envelope& msg) {
  if (ended_) return;
  if (Status s = handle(msg); !s) {
    log(spdlog::level::warn, "{}", s.message());
    link_.send(make_error_envelope(wire::Error::BAD_MESSAGE, s.message()));
  }
}

Status ClientSession::handle(const wire::Envelope& msg) {
  switch (msg.payload_case()) {
    case wire::Envelope::kWelcome:
      // A table site is only welcomed: it joins once the coordinator finds its table fits
      // (a refusal arrives as an Error; the first task says it was admitted).
      if (msg.welcome().table().empty())
        log(spdlog::level::info, "joined federation '{}' as '{}'", msg.welcome().federation(),
            msg.welcome().client_id());
      else
        log(spdlog::level::info,
            "welcomed by federation '{}' as '{}'; its table is being checked against the "
            "federation's schema",
            msg.welcome().federation(), msg.welcome().client_id());
      return on_welcome(msg.welcome());
    case wire::Envelope::kStatisticsTask:
      return on_statistics_task(msg.statistics_task());
    case wire::Envelope::kFitTask:
      return on_fit_task(msg.fit_task());
    case wire::Envelope::kEvaluateTask:
      return on_evaluate_task(msg.evaluate_task());
    case wire::Envelope::kChunk:
      return on_chunk(msg.chunk());
    case wire::Envelope::kUploadReady:
      return on_upload_ready(msg.upload_ready());
    case wire::Envelope::kError:
      on_error(msg.error());
      return {};
    case wire::Envelope::kBye:
      on_bye(msg.bye());
      return {};
    case wire::Envelope::kSecaggSetup:
    case wire::Envelope::kSecaggKeysBroadcast:
    case wire::Envelope::kSecaggSharesForward:
    case wire::Envelope::kSecaggUnmaskRequest:
    case wire::Envelope::kSecaggAbort:
      on_secure(msg);
      return {};
    default:
      return Error{ErrorCode::invalid_argument, std::string("unexpected message '") +
                                                    payload_name(msg) + "' from the coordinator"};
  }
}

// ---------------------------------------------------------------------------------------------
// Tasks

Status ClientSession::on_fit_task(const wire::FitTask& t) {
  note_table_admitted();
  return begin_task(Task::Kind::fit, t, t.secure_aggregation());
}

Status ClientSession::on_evaluate_task(const wire::EvaluateTask& t) {
  if (!opt_.evaluates)
    return Error{ErrorCode::failed_precondition,
                 "round " + std::to_string(t.round()) +
                     ": an evaluate task for a client that said it does not evaluate"};
  return begin_task(Task::Kind::evaluate, t, "");
}

template <typename TaskMessage>
Status ClientSession::begin_task(Task::Kind kind, const TaskMessage& t,
                                 const std::string& secure_mode) {
  const std::string where = "round " + std::to_string(t.round()) + ": ";
  auto layout = from_wire(t.layout());
  if (!layout)
    return Error{ErrorCode::invalid_argument, where + "bad layout: " + layout.error().message};
  if (t.total_elements() != layout->size())
    return Error{ErrorCode::invalid_argument, where + std::string(task_kind_name(kind)) +
                                                  " task size does not match its layout"};
  if (t.carried().size() != layout->carried_bytes())
    return Error{ErrorCode::invalid_argument,
                 where + std::string(task_kind_name(kind)) + " task carries " +
                     std::to_string(t.carried().size()) + " bytes of integer tensors, its layout " +
                     std::to_string(layout->carried_bytes())};
  const bool secure = secure_mode == "secagg+";
  if (!secure && !secure_mode.empty())
    return Error{ErrorCode::invalid_argument, where + "unknown secure aggregation mode '" +
                                                  secure_mode + "' (upgrade federa-client)"};
  // A new task ends whatever the previous round still had going here.
  upload_.reset();
  if (secure_) past_secure_ = secure_->round();
  secure_.reset();
  incoming_.reset();

  auto in = std::make_unique<Incoming>();
  in->task.kind = kind;
  in->task.round = t.round();
  in->task.attempt = std::max<std::uint32_t>(1, t.attempt());
  in->task.config = from_wire(t.config());
  in->model = std::make_shared<Model>(std::move(layout.value()));
  std::copy(t.carried().begin(), t.carried().end(), in->model->carried.begin());
  in->secure = secure;
  in->chunk_elements = t.chunk_elements() ? t.chunk_elements() : kDefaultChunkElements;
  if (Status s =
          in->assembler.begin(t.round(), t.total_elements(), t.num_chunks(), t.chunk_elements(),
                              in->model->data, true, {}, in->model->layout.float_runs());
      !s)
    return Error{ErrorCode::invalid_argument, where + s.message()};
  if (secure) secure_ = std::make_unique<SecureRound>(t.round(), in->chunk_elements);
  log(opt_.progress_level, "round {}: {} task received ({} parameters{})", t.round(),
      task_kind_name(kind), t.total_elements(), secure ? ", secure aggregation" : "");
  incoming_ = std::move(in);
  if (incoming_->assembler.complete()) promote_incoming();
  return {};
}

Status ClientSession::on_chunk(const wire::TensorChunk& chunk) {
  if (!incoming_) return Error{ErrorCode::failed_precondition, "chunk without a task"};
  if (Status s = incoming_->assembler.add(chunk); !s) {
    incoming_.reset();
    return Error{ErrorCode::invalid_argument, "global model: " + s.message()};
  }
  if (incoming_->assembler.complete()) promote_incoming();
  return {};
}

void ClientSession::promote_incoming() {
  incoming_->task.model = std::move(incoming_->model);
  if (opt_.share_model) incoming_->task.model = opt_.share_model(std::move(incoming_->task.model));
  ready_ = std::move(incoming_);
  start_next_task();
}

void ClientSession::start_next_task() {
  if (running_ || !ready_ || ended_) return;
  Running r{std::move(ready_->task), ready_->secure, ready_->chunk_elements};
  ready_.reset();
  running_.emplace(std::move(r));
  runner_.run(running_->task);
}

void ClientSession::on_task_done(TaskResult result) {
  if (ended_) return;
  if (!running_ || result.round != running_->task.round || result.kind != running_->task.kind) {
    log(spdlog::level::warn, "round {}: a {} result for no running task; ignored", result.round,
        task_name(result.kind));
    return;
  }
  Running done = std::move(*running_);
  running_.reset();
  const std::uint64_t round = done.task.round;
  if (ready_ || incoming_) {
    log(spdlog::level::info, "round {}: a newer task arrived while {}; dropping this result", round,
        task_name(done.task.kind));
    start_next_task();
    return;
  }
  if (!result.output) {
    // A warning, not an error: the session goes on, and the coordinator is told why.
    log(spdlog::level::warn, "round {}: {} failed: {}", round, task_name(done.task.kind),
        result.output.error().message);
    if (done.secure && secure_ && secure_->round() == round) {
      past_secure_ = round;
      secure_.reset();
    }
    // The trainer could not produce a usable update (the coordinator counts a rejection with
    // this reason), unless it only cannot now: try later, stopped, out of time (a dropout).
    const ErrorCode code = result.output.error().code;
    const bool dropout = code == ErrorCode::unavailable || code == ErrorCode::cancelled ||
                         code == ErrorCode::deadline_exceeded;
    link_.send(make_error_envelope(
        dropout ? wire::Error::UNKNOWN : wire::Error::BAD_UPDATE,
        std::string(task_name(done.task.kind)) + " failed: " + result.output.error().message));
    return;
  }
  if (auto* fit = std::get_if<FitResult>(&result.output.value())) {
    fit_done(done, std::move(*fit), result.seconds);
  } else if (auto* eval = std::get_if<EvaluateResult>(&result.output.value())) {
    evaluate_done(done, std::move(*eval), result.seconds);
  } else if (auto* stats = std::get_if<StatisticsOutput>(&result.output.value())) {
    statistics_done(done, std::move(*stats), result.seconds);
  }
}

void ClientSession::fit_done(const Running& done, FitResult fit, double seconds) {
  const std::uint64_t round = done.task.round;
  ++fits_completed_;
  auto loss = fit.metrics.find("train_loss");
  log(opt_.progress_level, "round {}: trained in {:.2f} s{}", round, seconds,
      loss != fit.metrics.end() ? fmt::format(", train loss {:.4f}", loss->second) : std::string());
  if (fit.weights.size() != done.task.model->data.size()) {
    link_.send(make_error_envelope(wire::Error::BAD_UPDATE,
                                   "training produced " + std::to_string(fit.weights.size()) +
                                       " values for a model of " +
                                       std::to_string(done.task.model->data.size())));
    if (done.secure && secure_ && secure_->round() == round) leave_secure_round("no update");
    return;
  }
  if (!done.secure) return send_update_header(done, std::move(fit));
  // Under secure aggregation the update is the delta from the global model, quantized and
  // masked; nothing else about this round leaves the site, and never in the clear.
  if (!secure_ || secure_->round() != round) {
    log(spdlog::level::info, "round {}: the secure round is over; the update stays here", round);
    return;
  }
  auto out = secure_->set_update(done.task.model->data, fit.weights, double(fit.num_examples));
  if (!out) return leave_secure_round(out.error().message);
  send_secure(*out);
}

void ClientSession::evaluate_done(const Running& done, EvaluateResult r, double seconds) {
  ++evaluations_completed_;
  const bool keep_private = opt_.private_metrics || r.keep_private;
  if (r.num_examples == 0) {
    log(opt_.progress_level, "round {}: no held-out examples to evaluate on", done.task.round);
  } else {
    log(opt_.progress_level, "round {}: evaluated in {:.2f} s on {} examples: loss {:.4f}{}{}",
        done.task.round, seconds, r.num_examples, r.loss,
        r.accuracy ? fmt::format(", accuracy {:.4f}", *r.accuracy) : std::string(),
        keep_private ? " (private)" : "");
  }
  wire::Envelope e;
  auto* er = e.mutable_evaluate_result();
  er->set_round(done.task.round);
  er->set_num_examples(r.num_examples);
  er->set_loss(r.loss);
  if (r.accuracy) er->set_accuracy(*r.accuracy);
  for (const auto& [k, v] : r.metrics) (*er->mutable_metrics())[k] = v;
  er->set_private_(keep_private);
  link_.send(e);
}

void ClientSession::send_update_header(const Running& done, FitResult fit) {
  wire::Envelope h;
  auto* uh = h.mutable_update_header();
  uh->set_round(done.task.round);
  uh->set_num_examples(fit.num_examples);
  uh->set_layout_hash(done.task.model->layout.hash());
  for (const auto& [k, v] : fit.metrics) (*uh->mutable_metrics())[k] = v;
  uh->set_total_elements(fit.weights.size());
  uh->set_num_chunks(chunk_count(fit.weights.size(), done.chunk_elements));
  link_.send(h);
  upload_ = Upload{done.task.round,
                   {},
                   fmt::format("update sent ({} examples)", fit.num_examples),
                   std::move(fit.weights),
                   done.chunk_elements,
                   done.task.model->layout.float_runs()};
}

void ClientSession::send_secure(const std::vector<wire::Envelope>& envelopes) {
  if (envelopes.empty() || !envelopes.front().has_secagg_masked_input()) return send_all(envelopes);
  // The masked vector is as large as the model: it waits for an upload slot, as an update does.
  const std::uint64_t round = envelopes.front().secagg_masked_input().round();
  link_.send(envelopes.front());
  upload_ = Upload{round,
                   std::vector<wire::Envelope>(envelopes.begin() + 1, envelopes.end()),
                   "masked update sent",
                   {},
                   0,
                   {}};
}

Status ClientSession::on_upload_ready(const wire::UploadReady& ready) {
  if (!upload_ || upload_->round != ready.round())
    return Error{ErrorCode::failed_precondition, "upload_ready for no pending update"};
  Upload u = std::move(*upload_);
  upload_.reset();
  send_all(u.chunks);
  const std::span<const float> w(u.weights);
  // A masked upload carries its chunks ready-made (no weights, no chunk size).
  const std::uint32_t n = w.empty() ? 0 : chunk_count(w.size(), u.chunk_elements);
  for (std::uint32_t i = 0; i < n; ++i)
    link_.send(make_chunk(u.round, w, u.chunk_elements, u.runs, i));
  log(opt_.progress_level, "round {}: {}", u.round, u.what);
  return {};
}

// ---------------------------------------------------------------------------------------------
// Errors, goodbyes, secure aggregation

void ClientSession::on_error(const wire::Error& e) {
  switch (e.code()) {
    case wire::Error::NOT_A_MEMBER:
      return end(SessionEnd::Kind::refused, "the coordinator refused this client: " + e.message());
    case wire::Error::PROTOCOL_VERSION:
      return end(SessionEnd::Kind::fatal,
                 "protocol version mismatch: " + e.message() + " (upgrade federa-client)");
    case wire::Error::DATA_MISMATCH:
      return end(SessionEnd::Kind::fatal,
                 "the coordinator refused this client's data: " + e.message());
    case wire::Error::SHUTTING_DOWN:  // the coordinator restarts or stops: try again later
      return end(SessionEnd::Kind::retry, "the coordinator is shutting down: " + e.message());
    case wire::Error::WRONG_ROUND:
    case wire::Error::DUPLICATE_UPDATE:
    case wire::Error::BAD_UPDATE:
    case wire::Error::TOO_LARGE:
      upload_.reset();  // about our update: no UploadReady will come for it
      break;
    default:
      break;
  }
  log(spdlog::level::warn, "coordinator: {}", e.message());
}

void ClientSession::on_bye(const wire::Bye& bye) {
  if (bye.federation_complete()) return end(SessionEnd::Kind::complete, bye.reason());
  end(SessionEnd::Kind::retry, "coordinator said goodbye: " + bye.reason());
}

void ClientSession::on_secure(const wire::Envelope& msg) {
  const std::uint64_t round = secure_message_round(msg).value_or(0);
  const bool ours = secure_ && secure_->round() == round;
  if (msg.has_secagg_abort()) {
    if (!ours) return;
    log(spdlog::level::warn, "round {}: the coordinator abandoned secure aggregation: {}", round,
        msg.secagg_abort().reason());
    past_secure_ = round;
    secure_.reset();
    return;
  }
  if (!ours) {
    if (past_secure_ && round <= *past_secure_)
      log(spdlog::level::debug, "round {}: late secure-aggregation message ignored", round);
    else
      log(spdlog::level::warn, "round {}: {} outside a secure round; ignored", round,
          payload_name(msg));
    return;
  }
  auto out = secure_->on_message(msg);
  if (!out) return leave_secure_round(out.error().message);
  send_secure(*out);
  if (secure_->finished()) {
    log(opt_.progress_level, "round {}: secure aggregation done on this side", round);
    past_secure_ = round;
    secure_.reset();
  }
}

void ClientSession::leave_secure_round(const std::string& why) {
  if (!secure_) return;
  const std::uint64_t round = secure_->round();
  log(spdlog::level::warn, "round {}: secure aggregation: {}; leaving this round", round, why);
  past_secure_ = round;
  secure_.reset();
  link_.send(make_error_envelope(wire::Error::UNKNOWN, "secure aggregation: " + why));
}

void ClientSession::send_all(const std::vector<wire::Envelope>& envelopes) {
  for (const auto& e : envelopes) link_.send(e);
}

void ClientSession::end(SessionEnd::Kind kind, std::string reason) {
  if (ended_) return;
  ended_ = true;
  link_.close(SessionEnd{kind, std::move(reason)});
}

}  // namespace federa
