// Where the coordinator's aggregation arithmetic runs: the CPU (threaded loops) or a CUDA GPU.
// Strategies hold backend objects and never know which device they are on.
//
//   auto backend = make_backend("auto", 4);            // CUDA if built with it and usable, else
//   CPU if (!backend) return backend.error(); auto sum = (*backend)->make_weighted_sum(p); //
//   zeroed accumulator, lives on the device auto buf = (*backend)->make_host_buffer(p);         //
//   receive updates here (pinned on CUDA) for (each update received into {buf->get(), p} by a
//   ChunkAssembler `in`) {
//     AddOptions o;  o.known = in.facts();              // finite, |x|^2 measured while copying
//     Result<AddReport> r = (*sum)->add({buf->get(), p}, float(n_i), o);  // one pass over it
//     if (!r) log(r.error().message);                   // rejected: accumulator bit-identical
//   }
//   (*sum)->finalize({}, false, 1.0f / total, ServerStep{}, global);  // global = acc / N
//
// Objects made by a backend (WeightedSum, UpdateSet, U32Sum) keep their data where the backend
// computes (host memory for the CPU, device memory for CUDA); host code reaches the data only
// through add/push/read/finalize. Every call is synchronous: when it returns, the input span may
// be reused (and on error too: nothing is still reading it). Objects of one backend may be used
// from different threads; their operations take turns on the backend's threads/streams.
//
// Validation never touches the accumulator: an update is known to be finite and within its norm
// bound before any of it is added. Whoever measured those facts already (ChunkAssembler, while
// the update arrived) passes them in AddOptions::known and the backend makes one pass; otherwise
// the backend measures them itself first (one more read of the update).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/update_facts.hpp"
#include "coordinator/aggregation_backend.inl"

namespace federa {

// How an incoming update is checked and transformed before it is folded in or kept.
struct AddOptions {
  // When non-empty (same length as the update), the backend works on the delta (x - reference):
  // norms, clipping and accumulation all apply to the delta. Used by central DP, which clips
  // model *changes*, not models. Its contents must not change until the next reset()/clear():
  // it is the round's starting model, and a GPU backend keeps one device copy per round.
  std::span<const float> reference;
  // Reject the update when its L2 norm (of x, or of the delta) exceeds this; 0 = no bound.
  double max_norm = 0.0;
  // Scale the update (delta) down to this L2 norm when it is longer; 0 = no clipping.
  double clip_norm = 0.0;
  // What the caller already measured (ChunkAssembler::facts()). Used when `finite` is set and the
  // sum the options need is there (sum_sq_delta with a reference, else sum_sq): the backend then
  // checks the bound and computes the clip factor from it, and folds the update in with one pass
  // without reading it first. The caller vouches for the facts; a wrong one corrupts the sum.
  UpdateFacts known;
};

struct AddReport {
  double norm = 0.0;   // L2 norm of x (or of the delta), before clipping
  double scale = 1.0;  // clipping factor applied, min(1, clip_norm / norm)
};

// The server optimiser a round ends with (coordinator/aggregation_backend.inl has the formulas).
using ServerStep = step::Params;

// acc += weight * scale * (x [- reference]), over one O(model) accumulator. Non-finite values or a
// norm over max_norm reject the update with an Error (invalid_argument) and leave the accumulator
// bit-identical: nothing is added before the whole update is known to be valid.
class WeightedSum {
 public:
  virtual ~WeightedSum() = default;
  virtual std::size_t size() const = 0;
  virtual Status reset() = 0;  // acc = 0
  virtual Result<AddReport> add(std::span<const float> x, float weight,
                                const AddOptions& options = {}) = 0;
  // out = scale * acc (the finalising divide of FedAvg: scale = 1 / sum of weights).
  virtual Status read(std::span<float> out, float scale) = 0;
  // Ends a round in one pass over the model, where the backend computes:
  //   avg    = scale * acc + (sum_of_changes ? x_t : 0)
  //   global = step(x_t, avg)      (FedAvg: avg; FedAvgM/FedAdam/FedYogi/FedAdagrad: Reddi et al.)
  // The optimiser state (m, v) lives with this object, on the device, across rounds. x_t may be
  // empty only for step.kind == kReplace without changes.
  virtual Status finalize(std::span<const float> x_t, bool sum_of_changes, float scale,
                          const ServerStep& step, std::span<float> global) = 0;
  // The optimiser state for --resume: (m, v), each empty or of size(). Setting empty spans
  // resets that part to zeros.
  virtual Status optimizer_state(std::vector<float>& m, std::vector<float>& v) = 0;
  virtual Status set_optimizer_state(std::span<const float> m, std::span<const float> v) = 0;
};

// A set of kept updates, for strategies that need all of them (median, trimmed mean, Krum).
// Memory is O(count x size) on the backend's device, by nature of those strategies.
class UpdateSet {
 public:
  virtual ~UpdateSet() = default;
  virtual std::size_t size() const = 0;   // parameters per update
  virtual std::size_t count() const = 0;  // updates kept so far
  virtual Status clear() = 0;
  // Validates like WeightedSum::add (finite, max_norm; reference and clip_norm are applied too)
  // and keeps a copy. A rejected update is not kept.
  virtual Result<AddReport> push(std::span<const float> x, const AddOptions& options = {}) = 0;
  // Coordinate-wise median (mean of the two middle values when count is even).
  virtual Status median(std::span<float> out) = 0;
  // Coordinate-wise mean after dropping the `trim` largest and `trim` smallest values.
  virtual Status trimmed_mean(std::size_t trim, std::span<float> out) = 0;
  // count x count row-major matrix of squared L2 distances between kept updates (for Krum);
  // the same bits on every run.
  virtual Result<std::vector<double>> pairwise_sq_distances() = 0;
  // out = sum_j weights[j] * update[rows[j]] / sum_j weights[j]  (Multi-Krum, and FedAvg over
  // device-resident updates in the benchmark). One pass: each output element reads every row.
  // An empty `out` computes the result but keeps it on the backend (the benchmark times that).
  virtual Status weighted_mean(std::span<const std::size_t> rows, std::span<const float> weights,
                               std::span<float> out) = 0;
  // For benchmarks: how long the last weighted_mean's reduction itself took, in milliseconds
  // (CUDA: events around the kernel, without the copies of its row list; CPU: wall time of the
  // pass).
  virtual double last_reduction_ms() const = 0;
};

// acc += x (mod 2^32), for secure aggregation's masked, quantised uploads.
class U32Sum {
 public:
  virtual ~U32Sum() = default;
  virtual std::size_t size() const = 0;
  virtual Status reset() = 0;
  virtual Status add(std::span<const std::uint32_t> x) = 0;
  virtual Status read(std::span<std::uint32_t> out) = 0;
};

// The machine's own streaming bandwidth, measured by the backend on the resources it aggregates
// with, so a benchmark can report aggregation throughput as a fraction of it.
struct BandwidthReport {
  double memory_gbps = 0.0;          // CPU: STREAM triad on the backend's threads (3 x 4 B per
                                     // element); CUDA: device-to-device copy (2 x bytes)
  double host_to_device_gbps = 0.0;  // CUDA: pinned host-to-device copy; CPU: 0
  std::string method;                // how it was measured, in words
};

class AggregationBackend {
 public:
  virtual ~AggregationBackend() = default;
  virtual std::string name() const = 0;         // "cpu" or "cuda"
  virtual std::string description() const = 0;  // e.g. "cpu, 2 threads", "cuda: NVIDIA H100 ..."
  virtual Result<std::unique_ptr<WeightedSum>> make_weighted_sum(std::size_t size) = 0;
  virtual Result<std::unique_ptr<UpdateSet>> make_update_set(std::size_t size) = 0;
  virtual Result<std::unique_ptr<U32Sum>> make_u32_sum(std::size_t size) = 0;
  // Host memory this backend reads fastest, for buffers that updates are received into (the
  // coordinator's upload pool): page-locked for CUDA, 64-byte aligned ordinary memory for the CPU.
  // The CUDA backend recognises spans inside its own buffers, whole or in part, without asking
  // the driver, and copies straight from them (no staging copy). Page-locked memory is a scarce
  // system resource: make a pool's worth once and reuse it. A buffer may outlive its backend.
  using HostBuffer = std::unique_ptr<float[], void (*)(float*)>;
  virtual Result<HostBuffer> make_host_buffer(std::size_t size) = 0;
  // Takes a second or so and allocates ~400 MB (CPU) or ~2 GB (GPU) while it runs.
  virtual Result<BandwidthReport> measure_bandwidth() = 0;
};

// The registry. device: "auto" (CUDA when this build has it and a GPU is usable, else CPU),
// "cpu", or "cuda" (an Error saying why when the build or the host has no usable CUDA device).
// threads: CPU worker threads including the caller; 0 = hardware concurrency.
// "auto" with a GPU that is present but unusable (busy in exclusive mode, out of memory, no
// kernel image for its architecture) logs a warning with the reason and uses the CPU.
Result<std::unique_ptr<AggregationBackend>> make_backend(std::string_view device, unsigned threads);

// The registry with its GPU factory passed in, so tests can stand in an unusable device. `gpu`
// returns the GPU backend or an Error: not_found when there is no device at all (auto then uses
// the CPU with an info line), any other code when a device is there but unusable (a warning).
// An empty `gpu` means this build has no GPU backend. When auto falls back to the CPU,
// `*fallback` (if given) says why; make_backend(device, threads) logs it.
using GpuFactory = std::function<Result<std::unique_ptr<AggregationBackend>>(unsigned threads)>;
Result<std::unique_ptr<AggregationBackend>> make_backend(std::string_view device, unsigned threads,
                                                         const GpuFactory& gpu, Error* fallback);

// True when this binary was built with the CUDA backend and the CUDA runtime sees a device (which
// may still turn out unusable: make_backend("cuda", ...) says).
bool cuda_backend_available();

}  // namespace federa
