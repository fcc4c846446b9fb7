// The CPU backend's UpdateSet: every update of a round kept in host memory, for median, trimmed
// mean and (multi-)Krum (coordinator/aggregation_backend.hpp has the contract).
#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

#include "coordinator/backend_checks.hpp"
#include "coordinator/cpu_backend_loops.hpp"

namespace federa::cpu {

namespace {

// Coordinates per block of the pairwise-distance pass: k rows of a block stay in L2.
constexpr std::size_t kDistanceBlock = 2048;

struct Range {
  std::size_t begin, end;
};

Range thread_range(std::size_t n, unsigned t, unsigned nt) {
  std::size_t chunk = (n + nt - 1) / nt;
  chunk = (chunk + 15) / 16 * 16;
  std::size_t b = std::min(n, chunk * t);
  return {b, std::min(n, b + chunk)};
}

class CpuUpdateSet final : public UpdateSet {
 public:
  CpuUpdateSet(ThreadPool& pool, std::size_t n) : pool_(pool), n_(n) {}
  std::size_t size() const override { return n_; }
  std::size_t count() const override { return count_; }
  // Rows are kept for the next round (which, with the same cohort, needs as many again).
  Status clear() override {
    count_ = 0;
    return {};
  }

  Result<AddReport> push(std::span<const float> x, const AddOptions& options) override {
    if (Status st = backend::check_add(x.size(), n_, 1.0f, options); !st) return st.error();
    std::optional<double> norm = backend::known_norm(options);
    if (!norm) norm = parallel_norm(pool_, x, options.reference);
    Result<double> scale = backend::check_norm(*norm, options);
    if (!scale) return scale.error();
    if (count_ == rows_.size()) {
      std::unique_ptr<float[]> row(new (std::nothrow) float[n_]);
      if (!row)
        return make_error(ErrorCode::resource_exhausted, "out of memory keeping update " +
                                                             std::to_string(count_ + 1) + " of " +
                                                             std::to_string(n_) + " values");
      rows_.push_back(std::move(row));
    }
    float* row = rows_[count_].get();
    const float s = static_cast<float>(scale.value());
    const float* ref = options.reference.empty() ? nullptr : options.reference.data();
    pool_.parallel_for(n_, [&](std::size_t b, std::size_t e) {
      if (!ref && s == 1.0f) {
        std::memcpy(row + b, x.data() + b, (e - b) * sizeof(float));
      } else {
        for (std::size_t i = b; i < e; ++i) row[i] = s * (x[i] - (ref ? ref[i] : 0.0f));
      }
    });
    ++count_;
    return AddReport{*norm, scale.value()};
  }

  Status median(std::span<float> out) override {
    if (Status st = backend::check_robust(count_, out.size(), n_, 0); !st) return st;
    const std::size_t k = count_;
    for_each_coordinate(out, [k](std::vector<float>& v) {
      auto mid = v.begin() + k / 2;
      std::nth_element(v.begin(), mid, v.end());
      const float hi = *mid;
      if (k % 2 == 1) return hi;
      const float lo = *std::max_element(v.begin(), mid);
      return static_cast<float>((static_cast<double>(lo) + hi) * 0.5);
    });
    return {};
  }

  Status trimmed_mean(std::size_t trim, std::span<float> out) override {
    if (Status st = backend::check_robust(count_, out.size(), n_, trim); !st) return st;
    const std::size_t k = count_;
    for_each_coordinate(out, [k, trim](std::vector<float>& v) {
      std::sort(v.begin(), v.end());
      double s = 0.0;
      for (std::size_t j = trim; j < k - trim; ++j) s += v[j];
      return static_cast<float>(s / static_cast<double>(k - 2 * trim));
    });
    return {};
  }

  Result<std::vector<double>> pairwise_sq_distances() override {
    const std::size_t k = count_;
    std::vector<double> d(k * k, 0.0);
    if (k < 2) return d;
    // Each thread covers a range of coordinates for all pairs, in blocks that keep k rows of the
    // block in L2; partial matrices are added at the end.
    const unsigned nt = pool_.size();
    std::vector<std::vector<double>> partial(nt, std::vector<double>(k * k, 0.0));
    pool_.run([&](unsigned t, unsigned n_threads) {
      Range r = thread_range(n_, t, n_threads);
      auto& p = partial[t];
      for (std::size_t b = r.begin; b < r.end; b += kDistanceBlock) {
        std::size_t len = std::min(kDistanceBlock, r.end - b);
        for (std::size_t i = 0; i < k; ++i) {
          const float* a = rows_[i].get() + b;
          for (std::size_t j = i + 1; j < k; ++j) {
            const float* c = rows_[j].get() + b;
            p[i * k + j] += sum_sq_diff(a, c, len);
          }
        }
      }
    });
    for (std::size_t i = 0; i < k; ++i)
      for (std::size_t j = i + 1; j < k; ++j) {
        double s = 0.0;
        for (auto& p : partial) s += p[i * k + j];
        d[i * k + j] = d[j * k + i] = s;
      }
    return d;
  }

  Status weighted_mean(std::span<const std::size_t> rows, std::span<const float> weights,
                       std::span<float> out) override {
    Result<double> total = backend::check_weighted_mean(rows, weights, count_, out.size(), n_);
    if (!total) return total.error();
    const float inv = static_cast<float>(1.0 / total.value());
    float* dst = out.data();
    if (out.empty()) {  // result kept on the backend (benchmarks), as the CUDA backend does
      if (!scratch_) scratch_.reset(new float[n_]);
      dst = scratch_.get();
    }
    std::vector<const float*> src(rows.size());
    for (std::size_t j = 0; j < rows.size(); ++j) src[j] = rows_[rows[j]].get();
    const auto t0 = std::chrono::steady_clock::now();
    // Blocked so that the output block stays in L2 while every row streams past it once; four
    // rows per sweep over the block, so the block is read and written a quarter as often.
    constexpr std::size_t kOutBlock = 8192;
    pool_.parallel_for(n_, [&](std::size_t b, std::size_t e) {
      for (std::size_t s = b; s < e; s += kOutBlock) {
        const std::size_t len = std::min(kOutBlock, e - s);
        float* __restrict o = dst + s;
        std::memset(o, 0, len * sizeof(float));
        std::size_t j = 0;
        for (; j + 4 <= src.size(); j += 4) {
          const float *r0 = src[j] + s, *r1 = src[j + 1] + s, *r2 = src[j + 2] + s,
                      *r3 = src[j + 3] + s;
          const float w0 = weights[j], w1 = weights[j + 1], w2 = weights[j + 2],
                      w3 = weights[j + 3];
#pragma omp simd
          for (std::size_t q = 0; q < len; ++q)
            o[q] += w0 * r0[q] + w1 * r1[q] + w2 * r2[q] + w3 * r3[q];
        }
        for (; j < src.size(); ++j) axpy(o, src[j] + s, weights[j], len);
#pragma omp simd
        for (std::size_t q = 0; q < len; ++q) o[q] *= inv;
      }
    });
    last_ms_ =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return {};
  }

  double last_reduction_ms() const override { return last_ms_; }

 private:
  // out[i] = reduce(the kept values of coordinate i), in parallel; reduce may reorder them.
  template <typename Reduce>
  void for_each_coordinate(std::span<float> out, const Reduce& reduce) {
    const std::vector<const float*> ptr = row_pointers();
    pool_.parallel_for(n_, [&](std::size_t b, std::size_t e) {
      std::vector<float> v(ptr.size());
      for (std::size_t i = b; i < e; ++i) {
        for (std::size_t j = 0; j < ptr.size(); ++j) v[j] = ptr[j][i];
        out[i] = reduce(v);
      }
    });
  }

  // Plain pointers, so the per-coordinate gathers need no reload of each vector's data pointer
  // (stores to `out` could alias it as far as the compiler knows).
  std::vector<const float*> row_pointers() const {
    std::vector<const float*> p;
    for (std::size_t j = 0; j < count_; ++j) p.push_back(rows_[j].get());
    return p;
  }

  ThreadPool& pool_;
  std::size_t n_;
  std::size_t count_ = 0;
  std::vector<std::unique_ptr<float[]>> rows_;  // the first count_ are this round's
  std::unique_ptr<float[]> scratch_;
  double last_ms_ = 0.0;
};

}  // namespace

std::unique_ptr<UpdateSet> make_update_set(ThreadPool& pool, std::size_t n) {
  return std::make_unique<CpuUpdateSet>(pool, n);
}

}  // namespace federa::cpu
