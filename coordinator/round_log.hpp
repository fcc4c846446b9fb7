// Two observers every coordinator run uses: the --metrics-out writer (one JSON line per
// committed round, appended, reconciled with the committed state on --resume) and the human
// line per round on stdout.
//
//   MetricsWriter metrics;
//   if (Status s = metrics.open(path, committed_round, committed_line); !s) fail(s);
//   ConsolePrinter console(total_rounds);
//   orchestrator.add_observer(&metrics);
//   orchestrator.add_observer(&console);
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>

#include "coordinator/events.hpp"
#include "coordinator/state_store.hpp"

namespace federa {

class MetricsWriter : public OrchestratorObserver {
 public:
  // See MetricsLog::open. An empty path writes nothing.
  Status open(const std::filesystem::path& path, std::uint64_t committed_round,
              const std::string& committed_line, MetricsStart start = MetricsStart::replace);
  void on_round_committed(const RoundReport& report) override;
  // The first append that failed, if any (logged when it happens).
  Status status() const;

 private:
  MetricsLog log_;
  mutable std::mutex mu_;
  Status status_;
};

class ConsolePrinter : public OrchestratorObserver {
 public:
  explicit ConsolePrinter(std::uint64_t total_rounds) : total_(total_rounds) {}
  void on_round_committed(const RoundReport& report) override;

 private:
  std::uint64_t total_;
};

}  // namespace federa
