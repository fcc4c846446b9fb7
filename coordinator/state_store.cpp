#include "coordinator/state_store.hpp"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <vector>

#include <boost/json.hpp>

#include "common/fsutil.hpp"
#include "common/safetensors.hpp"

namespace federa {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

std::string round_file(const char* stem, std::uint64_t round) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s-%06llu.safetensors", stem, static_cast<unsigned long long>(round));
  return buf;
}

Model strategy_tensors(const StrategyState& s) {
  std::vector<TensorSpec> specs;
  for (const auto& [name, v] : s.tensors) specs.push_back({name, {v.size()}});
  Model m{ModelLayout(std::move(specs))};
  std::size_t i = 0;
  for (const auto& [name, v] : s.tensors) {
    std::copy(v.begin(), v.end(), m.tensor(i).begin());
    ++i;
  }
  return m;
}

// Which round a metrics line is for; 0 when the line is not one of ours.
std::uint64_t line_round(const std::string& line) {
  boost::system::error_code ec;
  auto v = json::parse(line, ec);
  if (ec || !v.is_object()) return 0;
  auto r = v.as_object().if_contains("round");
  if (!r) return 0;
  if (r->is_uint64()) return r->as_uint64();
  if (r->is_int64() && r->as_int64() > 0) return static_cast<std::uint64_t>(r->as_int64());
  return 0;
}

}  // namespace

Result<std::optional<CommittedState>> StateStore::load() const {
  auto state_path = dir_ / "state.json";
  std::error_code fec;
  if (!fs::exists(state_path, fec)) return std::optional<CommittedState>{};
  auto text = read_file(state_path);
  if (!text) return text.error();
  boost::system::error_code ec;
  auto v = json::parse(*text, ec);
  if (ec || !v.is_object()) return make_error(state_path.string() + " is not a valid state file");
  const auto& o = v.as_object();
  try {
    CommittedState s;
    s.round = json::value_to<std::uint64_t>(o.at("round"));
    s.metrics_line = json::value_to<std::string>(o.at("metrics"));
    s.model_spec = json::value_to<std::string>(o.at("model_spec"));
    auto model = load_safetensors(dir_ / json::value_to<std::string>(o.at("model_file")));
    if (!model) return model.error();
    s.model = std::move(model->model);
    auto strat = load_safetensors(dir_ / json::value_to<std::string>(o.at("strategy_file")));
    if (!strat) return strat.error();
    for (std::size_t i = 0; i < strat->model.layout.tensors().size(); ++i) {
      auto t = strat->model.tensor(i);
      s.strategy.tensors[strat->model.layout.tensors()[i].name] = std::vector<float>(t.begin(), t.end());
    }
    s.strategy.values = strat->metadata;
    return std::optional<CommittedState>(std::move(s));
  } catch (const std::exception& e) {
    return make_error(state_path.string() + ": missing or malformed field (" + e.what() + ")");
  }
}

Status StateStore::commit(std::uint64_t round, const Model& model, const StrategyState& strategy,
                          const std::string& metrics_line, const std::string& model_spec) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return make_error("cannot create state folder " + dir_.string() + ": " + ec.message());
  std::string model_file = round_file("model", round);
  std::string strategy_file = round_file("strategy", round);
  Metadata meta{{"federa.round", std::to_string(round)}, {"federa.model", model_spec}};
  const std::string model_bytes = encode_safetensors(model, meta);  // written twice, encoded once
  if (Status s = write_file_atomic(dir_ / model_file, model_bytes); !s) return s;
  if (Status s = save_safetensors_atomic(dir_ / strategy_file, strategy_tensors(strategy), strategy.values); !s)
    return s;
  json::object st{{"round", round},
                  {"model_file", model_file},
                  {"strategy_file", strategy_file},
                  {"model_spec", model_spec},
                  {"metrics", metrics_line}};
  if (Status s = write_file_atomic(dir_ / "state.json", json::serialize(st) + "\n"); !s) return s;
  // Committed. What follows is housekeeping; a crash here leaves only stale files behind.
  if (Status s = write_file_atomic(dir_ / "global.safetensors", model_bytes); !s) return s;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    auto name = entry.path().filename().string();
    bool ours = name.rfind("model-", 0) == 0 || name.rfind("strategy-", 0) == 0;
    if (ours && name != model_file && name != strategy_file) fs::remove(entry.path(), ec);
  }
  return {};
}

Status MetricsLog::open(const fs::path& path, std::uint64_t committed_round, const std::string& committed_line) {
  path_ = path;
  if (path.empty()) return {};
  std::error_code ec;
  if (path.has_parent_path()) fs::create_directories(path.parent_path(), ec);
  std::vector<std::string> keep;
  bool have_committed = false;
  if (fs::exists(path, ec)) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      std::uint64_t r = line_round(line);
      if (r == 0 || r > committed_round) continue;
      if (r == committed_round) have_committed = true;
      keep.push_back(line);
    }
  }
  if (committed_round > 0 && !have_committed && !committed_line.empty()) keep.push_back(committed_line);
  std::string all;
  for (const auto& l : keep) all += l + "\n";
  return write_file_atomic(path, all);
}

Status MetricsLog::append(const std::string& line) {
  if (path_.empty()) return {};
  std::ofstream out(path_, std::ios::app);
  out << line << "\n";
  out.flush();
  if (!out) return make_error("cannot append to " + path_.string());
  return {};
}

}  // namespace federa
