// The client session's part of a tabular federation (issue 11): the join report after a Welcome
// that describes a table, and statistics tasks, in the clear or as a SecAgg+ sum of the
// statistics' fixed-point limbs (common/statistics.hpp).
#include <spdlog/spdlog.h>

#include "client/session.hpp"

namespace federa {

Status ClientSession::on_welcome(const wire::Welcome& welcome) {
  if (welcome.table().empty()) return {};
  wire::Envelope e;
  auto* report = e.mutable_table_report();
  if (!opt_.table) {
    report->set_refusal(
        "this federation trains on a table, and this client's data is not one "
        "(--data csv:FILE:label=COLUMN)");
  } else {
    TabularData::Report r = opt_.table(welcome.table());
    report->set_schema(std::move(r.schema_json));
    report->set_refusal(std::move(r.refusal));
  }
  if (!report->refusal().empty())
    log(spdlog::level::warn, "this site's table does not fit the federation: {}",
        report->refusal());
  else
    table_checked_ = true;
  link_.send(e);
  return {};
}

// The coordinator admits a table site silently: its first task says the table fit.
void ClientSession::note_table_admitted() {
  if (!table_checked_) return;
  table_checked_ = false;
  log(spdlog::level::info, "joined: this site's table fits the federation's schema");
}

Status ClientSession::on_statistics_task(const wire::StatisticsTask& t) {
  note_table_admitted();
  const bool secure = t.secure_aggregation() == "secagg+";
  if (!secure && !t.secure_aggregation().empty())
    return Error{ErrorCode::invalid_argument,
                 "statistics: unknown secure aggregation mode '" + t.secure_aggregation() + "'"};
  if (secure && (t.limb_bits() < 8 || t.limb_bits() > 16))
    return Error{ErrorCode::invalid_argument, "statistics: limb bits outside [8, 16]"};
  upload_.reset();
  if (secure_) past_secure_ = secure_->round();
  secure_.reset();
  incoming_.reset();
  auto in = std::make_unique<Incoming>();
  in->task.kind = Task::Kind::statistics;
  in->task.round = t.request();
  in->task.config = from_wire(t.config());
  in->task.limb_bits = secure ? static_cast<int>(t.limb_bits()) : 0;
  in->secure = secure;
  if (secure) secure_ = std::make_unique<SecureRound>(t.request(), kDefaultChunkElements);
  log(opt_.progress_level, "statistics request {} received{}", t.request(),
      secure ? " (secure aggregation)" : "");
  ready_ = std::move(in);
  start_next_task();
  return {};
}

void ClientSession::statistics_done(const Running& done, StatisticsOutput output, double seconds) {
  const std::uint64_t request = done.task.round;
  log(opt_.progress_level, "statistics request {}: computed in {:.2f} s", request, seconds);
  if (!done.secure) {
    wire::Envelope e;
    e.mutable_statistics_result()->set_request(request);
    e.mutable_statistics_result()->set_statistics(std::move(output.json));
    link_.send(e);
    return;
  }
  // Under secure aggregation only the masked limbs leave: the coordinator learns the sum.
  if (!secure_ || secure_->round() != request) {
    log(spdlog::level::info, "statistics request {}: the secure round is over", request);
    return;
  }
  const std::vector<float> zeros(output.limbs.size(), 0.0f);
  auto out = secure_->set_update(zeros, output.limbs, 1.0);
  if (!out) return leave_secure_round(out.error().message);
  send_secure(*out);
}

}  // namespace federa
