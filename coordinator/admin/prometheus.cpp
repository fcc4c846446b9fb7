// /metrics in the Prometheus text exposition format (version 0.0.4): the federation's figures
// from AdminState, the listener's own, and the process's (resident memory, CPU, open files) read
// from /proc/self as the Prometheus client libraries name them.
#include <dirent.h>
#include <fmt/format.h>
#include <unistd.h>

#include <array>
#include <boost/json.hpp>
#include <cmath>
#include <ctime>
#include <fstream>
#include <sstream>
#include <vector>

#include "coordinator/admin/admin_state.hpp"

namespace federa::admin {

namespace json = boost::json;

namespace {

constexpr std::array<double, 12> kBuckets{0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};

std::string num(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

// Label values escape backslash, double quote and newline.
std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

class Writer {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void sample(std::string_view name, double v, std::string_view labels = {}) {
    out_ += labels.empty() ? fmt::format("{} {}\n", name, num(v))
                           : fmt::format("{}{{{}}} {}\n", name, labels, num(v));
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

struct ProcessFacts {
  double rss = 0, vsize = 0, cpu = 0, start = 0, fds = 0;
  bool ok = false;
};

// /proc/self/stat fields 14-15 (utime, stime), 22 (starttime), 23 (vsize), 24 (rss pages).
ProcessFacts read_process() {
  ProcessFacts p;
  std::ifstream in("/proc/self/stat");
  std::string all((std::istreambuf_iterator<char>(in)), {});
  const auto close = all.rfind(')');
  if (close == std::string::npos) return p;
  std::istringstream rest(all.substr(close + 2));
  std::vector<std::string> f;
  for (std::string x; rest >> x;) f.push_back(x);
  if (f.size() < 22) return p;  // f[0] is field 3 (state)
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  p.cpu = (std::stod(f[11]) + std::stod(f[12])) / tick;
  p.vsize = std::stod(f[20]);
  p.rss = std::stod(f[21]) * page;
  std::ifstream up("/proc/uptime");
  double uptime = 0;
  up >> uptime;
  const double boot = static_cast<double>(std::time(nullptr)) - uptime;
  p.start = boot + std::stod(f[19]) / tick;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d) != nullptr) p.fds += 1;
    closedir(d);
    p.fds -= 2;  // . and ..
  }
  p.ok = true;
  return p;
}

// The process_* families Prometheus' client libraries export, from /proc/self.
void write_process_facts(Writer& w) {
  if (ProcessFacts p = read_process(); p.ok) {
    w.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    w.sample("process_resident_memory_bytes", p.rss);
    w.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    w.sample("process_virtual_memory_bytes", p.vsize);
    w.family("process_cpu_seconds_total", "counter", "User and system CPU time in seconds.");
    w.sample("process_cpu_seconds_total", p.cpu);
    w.family("process_start_time_seconds", "gauge",
             "Start time of the process since the Unix epoch in seconds.");
    w.sample("process_start_time_seconds", p.start);
    w.family("process_open_fds", "gauge", "Open file descriptors.");
    w.sample("process_open_fds", p.fds);
  }
}

}  // namespace

std::string AdminState::prometheus(const LiveFacts& f) const {
  Writer w;
  std::lock_guard lk(mu_);
  w.family("federa_rounds_completed", "gauge",
           "Rounds committed in this federation (the last committed round).");
  w.sample("federa_rounds_completed", static_cast<double>(f.completed));
  w.family("federa_rounds_planned", "gauge", "Rounds the job runs (--rounds).");
  w.sample("federa_rounds_planned", static_cast<double>(settings_.total_rounds));
  w.family("federa_round_current", "gauge", "The round in progress, 0 between rounds.");
  w.sample("federa_round_current", current_.open ? static_cast<double>(current_.round) : 0);
  w.family("federa_round_deadline_timestamp_seconds", "gauge",
           "Deadline of the round in progress (Unix time), 0 between rounds.");
  w.sample("federa_round_deadline_timestamp_seconds",
           current_.open
               ? std::chrono::duration<double>(current_.deadline.time_since_epoch()).count()
               : 0);
  w.family("federa_round_attempts_failed_total", "counter",
           "Round attempts that did not commit, since start.");
  w.sample("federa_round_attempts_failed_total", static_cast<double>(rounds_failed_));
  w.family("federa_round_duration_seconds", "histogram",
           "Committed rounds' duration, from selection to commit, since start.");
  for (std::size_t i = 0; i < kBuckets.size(); ++i)
    w.sample("federa_round_duration_seconds_bucket", static_cast<double>(duration_buckets_[i]),
             fmt::format("le=\"{}\"", num(kBuckets[i])));
  w.sample("federa_round_duration_seconds_bucket", static_cast<double>(rounds_committed_here_),
           "le=\"+Inf\"");
  w.sample("federa_round_duration_seconds_sum", duration_sum_);
  w.sample("federa_round_duration_seconds_count", static_cast<double>(rounds_committed_here_));
  w.family("federa_round_phase_seconds", "summary",
           "Time per round phase since start: collect (task sent to the last update's outcome), "
           "secagg (the same for "
           "SecAgg+ rounds: key exchange, masked inputs, unmasking), aggregate (aggregation, "
           "evaluation and commit).");
  for (const auto& [phase, t] : phases_) {
    w.sample("federa_round_phase_seconds_sum", t.seconds, fmt::format("phase=\"{}\"", phase));
    w.sample("federa_round_phase_seconds_count", static_cast<double>(t.count),
             fmt::format("phase=\"{}\"", phase));
  }
  if (!rounds_.empty()) {
    const json::object& last = rounds_.rbegin()->second.metrics;
    for (const char* key : {"loss", "accuracy", "train_loss", "fed_loss", "fed_accuracy"}) {
      const auto* v = last.if_contains(key);
      if (v == nullptr || !v->is_number()) continue;
      const std::string name = fmt::format("federa_last_round_{}", key);
      w.family(name, "gauge",
               fmt::format("The {} of the last committed round (its metrics line).", key));
      w.sample(name, v->to_number<double>());
    }
  }
  w.family("federa_clients_connected", "gauge", "Clients connected and past Hello.");
  w.sample("federa_clients_connected", static_cast<double>(f.connected));
  w.family("federa_members", "gauge", "Names on the member list (0: any client the CA signed).");
  w.sample("federa_members", static_cast<double>(f.members.size()));
  w.family("federa_client_events_total", "counter",
           "Client joins, leaves and refused connections since start.");
  w.sample("federa_client_events_total", static_cast<double>(joins_), "event=\"joined\"");
  w.sample("federa_client_events_total", static_cast<double>(leaves_), "event=\"left\"");
  w.sample("federa_client_events_total", static_cast<double>(refused_), "event=\"refused\"");
  w.family("federa_updates_total", "counter",
           "Selected clients' updates by outcome and reason class, since start.");
  for (const auto& [key, n] : updates_)
    w.sample("federa_updates_total", static_cast<double>(n),
             fmt::format("outcome=\"{}\",reason=\"{}\"", label(key.first), label(key.second)));
  w.family("federa_received_bytes_total", "counter",
           "Bytes of protocol messages received from clients since start.");
  w.sample("federa_received_bytes_total", static_cast<double>(f.bytes_received));
  w.family("federa_paused", "gauge", "1 while the job is paused.");
  w.sample("federa_paused", f.paused ? 1 : 0);
  w.family("federa_admin_event_subscribers", "gauge", "Open /api/v1/events streams.");
  w.sample("federa_admin_event_subscribers", static_cast<double>(f.sse_subscribers));
  w.family("federa_admin_connections", "gauge", "Open connections to the admin listener.");
  w.sample("federa_admin_connections", static_cast<double>(f.admin_connections));
  w.family("federa_admin_responses_total", "counter",
           "Admin listener responses by HTTP status since start.");
  for (const auto& [code, n] : f.admin_responses)
    w.sample("federa_admin_responses_total", static_cast<double>(n),
             fmt::format("code=\"{}\"", code));
  write_process_facts(w);
  return w.take();
}

}  // namespace federa::admin
