#include "coordinator/round_log.hpp"

#include <cmath>
#include <cstdio>

#include <spdlog/spdlog.h>

namespace federa {

Status MetricsWriter::open(const std::filesystem::path& path, std::uint64_t committed_round,
                           const std::string& committed_line) {
  return log_.open(path, committed_round, committed_line);
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
  std::printf("round %3llu/%llu  clients %3zu  loss %.4f  accuracy %s  %6.2f s\n",
              static_cast<unsigned long long>(r.round), static_cast<unsigned long long>(total_),
              r.accepted, loss, accuracy.c_str(), r.duration_ms / 1000.0);
  std::fflush(stdout);
}

}  // namespace federa
