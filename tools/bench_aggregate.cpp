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
//    the accumulator stays wherever the hardware keeps it (as in the coordinator).
//  * strategies that keep every update (median, trimmed mean, Krum): the same single buffer,
//    copied into the strategy's update set by add_update (their memory is K x params by nature).
//  * --resident: K updates are first placed on the backend (host RAM for cpu, GPU memory for
//    cuda) and one weighted-mean pass over all of them is timed: FedAvg on device-resident data.
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
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <boost/program_options.hpp>

#include "coordinator/aggregation_backend.hpp"
#include "coordinator/strategies.hpp"

namespace federa::bench {

namespace {

namespace po = boost::program_options;
using clock_type = std::chrono::steady_clock;

// A client's update: the global model plus a small client-dependent change. Cheap integer hash,
// written with streaming stores (bypassing the caches) where the CPU has them.
void regenerate(float* x, std::size_t n, std::uint32_t client) {
  const std::uint32_t salt = client * 0x9e3779b9u;
  std::size_t i = 0;
#if defined(__SSE2__)
  for (; i + 4 <= n; i += 4) {
    float v[4];
    for (int j = 0; j < 4; ++j) {
      std::uint32_t h = (static_cast<std::uint32_t>(i + j) * 2654435761u) ^ salt;
      v[j] = 0.01f + static_cast<float>(h >> 16) * 1e-6f;
    }
    _mm_stream_ps(x + i, _mm_loadu_ps(v));
  }
  _mm_sfence();
#endif
  for (; i < n; ++i) {
    std::uint32_t h = (static_cast<std::uint32_t>(i) * 2654435761u) ^ salt;
    x[i] = 0.01f + static_cast<float>(h >> 16) * 1e-6f;
  }
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

}  // namespace

int aggregate_main(int argc, char** argv) {
  po::options_description desc(
      "federa-bench aggregate: aggregation throughput vs the machine's memory bandwidth");
  desc.add_options()
    ("help,h", "this help")
    ("strategy", po::value<std::string>()->default_value("fedavg"), kStrategyNames)
    ("clients", po::value<std::size_t>()->default_value(32), "updates per round (K)")
    ("params", po::value<std::size_t>()->default_value(4000000), "float32 parameters per update (P)")
    ("device", po::value<std::string>()->default_value("cpu"), "auto, cpu or cuda")
    ("threads", po::value<unsigned>()->default_value(0), "CPU threads (0 = all cores)")
    ("reps", po::value<int>()->default_value(5), "repetitions; ms is their median")
    ("resident", po::bool_switch(), "time one weighted-mean pass over K updates already on the backend")
    ("no-bandwidth", po::bool_switch(), "skip the memory-bandwidth measurement")
    ("json", po::bool_switch(), "print one JSON object as the last line");
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
  const std::string strategy_name = vm["strategy"].as<std::string>();
  const std::size_t k = vm["clients"].as<std::size_t>();
  const std::size_t p = vm["params"].as<std::size_t>();
  const int reps = std::max(1, vm["reps"].as<int>());
  const bool resident = vm["resident"].as<bool>();
  const bool json = vm["json"].as<bool>();
  unsigned threads = vm["threads"].as<unsigned>();
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  if (k == 0 || p == 0) {
    std::cerr << "federa-bench aggregate: --clients and --params must be > 0\n";
    return 2;
  }

  auto backend = make_backend(vm["device"].as<std::string>(), threads);
  if (!backend) {
    std::cerr << "federa-bench aggregate: " << backend.error().message << "\n";
    return 1;
  }
  AggregationBackend& be = *backend.value();
  std::cerr << "backend: " << be.description() << "\n";

  StrategyOptions so;
  so.strategy = strategy_name;
  so.krum_f = 1;  // Krum then needs K > 4
  auto strategy = make_strategy(so, be);
  if (!strategy) {
    std::cerr << "federa-bench aggregate: " << strategy.error().message << "\n";
    return 1;
  }
  Strategy& s = *strategy.value();

  std::vector<float> global(p, 0.01f);
  // Pinned memory on CUDA (as the coordinator's receive pool would use), aligned memory on CPU.
  auto host = be.make_host_buffer(p);
  if (!host) {
    std::cerr << "federa-bench aggregate: " << host.error().message << "\n";
    return 1;
  }
  AggregationBackend::HostBuffer& update = host.value();
  std::vector<double> times;
  std::string mode = resident ? "resident" : (s.needs_all_updates() ? "kept" : "streaming");

  if (resident) {
    auto set = be.make_update_set(p);
    if (!set) {
      std::cerr << "federa-bench aggregate: " << set.error().message << "\n";
      return 1;
    }
    std::vector<std::size_t> rows(k);
    std::vector<float> weights(k);
    for (std::size_t j = 0; j < k; ++j) {
      regenerate(update.get(), p, static_cast<std::uint32_t>(j));
      auto r = set.value()->push(std::span<const float>(update.get(), p));
      if (!r) {
        std::cerr << "federa-bench aggregate: " << r.error().message << "\n";
        return 1;
      }
      rows[j] = j;
      weights[j] = static_cast<float>(100 + j);
    }
    for (int rep = 0; rep < reps + 1; ++rep) {
      auto t0 = clock_type::now();
      Status st = set.value()->weighted_mean(rows, weights, {});  // result stays on the backend
      double ms = std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
      if (!st) {
        std::cerr << "federa-bench aggregate: " << st.message() << "\n";
        return 1;
      }
      if (rep > 0) times.push_back(ms);  // the first pass pays for page faults / JIT
    }
  } else {
    for (int rep = 0; rep < reps + 1; ++rep) {
      double ms = 0.0;
      auto t0 = clock_type::now();
      s.begin_round(global, static_cast<std::uint64_t>(rep + 1));
      ms += std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
      for (std::size_t j = 0; j < k; ++j) {
        regenerate(update.get(), p, static_cast<std::uint32_t>(j + 1000 * rep));
        auto t1 = clock_type::now();
        Status st = s.add_update({"bench", 100 + j, std::span<const float>(update.get(), p)});
        ms += std::chrono::duration<double, std::milli>(clock_type::now() - t1).count();
        if (!st) {
          std::cerr << "federa-bench aggregate: " << st.message() << "\n";
          return 1;
        }
      }
      auto t2 = clock_type::now();
      auto stats = s.finish_round(global);
      ms += std::chrono::duration<double, std::milli>(clock_type::now() - t2).count();
      if (!stats) {
        std::cerr << "federa-bench aggregate: " << stats.error().message << "\n";
        return 1;
      }
      std::fill(global.begin(), global.end(), 0.01f);
      if (rep > 0) times.push_back(ms);  // the first round allocates the accumulator
    }
  }
  // Peak RSS before the bandwidth probe, whose arrays would otherwise dominate it.
  const double rss = peak_rss_mb();
  const double ms = median(times);
  const double bytes = static_cast<double>(k) * static_cast<double>(p) * sizeof(float);
  const double gbps = bytes / (ms / 1e3) / 1e9;

  double mem_bw = 0.0, h2d = 0.0;
  std::string bw_method = "not measured";
  if (!vm["no-bandwidth"].as<bool>()) {
    auto bw = be.measure_bandwidth();
    if (!bw) {
      std::cerr << "federa-bench aggregate: bandwidth: " << bw.error().message << "\n";
    } else {
      mem_bw = bw->memory_gbps;
      h2d = bw->host_to_device_gbps;
      bw_method = bw->method;
    }
  }
  std::cerr << "strategy " << strategy_name << " (" << mode << "), K=" << k << ", P=" << p << ": "
            << ms << " ms, " << gbps << " GB/s of updates; memory " << mem_bw << " GB/s ("
            << bw_method << ")\n";

  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(3);
  out << "{\"strategy\":\"" << json_escape(strategy_name) << "\",\"device\":\"" << be.name()
      << "\",\"mode\":\"" << mode << "\",\"clients\":" << k << ",\"params\":" << p
      << ",\"threads\":" << threads << ",\"reps\":" << reps
      << ",\"ms\":" << ms << ",\"ms_min\":" << *std::min_element(times.begin(), times.end())
      << ",\"gbps\":" << gbps << ",\"memory_bw_gbps\":" << mem_bw
      << ",\"fraction_of_memory_bw\":" << (mem_bw > 0 ? gbps / mem_bw : 0.0)
      // best round against the best triad pass: like for like on a shared, noisy machine
      << ",\"fraction_of_memory_bw_best\":"
      << (mem_bw > 0 ? bytes / (*std::min_element(times.begin(), times.end()) / 1e3) / 1e9 / mem_bw : 0.0)
      << ",\"h2d_gbps\":" << h2d
      << ",\"fraction_of_h2d_bw\":" << (h2d > 0 ? gbps / h2d : 0.0)
      << ",\"peak_rss_mb\":" << rss << ",\"backend\":\"" << json_escape(be.description())
      << "\",\"bandwidth_method\":\"" << json_escape(bw_method) << "\"}";
  if (json)
    std::cout << out.str() << std::endl;
  else
    std::cout << out.str() << "\n";
  return 0;
}

}  // namespace federa::bench
