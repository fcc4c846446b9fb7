// Where the coordinator's aggregation arithmetic runs: the CPU (threaded, fused loops) or a CUDA
// GPU. Strategies hold backend objects and never know which device they are on.
//
//   auto backend = make_backend("auto", 4);            // CUDA if built with it and a GPU is there
//   if (!backend) return backend.error();
//   auto sum = (*backend)->make_weighted_sum(p);        // zeroed accumulator, lives on the device
//   for (each update) {
//     Result<AddReport> r = (*sum)->add(x, float(n_i));  // validates and folds in, one pass
//     if (!r) log(r.error().message);                   // rejected: accumulator unchanged
//   }
//   (*sum)->finalize({}, false, 1.0f / total, ServerStep{}, global);  // global = acc / N
//
// Objects made by a backend (WeightedSum, UpdateSet, U32Sum) keep their data where the backend
// computes (host memory for the CPU, device memory for CUDA); host code reaches the data only
// through add/push/read/finalize. Every call is synchronous: when it returns, the input span may
// be reused. Objects of one backend may be used from different threads; their operations take
// turns on the backend's threads/streams.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
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
};

struct AddReport {
  double norm = 0.0;   // L2 norm of x (or of the delta), before clipping
  double scale = 1.0;  // clipping factor applied, min(1, clip_norm / norm)
};

// The server optimiser a round ends with (coordinator/aggregation_backend.inl has the formulas).
using ServerStep = step::Params;

// acc += weight * scale * (x [- reference]), over one O(model) accumulator. Non-finite values or a
// norm over max_norm reject the update with an Error and leave the accumulator as it was (to the
// last rounding: a fused pass that meets a bad value late subtracts what it already added).
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
  // count x count row-major matrix of squared L2 distances between kept updates (for Krum).
  virtual Result<std::vector<double>> pairwise_sq_distances() = 0;
  // out = sum_j weights[j] * update[rows[j]] / sum_j weights[j]  (Multi-Krum, and FedAvg over
  // device-resident updates in the benchmark). One pass: each output element reads every row.
  // An empty `out` computes the result but keeps it on the backend (the benchmark times that).
  virtual Status weighted_mean(std::span<const std::size_t> rows, std::span<const float> weights,
                               std::span<float> out) = 0;
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
  // Host memory this backend reads fastest, for buffers that updates are received into:
  // page-locked for CUDA (copies to the GPU go straight from it, without staging), 64-byte
  // aligned ordinary memory for the CPU.
  using HostBuffer = std::unique_ptr<float[], void (*)(float*)>;
  virtual Result<HostBuffer> make_host_buffer(std::size_t size) = 0;
  // Takes a second or so and allocates ~400 MB (CPU) or ~2 GB (GPU) while it runs.
  virtual Result<BandwidthReport> measure_bandwidth() = 0;
};

// The registry. device: "auto" (CUDA when this build has it and a GPU is present, else CPU),
// "cpu", or "cuda" (an Error saying why when the build or the host has no CUDA).
// threads: CPU worker threads including the caller; 0 = hardware concurrency.
Result<std::unique_ptr<AggregationBackend>> make_backend(std::string_view device,
                                                         unsigned threads);

// True when this binary was built with the CUDA backend and a CUDA device is usable now.
bool cuda_backend_available();

}  // namespace federa
