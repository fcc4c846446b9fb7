#include "coordinator/state_store.hpp"

#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/fsutil.hpp"
#include "common/safetensors.hpp"

namespace federa {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

std::string round_file(const char* stem, std::uint64_t round) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s-%06llu.safetensors", stem,
                static_cast<unsigned long long>(round));
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

// A file name state.json may point at: "STEM-DIGITS.safetensors" and nothing else (no folder,
// no "..", nothing absolute), so a tampered state file cannot make --resume read elsewhere.
bool plain_round_file(const std::string& name, std::string_view stem) {
  const std::string_view ext = ".safetensors";
  if (name.size() <= stem.size() + 1 + ext.size() || name.compare(0, stem.size(), stem) != 0 ||
      name[stem.size()] != '-' || name.compare(name.size() - ext.size(), ext.size(), ext) != 0)
    return false;
  const auto digits =
      std::string_view(name).substr(stem.size() + 1, name.size() - stem.size() - 1 - ext.size());
  return !digits.empty() && digits.size() <= 20 &&
         std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
}

Result<std::string> round_file_field(const json::object& o, const char* key, std::string_view stem,
                                     const fs::path& state_path) {
  auto name = json::value_to<std::string>(o.at(key));
  if (!plain_round_file(name, stem))
    return make_error(ErrorCode::data_loss, state_path.string() + ": '" + key + "' is '" + name +
                                                "', not a " + std::string(stem) +
                                                "-ROUND.safetensors file in the same folder");
  return name;
}

constexpr std::string_view kHistoryPrefix = "global-round-";

// The round of history/global-round-N.safetensors, or 0.
std::uint64_t history_file_round(const std::string& name) {
  const std::string_view ext = ".safetensors";
  if (name.size() <= kHistoryPrefix.size() + ext.size() ||
      name.compare(0, kHistoryPrefix.size(), kHistoryPrefix) != 0 ||
      name.compare(name.size() - ext.size(), ext.size(), ext) != 0)
    return 0;
  const std::string digits =
      name.substr(kHistoryPrefix.size(), name.size() - kHistoryPrefix.size() - ext.size());
  if (digits.empty() || digits.size() > 19 || !std::all_of(digits.begin(), digits.end(), ::isdigit))
    return 0;
  return std::stoull(digits);
}

}  // namespace

Status StateStore::check_usable() const {
  std::error_code ec;
  if (fs::exists(dir_, ec) && !fs::is_directory(dir_, ec))
    return make_error(ErrorCode::failed_precondition,
                      dir_.string() + " exists and is not a folder");
  if (!fs::exists(dir_, ec)) {
    fs::create_directories(dir_, ec);
    if (ec)
      return make_error(ErrorCode::failed_precondition,
                        "cannot create " + dir_.string() + ": " + ec.message());
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::replace, ec);
  }
  const fs::path probe = dir_ / ".federa-write-check";
  if (Status s = write_file_atomic(probe, "federa\n"); !s)
    return make_error(ErrorCode::failed_precondition,
                      "cannot write in " + dir_.string() + ": " + s.message());
  fs::remove(probe, ec);
  if (ec)
    return make_error(ErrorCode::failed_precondition,
                      "cannot remove files in " + dir_.string() + ": " + ec.message());
  return {};
}

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
    if (auto norms = o.if_contains("update_norms"))
      s.update_norms = json::value_to<std::vector<double>>(*norms);
    if (auto table = o.if_contains("table")) {
      if (!table->is_object())
        return make_error(state_path.string() + ": 'table' is not an object");
      s.table = json::serialize(*table);
    }
    auto model_file = round_file_field(o, "model_file", "model", state_path);
    if (!model_file) return model_file.error();
    auto strategy_file = round_file_field(o, "strategy_file", "strategy", state_path);
    if (!strategy_file) return strategy_file.error();
    auto model = load_safetensors(dir_ / *model_file);
    if (!model) return model.error();
    s.model = std::move(model->model);
    auto strat = load_safetensors(dir_ / *strategy_file);
    if (!strat) return strat.error();
    for (std::size_t i = 0; i < strat->model.layout.tensors().size(); ++i) {
      auto t = strat->model.tensor(i);
      s.strategy.tensors[strat->model.layout.tensors()[i].name] =
          std::vector<float>(t.begin(), t.end());
    }
    s.strategy.values = strat->metadata;
    return std::optional<CommittedState>(std::move(s));
  } catch (const std::exception& e) {
    return make_error(state_path.string() + ": missing or malformed field (" + e.what() + ")");
  }
}

namespace {
// `target` becomes a hard link to `from` (same bytes, no copy; files here are only ever replaced
// by rename, never written in place, so sharing an inode is safe), renamed into place so it is
// never missing or torn; where links are not possible, a written copy.
Status link_or_write(const fs::path& from, const fs::path& target,
                     const std::function<Status(const ByteSink&)>& bytes) {
  fs::path tmp = target;
  tmp += ".link." + std::to_string(::getpid());
  std::error_code ec;
  fs::remove(tmp, ec);
  if (::link(from.c_str(), tmp.c_str()) != 0) return write_file_atomic(target, bytes);
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return make_error(file_error_code(err),
                      "cannot rename onto " + target.string() + ": " + std::strerror(err));
  }
  return sync_folder(target.parent_path());
}
}  // namespace

Status StateStore::commit(std::uint64_t round, const Model& model, const StrategyState& strategy,
                          const std::string& metrics_line, const std::string& model_spec,
                          const std::vector<double>& update_norms, const std::string& table) {
  json::value table_json;  // checked before anything is written
  if (!table.empty()) {
    boost::system::error_code jec;
    table_json = json::parse(table, jec);
    if (jec || !table_json.is_object())
      return make_error("the federation's table is not a JSON object");
  }
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return make_error("cannot create state folder " + dir_.string() + ": " + ec.message());
  json::array norms;
  for (double v : update_norms)
    if (std::isfinite(v)) norms.emplace_back(v);
  std::string model_file = round_file("model", round);
  std::string strategy_file = round_file("strategy", round);
  Metadata meta{{"federa.round", std::to_string(round)}, {"federa.model", model_spec}};
  // Encoded straight into the file: a model is never held twice in memory to be saved.
  const Producer model_bytes = [&](const ByteSink& sink) {
    return write_safetensors(model, meta, sink);
  };
  if (Status s = write_file_atomic(dir_ / model_file, model_bytes); !s) return s;
  if (Status s = save_safetensors_atomic(dir_ / strategy_file, strategy_tensors(strategy),
                                         strategy.values);
      !s)
    return s;
  json::object st{
      {"round", round},           {"model_file", model_file}, {"strategy_file", strategy_file},
      {"model_spec", model_spec}, {"metrics", metrics_line},  {"update_norms", std::move(norms)}};
  if (!table_json.is_null()) st["table"] = std::move(table_json);
  if (Status s = write_file_atomic(dir_ / "state.json", json::serialize(st) + "\n"); !s) return s;
  // Committed. What follows is housekeeping; a crash here leaves only stale files behind.
  if (Status s = link_or_write(dir_ / model_file, dir_ / "global.safetensors", model_bytes); !s)
    return s;
  if (Status s = keep_history(round, model_file, model_bytes); !s) return s;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    auto name = entry.path().filename().string();
    bool ours = plain_round_file(name, "model") || plain_round_file(name, "strategy");
    if (ours && name != model_file && name != strategy_file) fs::remove(entry.path(), ec);
  }
  return {};
}

fs::path StateStore::history_model(std::uint64_t round) const {
  return dir_ / "history" / (std::string(kHistoryPrefix) + std::to_string(round) + ".safetensors");
}

std::vector<std::uint64_t> StateStore::history_rounds() const {
  std::vector<std::uint64_t> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_ / "history", ec))
    if (std::uint64_t r = history_file_round(entry.path().filename().string()); r > 0)
      out.push_back(r);
  std::sort(out.begin(), out.end());
  return out;
}

// The committed model joins history/ under its round (linked, as global.safetensors is); then
// the oldest beyond keep_models_ go.
Status StateStore::keep_history(std::uint64_t round, const std::string& model_file,
                                const Producer& model) {
  if (keep_models_ == 0) return {};
  const fs::path folder = dir_ / "history";
  std::error_code ec;
  if (!fs::exists(folder, ec)) {
    fs::create_directory(folder, ec);
    if (ec)
      return make_error(ErrorCode::unavailable,
                        "cannot create " + folder.string() + ": " + ec.message());
    fs::permissions(folder, fs::perms::owner_all, fs::perm_options::replace, ec);
  }
  if (Status s = link_or_write(dir_ / model_file, history_model(round), model); !s) return s;
  auto rounds = history_rounds();
  for (std::size_t i = 0; i + keep_models_ < rounds.size(); ++i)
    fs::remove(history_model(rounds[i]), ec);
  return {};
}

Status MetricsLog::open(const fs::path& path, std::uint64_t committed_round,
                        const std::string& committed_line, MetricsStart start) {
  path_ = path;
  if (path.empty()) return {};
  std::error_code ec;
  if (path.has_parent_path()) fs::create_directories(path.parent_path(), ec);
  if (start == MetricsStart::replace) return write_file_atomic(path, "", 0644);
  const bool resume = start == MetricsStart::resume;
  std::vector<std::string> lines;
  if (fs::exists(path, ec)) {
    std::ifstream in(path);
    if (!in) return make_error(ErrorCode::failed_precondition, "cannot read " + path.string());
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) lines.push_back(line);
  }
  if (!resume) {
    if (!lines.empty())
      return make_error(ErrorCode::already_exists,
                        path.string() + " already holds " + std::to_string(lines.size()) +
                            " lines from an earlier run; pass --resume (with that run's "
                            "--state-dir) to continue it, "
                            "or choose another file. Nothing was changed");
    std::ofstream touch(path, std::ios::app);  // found unwritable now rather than after round 1
    if (!touch) return make_error(ErrorCode::failed_precondition, "cannot write " + path.string());
    return {};
  }
  std::vector<std::string> keep;
  bool have_committed = false;
  for (const auto& line : lines) {
    std::uint64_t r = line_round(line);
    if (r > committed_round) continue;  // appended by a run that died before committing it
    if (r == committed_round && r > 0) have_committed = true;
    keep.push_back(line);
  }
  if (committed_round > 0 && !have_committed && !committed_line.empty())
    keep.push_back(committed_line);
  if (keep == lines && fs::exists(path, ec)) return {};
  std::string all;
  for (const auto& l : keep) all += l + "\n";
  return write_file_atomic(path, all, 0644);
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
