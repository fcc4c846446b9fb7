#include "coordinator/round_log.hpp"

#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>

namespace federa {

Status MetricsWriter::open(const std::filesystem::path& path, std::uint64_t committed_round,
                           const std::string& committed_line, MetricsStart start) {
  return log_.open(path, committed_round, committed_line, start);
}

void MetricsWriter::on_round_committed(const RoundReport& report) {
  Status s = log_.append(report.metrics_line);
  if (s) return;
  spdlog::error("--metrics-out: {}", s.message());
  std::lock_guard lk(mu_);
  if (status_) status_ = s;
}

Status MetricsWriter::status() const {
  std::lock_guard lk(mu_);
  return status_;
}

void ConsolePrinter::on_round_committed(const RoundReport& r) {
  double loss = r.loss.value_or(NAN);
  std::string accuracy = r.accuracy ? fmt::format("{:.4f}", *r.accuracy) : std::string("  n/a ");
  std::string fed;  // federated evaluation, when this round had one
  if (r.evaluation && r.evaluation->accuracy)
    fed = fmt::format("  fed accuracy {:.4f} ({} clients)", *r.evaluation->accuracy,
                      r.evaluation->clients);
  std::printf("round %3llu/%llu  clients %3zu  loss %.4f  accuracy %s%s  %6.2f s\n",
              static_cast<unsigned long long>(r.round), static_cast<unsigned long long>(total_),
              r.accepted, loss, accuracy.c_str(), fed.c_str(), r.duration_ms / 1000.0);
  std::fflush(stdout);
}

}  // namespace federa
