// federa-bench load: N members against one real federa-coordinator process, from one process.
// Each member is a mutual-TLS WebSocket client with its own certificate (bench_load_client.cpp);
// all of them share one io_context served by a few threads. They upload a fixed update every
// round (no training), so what is measured is the coordinator: connections, broadcast, ingest,
// aggregation and commits, its peak memory and CPU time.
//
//   federa-bench load --clients 1000 --params 1000000 --rounds 5 --json
//   federa-bench load --clients 8 --params 25000000 --rounds 3 --json     # ingest vs AES-GCM
//   federa-bench load --connect 10.0.0.5:8443 --pki DIR --clients 200 --json   # a running one
//
// The last line of stdout is one JSON object (bench/README.md describes every field).
#include "tools/bench_load.hpp"

#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "common/options.hpp"
#include "common/tls.hpp"

namespace federa::bench {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

struct LoadOptions {
  std::size_t clients = 100;
  std::uint64_t params = 1'000'000;
  std::uint64_t rounds = 5;
  unsigned threads = 2;              // the fleet's io threads
  unsigned coordinator_threads = 2;  // --threads of the coordinator
  std::size_t max_inflight = 8;      // --max-inflight-uploads of the coordinator
  double chunk_mb = 1;
  double timeout_s = 1800;
  std::string coordinator;       // program; default: beside federa-bench in the build tree
  std::string coordinator_args;  // extra flags, e.g. "--max-connections 2000"
  std::string connect;           // HOST:PORT of a running coordinator instead
  std::string pki;               // its PKI folder (kits are issued there when missing)
  std::string work;              // where the PKI, state and logs go; default: a temp folder
  int aes_seconds = 2;
  std::uint64_t tls_stream_mb = 2048;
  bool keep = false, json = false;
};

std::optional<int> parse(int argc, char** argv, LoadOptions& o) {
  po::options_description d("federa-bench load flags");
  // clang-format off
  d.add_options()
      ("help,h", "this help")
      ("clients", po::value(&o.clients)->default_value(o.clients), "concurrent members N")
      ("params", po::value(&o.params)->default_value(o.params), "model parameters P (a softmax:IN,10 model; rounded to a multiple of 10)")
      ("rounds", po::value(&o.rounds)->default_value(o.rounds), "rounds R")
      ("threads", po::value(&o.threads)->default_value(o.threads), "io threads of the client fleet")
      ("coordinator-threads", po::value(&o.coordinator_threads)->default_value(o.coordinator_threads), "--threads of the coordinator")
      ("max-inflight-uploads", po::value(&o.max_inflight)->default_value(o.max_inflight), "--max-inflight-uploads of the coordinator (its memory bound)")
      ("chunk-mb", po::value(&o.chunk_mb)->default_value(o.chunk_mb), "--chunk-mb of the coordinator")
      ("timeout", po::value(&o.timeout_s)->default_value(o.timeout_s), "seconds before the run is given up")
      ("coordinator", po::value(&o.coordinator), "federa-coordinator program (default: the build tree's)")
      ("coordinator-args", po::value(&o.coordinator_args), "extra coordinator flags, space-separated")
      ("connect", po::value(&o.connect), "HOST:PORT of a running coordinator (needs --pki); no RSS/CPU figures then")
      ("pki", po::value(&o.pki), "PKI folder of that coordinator (member kits load-NNNNN are issued when missing)")
      ("work", po::value(&o.work), "folder for the PKI, state and logs (default: a new temp folder)")
      ("aes-seconds", po::value(&o.aes_seconds)->default_value(o.aes_seconds), "seconds of `openssl speed` (0: skip)")
      ("tls-stream-mb", po::value(&o.tls_stream_mb)->default_value(o.tls_stream_mb), "MiB of the reference TLS stream over 127.0.0.1 (0: skip)")
      ("keep", po::bool_switch(&o.keep), "keep the work folder")
      ("json", po::bool_switch(&o.json), "print the JSON result line");
  // clang-format on
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, d), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "federa-bench load: " << e.what() << "\n" << d << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << d << "\n";
    return 0;
  }
  if (o.clients == 0 || o.rounds == 0 || o.params < 20 || o.threads == 0) {
    std::cerr << "federa-bench load: --clients, --rounds, --threads must be positive and --params "
                 ">= 20\n";
    return 2;
  }
  if (!o.connect.empty() && o.pki.empty()) {
    std::cerr << "federa-bench load: --connect needs --pki (the coordinator's PKI folder)\n";
    return 2;
  }
  return std::nullopt;
}

// A thousand members need a thousand descriptors on each side; the coordinator inherits this.
void raise_fd_limit() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &r);
  }
}

fs::path default_coordinator() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return self.parent_path().parent_path() / "coordinator" / "federa-coordinator";
}

std::vector<std::string> coordinator_args(const LoadOptions& o, const fs::path& work,
                                          unsigned short port, std::uint64_t in_features) {
  std::vector<std::string> a = {"--pki",
                                (work / "pki").string(),
                                "--listen",
                                "127.0.0.1:" + std::to_string(port),
                                "--model",
                                fmt::format("softmax:{},10", in_features),
                                "--rounds",
                                std::to_string(o.rounds),
                                "--min-clients",
                                std::to_string(o.clients),
                                "--clients-per-round",
                                std::to_string(o.clients),
                                "--round-timeout",
                                "1200",
                                "--round-retries",
                                "0",
                                "--state-dir",
                                (work / "state").string(),
                                "--metrics-out",
                                (work / "metrics.jsonl").string(),
                                "--threads",
                                std::to_string(o.coordinator_threads),
                                "--max-inflight-uploads",
                                std::to_string(o.max_inflight),
                                "--chunk-mb",
                                fmt::format("{}", o.chunk_mb),
                                "--device",
                                "cpu",
                                "--log-level",
                                "info"};
  std::istringstream extra(o.coordinator_args);
  for (std::string t; extra >> t;) a.push_back(t);
  return a;
}

// The coordinator's own account of each round (--metrics-out): accepted updates and duration.
struct RoundLine {
  std::uint64_t round = 0;
  std::uint64_t accepted = 0;
  double duration_ms = 0;
};
std::vector<RoundLine> read_metrics(const fs::path& path) {
  std::vector<RoundLine> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    boost::system::error_code ec;
    json::value v = json::parse(line, ec);
    if (ec || !v.is_object()) continue;
    const auto& o = v.as_object();
    RoundLine r;
    if (auto* x = o.if_contains("round")) r.round = x->to_number<std::uint64_t>();
    if (auto* x = o.if_contains("clients")) r.accepted = x->to_number<std::uint64_t>();
    if (auto* x = o.if_contains("duration_ms")) r.duration_ms = x->to_number<double>();
    out.push_back(r);
  }
  return out;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// boost::json writes 117.2 as 1.172E2; people read this line too.
std::string to_text(const json::value& v) {
  switch (v.kind()) {
    case json::kind::double_:
      return std::isfinite(v.as_double()) ? fmt::format("{}", v.as_double()) : "null";
    case json::kind::array: {
      std::string out = "[";
      for (const auto& x : v.as_array()) {
        if (out.size() > 1) out += ',';
        out += to_text(x);
      }
      return out + "]";
    }
    case json::kind::object: {
      std::string out = "{";
      for (const auto& kv : v.as_object()) {
        if (out.size() > 1) out += ',';
        out += json::serialize(json::value(kv.key()));
        out += ':';
        out += to_text(kv.value());
      }
      return out + "}";
    }
    default:
      return json::serialize(v);
  }
}

json::array to_array(const std::vector<double>& v) {
  json::array a;
  for (double x : v) a.push_back(std::round(x * 100) / 100);
  return a;
}

// The coordinator under test (spawned, listening) or the one --connect names.
Result<std::optional<CoordinatorProcess>> coordinator_for(const LoadOptions& o,
                                                          const fs::path& work,
                                                          std::uint64_t in_features,
                                                          FleetOptions& fo) {
  if (!o.connect.empty()) {
    HostPort hp = parse_host_port(o.connect, "connect");
    fo.host = hp.host;
    fo.port = hp.port;
    return std::optional<CoordinatorProcess>{};
  }
  auto port = free_port();
  if (!port) return port.error();
  fo.port = *port;
  const fs::path program = o.coordinator.empty() ? default_coordinator() : fs::path(o.coordinator);
  auto c = spawn_coordinator(program, coordinator_args(o, work, *port, in_features),
                             work / "coordinator.log");
  if (!c) return c.error();
  // Wait for the listener (the log says so) before the fleet connects.
  for (int i = 0; i < 600; ++i) {
    std::ifstream log(c->log);
    std::string all((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    if (all.find("listening on") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return std::optional<CoordinatorProcess>(*c);
}

struct Observed {
  bool all_ended = false;
  double wall_s = 0;
  ProcessUsage usage;             // the coordinator's peak memory and CPU as /proc shows them
  std::optional<ProcessEnd> end;  // our coordinator's exit
};

// Runs the fleet to its end (or the timeout), sampling our coordinator meanwhile.
Observed observe(const LoadOptions& o, LoadFleet& fleet,
                 const std::optional<CoordinatorProcess>& coord) {
  Observed seen;
  const auto t0 = LoadClock::now();
  fleet.start();
  const auto deadline = t0 + std::chrono::milliseconds(static_cast<long long>(o.timeout_s * 1000));
  auto note = [&](const ProcessUsage& u) {
    seen.usage.peak_rss_mb = std::max(seen.usage.peak_rss_mb, u.peak_rss_mb);
    seen.usage.cpu_s = std::max(seen.usage.cpu_s, u.cpu_s);
  };
  while (!(seen.all_ended = fleet.wait_done(
               std::min(deadline, LoadClock::now() + std::chrono::milliseconds(200))))) {
    if (coord)
      if (auto u = sample_process(coord->pid)) note(*u);
    if (LoadClock::now() >= deadline) break;
  }
  seen.wall_s = std::chrono::duration<double>(LoadClock::now() - t0).count();
  if (coord) {
    seen.end =
        reap(coord->pid, seen.all_ended ? std::chrono::seconds(30) : std::chrono::seconds(0));
    note(seen.end->usage);
  }
  return seen;
}

double own_cpu_s() {
  rusage self{};
  ::getrusage(RUSAGE_SELF, &self);
  return double(self.ru_utime.tv_sec + self.ru_stime.tv_sec) +
         double(self.ru_utime.tv_usec + self.ru_stime.tv_usec) / 1e6;
}

// What the ingest is compared with, measured in the same run before the coordinator starts.
struct References {
  Result<double> aes = make_error("skipped");         // openssl speed, one core, GB/s
  Result<double> tls_stream = make_error("skipped");  // one bare TLS stream over loopback, GB/s
  double own_cpu_s = 0;  // what this process had spent when they were done (not the fleet's)
};

References measure_references(const LoadOptions& o, const fs::path& pki,
                              const std::string& member) {
  References refs;
  if (o.aes_seconds > 0) refs.aes = openssl_aes_gcm_gbps(o.aes_seconds);
  if (refs.aes)
    std::cerr << fmt::format("load: openssl speed: AES-256-GCM {:.2f} GB/s on one core\n",
                             *refs.aes);
  if (o.tls_stream_mb > 0) refs.tls_stream = tls_stream_gbps(pki, member, o.tls_stream_mb << 20);
  if (refs.tls_stream)
    std::cerr << fmt::format("load: one TLS stream over 127.0.0.1: {:.2f} GB/s\n",
                             *refs.tls_stream);
  else if (o.tls_stream_mb > 0)
    std::cerr << "load: no reference TLS stream: " << refs.tls_stream.error().message << "\n";
  refs.own_cpu_s = own_cpu_s();
  return refs;
}

double ratio(double x, double ref) { return std::round(x / ref * 1000) / 1000; }

// The result line; `failures` counts every way the run fell short of the issue's goal.
json::object report(const LoadOptions& o, std::uint64_t params, const Observed& seen,
                    const FleetStats& stats, const std::vector<RoundLine>& lines,
                    const References& refs, std::size_t& failures) {
  std::vector<double> round_ms, ingest, per_cpu;
  json::array accepted;
  for (const auto& l : lines) {
    round_ms.push_back(l.duration_ms);
    accepted.push_back(l.accepted);
    if (l.accepted != o.clients) ++failures;
  }
  for (const auto& [round, r] : stats.rounds) {
    const double s = std::chrono::duration<double>(r.last_write - r.first_header).count();
    if (r.uploads > 0 && s > 0) ingest.push_back(double(r.bytes) / s / 1e9);
    // Bytes taken in per second of the coordinator's CPU over the same window (which also holds
    // some of the broadcast): what one core of its own would ingest, whatever the fleet costs.
    const double cpu = r.coordinator_cpu_last - r.coordinator_cpu_first;
    if (r.uploads > 0 && r.coordinator_cpu_first >= 0 && cpu > 0)
      per_cpu.push_back(double(r.bytes) / cpu / 1e9);
  }
  failures += stats.failures + (seen.all_ended ? 0 : 1);
  if (o.connect.empty() && lines.size() != o.rounds)
    failures += o.rounds - std::min<std::size_t>(o.rounds, lines.size());
  if (seen.end && (seen.end->exit_code != 0 || seen.end->signal != 0)) ++failures;
  json::object r;
  r["bench"] = "load";
  r["clients"] = o.clients;
  r["params"] = params;
  r["rounds"] = o.rounds;
  r["round_ms"] = std::round(median(round_ms) * 10) / 10;
  r["round_ms_each"] = to_array(round_ms);
  r["ingest_gbps"] = std::round(median(ingest) * 1000) / 1000;
  r["ingest_gbps_each"] = to_array(ingest);
  if (!per_cpu.empty()) {
    r["ingest_per_coordinator_cpu_gbps"] = std::round(median(per_cpu) * 1000) / 1000;
    r["ingest_per_coordinator_cpu_gbps_each"] = to_array(per_cpu);
  }
  r["connect_ms"] = std::round(stats.connect_ms);
  r["wall_s"] = std::round(seen.wall_s * 10) / 10;
  r["accepted_per_round"] = accepted;
  r["failures"] = failures;
  if (seen.end) {
    const double model_mb = double(params) * 4 / (1024 * 1024);
    const double rss_bound_mb =
        double(o.max_inflight + 3) * model_mb + double(o.clients) * 100.0 / 1024;
    r["coordinator_peak_rss_mb"] = std::round(seen.usage.peak_rss_mb * 10) / 10;
    r["coordinator_cpu_s"] = std::round(seen.usage.cpu_s * 100) / 100;
    r["rss_bound_mb"] = std::round(rss_bound_mb * 10) / 10;
    r["rss_within_bound"] = seen.usage.peak_rss_mb <= rss_bound_mb;
    r["coordinator_exit"] = seen.end->signal ? -seen.end->signal : seen.end->exit_code;
  }
  r["max_inflight_uploads"] = o.max_inflight;
  // The fleet's own CPU time: on a shared machine it says how much of the round the members cost.
  r["bench_cpu_s"] = std::round((own_cpu_s() - refs.own_cpu_s) * 100) / 100;
  if (refs.aes) {
    r["aes_gcm_gbps"] = std::round(*refs.aes * 1000) / 1000;
    r["ingest_to_aes"] = ratio(median(ingest), *refs.aes);
    if (!per_cpu.empty())
      r["ingest_per_coordinator_cpu_to_aes"] = ratio(median(per_cpu), *refs.aes);
  }
  if (refs.tls_stream) {
    r["tls_stream_gbps"] = std::round(*refs.tls_stream * 1000) / 1000;
    r["ingest_to_tls_stream"] = ratio(median(ingest), *refs.tls_stream);
  }
  return r;
}

int give_up(const Error& e) {
  std::cerr << "federa-bench load: " << e.message << "\n";
  return 1;
}

}  // namespace

int load_main(int argc, char** argv) {
  LoadOptions o;
  if (auto rc = parse(argc, argv, o)) return *rc;
  raise_fd_limit();
  const std::uint64_t in_features = std::max<std::uint64_t>(1, (o.params - 10) / 10);
  const std::uint64_t params = in_features * 10 + 10;
  const fs::path work = o.work.empty()
                            ? fs::temp_directory_path() / fmt::format("federa-load-{}", ::getpid())
                            : fs::path(o.work);
  fs::create_directories(work);
  std::cerr << fmt::format("load: {} clients, {} parameters, {} rounds; work folder {}\n",
                           o.clients, params, o.rounds, work.string());
  const fs::path pki = o.connect.empty() ? work / "pki" : fs::path(o.pki);
  const auto t_pki = LoadClock::now();
  auto kits = make_load_pki(pki, o.clients);
  if (!kits) return give_up(kits.error());
  std::cerr << fmt::format("load: {} member kits in {:.1f} s\n", o.clients,
                           std::chrono::duration<double>(LoadClock::now() - t_pki).count());
  const fs::path first = pki / "clients" / kits->front().name;
  auto tls = make_client_tls_context((pki / "ca.pem").string(), (first / "cert.pem").string(),
                                     (first / "key.pem").string());
  if (!tls) return give_up(tls.error());
  const References refs = measure_references(o, pki, kits->front().name);
  FleetOptions fo;
  auto coord = coordinator_for(o, work, in_features, fo);
  if (!coord) return give_up(coord.error());
  if (*coord) fo.coordinator = (*coord)->pid;

  boost::asio::io_context io(static_cast<int>(o.threads));
  auto guard = boost::asio::make_work_guard(io);
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < o.threads; ++i) threads.emplace_back([&io] { io.run(); });
  LoadFleet fleet(io, *tls, std::move(*kits), fo);
  const Observed seen = observe(o, fleet, *coord);
  guard.reset();
  io.stop();
  for (auto& t : threads) t.join();

  const FleetStats stats = fleet.stats();
  for (const auto& f : stats.failure_samples) std::cerr << "load: failure: " << f << "\n";
  const auto lines =
      o.connect.empty() ? read_metrics(work / "metrics.jsonl") : std::vector<RoundLine>{};
  std::size_t failures = 0;
  const json::object r = report(o, params, seen, stats, lines, refs, failures);
  if (!o.keep && o.work.empty() && failures == 0) fs::remove_all(work);
  std::cerr << fmt::format("load: {} failures; coordinator log: {}\n", failures,
                           *coord ? (*coord)->log.string() : std::string("(not ours)"));
  if (o.json) std::cout << to_text(r) << std::endl;
  return failures == 0 ? 0 : 1;
}

}  // namespace federa::bench
