// federa-bench aggregate: server-side aggregation throughput against the machine's own memory
// bandwidth, measured in the same run on the same threads (or the GPU's device copy bandwidth).
//
//   federa-bench aggregate --strategy fedavg --clients 32 --params 4000000 --device cpu --json
//
// How updates are fed (so that time and peak RSS mean what the coordinator would see):
//  * streaming strategies (FedAvg family): ONE update buffer, regenerated for each client before
//    its add_update, as the coordinator's network layer refills a pooled buffer. Memory is
//    therefore O(params), independent of --clients. The buffer is written with non-temporal
//    stores so the timed pass reads it from DRAM, not from a cache the generator just filled;
//    the accumulator stays wherever the hardware keeps it (as in the coordinator). The buffer
//    is the backend's host buffer (pinned on CUDA) or, with --pageable, ordinary memory.
//  * --facts receipt (default): the regeneration also measures what the coordinator's receive
//    path (ChunkAssembler) measures while it copies an upload in: finite values and the sum of
//    squares, passed with the update, so the backend folds it in with one pass. --facts none:
//    the backend validates first (one more read of the update), as for an update of unknown
//    provenance.
//  * strategies that keep every update (median, trimmed mean, Krum): the same single buffer,
//    copied into the strategy's update set by add_update (their memory is K x params by nature).
//  * --resident: K updates are first placed on the backend (host RAM for cpu, GPU memory for
//    cuda) and one weighted-mean pass over all of them is timed: FedAvg on device-resident data.
//    The time is the backend's own measure of the reduction (CUDA events around the kernel).
// `ms` is the median over --reps of (begin_round + every add_update + finish_round), excluding
// the regeneration. `gbps` = clients x params x 4 bytes / ms. The last stdout line is JSON.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <boost/program_options.hpp>

#include "common/update_facts.hpp"
#include "coordinator/aggregation_backend.hpp"
#include "coordinator/strategies.hpp"

namespace federa::bench {

namespace {

namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;

struct Config {
  std::string strategy, device;
  std::size_t clients = 0, params = 0;
  unsigned threads = 0;
  int reps = 5;
  bool resident = false, pageable = false, facts = true, bandwidth = true, json = false;
};

struct Measured {
  std::vector<double> ms;
  std::string mode, timing;
};

double elapsed_ms(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// A client's update: the global model plus a small client-dependent change. Cheap integer hash,
// written with streaming stores (bypassing the caches) where the CPU has them. Returns what a
// receiver measures on the way in (common/update_facts.hpp), from the values as they are made.
UpdateFacts regenerate(float* x, std::size_t n, std::uint32_t client) {
  const std::uint32_t salt = client * 0x9e3779b9u;
  SquareSums sums;
  std::size_t i = 0;
#if defined(__SSE2__)
  for (; i + 4 <= n; i += 4) {
    float v[4];
    for (int j = 0; j < 4; ++j) {
      std::uint32_t h = (static_cast<std::uint32_t>(i + j) * 2654435761u) ^ salt;
      v[j] = 0.01f + static_cast<float>(h >> 16) * 1e-6f;
    }
    sums.add(v, nullptr, 4);
    _mm_stream_ps(x + i, _mm_loadu_ps(v));
  }
  _mm_sfence();
#endif
  for (; i < n; ++i) {
    std::uint32_t h = (static_cast<std::uint32_t>(i) * 2654435761u) ^ salt;
    x[i] = 0.01f + static_cast<float>(h >> 16) * 1e-6f;
    sums.add(x + i, nullptr, 1);
  }
  return UpdateFacts{true, sums.sum_sq(), std::nullopt};
}

double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // Linux: kilobytes
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// Returns the exit code when the program should stop here (help, bad flags), else nullopt.
std::optional<int> parse(int argc, char** argv, Config& c) {
  po::options_description desc(
      "federa-bench aggregate: aggregation throughput vs the machine's memory bandwidth");
  // clang-format off
  desc.add_options()
    ("help,h", "this help")
    ("strategy", po::value<std::string>()->default_value("fedavg"), kStrategyNames)
    ("clients", po::value<std::size_t>()->default_value(32), "updates per round (K)")
    ("params", po::value<std::size_t>()->default_value(4000000), "float32 parameters per update (P)")
    ("device", po::value<std::string>()->default_value("cpu"), "auto, cpu or cuda")
    ("threads", po::value<unsigned>()->default_value(0), "CPU threads (0 = all cores)")
    ("reps", po::value<int>()->default_value(5), "repetitions; ms is their median")
    ("resident", po::bool_switch(), "time one weighted-mean pass over K updates already on the backend")
    ("pageable", po::bool_switch(), "stream updates from ordinary memory, not the backend's (pinned) host buffer")
    ("facts", po::value<std::string>()->default_value("receipt"),
     "receipt: updates come with what the receive path measured (one pass); none: the backend validates first")
    ("no-bandwidth", po::bool_switch(), "skip the memory-bandwidth measurement")
    ("json", po::bool_switch(), "print one JSON object as the last line");
  // clang-format on
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "federa-bench aggregate: " << e.what() << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  c.strategy = vm["strategy"].as<std::string>();
  c.device = vm["device"].as<std::string>();
  c.clients = vm["clients"].as<std::size_t>();
  c.params = vm["params"].as<std::size_t>();
  c.reps = std::max(1, vm["reps"].as<int>());
  c.resident = vm["resident"].as<bool>();
  c.pageable = vm["pageable"].as<bool>();
  c.bandwidth = !vm["no-bandwidth"].as<bool>();
  c.json = vm["json"].as<bool>();
  c.threads = vm["threads"].as<unsigned>();
  if (c.threads == 0) c.threads = std::max(1u, std::thread::hardware_concurrency());
  const std::string facts = vm["facts"].as<std::string>();
  if (facts != "receipt" && facts != "none") {
    std::cerr << "federa-bench aggregate: --facts must be receipt or none\n";
    return 2;
  }
  c.facts = facts == "receipt";
  if (c.clients == 0 || c.params == 0) {
    std::cerr << "federa-bench aggregate: --clients and --params must be > 0\n";
    return 2;
  }
  return std::nullopt;
}

// K updates placed on the backend, then --reps + 1 weighted-mean passes over all of them; the
// backend times the reduction itself.
Result<Measured> run_resident(AggregationBackend& be, const Config& c, float* update) {
  auto set = be.make_update_set(c.params);
  if (!set) return set.error();
  std::vector<std::size_t> rows(c.clients);
  std::vector<float> weights(c.clients);
  for (std::size_t j = 0; j < c.clients; ++j) {
    regenerate(update, c.params, static_cast<std::uint32_t>(j));
    auto r = set.value()->push(std::span<const float>(update, c.params));
    if (!r) return r.error();
    rows[j] = j;
    weights[j] = static_cast<float>(100 + j);
  }
  Measured m{{},
             "resident",
             be.name() == "cuda" ? "cuda events around the kernel" : "wall clock of the pass"};
  for (int rep = 0; rep < c.reps + 1; ++rep) {
    if (Status st = set.value()->weighted_mean(rows, weights, {}); !st) return st.error();
    if (rep > 0) m.ms.push_back(set.value()->last_reduction_ms());  // the first pays for faults
  }
  return m;
}

// --reps + 1 rounds of begin_round, K add_updates and finish_round; the first allocates.
Result<Measured> run_rounds(Strategy& s, const Config& c, float* update) {
  Measured m{{}, s.needs_all_updates() ? "kept" : "streaming", "wall clock"};
  std::vector<float> global(c.params, 0.01f);
  for (int rep = 0; rep < c.reps + 1; ++rep) {
    double ms = 0.0;
    auto t0 = Clock::now();
    if (Status st = s.begin_round(global, static_cast<std::uint64_t>(rep) + 1); !st)
      return st.error();
    ms += elapsed_ms(t0);
    for (std::size_t j = 0; j < c.clients; ++j) {
      UpdateFacts facts = regenerate(update, c.params, static_cast<std::uint32_t>(j + 1000 * rep));
      if (!c.facts) facts = UpdateFacts{};
      auto t1 = Clock::now();
      Status st = s.add_update({"bench", 100 + j, std::span<const float>(update, c.params), facts});
      ms += elapsed_ms(t1);
      if (!st) return st.error();
    }
    auto t2 = Clock::now();
    auto stats = s.finish_round(global);
    ms += elapsed_ms(t2);
    if (!stats) return stats.error();
    std::fill(global.begin(), global.end(), 0.01f);
    if (rep > 0) m.ms.push_back(ms);
  }
  return m;
}

// The JSON line: the run, its times and their fractions of the machine's own bandwidth.
std::string report(const Config& c, AggregationBackend& be, const Measured& m, double rss,
                   const BandwidthReport& bw) {
  const double ms = median(m.ms), ms_min = *std::min_element(m.ms.begin(), m.ms.end());
  const double bytes =
      static_cast<double>(c.clients) * static_cast<double>(c.params) * sizeof(float);
  const double gbps = bytes / (ms / 1e3) / 1e9;
  const double mem = bw.memory_gbps, h2d = bw.host_to_device_gbps;
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(3);
  out << "{\"strategy\":\"" << json_escape(c.strategy) << "\",\"device\":\"" << be.name()
      << "\",\"mode\":\"" << m.mode << "\",\"input\":\""
      << (c.pageable ? "pageable" : "host_buffer") << "\",\"facts\":\""
      << (c.facts ? "receipt" : "none") << "\",\"clients\":" << c.clients
      << ",\"params\":" << c.params << ",\"threads\":" << c.threads << ",\"reps\":" << c.reps
      << ",\"ms\":" << ms << ",\"ms_min\":" << ms_min << ",\"gbps\":" << gbps
      << ",\"memory_bw_gbps\":" << mem << ",\"fraction_of_memory_bw\":"
      << (mem > 0 ? gbps / mem : 0.0)
      // best round against the best triad pass: like for like on a shared, noisy machine
      << ",\"fraction_of_memory_bw_best\":" << (mem > 0 ? bytes / (ms_min / 1e3) / 1e9 / mem : 0.0)
      << ",\"h2d_gbps\":" << h2d << ",\"fraction_of_h2d_bw\":" << (h2d > 0 ? gbps / h2d : 0.0)
      << ",\"peak_rss_mb\":" << rss << ",\"timing\":\"" << m.timing << "\",\"backend\":\""
      << json_escape(be.description()) << "\",\"bandwidth_method\":\"" << json_escape(bw.method)
      << "\"}";
  return out.str();
}

int fail(const std::string& what) {
  std::cerr << "federa-bench aggregate: " << what << "\n";
  return 1;
}

}  // namespace

int aggregate_main(int argc, char** argv) {
  Config c;
  if (std::optional<int> stop = parse(argc, argv, c)) return *stop;
  auto backend = make_backend(c.device, c.threads);
  if (!backend) return fail(backend.error().message);
  AggregationBackend& be = *backend.value();
  std::cerr << "backend: " << be.description() << "\n";
  StrategyOptions so;
  so.strategy = c.strategy;
  so.krum_f = 1;  // Krum then needs K > 4
  auto strategy = make_strategy(so, be);
  if (!strategy) return fail(strategy.error().message);

  // Pinned memory on CUDA (as the coordinator's receive pool uses), aligned memory on the CPU;
  // or ordinary pageable memory with --pageable.
  auto host = be.make_host_buffer(c.params);
  if (!host) return fail(host.error().message);
  std::vector<float> pageable(c.pageable ? c.params : 0);
  float* update = c.pageable ? pageable.data() : host->get();
  Result<Measured> m =
      c.resident ? run_resident(be, c, update) : run_rounds(*strategy.value(), c, update);
  if (!m) return fail(m.error().message);
  // Peak RSS before the bandwidth probe, whose arrays would otherwise dominate it.
  const double rss = peak_rss_mb();
  BandwidthReport bw;
  bw.method = "not measured";
  if (c.bandwidth) {
    auto r = be.measure_bandwidth();
    if (!r) std::cerr << "federa-bench aggregate: bandwidth: " << r.error().message << "\n";
    if (r) bw = r.value();
  }
  std::cerr << "strategy " << c.strategy << " (" << m->mode << "), K=" << c.clients
            << ", P=" << c.params << ": " << median(m->ms) << " ms; memory " << bw.memory_gbps
            << " GB/s (" << bw.method << ")\n";
  std::cout << report(c, be, m.value(), rss, bw) << std::endl;
  return 0;
}

}  // namespace federa::bench
