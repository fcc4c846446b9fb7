// The CPU backend's weighted sum and mod-2^32 sum, and the backend itself (the UpdateSet is in
// cpu_backend_update_set.cpp, the thread pool in cpu_backend_pool.cpp).
#include "coordinator/cpu_backend.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "coordinator/backend_checks.hpp"
#include "coordinator/cpu_backend_loops.hpp"

namespace federa {

namespace {

using cpu::axpy;
using cpu::axpy_delta;
using cpu::scal;
using cpu::scal_delta;

class CpuWeightedSum final : public WeightedSum {
 public:
  CpuWeightedSum(ThreadPool& pool, std::size_t n) : pool_(pool), acc_(n) {}
  std::size_t size() const override { return acc_.size(); }

  // Lazy: the next add stores instead of adding (and read() of an empty sum gives zeros).
  Status reset() override {
    empty_ = true;
    return {};
  }

  // Validate, then add: the norm (measured on receipt and passed in options.known, or measured
  // here in a first pass) decides before anything touches the accumulator, so a rejected update
  // leaves it bit-identical. The adding pass reads the update once.
  Result<AddReport> add(std::span<const float> x, float weight,
                        const AddOptions& options) override {
    if (Status st = backend::check_add(x.size(), acc_.size(), weight, options); !st)
      return st.error();
    std::optional<double> norm = backend::known_norm(options);
    if (!norm) norm = cpu::parallel_norm(pool_, x, options.reference);
    Result<double> scale = backend::check_norm(*norm, options);
    if (!scale) return scale.error();
    const float w = static_cast<float>(weight * scale.value());
    const bool first = empty_;
    const float* ref = options.reference.empty() ? nullptr : options.reference.data();
    pool_.parallel_for(acc_.size(), [&](std::size_t b, std::size_t e) {
      float* a = acc_.data() + b;
      if (!ref)
        first ? scal(a, x.data() + b, w, e - b) : axpy(a, x.data() + b, w, e - b);
      else if (first)
        scal_delta(a, x.data() + b, ref + b, w, e - b);
      else
        axpy_delta(a, x.data() + b, ref + b, w, e - b);
    });
    empty_ = false;
    return AddReport{*norm, scale.value()};
  }

  Status read(std::span<float> out, float scale) override {
    if (out.size() != acc_.size()) return backend::size_error(out.size(), acc_.size());
    if (empty_) {
      std::fill(out.begin(), out.end(), 0.0f);
      return {};
    }
    pool_.parallel_for(acc_.size(), [&](std::size_t b, std::size_t e) {
      const float* a = acc_.data();
      float* o = out.data();
#pragma omp simd
      for (std::size_t i = b; i < e; ++i) o[i] = a[i] * scale;
    });
    return {};
  }

  Status finalize(std::span<const float> x_t, bool changes, float scale, const ServerStep& step,
                  std::span<float> global) override {
    const std::size_t n = acc_.size();
    if (global.size() != n) return backend::size_error(global.size(), n);
    const bool need_xt = changes || step.kind != step::kReplace;
    if (need_xt && x_t.size() != n)
      return make_error(ErrorCode::invalid_argument,
                        "finalize: the round's starting model is missing");
    if (step.kind != step::kReplace) {
      if (m_.size() != n) m_.assign(n, 0.0f);
      if (v_.size() != n) v_.assign(n, 0.0f);
    }
    if (empty_) std::fill(acc_.begin(), acc_.end(), 0.0f);
    empty_ = false;
    pool_.parallel_for(n, [&](std::size_t b, std::size_t e) {
      const float* a = acc_.data();
      float* g = global.data();
      if (step.kind == step::kReplace && !changes) {
#pragma omp simd
        for (std::size_t i = b; i < e; ++i) g[i] = a[i] * scale;
        return;
      }
      for (std::size_t i = b; i < e; ++i) {
        float xt = x_t[i];
        float avg = a[i] * scale + (changes ? xt : 0.0f);
        if (step.kind == step::kReplace)
          g[i] = avg;
        else
          g[i] = step::apply(step, xt, avg, m_[i], v_[i]);
      }
    });
    return {};
  }

  Status optimizer_state(std::vector<float>& m, std::vector<float>& v) override {
    m = m_;
    v = v_;
    return {};
  }

  Status set_optimizer_state(std::span<const float> m, std::span<const float> v) override {
    const std::size_t n = acc_.size();
    if ((!m.empty() && m.size() != n) || (!v.empty() && v.size() != n))
      return make_error(ErrorCode::invalid_argument,
                        "saved optimiser state has " +
                            std::to_string(std::max(m.size(), v.size())) +
                            " values, the model has " + std::to_string(n));
    m_.assign(m.begin(), m.end());
    v_.assign(v.begin(), v.end());
    return {};
  }

 private:
  ThreadPool& pool_;
  std::vector<float> acc_;
  std::vector<float> m_, v_;  // server optimiser state (v_ alone for FedAvgM)
  bool empty_ = true;
};

class CpuU32Sum final : public U32Sum {
 public:
  CpuU32Sum(ThreadPool& pool, std::size_t n) : pool_(pool), acc_(n, 0u) {}
  std::size_t size() const override { return acc_.size(); }
  Status reset() override {
    std::fill(acc_.begin(), acc_.end(), 0u);
    return {};
  }
  Status add(std::span<const std::uint32_t> x) override {
    if (x.size() != acc_.size()) return backend::size_error(x.size(), acc_.size());
    pool_.parallel_for(acc_.size(), [&](std::size_t b, std::size_t e) {
      std::uint32_t* a = acc_.data();
      const std::uint32_t* v = x.data();
#pragma omp simd
      for (std::size_t i = b; i < e; ++i) a[i] += v[i];  // unsigned: wraps mod 2^32
    });
    return {};
  }
  Status read(std::span<std::uint32_t> out) override {
    if (out.size() != acc_.size()) return backend::size_error(out.size(), acc_.size());
    std::copy(acc_.begin(), acc_.end(), out.begin());
    return {};
  }

 private:
  ThreadPool& pool_;
  std::vector<std::uint32_t> acc_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------

CpuBackend::CpuBackend(unsigned threads)
    : pool_(threads == 0 ? std::max(1u, std::thread::hardware_concurrency()) : threads) {}

std::string CpuBackend::description() const {
  return "cpu, " + std::to_string(pool_.size()) + " threads";
}

Result<std::unique_ptr<WeightedSum>> CpuBackend::make_weighted_sum(std::size_t size) {
  return std::unique_ptr<WeightedSum>(std::make_unique<CpuWeightedSum>(pool_, size));
}

Result<std::unique_ptr<UpdateSet>> CpuBackend::make_update_set(std::size_t size) {
  return cpu::make_update_set(pool_, size);
}

Result<std::unique_ptr<U32Sum>> CpuBackend::make_u32_sum(std::size_t size) {
  return std::unique_ptr<U32Sum>(std::make_unique<CpuU32Sum>(pool_, size));
}

Result<AggregationBackend::HostBuffer> CpuBackend::make_host_buffer(std::size_t size) {
  std::size_t bytes = (std::max<std::size_t>(size, 1) * sizeof(float) + 63) / 64 * 64;
  auto* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!p)
    return make_error(ErrorCode::resource_exhausted,
                      "out of memory allocating " + std::to_string(bytes) + " bytes");
  return HostBuffer(p, [](float* q) { std::free(q); });
}

Result<BandwidthReport> CpuBackend::measure_bandwidth() {
  // STREAM's triad a = b + s c over arrays far larger than any cache, each thread on its own
  // range (first touched by that thread, so pages sit near it); best of several passes.
  const std::size_t n = std::size_t{1} << 25;  // 128 MB per array
  std::unique_ptr<float[]> a(new float[n]), b(new float[n]), c(new float[n]);
  pool_.parallel_for(n, [&](std::size_t lo, std::size_t hi) {
    for (std::size_t i = lo; i < hi; ++i) {
      a[i] = 0.0f;
      b[i] = 1.0f;
      c[i] = 2.0f;
    }
  });
  double best = 1e30;
  for (int rep = 0; rep < 6; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    pool_.parallel_for(n, [&](std::size_t lo, std::size_t hi) {
      float* __restrict pa = a.get();
      const float* __restrict pb = b.get();
      const float* __restrict pc = c.get();
#pragma omp simd
      for (std::size_t i = lo; i < hi; ++i) pa[i] = pb[i] + 0.5f * pc[i];
    });
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (rep > 0) best = std::min(best, s);  // the first pass warms up page tables
  }
  BandwidthReport r;
  r.memory_gbps = 3.0 * sizeof(float) * static_cast<double>(n) / best / 1e9;
  r.method = "STREAM triad, 3 x 128 MB float arrays, " + std::to_string(pool_.size()) + " threads";
  return r;
}

}  // namespace federa
