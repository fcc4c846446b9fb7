// The CUDA aggregation backend: host-side objects over the kernels in kernels.cu / robust.cu.
// Compiled by the host C++ compiler (C++20, like the rest of the coordinator); only the .cu files
// go through nvcc.
#include "coordinator/cuda/cuda_backend.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "coordinator/cuda/kernels.cuh"

// Turns a failed CUDA runtime call into an Error naming the call, file and line; usable in any
// function returning Status or Result<T>.
#define CUDA_CHECK(expr)                                                              \
  do {                                                                                \
    cudaError_t cuda_check_err_ = (expr);                                             \
    if (cuda_check_err_ != cudaSuccess)                                               \
      return ::federa::cuda_error(cuda_check_err_, #expr, __FILE__, __LINE__);        \
  } while (0)

namespace federa {

namespace {

Error cuda_error(cudaError_t e, const char* expr, const char* file, int line) {
  return make_error(std::string("CUDA error ") + cudaGetErrorName(e) + " (" +
                    cudaGetErrorString(e) + ") in " + expr + " at " + file + ":" +
                    std::to_string(line));
}

std::string size_error(std::size_t got, std::size_t want) {
  return "update has " + std::to_string(got) + " values, the model has " + std::to_string(want);
}

template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() {
    if (p_) cudaFree(p_);
  }
  // Grows (never shrinks) to at least n elements; contents are not kept.
  Status reserve(std::size_t n) {
    if (n <= n_) return {};
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
    CUDA_CHECK(cudaMalloc(&p_, std::max<std::size_t>(n, 1) * sizeof(T)));
    n_ = n;
    return {};
  }
  // Grows to n elements keeping the first `keep` of them.
  Status grow_keep(std::size_t n, std::size_t keep, cudaStream_t stream) {
    if (n <= n_) return {};
    T* q = nullptr;
    CUDA_CHECK(cudaMalloc(&q, n * sizeof(T)));
    if (p_ && keep) {
      cudaError_t e = cudaMemcpyAsync(q, p_, keep * sizeof(T), cudaMemcpyDeviceToDevice, stream);
      if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
      if (e != cudaSuccess) {
        cudaFree(q);
        return cuda_error(e, "grow_keep copy", __FILE__, __LINE__);
      }
    }
    if (p_) cudaFree(p_);
    p_ = q;
    n_ = n;
    return {};
  }
  T* get() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

// Streams, pinned staging buffers and events shared by every object of one backend. Objects
// are used from one thread at a time (the coordinator aggregates on one strand).
class Context {
 public:
  static constexpr std::size_t kChunkBytes = std::size_t{8} << 20;

  ~Context() {
    for (int b = 0; b < 2; ++b) {
      if (staging_[b]) cudaFreeHost(staging_[b]);
      if (event_[b]) cudaEventDestroy(event_[b]);
      if (stream_[b]) cudaStreamDestroy(stream_[b]);
    }
    if (norm_) cudaFree(norm_);
  }

  explicit Context(HostCopy copy) : copy_(std::move(copy)) {}

  Status init() {
    CUDA_CHECK(cudaSetDevice(0));
    for (int b = 0; b < 2; ++b) {
      CUDA_CHECK(cudaStreamCreateWithFlags(&stream_[b], cudaStreamNonBlocking));
      CUDA_CHECK(cudaEventCreateWithFlags(&event_[b], cudaEventDisableTiming));
      CUDA_CHECK(cudaMallocHost(&staging_[b], kChunkBytes));
    }
    CUDA_CHECK(cudaMalloc(&norm_, 2 * sizeof(double)));
    return {};
  }

  // Objects of one backend share the streams, staging buffers and norm slots: each public
  // operation holds this for its duration (recursive: operations may call one another).
  std::recursive_mutex& mutex() { return mutex_; }
  cudaStream_t stream(int b) const { return stream_[b]; }
  double* norm_slot(int b) const { return norm_ + b; }

  // Copies `bytes` from host `src` to device `dst` in chunks alternating between two streams;
  // after each chunk's copy, on_chunk(first_element, elements, stream_index) enqueues that
  // chunk's kernel on the same stream, so chunk c's kernel overlaps chunk c+1's copy. Pinned
  // sources are copied directly; pageable ones go through the pinned staging buffers.
  Status upload(void* dst, const void* src, std::size_t bytes, std::size_t elem,
                const std::function<Status(std::size_t, std::size_t, int)>& on_chunk) {
    cudaPointerAttributes attr{};
    bool pinned = cudaPointerGetAttributes(&attr, src) == cudaSuccess &&
                  attr.type == cudaMemoryTypeHost;
    cudaGetLastError();
    const std::size_t chunk = kChunkBytes / elem * elem;
    int c = 0;
    for (std::size_t off = 0; off < bytes; off += chunk, ++c) {
      const int b = c & 1;
      const std::size_t len = std::min(chunk, bytes - off);
      auto* d = static_cast<char*>(dst) + off;
      const auto* s = static_cast<const char*>(src) + off;
      if (pinned) {
        CUDA_CHECK(cudaMemcpyAsync(d, s, len, cudaMemcpyHostToDevice, stream_[b]));
      } else {
        CUDA_CHECK(cudaEventSynchronize(event_[b]));  // staging[b]'s previous copy is done
        if (copy_)
          copy_(staging_[b], s, len);
        else
          std::memcpy(staging_[b], s, len);
        CUDA_CHECK(cudaMemcpyAsync(d, staging_[b], len, cudaMemcpyHostToDevice, stream_[b]));
        CUDA_CHECK(cudaEventRecord(event_[b], stream_[b]));
      }
      if (on_chunk)
        if (Status st = on_chunk(off / elem, len / elem, b); !st) return st;
    }
    return sync();
  }

  Status sync() {
    CUDA_CHECK(cudaStreamSynchronize(stream_[0]));
    CUDA_CHECK(cudaStreamSynchronize(stream_[1]));
    return {};
  }

  Status zero_norms() {
    CUDA_CHECK(cudaMemsetAsync(norm_, 0, 2 * sizeof(double), stream_[0]));
    CUDA_CHECK(cudaStreamSynchronize(stream_[0]));
    return {};
  }

  Result<double> read_norm() {
    double h[2] = {0, 0};
    CUDA_CHECK(cudaMemcpy(h, norm_, sizeof h, cudaMemcpyDeviceToHost));
    return std::sqrt(h[0] + h[1]);
  }

  Status download(void* dst, const void* src, std::size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_[0]));
    CUDA_CHECK(cudaStreamSynchronize(stream_[0]));
    return {};
  }

 private:
  HostCopy copy_;
  std::recursive_mutex mutex_;
  cudaStream_t stream_[2] = {nullptr, nullptr};
  cudaEvent_t event_[2] = {nullptr, nullptr};
  void* staging_[2] = {nullptr, nullptr};
  double* norm_ = nullptr;
};

Result<double> check_norm(double norm, const AddOptions& o) {
  if (!std::isfinite(norm)) return make_error("update has non-finite values (NaN or Inf)");
  if (o.max_norm > 0.0 && norm > o.max_norm)
    return make_error("update L2 norm " + std::to_string(norm) + " exceeds the bound " +
                      std::to_string(o.max_norm));
  if (o.clip_norm > 0.0 && norm > o.clip_norm) return o.clip_norm / norm;
  return 1.0;
}

// ---------------------------------------------------------------------------------------------

class CudaWeightedSum final : public WeightedSum {
 public:
  CudaWeightedSum(std::shared_ptr<Context> ctx, std::size_t n) : ctx_(std::move(ctx)), n_(n) {}
  Status init() {
    if (Status st = acc_.reserve(n_); !st) return st;
    if (Status st = x_.reserve(n_); !st) return st;
    return reset();
  }
  std::size_t size() const override { return n_; }

  Status reset() override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    ref_of_ = nullptr;  // a new round: a new starting model
    CUDA_CHECK(cudaMemsetAsync(acc_.get(), 0, n_ * sizeof(float), ctx_->stream(0)));
    CUDA_CHECK(cudaStreamSynchronize(ctx_->stream(0)));
    return {};
  }

  Result<AddReport> add(std::span<const float> x, float w, const AddOptions& o) override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    if (x.size() != n_) return make_error(size_error(x.size(), n_));
    if (!o.reference.empty() && o.reference.size() != n_) return make_error("reference has the wrong size");
    if (!std::isfinite(w)) return make_error("update weight is not finite");
    const float* ref = nullptr;
    if (!o.reference.empty()) {
      if (Status st = cache_reference(o.reference); !st) return st.error();
      ref = ref_.get();
    }
    // Without a reference or clipping the norm is only a check: accumulate while copying and
    // subtract again if the check fails. Otherwise the norm has to be known first.
    const bool fused = ref == nullptr && o.clip_norm <= 0.0;
    if (Status st = ctx_->zero_norms(); !st) return st.error();
    Status up = ctx_->upload(x_.get(), x.data(), n_ * sizeof(float), sizeof(float),
                             [&](std::size_t first, std::size_t count, int b) -> Status {
                               CUDA_CHECK(cuda::axpy_norm(fused ? acc_.get() + first : nullptr,
                                                          x_.get() + first, ref ? ref + first : nullptr, w,
                                                          count, ctx_->norm_slot(b), ctx_->stream(b)));
                               return {};
                             });
    if (!up) return up.error();
    Result<double> norm = ctx_->read_norm();
    if (!norm) return norm.error();
    Result<double> scale = check_norm(norm.value(), o);
    if (!scale) {
      if (fused) {
        CUDA_CHECK(cuda::axpy_norm(acc_.get(), x_.get(), nullptr, -w, n_, nullptr, ctx_->stream(0)));
        CUDA_CHECK(cudaStreamSynchronize(ctx_->stream(0)));
      }
      return scale.error();
    }
    if (!fused) {
      CUDA_CHECK(cuda::axpy_norm(acc_.get(), x_.get(), ref, static_cast<float>(w * scale.value()), n_,
                                 nullptr, ctx_->stream(0)));
      CUDA_CHECK(cudaStreamSynchronize(ctx_->stream(0)));
    }
    return AddReport{norm.value(), scale.value()};
  }

  Status read(std::span<float> out, float scale) override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    if (out.size() != n_) return make_error(size_error(out.size(), n_));
    // x_ is free between adds: use it as the output staging area.
    CUDA_CHECK(cuda::scale_copy(x_.get(), acc_.get(), scale, n_, ctx_->stream(0)));
    return ctx_->download(out.data(), x_.get(), n_ * sizeof(float));
  }

  Status finalize(std::span<const float> x_t, bool changes, float scale, const ServerStep& step,
                  std::span<float> global) override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    if (global.size() != n_) return make_error(size_error(global.size(), n_));
    const bool need_xt = changes || step.kind != step::kReplace;
    if (need_xt && x_t.size() != n_) return make_error("finalize: the round's starting model is missing");
    const float* xt = nullptr;
    if (need_xt) {
      if (Status st = cache_reference(x_t); !st) return st;
      xt = ref_.get();
    }
    if (step.kind != step::kReplace)
      if (Status st = ensure_state(); !st) return st;
    CUDA_CHECK(cuda::finalize_step(x_.get(), acc_.get(), xt, changes, scale, step, m_.get(), v_.get(),
                                   n_, ctx_->stream(0)));
    return ctx_->download(global.data(), x_.get(), n_ * sizeof(float));
  }

  Status optimizer_state(std::vector<float>& m, std::vector<float>& v) override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    m.clear();
    v.clear();
    if (!has_state_) return {};
    m.resize(n_);
    v.resize(n_);
    if (Status st = ctx_->download(m.data(), m_.get(), n_ * sizeof(float)); !st) return st;
    return ctx_->download(v.data(), v_.get(), n_ * sizeof(float));
  }

  Status set_optimizer_state(std::span<const float> m, std::span<const float> v) override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    if ((!m.empty() && m.size() != n_) || (!v.empty() && v.size() != n_))
      return make_error("saved optimiser state has " + std::to_string(std::max(m.size(), v.size())) +
                        " values, the model has " + std::to_string(n_));
    has_state_ = false;
    if (Status st = ensure_state(); !st) return st;
    if (!m.empty())
      if (Status st = ctx_->upload(m_.get(), m.data(), n_ * sizeof(float), sizeof(float), {}); !st) return st;
    if (!v.empty())
      if (Status st = ctx_->upload(v_.get(), v.data(), n_ * sizeof(float), sizeof(float), {}); !st) return st;
    return {};
  }

 private:
  // One upload of the round's starting model (AddOptions::reference) per round, not per update.
  Status cache_reference(std::span<const float> ref) {
    if (ref_of_ == ref.data()) return {};
    if (Status st = ref_.reserve(n_); !st) return st;
    if (Status st = ctx_->upload(ref_.get(), ref.data(), n_ * sizeof(float), sizeof(float), {}); !st)
      return st;
    ref_of_ = ref.data();
    return {};
  }

  // Allocates the optimiser state as zeros the first time a step needs it.
  Status ensure_state() {
    if (has_state_) return {};
    if (Status st = m_.reserve(n_); !st) return st;
    if (Status st = v_.reserve(n_); !st) return st;
    CUDA_CHECK(cudaMemsetAsync(m_.get(), 0, n_ * sizeof(float), ctx_->stream(0)));
    CUDA_CHECK(cudaMemsetAsync(v_.get(), 0, n_ * sizeof(float), ctx_->stream(0)));
    CUDA_CHECK(cudaStreamSynchronize(ctx_->stream(0)));
    has_state_ = true;
    return {};
  }

  std::shared_ptr<Context> ctx_;
  std::size_t n_;
  DeviceArray<float> acc_, x_, ref_, m_, v_;
  const float* ref_of_ = nullptr;  // host address ref_ was copied from this round
  bool has_state_ = false;
};

// ---------------------------------------------------------------------------------------------

class CudaUpdateSet final : public UpdateSet {
 public:
  CudaUpdateSet(std::shared_ptr<Context> ctx, std::size_t n) : ctx_(std::move(ctx)), n_(n) {}
  std::size_t size() const override { return n_; }
  std::size_t count() const override { return count_; }
  Status clear() override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    count_ = 0;
    ref_of_ = nullptr;
    return {};
  }

  Result<AddReport> push(std::span<const float> x, const AddOptions& o) override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    if (x.size() != n_) return make_error(size_error(x.size(), n_));
    if (!o.reference.empty() && o.reference.size() != n_) return make_error("reference has the wrong size");
    if (count_ + 1 > capacity_) {
      std::size_t cap = std::max<std::size_t>(4, capacity_ * 2);
      if (Status st = rows_.grow_keep(cap * n_, count_ * n_, ctx_->stream(0)); !st) return st.error();
      capacity_ = cap;
    }
    const float* ref = nullptr;
    if (!o.reference.empty()) {
      if (ref_of_ != o.reference.data()) {
        if (Status st = ref_.reserve(n_); !st) return st.error();
        if (Status st = ctx_->upload(ref_.get(), o.reference.data(), n_ * sizeof(float), sizeof(float), {}); !st)
          return st.error();
        ref_of_ = o.reference.data();
      }
      ref = ref_.get();
    }
    float* row = rows_.get() + count_ * n_;
    if (Status st = ctx_->zero_norms(); !st) return st.error();
    Status up = ctx_->upload(row, x.data(), n_ * sizeof(float), sizeof(float),
                             [&](std::size_t first, std::size_t count, int b) -> Status {
                               CUDA_CHECK(cuda::axpy_norm(nullptr, row + first, ref ? ref + first : nullptr,
                                                          0.0f, count, ctx_->norm_slot(b), ctx_->stream(b)));
                               return {};
                             });
    if (!up) return up.error();
    Result<double> norm = ctx_->read_norm();
    if (!norm) return norm.error();
    Result<double> scale = check_norm(norm.value(), o);
    if (!scale) return scale.error();  // the slot is simply reused by the next push
    if (ref || scale.value() != 1.0) {
      CUDA_CHECK(cuda::scale_delta(row, ref, static_cast<float>(scale.value()), n_, ctx_->stream(0)));
      CUDA_CHECK(cudaStreamSynchronize(ctx_->stream(0)));
    }
    ++count_;
    return AddReport{norm.value(), scale.value()};
  }

  Status median(std::span<float> out) override { return robust(out, 0, true); }
  Status trimmed_mean(std::size_t trim, std::span<float> out) override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    if (2 * trim >= count_)
      return make_error("trimmed mean: trimming " + std::to_string(trim) + " from each end of " +
                        std::to_string(count_) + " updates leaves nothing");
    return robust(out, trim, false);
  }

  Result<std::vector<double>> pairwise_sq_distances() override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    const std::size_t k = count_;
    std::vector<double> d(k * k, 0.0);
    if (k < 2) return d;
    if (k > 8192) return make_error("pairwise distances on the GPU support at most 8192 updates");
    std::vector<std::uint32_t> pi, pj;
    for (std::uint32_t i = 0; i < k; ++i)
      for (std::uint32_t j = i + 1; j < k; ++j) {
        pi.push_back(i);
        pj.push_back(j);
      }
    const std::size_t pairs = pi.size();
    if (Status st = idx_.reserve(2 * pairs); !st) return st.error();
    if (Status st = dist_.reserve(pairs); !st) return st.error();
    cudaStream_t s = ctx_->stream(0);
    CUDA_CHECK(cudaMemcpyAsync(idx_.get(), pi.data(), pairs * 4, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(idx_.get() + pairs, pj.data(), pairs * 4, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemsetAsync(dist_.get(), 0, pairs * sizeof(double), s));
    for (std::size_t p0 = 0; p0 < pairs; p0 += cuda::kMaxPairsPerLaunch) {
      std::size_t len = std::min(cuda::kMaxPairsPerLaunch, pairs - p0);
      CUDA_CHECK(cuda::pair_sq_distances(dist_.get() + p0, rows_.get(), k, n_, idx_.get() + p0,
                                         idx_.get() + pairs + p0, len, s));
    }
    std::vector<double> flat(pairs);
    if (Status st = ctx_->download(flat.data(), dist_.get(), pairs * sizeof(double)); !st) return st.error();
    for (std::size_t p = 0; p < pairs; ++p) d[pi[p] * k + pj[p]] = d[pj[p] * k + pi[p]] = flat[p];
    return d;
  }

  Status weighted_mean(std::span<const std::size_t> rows, std::span<const float> weights,
                       std::span<float> out) override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    if (count_ == 0) return make_error("no updates kept");
    if (!out.empty() && out.size() != n_) return make_error(size_error(out.size(), n_));
    if (rows.empty() || rows.size() != weights.size())
      return make_error("weighted mean: rows and weights must be non-empty and of equal length");
    double total = 0.0;
    std::vector<std::uint32_t> idx(rows.size());
    for (std::size_t j = 0; j < rows.size(); ++j) {
      if (rows[j] >= count_) return make_error("weighted mean: row out of range");
      idx[j] = static_cast<std::uint32_t>(rows[j]);
      total += weights[j];
    }
    if (!(total > 0.0)) return make_error("weighted mean: weights sum to zero");
    if (Status st = out_.reserve(n_); !st) return st;
    if (Status st = idx_.reserve(rows.size()); !st) return st;
    if (Status st = w_.reserve(rows.size()); !st) return st;
    cudaStream_t s = ctx_->stream(0);
    CUDA_CHECK(cudaMemcpyAsync(idx_.get(), idx.data(), idx.size() * 4, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(w_.get(), weights.data(), weights.size() * 4, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cuda::weighted_rows(out_.get(), rows_.get(), n_, idx_.get(), w_.get(), rows.size(),
                                   static_cast<float>(1.0 / total), s));
    // An empty `out` leaves the result on the device (the benchmark times the kernel alone).
    if (out.empty()) {
      CUDA_CHECK(cudaStreamSynchronize(s));
      return {};
    }
    return ctx_->download(out.data(), out_.get(), n_ * sizeof(float));
  }

 private:
  Status robust(std::span<float> out, std::size_t trim, bool median) {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    if (count_ == 0) return make_error("no updates kept");
    if (out.size() != n_) return make_error(size_error(out.size(), n_));
    if (count_ > cuda::kMaxRobustRows)
      return make_error("median/trimmed mean on the GPU support at most " +
                        std::to_string(cuda::kMaxRobustRows) + " updates per round, got " +
                        std::to_string(count_) + " (use --device cpu)");
    if (Status st = out_.reserve(n_); !st) return st;
    CUDA_CHECK(cuda::robust_reduce(out_.get(), rows_.get(), count_, n_, trim, median, ctx_->stream(0)));
    return ctx_->download(out.data(), out_.get(), n_ * sizeof(float));
  }

  std::shared_ptr<Context> ctx_;
  std::size_t n_;
  std::size_t count_ = 0, capacity_ = 0;
  const float* ref_of_ = nullptr;  // host address ref_ was copied from since the last clear()
  DeviceArray<float> rows_, ref_, out_, w_;
  DeviceArray<std::uint32_t> idx_;
  DeviceArray<double> dist_;
};

// ---------------------------------------------------------------------------------------------

class CudaU32Sum final : public U32Sum {
 public:
  CudaU32Sum(std::shared_ptr<Context> ctx, std::size_t n) : ctx_(std::move(ctx)), n_(n) {}
  Status init() {
    if (Status st = acc_.reserve(n_); !st) return st;
    if (Status st = x_.reserve(n_); !st) return st;
    return reset();
  }
  std::size_t size() const override { return n_; }
  Status reset() override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    CUDA_CHECK(cudaMemsetAsync(acc_.get(), 0, n_ * sizeof(std::uint32_t), ctx_->stream(0)));
    CUDA_CHECK(cudaStreamSynchronize(ctx_->stream(0)));
    return {};
  }
  Status add(std::span<const std::uint32_t> x) override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    if (x.size() != n_) return make_error(size_error(x.size(), n_));
    return ctx_->upload(x_.get(), x.data(), n_ * 4, 4, [&](std::size_t first, std::size_t count, int b) -> Status {
      CUDA_CHECK(cuda::add_u32(acc_.get() + first, x_.get() + first, count, ctx_->stream(b)));
      return {};
    });
  }
  Status read(std::span<std::uint32_t> out) override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    if (out.size() != n_) return make_error(size_error(out.size(), n_));
    return ctx_->download(out.data(), acc_.get(), n_ * 4);
  }

 private:
  std::shared_ptr<Context> ctx_;
  std::size_t n_;
  DeviceArray<std::uint32_t> acc_, x_;
};

// ---------------------------------------------------------------------------------------------

class CudaBackend final : public AggregationBackend {
 public:
  CudaBackend(std::shared_ptr<Context> ctx, std::string device_name)
      : ctx_(std::move(ctx)), device_name_(std::move(device_name)) {}
  std::string name() const override { return "cuda"; }
  std::string description() const override { return "cuda: " + device_name_; }

  Result<std::unique_ptr<WeightedSum>> make_weighted_sum(std::size_t size) override {
    auto s = std::make_unique<CudaWeightedSum>(ctx_, size);
    if (Status st = s->init(); !st) return st.error();
    return std::unique_ptr<WeightedSum>(std::move(s));
  }
  Result<std::unique_ptr<UpdateSet>> make_update_set(std::size_t size) override {
    return std::unique_ptr<UpdateSet>(std::make_unique<CudaUpdateSet>(ctx_, size));
  }
  Result<std::unique_ptr<U32Sum>> make_u32_sum(std::size_t size) override {
    auto s = std::make_unique<CudaU32Sum>(ctx_, size);
    if (Status st = s->init(); !st) return st.error();
    return std::unique_ptr<U32Sum>(std::move(s));
  }

  Result<HostBuffer> make_host_buffer(std::size_t size) override {
    void* p = nullptr;
    CUDA_CHECK(cudaMallocHost(&p, std::max<std::size_t>(size, 1) * sizeof(float)));
    return HostBuffer(static_cast<float*>(p), [](float* q) { cudaFreeHost(q); });
  }

  Result<BandwidthReport> measure_bandwidth() override {
    std::lock_guard<std::recursive_mutex> lock(ctx_->mutex());
    // Device-to-device copy of 1 GiB (counted as read + write, like CUDA's bandwidthTest) and a
    // pinned host-to-device copy of 256 MiB; best of five after a warm-up, timed with events.
    const std::size_t d2d = std::size_t{1} << 30, h2d = std::size_t{256} << 20;
    DeviceArray<char> a, b;
    if (Status st = a.reserve(d2d); !st) return st.error();
    if (Status st = b.reserve(d2d); !st) return st.error();
    void* host = nullptr;
    CUDA_CHECK(cudaMallocHost(&host, h2d));
    std::memset(host, 1, h2d);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    cudaStream_t s = ctx_->stream(0);
    auto best_ms = [&](auto&& op) -> Result<float> {
      float best = 1e30f;
      for (int rep = 0; rep < 6; ++rep) {
        CUDA_CHECK(cudaEventRecord(e0, s));
        CUDA_CHECK(op());
        CUDA_CHECK(cudaEventRecord(e1, s));
        CUDA_CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (rep > 0) best = std::min(best, ms);
      }
      return best;
    };
    auto t_d2d = best_ms([&] { return cudaMemcpyAsync(b.get(), a.get(), d2d, cudaMemcpyDeviceToDevice, s); });
    auto t_h2d = best_ms([&] { return cudaMemcpyAsync(a.get(), host, h2d, cudaMemcpyHostToDevice, s); });
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFreeHost(host);
    if (!t_d2d) return t_d2d.error();
    if (!t_h2d) return t_h2d.error();
    BandwidthReport r;
    r.memory_gbps = 2.0 * static_cast<double>(d2d) / (t_d2d.value() / 1e3) / 1e9;
    r.host_to_device_gbps = static_cast<double>(h2d) / (t_h2d.value() / 1e3) / 1e9;
    r.method = "cudaMemcpy device-to-device 1 GiB (2 x bytes) and pinned host-to-device 256 MiB";
    return r;
  }

 private:
  std::shared_ptr<Context> ctx_;
  std::string device_name_;
};

}  // namespace

bool cuda_device_available(std::string* why) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if (why) *why = cudaGetErrorString(err);
    cudaGetLastError();  // clear the error so later calls start clean
    return false;
  }
  if (count == 0) {
    if (why) *why = "no CUDA device found";
    return false;
  }
  return true;
}

Result<std::unique_ptr<AggregationBackend>> make_cuda_backend(HostCopy copy) {
  std::string why;
  if (!cuda_device_available(&why)) return make_error("no usable CUDA device (" + why + ")");
  auto ctx = std::make_shared<Context>(std::move(copy));
  if (Status st = ctx->init(); !st) return st.error();
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  return std::unique_ptr<AggregationBackend>(std::make_unique<CudaBackend>(ctx, prop.name));
}

}  // namespace federa
