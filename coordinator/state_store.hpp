// Durable federation state: after each round the global model, the strategy's state and the
// round's metrics are committed so that a coordinator killed at any instant and restarted with
// --resume continues from the last committed round, with no round lost or counted twice.
//
//   StateStore store(state_dir);
//   Result<std::optional<CommittedState>> s = store.load();       // on --resume
//   Status ok = store.commit(round, global, strategy->save_state(), metrics_json_line);
//   MetricsLog log;  log.open(metrics_path, last committed round, its line);  log.append(line);
//
// Commit protocol: model-ROUND.safetensors and strategy-ROUND.safetensors are written (temp,
// fsync, rename), then state.json naming them is replaced atomically: that rename is the commit
// point. Older round files are removed afterwards; global.safetensors is a convenience copy.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "common/model.hpp"
#include "common/result.hpp"
#include "coordinator/strategy.hpp"

namespace federa {

struct CommittedState {
  std::uint64_t round = 0;           // last completed round
  Model model;
  StrategyState strategy;
  std::string metrics_line;          // that round's metrics, as written to --metrics-out
  std::string model_spec;            // the --model the federation was started with
};

class StateStore {
 public:
  explicit StateStore(std::filesystem::path dir) : dir_(std::move(dir)) {}
  const std::filesystem::path& dir() const { return dir_; }
  // nullopt when the folder holds no committed state yet.
  Result<std::optional<CommittedState>> load() const;
  Status commit(std::uint64_t round, const Model& model, const StrategyState& strategy,
                const std::string& metrics_line, const std::string& model_spec);

 private:
  std::filesystem::path dir_;
};

// --metrics-out: JSON lines, one per committed round.
class MetricsLog {
 public:
  // Opens `path` for appending. When resuming, lines for rounds after `committed_round` are
  // dropped (they were written by a run that died before committing them) and the committed
  // round's line is restored if the file lacks it (the run died between commit and append).
  Status open(const std::filesystem::path& path, std::uint64_t committed_round,
              const std::string& committed_line);
  Status append(const std::string& line);
  bool enabled() const { return !path_.empty(); }

 private:
  std::filesystem::path path_;
};

}  // namespace federa
