// federa-bench load, shared by its three files: the load clients (bench_load_client.cpp), the
// coordinator process and machine probes (bench_load_proc.cpp), and the run itself
// (bench_load.cpp).
//
//   LoadFleet fleet(io, tls_ctx, kits, {"127.0.0.1", port}, fleet_options);
//   fleet.start();                    // N sessions connect, a few at a time, on one io_context
//   run io on a few threads ...       // each client answers every FitTask with the fixed update
//   fleet.wait_done(deadline);        // every session ended (Bye, error or close)
//   FleetStats s = fleet.stats();     // per round: upload bytes and window; failures
#pragma once

#include <openssl/types.h>
#include <sys/types.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/ossl.hpp"
#include "common/result.hpp"

namespace federa::bench {

using LoadClock = std::chrono::steady_clock;

// One member's identity: its certificate and key, loaded once and set on its TLS connection.
struct LoadKit {
  std::string name;
  ossl::X509Ptr cert;
  ossl::PkeyPtr key;
};

struct FleetOptions {
  std::string host = "127.0.0.1";
  unsigned short port = 0;
  std::size_t connect_concurrency = 64;  // TLS handshakes under way at once
  std::uint64_t num_examples = 100;      // announced in Hello and in every UpdateHeader
  pid_t coordinator = -1;                // when ours: its CPU time is read as uploads go
};

// What the fleet saw of one round's uploads.
struct RoundUploads {
  std::size_t headers = 0;  // UpdateHeaders sent
  std::size_t uploads = 0;  // updates whose last chunk was written
  std::uint64_t bytes = 0;  // update payload bytes written (4 per parameter)
  LoadClock::time_point first_header{}, last_write{};
  // The coordinator's CPU seconds (user + system) at the first header and the last write;
  // negative when not known (a coordinator that is not ours).
  double coordinator_cpu_first = -1, coordinator_cpu_last = -1;
};

struct FleetStats {
  std::size_t connected = 0;                 // sessions that got a Welcome
  std::size_t finished = 0;                  // sessions that got the final Bye
  std::size_t failures = 0;                  // connects, handshakes, Errors, unexpected closes
  std::vector<std::string> failure_samples;  // the first few reasons
  double connect_ms = 0;                     // from start() until the last Welcome
  std::map<std::uint64_t, RoundUploads> rounds;
};

class LoadFleet {
 public:
  LoadFleet(boost::asio::io_context& io, std::shared_ptr<boost::asio::ssl::context> tls,
            std::vector<LoadKit> kits, FleetOptions options);
  ~LoadFleet();
  void start();
  // True when every session ended before `deadline`.
  bool wait_done(LoadClock::time_point deadline);
  FleetStats stats() const;

  struct Shared;  // bench_load_client.cpp

 private:
  std::shared_ptr<Shared> shared_;
};

// Issues a CA, a coordinator certificate for 127.0.0.1 and `n` member kits under `dir` (the
// layout of federa-pki), and loads the kits. Members are named load-00000, load-00001, ...
Result<std::vector<LoadKit>> make_load_pki(const std::filesystem::path& dir, std::size_t n);

// The coordinator under test, started as its own process.
struct CoordinatorProcess {
  pid_t pid = -1;
  std::filesystem::path log;
};
Result<CoordinatorProcess> spawn_coordinator(const std::filesystem::path& binary,
                                             const std::vector<std::string>& args,
                                             const std::filesystem::path& log);
// Peak resident memory (VmHWM) and CPU seconds (user + system) of a live process; nullopt once
// it is gone.
struct ProcessUsage {
  double peak_rss_mb = 0;
  double cpu_s = 0;
};
std::optional<ProcessUsage> sample_process(pid_t pid);
// Just the CPU seconds (user + system) of a live process; negative once it is gone.
double process_cpu_s(pid_t pid);
// Waits for the process (SIGTERM after `grace`, SIGKILL 5 s later); its exit status and the
// kernel's account of its peak RSS and CPU time.
struct ProcessEnd {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  ProcessUsage usage;
};
ProcessEnd reap(pid_t pid, std::chrono::seconds grace);

// `openssl speed -evp aes-256-gcm` on 16 KiB blocks for `seconds`: one core's AES-256-GCM
// rate in GB/s (10^9 bytes), or an error when openssl is missing or its output unreadable.
Result<double> openssl_aes_gcm_gbps(int seconds);

// The second reference: one mutual-TLS 1.3 stream of `bytes` over 127.0.0.1 with the contexts of
// the PKI folder's coordinator and of its member `member`, a sender thread and a receiver that only
// reads (1 MiB buffers). GB/s from the receiver's second read to its last: what one connection
// can carry on this machine before any of the coordinator's own work.
Result<double> tls_stream_gbps(const std::filesystem::path& pki, const std::string& member,
                               std::uint64_t bytes);

// A TCP socket bound to a free port on 127.0.0.1 (returned in `port`), not yet listening.
Result<int> bind_loopback(unsigned short& port);
// A free TCP port on 127.0.0.1 (bound, read back and released).
Result<unsigned short> free_port();

}  // namespace federa::bench
