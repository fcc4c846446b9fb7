// Durable federation state: after each round the global model, the strategy's state and the
// round's metrics are committed so that a coordinator killed at any instant and restarted with
// --resume continues from the last committed round, with no round lost or counted twice.
//
//   StateStore store(state_dir, /*keep_models=*/5);
//   if (Status s = store.check_usable(); !s) fail(s);             // at start, before round 1
//   Result<std::optional<CommittedState>> s = store.load();       // on --resume
//   Status ok = store.commit(round, global, strategy->save_state(), metrics_json_line, spec);
//   MetricsLog log;  log.open(metrics_path, last committed round, its line, resume);
//   log.append(line);
//
// Commit protocol: model-ROUND.safetensors and strategy-ROUND.safetensors are written (temp,
// fsync, rename), then state.json naming them is replaced atomically: that rename is the commit
// point. Older round files are removed afterwards; global.safetensors is a convenience copy and
// history/global-round-N.safetensors keeps the last `keep_models` committed models (oldest
// pruned first) for the operators' API. Every file is created 0600 through an unpredictable
// temp name (common/fsutil.hpp); names read back from state.json must be plain round files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/fsutil.hpp"
#include "common/model.hpp"
#include "common/result.hpp"
#include "coordinator/strategy.hpp"

namespace federa {

struct CommittedState {
  std::uint64_t round = 0;  // last completed round
  Model model;
  StrategyState strategy;
  std::string metrics_line;          // that round's metrics, as written to --metrics-out
  std::string model_spec;            // the --model the federation was started with
  std::vector<double> update_norms;  // the outlier screen's recent accepted change norms
  // A tabular federation's fixed schema and statistics (FederationTable::to_json); empty when
  // the federation has no table. A resumed federation keeps its class list and figures.
  std::string table;
};

class StateStore {
 public:
  explicit StateStore(std::filesystem::path dir, std::size_t keep_models = 5)
      : dir_(std::move(dir)), keep_models_(keep_models) {}
  const std::filesystem::path& dir() const { return dir_; }
  // Creates the folder if needed and proves a file can be written, synced and removed there, so
  // an unusable --state-dir is found before round 1 trains, not after.
  Status check_usable() const;
  // nullopt when the folder holds no committed state yet.
  Result<std::optional<CommittedState>> load() const;
  Status commit(std::uint64_t round, const Model& model, const StrategyState& strategy,
                const std::string& metrics_line, const std::string& model_spec,
                const std::vector<double>& update_norms = {}, const std::string& table = {});
  // The kept history: committed rounds whose model is in history/, ascending, and the file for
  // one of them.
  std::vector<std::uint64_t> history_rounds() const;
  std::filesystem::path history_model(std::uint64_t round) const;

 private:
  using Producer = std::function<Status(const ByteSink&)>;
  Status keep_history(std::uint64_t round, const std::string& model_file, const Producer& model);

  std::filesystem::path dir_;
  std::size_t keep_models_;
};

// How a run treats what --metrics-out already holds.
enum class MetricsStart {
  new_run,  // a coordinator starting a federation: a file that holds rounds is refused, never cut
  resume,   // a coordinator continuing one: reconciled with the committed round, history kept
  replace,  // a simulation: its file describes this run alone and starts empty
};

// --metrics-out: JSON lines, one per committed round.
class MetricsLog {
 public:
  // Opens `path` for appending. new_run refuses a file that already holds rounds (they belong
  // to another run; nothing is changed). resume drops lines for rounds after `committed_round`
  // (written by a run that died before committing them) and restores the committed round's line
  // if the file lacks it (the run died between commit and append); every other line stays.
  Status open(const std::filesystem::path& path, std::uint64_t committed_round,
              const std::string& committed_line, MetricsStart start = MetricsStart::replace);
  Status append(const std::string& line);
  bool enabled() const { return !path_.empty(); }

 private:
  std::filesystem::path path_;
};

}  // namespace federa
